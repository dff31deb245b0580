"""Under- and overfitting on a small digits subset, and the regularizers that fight overfitting.

    python -m experiments.regularization [--train-size 200] [--hidden 256] [--steps 1500]
        [--batch-size 50] [--learning-rate 1e-2] [--chunk-steps 50] [--seeds 5]
        [--widths 2,8,32,128,512] [--l2 1e-4,1e-3,1e-2] [--l1 1e-5,1e-4,1e-3]
        [--dropout 0.25,0.5] [--sigma 0.1,0.2,0.4] [--worst-sigma 0.1,0.2,0.4] [--k 4]
        [--jacobian 1e-4,1e-3,1e-2] [--methods none,l2,l1,dropout,gaussian_noise,...]
        [--data-seed 0] [--out DIR]

Part 1, capacity: MLPs 64-w-10 of increasing width w trained with Adam for ``--steps`` on a
stratified subset of ``--train-size`` digits; the training loss (whole subset) and validation
loss of the final parameters against w give the course's underfitting / good fit /
overfitting picture (``capacity.png``, left), and the validation curves over training show the
overfitting in time (right).

Part 2, regularizers: the 64-``hidden``-10 MLP trained the same way with no regularization,
an L2 or L1 penalty on the kernels, dropout, Gaussian input noise, worst-of-k Gaussian noise
(k draws per example, train on the worst), the Jacobian penalty ||dy/dx||_F^2 (unbiased
one-probe estimate) and early stopping. Every coefficient of a method's grid, crossed with
``--seeds`` seeds, trains in one vmapped `jdl.search.Search` (seed s gives every member the
same initial parameters and data order); the coefficient with the best mean validation
accuracy is chosen and its test accuracy reported, mean and spread (sample standard deviation)
over the seeds. No regularization, L2, L1 and Gaussian noise share one search (one compiled
program, the unused terms weighted by 0); worst-of-k and the Jacobian penalty, whose terms cost
more, have their own; dropout's rate fixes the model's structure, so each rate is a search.
Early stopping restores, per run, the parameters of the lowest validation loss seen during the
unregularized run (patience longer than the run): its hyper-parameter, the training time, is
chosen on the validation set run by run. The other methods report their final parameters.
The verdict takes the method of best validation accuracy and says whether its test accuracy
beats no regularization by more than the seed spread (the larger of the two standard
deviations), and lists every method that does.

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
import functools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from flax import nnx

import jdl.optim
from jdl.augment import gaussian_noise, worst_of_k
from jdl.data import Dataset, digits, stratified_subset
from jdl.losses import accuracy, softmax_cross_entropy
from jdl.models import MLP, functional
from jdl.regularizers import jacobian_penalty_estimate, l1_penalty, l2_penalty
from jdl.search import Search, SearchResult, population
from jdl.train import early_stopping

METHODS = (
    "none",
    "l2",
    "l1",
    "dropout",
    "gaussian_noise",
    "worst_of_k",
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
    "early_stopping": "training steps (best validation loss, per run)",
    "jacobian": "lambda in lambda ||dy/dx||_F^2",
}
# Methods trained together in one search: their loss terms are cheap enough to share.
PENALTY_GROUP = ("none", "l2", "l1", "gaussian_noise")


@dataclasses.dataclass(frozen=True)
class Config:
    """Data size, model, optimizer, training length, the capacity sweep and the grids."""

    train_size: int = 200
    hidden: int = 256
    steps: int = 1500
    batch_size: int = 50
    learning_rate: float = 1e-2
    chunk_steps: int = 50
    seeds: int = 5
    widths: tuple[int, ...] = (2, 8, 32, 128, 512)
    l2: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    l1: tuple[float, ...] = (1e-5, 1e-4, 1e-3)
    dropout: tuple[float, ...] = (0.25, 0.5)
    sigma: tuple[float, ...] = (0.1, 0.2, 0.4)
    worst_sigma: tuple[float, ...] = (0.1, 0.2, 0.4)
    k: int = 4
    jacobian: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    methods: tuple[str, ...] = METHODS
    data_seed: int = 0
    out: str = "runs/regularization"


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(_positive_int(t) for t in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive ints such as 2,8,32, got {text!r}"
        ) from None


def _grid(upper: float | None) -> Callable[[str], tuple[float, ...]]:
    """Parser of a comma-separated grid of values in (0, upper)."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(t) for t in text.split(","))
        except ValueError:
            values = ()
        if not values or not all(math.isfinite(v) and v > 0 for v in values):
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers > 0 such as 1e-3,1e-2, got {text!r}"
            )
        if upper is not None and not all(v < upper for v in values):
            raise argparse.ArgumentTypeError(f"expected values in (0, {upper}), got {text!r}")
        return values

    return parse


def _methods(text: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown methods {unknown}; choose from {METHODS}")
    return tuple(m for m in METHODS if m in names or m == "none")


def _parse(argv: list[str] | None) -> Config:
    d = Config()
    p = _Parser(prog="python -m experiments.regularization", description=__doc__.split("\n")[0])
    p.add_argument("--train-size", type=_positive_int, default=d.train_size)
    p.add_argument("--hidden", type=_positive_int, default=d.hidden)
    p.add_argument("--steps", type=_positive_int, default=d.steps)
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
    p.add_argument("--learning-rate", type=_positive_float, default=d.learning_rate)
    p.add_argument("--chunk-steps", type=_positive_int, default=d.chunk_steps)
    p.add_argument("--seeds", type=_positive_int, default=d.seeds)
    p.add_argument("--widths", type=_int_list, default=d.widths)
    p.add_argument("--l2", type=_grid(None), default=d.l2)
    p.add_argument("--l1", type=_grid(None), default=d.l1)
    p.add_argument("--dropout", type=_grid(1.0), default=d.dropout)
    p.add_argument("--sigma", type=_grid(None), default=d.sigma)
    p.add_argument("--worst-sigma", type=_grid(None), default=d.worst_sigma)
    p.add_argument("--k", type=_positive_int, default=d.k)
    p.add_argument("--jacobian", type=_grid(None), default=d.jacobian)
    p.add_argument(
        "--methods", type=_methods, default=d.methods, help="comma-separated; none always runs"
    )
    p.add_argument("--data-seed", type=int, default=d.data_seed)
    p.add_argument("--out", default=d.out)
    args = p.parse_args(argv)
    if args.seeds < 2:
        p.error("--seeds must be >= 2 (the spread over seeds is reported)")
    if args.batch_size > args.train_size:
        p.error(f"--batch-size ({args.batch_size}) must not exceed --train-size")
    if args.data_seed < 0:
        p.error(f"--data-seed must be >= 0, got {args.data_seed}")
    return Config(**vars(args))


# ------------------------------------------------------------------------------ training


@functools.cache
def _mlp(width: int, dropout_rate: float = 0.0) -> tuple[Callable, Callable, Callable]:
    """The 64-width-10 MLP: ``apply_fn``, compiled ``init_fn(key) -> params`` and compiled
    ``evaluate(params, datasets)`` (``eval_fn`` of every member on each data set). Cached, so
    searches of one model share their compiled initialisation and evaluation."""

    def build(key: jax.Array) -> MLP:
        rngs = nnx.Rngs(params=key, dropout=key)
        return MLP((64, width, 10), dropout_rate=dropout_rate, rngs=rngs)

    apply_fn, _ = functional(build(jax.random.key(0)))
    members = jax.vmap(jax.vmap(_eval_fn(apply_fn), in_axes=(0, None)), in_axes=(0, None))

    @jax.jit
    def evaluate(params: Any, datasets: tuple[Dataset, ...]) -> list[dict[str, jax.Array]]:
        return [members(params, data) for data in datasets]

    return apply_fn, jax.jit(lambda key: functional(build(key))[1]), evaluate


def _eval_fn(apply_fn: Callable) -> Callable:
    def eval_fn(params: Any, data: Dataset) -> dict[str, jax.Array]:
        logits = apply_fn(params, data.x)
        return {"loss": softmax_cross_entropy(logits, data.y), "accuracy": accuracy(logits, data.y)}

    return eval_fn


def _make_loss_fn(apply_fn: Callable, methods: tuple[str, ...], *, dropout: bool, k: int):
    """``make_loss_fn(hparams) -> loss_fn``: cross-entropy plus the terms of ``methods``, each
    weighted by ``hparams[method]`` (0 turns a term off)."""

    def make_loss_fn(hp: dict[str, jax.Array]) -> Callable:
        def loss_fn(params: Any, batch: Dataset, key: jax.Array) -> tuple[jax.Array, dict]:
            noise_key, worst_key, probe_key, dropout_key = jax.random.split(key, 4)
            x = batch.x
            if "gaussian_noise" in methods:
                x = gaussian_noise(noise_key, x, hp["gaussian_noise"])
            if "worst_of_k" in methods:

                def per_example(z: jax.Array) -> jax.Array:
                    logits = apply_fn(params, z)
                    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, batch.y)

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


def _search(
    cfg: Config,
    width: int,
    hparams: dict[str, list[float]],
    splits: tuple[Dataset, Dataset, Dataset],
    *,
    methods: tuple[str, ...] = (),
    dropout_rate: float = 0.0,
) -> tuple[SearchResult, Callable[[Any], dict[str, dict[str, np.ndarray]]]]:
    """One vmapped search over ``hparams`` x seeds; returns its result and ``evaluate``, which
    maps parameters with leaves (S, H, ...) to ``eval_fn`` on the "train", "val" and "test"
    sets (one compiled program for the three), each metric of shape (S, H)."""
    apply_fn, init_fn, evaluate_all = _mlp(width, dropout_rate)
    search = Search(
        init_fn,
        lambda hp: jdl.optim.adam(cfg.learning_rate),
        make_loss_fn=_make_loss_fn(apply_fn, methods, dropout=dropout_rate > 0, k=cfg.k),
        eval_fn=_eval_fn(apply_fn),
        batch_size=cfg.batch_size,
        chunk_steps=cfg.chunk_steps,
        # patience longer than the run: never stops, keeps the best parameters
        early_stopping=early_stopping(cfg.steps + cfg.chunk_steps),
    )
    train, val, _ = splits
    result = search.run(population(hparams, seeds=cfg.seeds), train, val, steps=cfg.steps)

    def evaluate(params: Any) -> dict[str, dict[str, np.ndarray]]:
        metrics = jax.tree.map(np.asarray, evaluate_all(params, splits))
        return dict(zip(("train", "val", "test"), metrics, strict=True))

    return result, evaluate


def _stats(values: np.ndarray) -> dict[str, float]:
    """Mean and sample standard deviation over seeds (axis 0)."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))}


def _capacity(cfg: Config, splits: tuple[Dataset, Dataset, Dataset]) -> dict[str, Any]:
    rows = []
    for width in cfg.widths:
        result, evaluate = _search(cfg, width, {"width": [width]}, splits)
        final = evaluate(result.params)
        train_eval, val_eval = final["train"], final["val"]
        rows.append(
            {
                "width": width,
                "parameters": 64 * width + width + width * 10 + 10,
                "train_loss": _stats(train_eval["loss"][:, 0]),
                "val_loss": _stats(val_eval["loss"][:, 0]),
                "best_val_loss": _stats(result.best_val_loss[:, 0]),
                "best_step": _stats(result.best_step[:, 0].astype(float)),
                "val_accuracy": _stats(val_eval["accuracy"][:, 0]),
                "val_curve": np.nanmean(result.history["val_loss"][:, :, 0], axis=1).tolist(),
            }
        )
    best = min(rows, key=lambda r: r["val_loss"]["mean"])
    return {
        "rows": rows,
        "steps": result.history["step"].tolist(),
        "best_width": best["width"],
    }


def _methods_results(
    cfg: Config, splits: tuple[Dataset, Dataset, Dataset]
) -> tuple[dict[str, Any], dict[str, float]]:
    """Per method: the grid's validation/test accuracy and the chosen coefficient."""
    grids = {
        "l2": cfg.l2,
        "l1": cfg.l1,
        "gaussian_noise": cfg.sigma,
        "worst_of_k": cfg.worst_sigma,
        "jacobian": cfg.jacobian,
    }
    per_method: dict[str, list[tuple[float, np.ndarray, np.ndarray]]] = {}
    timing: dict[str, float] = {}
    groups = [tuple(m for m in PENALTY_GROUP if m in cfg.methods)]
    groups += [(m,) for m in ("worst_of_k", "jacobian") if m in cfg.methods]
    for group in groups:
        start = time.perf_counter()
        rows = [("none", 0.0)] if "none" in group else []
        rows += [(m, v) for m in group if m != "none" for v in grids[m]]
        names = [m for m in group if m != "none"] or ["none"]
        hparams = {n: [v if m == n else 0.0 for m, v in rows] for n in names}
        result, evaluate = _search(cfg, cfg.hidden, hparams, splits, methods=group)
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
            result, evaluate = _search(
                cfg, cfg.hidden, {"dropout": [rate]}, splits, dropout_rate=rate
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
            {"value": v, "val_accuracy": _stats(va), "test_accuracy": _stats(te)}
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


def _plot_capacity(capacity: dict[str, Any], path: Path) -> None:
    rows = capacity["rows"]
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    widths = [r["width"] for r in rows]
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        mean = np.array([r[key]["mean"] for r in rows])
        std = np.array([r[key]["std"] for r in rows])
        ax.plot(widths, mean, "o-", label=f"{label} loss (final)")
        ax.fill_between(widths, mean - std, mean + std, alpha=0.2)
    best = capacity["best_width"]
    ax.axvline(best, color="gray", ls="--", lw=1)
    ax.text(0.02, 0.6, "underfitting", transform=ax.transAxes, ha="left")
    ax.text(best, 0.9, "good fit", transform=ax.get_xaxis_transform(), ha="center")
    ax.text(0.98, 0.6, "overfitting", transform=ax.transAxes, ha="right")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("hidden width w (MLP 64-w-10)")
    ax.set_ylabel("cross-entropy")
    ax.set_title("capacity: final training and validation loss")
    ax.legend(loc="lower left")
    for r in rows:
        ax_t.plot(capacity["steps"], r["val_curve"], label=f"w = {r['width']}")
    ax_t.set_xlabel("step")
    ax_t.set_ylabel("validation loss")
    ax_t.set_yscale("log")
    ax_t.set_title("validation loss during training (mean over seeds)")
    ax_t.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_methods(table: dict[str, Any], path: Path) -> None:
    names = list(table)
    fig, (ax, ax_g) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
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
    ax.set_ylabel("accuracy (mean +- std over seeds)")
    ax.set_title("chosen coefficient per method (band: none's test spread)")
    ax.legend()
    for m in names:
        grid = table[m]["grid"]
        if m in ("none", "early_stopping"):
            continue
        ax_g.errorbar(
            [g["value"] for g in grid],
            [g["val_accuracy"]["mean"] for g in grid],
            yerr=[g["val_accuracy"]["std"] for g in grid],
            fmt="o-",
            capsize=2,
            label=m,
        )
    ax_g.axhline(table["none"]["val_accuracy"]["mean"], color="gray", ls="--", label="none")
    ax_g.set_xscale("log")
    ax_g.set_xlabel("coefficient")
    ax_g.set_ylabel("validation accuracy")
    ax_g.set_title("the search: validation accuracy per coefficient")
    ax_g.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _print_table(table: dict[str, Any]) -> None:
    print(f"{'method':<16}{'chosen':>10}  {'val accuracy':>16}  {'test accuracy':>16}")
    for m, row in table.items():
        chosen = "-" if row["chosen"] is None else f"{row['chosen']:.3g}"
        va, te = row["val_accuracy"], row["test_accuracy"]
        print(
            f"{m:<16}{chosen:>10}  {va['mean']:.4f} +- {va['std']:.4f}  "
            f"{te['mean']:.4f} +- {te['std']:.4f}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs both parts and writes ``capacity.png``, ``regularizers.png`` and ``results.json``
    into ``--out``; returns the results."""
    cfg = _parse(argv)
    start = time.perf_counter()
    data = digits(seed=cfg.data_seed)
    try:
        train = stratified_subset(data.train, cfg.train_size, seed=cfg.data_seed)
    except ValueError as e:
        _Parser(prog="python -m experiments.regularization").error(f"--train-size: {e}")
    splits = (train, data.val, data.test)
    capacity = _capacity(cfg, splits)
    capacity_s = time.perf_counter() - start
    table, timing = _methods_results(cfg, splits)
    verdict = _verdict(table)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _plot_capacity(capacity, out / "capacity.png")
    _plot_methods(table, out / "regularizers.png")
    results = {
        "config": dataclasses.asdict(cfg),
        "train_examples": int(train.x.shape[0]),
        "val_examples": int(data.val.x.shape[0]),
        "test_examples": int(data.test.x.shape[0]),
        "capacity": capacity,
        "methods": table,
        "verdict": verdict,
        "timing": {"capacity_s": capacity_s, **timing, "total_s": time.perf_counter() - start},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    _print_table(table)
    print(verdict["statement"])
    print(f"wrote {out / 'results.json'} in {results['timing']['total_s']:.1f} s")
    return results


if __name__ == "__main__":
    main()
