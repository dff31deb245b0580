"""Under- and overfitting on a small digits subset, and the regularizers that fight overfitting.

    python -m experiments.regularization [--train-size 200] [--hidden 256] [--steps 1500]
        [--batch-size 50] [--learning-rate 1e-2] [--eval-every 50] [--seeds 5]
        [--widths 2,8,32,128,512] [--label-noise 0] [--l2 1e-8,...,1e-2] [--l1 1e-9,...,1e-3]
        [--dropout 0.1,0.25,0.5] [--sigma 0.1,0.2,0.4] [--worst-sigma 0.1,0.2,0.4] [--k 4]
        [--unconstrained-sigma 0.1,0.2,0.4] [--jacobian 1e-4,1e-3,1e-2]
        [--output 1e-4,...,1e-1] [--weight-jacobian 1e-6,...,1e-3]
        [--methods none,l2,l1,dropout,gaussian_noise,...] [--data-seed 0] [--out DIR]

Part 1 is the capacity study of `experiments.capacity` (``capacity.png``): MLPs 64-w-10 of
increasing width on a stratified subset of ``--train-size`` digits, under- to overfitting.

Part 2, regularizers: the 64-``hidden``-10 MLP trained the same way with no regularization, an
L2 or L1 penalty on the kernels, dropout, Gaussian input noise, worst-of-k Gaussian noise (k
draws per example, train on the worst), adaptive unconstrained noise (one ascent step on l(x +
theta) + log p(theta) from a draw of p = N(0, sigma^2 I)), the Jacobian penalty ||dy/dx||_F^2
(unbiased one-probe estimate), the output penalty lambda ||y||^2 on the logits, the penalty
lambda ||dy/dw||_F^2 on the sensitivity to the weights (unbiased one-probe estimate on the first
10 examples of each batch), early stopping, and weight sharing: a convolutional network on the
8x8 images (two 3x3 convolutions of 8 and 16 channels with 2x2 max pooling, a dense head; 3,658
parameters), reported against the 64-48-10 MLP of about as many (3,610). The definitions live in
`experiments.regularization_cli` (methods, grids, flags) and
`experiments.regularization_methods` (losses, searches, table). Every coefficient of a method's
grid, crossed with ``--seeds`` seeds, trains in one vmapped `jdl.search.Search` (seed s gives
every member the same initial parameters and data order); the coefficient with the best mean
validation accuracy is chosen and its test accuracy reported, mean and spread (sample standard
deviation) over the seeds. No regularization, L2, L1, Gaussian noise and the output penalty
share one search (one compiled program, the unused terms weighted by 0); worst-of-k, the
unconstrained noise and the two Jacobian penalties, whose terms cost more, have their own, and
so has dropout, its rates one hyper-parameter of the program (`jdl.models.MLP` takes the rate at
call time, possibly traced). Early stopping restores, per run, the parameters of the lowest
validation loss seen during the unregularized run (patience longer than the run): its
hyper-parameter, the training time, is chosen on the validation set run by run. The other
methods report their final parameters. The verdict takes the method of best validation accuracy
and says whether its test accuracy beats no regularization by more than the seed spread (the
larger of the two standard deviations), and lists every method that does.

Writes into ``--out``: ``capacity.png``, ``regularizers.png`` (accuracy per method; validation
accuracy against each coefficient) and ``results.json`` with ``config``, ``capacity`` (per
width: parameters, final training / validation loss, best validation loss and step, mean
validation curve), ``methods`` (per method: ``hyperparameter``, ``chosen``, ``val_accuracy``
and ``test_accuracy`` as ``{"mean", "std"}``, the whole ``grid``, ``at_grid_edge``: whether the
chosen value is the first or last of its grid, printed as a warning; for none, L2 and L1
``near_zero_weights``: per coefficient the fraction of kernel weights with |w| < 1e-3; for
weight sharing ``mlp_same_size``, the MLP of about as many parameters),
``chosen_at_grid_edge``, ``verdict`` (``best``, ``comparison``, ``statement``) and ``timing``
(seconds per part).
"""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
import time
from pathlib import Path
from typing import Any

from experiments import cli, regularization_cli
from experiments.regularization_cli import Config

PROG = "python -m experiments.regularization"


def _parse(argv: list[str] | None) -> Config:
    return regularization_cli.parse(PROG, __doc__, argv)


if __name__ == "__main__":
    cli.parsed(lambda: _parse(None))  # --help and bad flags answer before JAX is imported

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

from experiments import capacity, output
from experiments.regularization_cli import GRID_FIELD, HYPERPARAMETER
from experiments.regularization_methods import NEAR_ZERO, methods_results


def _verdict(table: dict[str, Any]) -> dict[str, Any]:
    """Does the best method beat no regularization on test accuracy by more than the spread?

    "Best" is chosen on validation accuracy (the test set is not used to pick it); the spread
    is the larger of the two methods' standard deviations over seeds.
    """
    none = table["none"]["test_accuracy"]
    beats = {}
    for m, row in table.items():
        if m == "none":
            continue
        test = row["test_accuracy"]
        gain = test["mean"] - none["mean"]
        spread = max(test["std"], none["std"])
        beats[m] = {"gain": gain, "spread": spread, "beats_none": bool(gain > spread)}
    if not beats:
        return {"best": "none", "statement": "only the unregularized model was trained"}
    best = max(beats, key=lambda m: table[m]["val_accuracy"]["mean"])
    b, t = beats[best], table[best]["test_accuracy"]
    statement = (
        f"{best} (best validation accuracy) reaches test accuracy {t['mean']:.4f} +- "
        f"{t['std']:.4f} against {none['mean']:.4f} +- {none['std']:.4f} without "
        f"regularization: a gain of {b['gain']:+.4f}, "
        + ("more" if b["beats_none"] else "not more")
        + f" than the seed spread ({b['spread']:.4f})."
    )
    winners = [m for m, v in beats.items() if v["beats_none"]]
    statement += (
        f" Methods beating none by more than the spread: {', '.join(winners)}."
        if winners
        else " No method beats none by more than the spread."
    )
    return {"best": best, "comparison": beats, "statement": statement}


def _plot_methods(table: dict[str, Any], path: Path) -> None:
    """Left: each method's chosen accuracy; right: one panel per searched coefficient (their
    units differ, so each has its own axis)."""
    names = list(table)
    searched = [m for m in names if m in GRID_FIELD]
    fig = plt.figure(figsize=(14, 5.6), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=(1.0, 1.3))
    ax = left.subplots()
    pos = np.arange(len(names))
    for offset, key, label in (
        (-0.15, "val_accuracy", "validation"),
        (0.15, "test_accuracy", "test"),
    ):
        ax.errorbar(
            pos + offset,
            [table[m][key]["mean"] for m in names],
            yerr=[table[m][key]["std"] for m in names],
            fmt="o",
            capsize=3,
            label=label,
        )
    none = table["none"]["test_accuracy"]
    ax.axhspan(none["mean"] - none["std"], none["mean"] + none["std"], color="gray", alpha=0.2)
    ax.set_xticks(pos, names, rotation=30, ha="right")
    ax.set_ylabel("accuracy, mean ± std over seeds (axis zoomed, not from 0)")
    ax.set_title("chosen coefficient per method (band: none's test spread)")
    ax.legend(loc="lower left")
    cols = max(1, math.ceil(len(searched) / 2))
    axes = right.subplots(2, cols, squeeze=False).ravel() if searched else []
    for ax_g, m in zip(axes, searched, strict=False):
        grid = table[m]["grid"]
        ax_g.errorbar(
            [g["value"] for g in grid],
            [g["val_accuracy"]["mean"] for g in grid],
            yerr=[g["val_accuracy"]["std"] for g in grid],
            fmt="o-",
            capsize=2,
        )
        ax_g.axhline(table["none"]["val_accuracy"]["mean"], color="gray", ls="--", lw=1)
        values = [g["value"] for g in grid]
        # a log axis only where the grid spans decades (its minor labels collide otherwise)
        ax_g.set_xscale("log" if max(values) >= 10 * min(values) > 0 else "linear")
        ax_g.xaxis.set_minor_formatter(NullFormatter())
        ax_g.set_xlabel(textwrap.fill(HYPERPARAMETER[m], 26), fontsize=7)
        ax_g.set_ylabel("val. accuracy", fontsize=8)
        ax_g.set_title(m, fontsize=9)
        ax_g.tick_params(labelsize=7)
    for ax_g in list(axes)[len(searched) :]:
        ax_g.axis("off")
    right.suptitle("the search: validation accuracy per coefficient (dashed: none)", fontsize=10)
    fig.suptitle("Regularizers on a 200-digit training set, coefficients chosen on validation")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _print_table(table: dict[str, Any]) -> None:
    print(f"{'method':<20}{'chosen':>10}  {'val accuracy':>16}  {'test accuracy':>16}")
    for m, row in table.items():
        chosen = "-" if row["chosen"] is None else f"{row['chosen']:.4g}"
        va, te = row["val_accuracy"], row["test_accuracy"]
        print(
            f"{m:<20}{chosen:>10}  {va['mean']:.4f} +- {va['std']:.4f}  "
            f"{te['mean']:.4f} +- {te['std']:.4f}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs both parts and writes ``capacity.png``, ``regularizers.png`` and ``results.json``
    into ``--out``; returns the results."""
    cfg = _parse(argv)
    start = time.perf_counter()
    splits = capacity.load(cfg, PROG)
    train, val, test = splits
    sweep = capacity.study(cfg, splits)
    capacity_s = time.perf_counter() - start
    table, timing = methods_results(cfg, splits)
    verdict = _verdict(table)
    edges = {m: row["chosen"] for m, row in table.items() if row.get("at_grid_edge")}
    results = {
        "config": dataclasses.asdict(cfg),
        "train_examples": int(train.x.shape[0]),
        "val_examples": int(val.x.shape[0]),
        "test_examples": int(test.x.shape[0]),
        "capacity": sweep,
        "methods": table,
        "verdict": verdict,
        "chosen_at_grid_edge": edges,
        "timing": {"capacity_s": capacity_s, **timing, "total_s": time.perf_counter() - start},
    }
    with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
        capacity.plot(sweep, folder / f"capacity.{cfg.format}")
        _plot_methods(table, folder / f"regularizers.{cfg.format}")
        (folder / "results.json").write_text(json.dumps(results, indent=2))
    out = Path(cfg.out)
    _print_table(table)
    print(verdict["statement"])
    for m in ("none", "l2", "l1"):
        if "near_zero_weights" in table.get(m, {}):
            cells = [
                f"{z['value']:.0e}: {z['mean']:.3f}" if m != "none" else f"{z['mean']:.3f}"
                for z in table[m]["near_zero_weights"]
            ]
            print(f"fraction of kernel weights with |w| < {NEAR_ZERO:g}, {m}: " + ", ".join(cells))
    if "weight_sharing" in table:
        cnn, mlp = table["weight_sharing"], table["weight_sharing"]["mlp_same_size"]
        print(
            f"weight sharing: CNN of {cnn['chosen']:.0f} parameters, test accuracy "
            f"{cnn['test_accuracy']['mean']:.4f} +- {cnn['test_accuracy']['std']:.4f}, against "
            f"{mlp['model']} of {mlp['parameters']}: {mlp['test_accuracy']['mean']:.4f} +- "
            f"{mlp['test_accuracy']['std']:.4f}"
        )
    for m, v in edges.items():
        print(f"warning: {m}'s chosen {HYPERPARAMETER[m]} = {v:g} is at its grid's edge")
    print(f"wrote {out / 'results.json'} in {results['timing']['total_s']:.1f} s")
    return results


if __name__ == "__main__":
    cli.run(main)
