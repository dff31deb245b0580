"""Under- and overfitting on a small digits subset, and the regularizers that fight overfitting.

    python -m experiments.regularization [--train-size 200] [--hidden 256] [--steps 1500]
        [--batch-size 50] [--learning-rate 1e-2] [--eval-every 50] [--seeds 5]
        [--widths 2,8,32,128,512] [--l2 1e-4,1e-3,1e-2] [--l1 1e-5,1e-4,1e-3]
        [--dropout 0.25,0.5] [--sigma 0.1,0.2,0.4] [--worst-sigma 0.1,0.2,0.4] [--k 4]
        [--unconstrained-sigma 0.1,0.2,0.4]
        [--jacobian 1e-4,1e-3,1e-2] [--methods none,l2,l1,dropout,gaussian_noise,...]
        [--data-seed 0] [--out DIR]

Part 1 is the capacity study of `experiments.capacity` (``capacity.png``): MLPs 64-w-10 of
increasing width on a stratified subset of ``--train-size`` digits, under- to overfitting.

Part 2, regularizers: the 64-``hidden``-10 MLP trained the same way with no regularization, an
L2 or L1 penalty on the kernels, dropout, Gaussian input noise, worst-of-k Gaussian noise (k
draws per example, train on the worst), adaptive unconstrained noise (one ascent step on l(x +
theta) + log p(theta) from a draw of p = N(0, sigma^2 I)), the Jacobian penalty ||dy/dx||_F^2
(unbiased one-probe estimate) and early stopping. Every coefficient of a method's grid, crossed
with ``--seeds`` seeds, trains in one vmapped `jdl.search.Search` (seed s gives every member
the same initial parameters and data order); the coefficient with the best mean validation
accuracy is chosen and its test accuracy reported, mean and spread (sample standard deviation)
over the seeds. No regularization, L2, L1 and Gaussian noise share one search (one compiled
program, the unused terms weighted by 0); worst-of-k, the unconstrained noise and the Jacobian
penalty, whose terms cost more, have their own; dropout's rate fixes the model's structure, so
each rate is a search. Early stopping restores, per run, the parameters of the lowest
validation loss seen during the unregularized run (patience longer than the run): its
hyper-parameter, the training time, is chosen on the validation set run by run. The other
methods report their final parameters. The verdict takes the method of best validation accuracy
and says whether its test accuracy beats no regularization by more than the seed spread (the
larger of the two standard deviations), and lists every method that does.

Writes into ``--out``: ``capacity.png``, ``regularizers.png`` (accuracy per method; validation
accuracy against each coefficient) and ``results.json`` with ``config``, ``capacity`` (per
width: parameters, final training / validation loss, best validation loss and step, mean
validation curve), ``methods`` (per method: ``hyperparameter``, ``chosen``, ``val_accuracy``
and ``test_accuracy`` as ``{"mean", "std"}``, and the whole ``grid``), ``verdict`` (``best``,
``comparison``, ``statement``) and ``timing`` (seconds per part).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments import capacity_cli, cli
from experiments.cli import Parser, joined, positive_numbers

PROG = "python -m experiments.regularization"
METHODS = (
    "none",
    "l2",
    "l1",
    "dropout",
    "gaussian_noise",
    "worst_of_k",
    "unconstrained_noise",
    "early_stopping",
    "jacobian",
)
# The coefficient each method searches over, as written in the table.
HYPERPARAMETER = {
    "none": None,
    "l2": "lambda in (lambda/2)||W||^2",
    "l1": "lambda in lambda ||W||_1",
    "dropout": "dropout rate p",
    "gaussian_noise": "sigma of x + N(0, sigma^2 I)",
    "worst_of_k": "sigma of the k Gaussian draws",
    "unconstrained_noise": "sigma of p in l(x + theta) + log p(theta), one ascent step",
    "early_stopping": "training steps (best validation loss, per run)",
    "jacobian": "lambda in lambda ||dy/dx||_F^2",
}
# Methods trained together in one search: their loss terms are cheap enough to share.
PENALTY_GROUP = ("none", "l2", "l1", "gaussian_noise")


@dataclasses.dataclass(frozen=True)
class Config(capacity_cli.Config):
    """The capacity study's training and sweep, the regularized model and the grids."""

    hidden: int = 256
    l2: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    l1: tuple[float, ...] = (1e-5, 1e-4, 1e-3)
    dropout: tuple[float, ...] = (0.25, 0.5)
    sigma: tuple[float, ...] = (0.1, 0.2, 0.4)
    worst_sigma: tuple[float, ...] = (0.1, 0.2, 0.4)
    k: int = 4
    unconstrained_sigma: tuple[float, ...] = (0.1, 0.2, 0.4)
    jacobian: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    methods: tuple[str, ...] = METHODS
    out: str = "runs/regularization"


def _methods(text: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown methods {unknown}; choose from {METHODS}")
    return tuple(m for m in METHODS if m in names or m == "none")


def _parse(argv: list[str] | None) -> Config:
    d = Config()
    p = Parser(prog=PROG, doc=__doc__)
    capacity_cli.add_arguments(p, d)
    p.add_argument("--hidden", type=int, default=d.hidden, help="width of the regularized MLP")
    p.add_argument("--k", type=int, default=d.k, help="draws of worst-of-k noise")
    grids = {
        "l2": "grid of the L2 penalty's lambda",
        "l1": "grid of the L1 penalty's lambda",
        "dropout": "grid of dropout rates, in (0, 1)",
        "sigma": "grid of the Gaussian noise's sigma",
        "worst_sigma": "grid of worst-of-k noise's sigma",
        "unconstrained_sigma": "grid of the adaptive-unconstrained noise's prior sigma",
        "jacobian": "grid of the Jacobian penalty's lambda",
    }
    for name, text in grids.items():
        p.add_argument(
            cli.flag(name), type=positive_numbers, default=joined(getattr(d, name)), help=text
        )
    p.add_argument(
        "--methods",
        type=_methods,
        default=joined(d.methods),
        help="comma-separated; none always runs",
    )
    args = p.parse_args(argv)
    capacity_cli.check_arguments(p, args)
    p.require_positive_numbers(args, *grids)
    p.require_positive_ints(args, "hidden", "k")
    if not all(v < 1 for v in args.dropout):
        p.error(f"--dropout rates must lie in (0, 1), got {args.dropout}")
    return Config(**vars(args))


if __name__ == "__main__":
    cli.parsed(lambda: _parse(None))  # --help and bad flags answer before JAX is imported

import jax
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from experiments import capacity, output
from jdl.augment import adversarial_unconstrained, gaussian_noise, worst_of_k
from jdl.data import Dataset
from jdl.losses import softmax_cross_entropy
from jdl.regularizers import jacobian_penalty_estimate, l1_penalty, l2_penalty


def _make_loss_fn(apply_fn: Callable, methods: tuple[str, ...], *, dropout: bool, k: int):
    """``make_loss_fn(hparams) -> loss_fn``: cross-entropy plus the terms of ``methods``, each
    weighted by ``hparams[method]`` (0 turns a term off)."""

    def make_loss_fn(hp: dict[str, jax.Array]) -> Callable:
        def loss_fn(params: Any, batch: Dataset, key: jax.Array) -> tuple[jax.Array, dict]:
            noise_key, worst_key, probe_key, dropout_key = jax.random.split(key, 4)
            x = batch.x

            def per_example(z: jax.Array) -> jax.Array:
                logits = apply_fn(params, z)
                return optax.losses.softmax_cross_entropy_with_integer_labels(logits, batch.y)

            if "gaussian_noise" in methods:
                x = gaussian_noise(noise_key, x, hp["gaussian_noise"])
            if "unconstrained_noise" in methods:
                x = adversarial_unconstrained(
                    noise_key, x, per_example, hp["unconstrained_noise"], steps=1
                )
            if "worst_of_k" in methods:

                def perturb(kk: jax.Array, z: jax.Array) -> jax.Array:
                    return gaussian_noise(kk, z, hp["worst_of_k"])

                x = worst_of_k(worst_key, x, per_example, perturb, k)
            logits = apply_fn(params, x, key=dropout_key if dropout else None)
            loss = softmax_cross_entropy(logits, batch.y)
            if "l2" in methods:
                loss = loss + l2_penalty(params, hp["l2"])
            if "l1" in methods:
                loss = loss + l1_penalty(params, hp["l1"])
            if "jacobian" in methods:
                loss = loss + jacobian_penalty_estimate(
                    lambda z: apply_fn(params, z), x, probe_key, hp["jacobian"]
                )
            return loss, {}

        return loss_fn

    return make_loss_fn


def _methods_results(
    cfg: Config, splits: capacity.Splits
) -> tuple[dict[str, Any], dict[str, float]]:
    """Per method: the grid's validation/test accuracy and the chosen coefficient."""
    grids = {
        "l2": cfg.l2,
        "l1": cfg.l1,
        "gaussian_noise": cfg.sigma,
        "worst_of_k": cfg.worst_sigma,
        "unconstrained_noise": cfg.unconstrained_sigma,
        "jacobian": cfg.jacobian,
    }
    per_method: dict[str, list[tuple[float, np.ndarray, np.ndarray]]] = {}
    timing: dict[str, float] = {}
    groups = [tuple(m for m in PENALTY_GROUP if m in cfg.methods)]
    groups += [(m,) for m in ("worst_of_k", "unconstrained_noise", "jacobian") if m in cfg.methods]
    for group in groups:
        start = time.perf_counter()
        rows = [("none", 0.0)] if "none" in group else []
        rows += [(m, v) for m in group if m != "none" for v in grids[m]]
        names = [m for m in group if m != "none"] or ["none"]
        hparams = {n: [v if m == n else 0.0 for m, v in rows] for n in names}
        apply_fn = capacity.mlp(cfg.hidden)[0]
        make_loss_fn = _make_loss_fn(apply_fn, group, dropout=False, k=cfg.k)
        result, evaluate = capacity.train(
            cfg, cfg.hidden, hparams, splits, make_loss_fn=make_loss_fn
        )
        final = evaluate(result.params)
        for h, (m, v) in enumerate(rows):
            per_method.setdefault(m, []).append(
                (v, final["val"]["accuracy"][:, h], final["test"]["accuracy"][:, h])
            )
        if "none" in group and "early_stopping" in cfg.methods:
            # the unregularized runs' parameters of lowest validation loss
            best_test = evaluate(result.best_params)["test"]["accuracy"]
            per_method["early_stopping"] = [
                (
                    float(np.mean(result.best_step[:, 0])),
                    np.asarray(result.best["val_accuracy"][:, 0]),
                    np.asarray(best_test[:, 0]),
                )
            ]
        timing[",".join(group)] = time.perf_counter() - start
    if "dropout" in cfg.methods:
        start = time.perf_counter()
        for rate in cfg.dropout:
            apply_fn = capacity.mlp(cfg.hidden, rate)[0]
            make_loss_fn = _make_loss_fn(apply_fn, (), dropout=True, k=cfg.k)
            result, evaluate = capacity.train(
                cfg,
                cfg.hidden,
                {"dropout": [rate]},
                splits,
                make_loss_fn=make_loss_fn,
                dropout_rate=rate,
            )
            final = evaluate(result.params)
            per_method.setdefault("dropout", []).append(
                (rate, final["val"]["accuracy"][:, 0], final["test"]["accuracy"][:, 0])
            )
        timing["dropout"] = time.perf_counter() - start
    table = {}
    for m in METHODS:
        if m not in per_method:
            continue
        grid = [
            {"value": v, "val_accuracy": capacity.stats(va), "test_accuracy": capacity.stats(te)}
            for v, va, te in per_method[m]
        ]
        chosen = max(grid, key=lambda g: g["val_accuracy"]["mean"])
        table[m] = {
            "hyperparameter": HYPERPARAMETER[m],
            "chosen": chosen["value"] if m != "none" else None,
            "val_accuracy": chosen["val_accuracy"],
            "test_accuracy": chosen["test_accuracy"],
            "grid": grid,
        }
    return table, timing


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
    searched = [m for m in names if m not in ("none", "early_stopping")]
    fig = plt.figure(figsize=(14, 4.8), layout="constrained")
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
        ax_g.set_xscale("log" if m != "dropout" else "linear")
        ax_g.set_xlabel(HYPERPARAMETER[m], fontsize=8)
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
        chosen = "-" if row["chosen"] is None else f"{row['chosen']:.3g}"
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
    table, timing = _methods_results(cfg, splits)
    verdict = _verdict(table)
    results = {
        "config": dataclasses.asdict(cfg),
        "train_examples": int(train.x.shape[0]),
        "val_examples": int(val.x.shape[0]),
        "test_examples": int(test.x.shape[0]),
        "capacity": sweep,
        "methods": table,
        "verdict": verdict,
        "timing": {"capacity_s": capacity_s, **timing, "total_s": time.perf_counter() - start},
    }
    with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
        capacity.plot(sweep, folder / f"capacity.{cfg.format}")
        _plot_methods(table, folder / f"regularizers.{cfg.format}")
        (folder / "results.json").write_text(json.dumps(results, indent=2))
    out = Path(cfg.out)
    _print_table(table)
    print(verdict["statement"])
    print(f"wrote {out / 'results.json'} in {results['timing']['total_s']:.1f} s")
    return results


if __name__ == "__main__":
    cli.run(main)
