"""Learning-rate range test over seeds, checked against a grid search on the same problem.

    python -m experiments.lr_find [--optimizer adam] [--lr-min 1e-5] [--lr-max 10]
        [--steps 300] [--seeds 3] [--eval-every 3] [--divergence 4] [--smoothing 0.6]
        [--batch-size 128] [--hidden 128,128] [--grid-lrs 16] [--grid-steps 1000] [--out DIR]

Every seed of the MLP 64-128-128-10 of `experiments.lr_search` on the digits trains with a
learning rate growing exponentially from ``--lr-min`` to ``--lr-max`` over ``--steps`` steps,
all seeds in one compiled program (`jdl.search.lr_range_test`); a seed stops once its smoothed
validation loss exceeds ``--divergence`` times its minimum. The suggested rate is the steepest
descent of the seed-mean curve (the rate at its minimum over ten is printed too). Then the grid
of `experiments.lr_search` with its defaults (``--grid-lrs`` rates from 1e-4 to 1, one seed,
``--grid-steps`` steps, early stopping) gives the good range, the rates whose best validation
loss is within 25% of the best, and the experiment prints whether the suggestion lands inside
it (``--grid-lrs 0`` skips the grid).

Writes into ``--out``: ``lr_find.png`` (each seed's curve, the band over seeds, the suggestion
and the grid's good range) and ``results.json`` (``config``, ``range_test``: rates, curves,
band, suggestion, per-seed suggestions, rule; ``grid``: rates, mean best validation losses,
best rate, good range; ``suggestion_in_good_range``; ``timing``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

from experiments import cli, estimates
from experiments.cli import DIGITS_TRAIN_EXAMPLES, OPTIMIZER_NAMES, Parser, hidden_sizes, joined
from experiments.lr_search_cli import eval_period

PROG = "python -m experiments.lr_find"
OPTIMIZERS = tuple(sorted(OPTIMIZER_NAMES))
NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Config:
    """The range test (rates, steps, seeds, stopping, smoothing) and the reference grid."""

    optimizer: str = "adam"
    lr_min: float = 1e-5
    lr_max: float = 10.0
    steps: int = 300
    seeds: int = 3
    eval_every: int = 3
    divergence: float = 4.0
    smoothing: float = 0.6
    batch_size: int = 128
    hidden: tuple[int, ...] = (128, 128)
    grid_lrs: int = 16
    grid_steps: int = 1000
    out: str = "runs/lr_find"
    overwrite: bool = False
    format: str = "png"


def parse_args(argv: list[str] | None = None) -> Config:
    """The `Config` from command-line arguments; bad input exits with status 2 and one line."""
    d = Config()
    p = Parser(prog=PROG, doc=__doc__)
    p.add_argument("--optimizer", default=d.optimizer, help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr-min", type=float, default=d.lr_min, help="first learning rate")
    p.add_argument("--lr-max", type=float, default=d.lr_max, help="last learning rate")
    p.add_argument("--steps", type=int, default=d.steps, help="steps of the ramp (>= 2)")
    p.add_argument("--seeds", type=int, default=d.seeds, help="seeds (one member each)")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between losses")
    p.add_argument(
        "--divergence", type=float, default=d.divergence, help="stop at loss > this x minimum"
    )
    p.add_argument("--smoothing", type=float, default=d.smoothing, help="EMA factor in [0, 1)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per step")
    p.add_argument("--hidden", type=hidden_sizes, default=joined(d.hidden), help="layer sizes")
    p.add_argument("--grid-lrs", type=int, default=d.grid_lrs, help="grid rates (0: no grid)")
    p.add_argument("--grid-steps", type=int, default=d.grid_steps, help="grid steps per member")
    p.add_allow_long_argument()
    p.add_output_arguments(d.out)
    a = p.parse_args(argv)
    if a.optimizer not in OPTIMIZERS:
        p.error(f"unknown optimizer {a.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    p.require_positive_numbers(a, "lr_min", "lr_max")
    if not a.lr_min < a.lr_max:
        p.error(f"--lr-min ({a.lr_min}) must be below --lr-max ({a.lr_max})")
    p.require_positive_ints(a, "steps", "seeds", "eval_every", "batch_size", "grid_steps")
    p.require_counts(a, "grid_lrs")
    if a.steps < 2:
        p.error(f"--steps must be >= 2 (a range of rates), got {a.steps}")
    if not (math.isfinite(a.divergence) and a.divergence > 1):
        p.error(f"--divergence must be a finite number > 1, got {a.divergence}")
    if not 0 <= a.smoothing < 1:
        p.error(f"--smoothing must be in [0, 1), got {a.smoothing}")
    p.require_batch_size(a.batch_size, DIGITS_TRAIN_EXAMPLES)
    mlp = estimates.dense((cli.DIGITS_FEATURES, *a.hidden, NUM_CLASSES))
    ramp = estimates.training(a.seeds, a.steps, mlp, a.batch_size, eval_every=a.eval_every)
    grid = estimates.training(
        a.grid_lrs, a.grid_steps, mlp, a.batch_size, eval_every=eval_period(a.grid_steps)
    )
    p.require_feasible(
        a,
        ramp.then(grid) if a.grid_lrs else ramp,
        "seeds",
        "steps",
        "eval_every",
        "hidden",
        "batch_size",
        "grid_lrs",
        "grid_steps",
    )
    p.require_output(a)
    return Config(**{f.name: getattr(a, f.name) for f in dataclasses.fields(Config)})


if __name__ == "__main__":
    cli.parsed(parse_args)  # --help and bad flags answer before JAX is imported below

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import jdl.optim
from experiments import lr_search, output
from experiments.classifiers import mlp_classifier
from jdl.data import digits
from jdl.search import RangeTestResult, log_grid, lr_range_test, population, use_cpu_cores
from jdl.search.report import records


def grid(cfg: Config, splits: Any, features: tuple[int, ...]) -> dict[str, Any]:
    """The main job's grid (`experiments.lr_search` with its defaults but ``--optimizer``,
    ``--batch-size``, ``--hidden``, ``--grid-lrs`` and ``--grid-steps``): mean best validation
    loss per rate and the good range."""
    main = lr_search.Config(
        optimizer=cfg.optimizer,
        num_lrs=cfg.grid_lrs,
        steps=cfg.grid_steps,
        batch_size=cfg.batch_size,
        hidden=cfg.hidden,
    )
    search = lr_search.make_search(main, *mlp_classifier(features))
    pop = population({"learning_rate": log_grid(main.lr_min, main.lr_max, main.num_lrs)})
    result = search.run(pop, splits.train, splits.val, steps=main.steps, progress=False)
    best, per_lr, good = lr_search.good_range(records(result))
    return {
        "learning_rate": [r["learning_rate"] for r in per_lr],
        "best_val_loss_mean": [r["best_val_loss_mean"] for r in per_lr],
        "best_learning_rate": best["learning_rate"],
        "good_range": good,
        "timing": {k: result.timing[k] for k in ("compile_s", "run_s")},
    }


def plot(r: RangeTestResult, good: list[float] | None, cfg: Config, path: Path) -> None:
    """Each seed's smoothed loss against the rate, the band over seeds, the suggestion, and the
    grid's good range."""
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for s, curve in enumerate(r.loss):
        ax.plot(r.learning_rate, curve, lw=0.8, alpha=0.6, label="each seed" if s == 0 else None)
    ax.fill_between(r.learning_rate, r.low, r.high, alpha=0.25, label="band over seeds")
    ax.plot(r.learning_rate, r.mean, "k", lw=2, label="seed mean")
    ax.axvline(r.suggestion, color="C3", ls="--", label=f"suggestion {r.suggestion:.3g}")
    ax.axvline(r.rate_at_min / 10, color="C2", ls=":", label=f"min / 10: {r.rate_at_min / 10:.3g}")
    if good is not None:
        ax.axvspan(*good, color="C2", alpha=0.1, label="grid's good range")
    finite = r.loss[np.isfinite(r.loss)]
    top = min(float(finite.max()), 2.0 * float(r.raw_loss[:, 0].mean())) if finite.size else 1.0
    ax.set_ylim(0, top * 1.05)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("validation loss (smoothed)")
    ax.set_title(f"{cfg.optimizer} range test, {cfg.seeds} seeds")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the range test (and the grid) and writes ``lr_find.png`` and ``results.json``."""
    cfg = parse_args(argv)
    use_cpu_cores()  # one device per core, as the main job, whose grid is the reference
    start = time.perf_counter()
    splits = digits(seed=0)
    features = (splits.train.x.shape[1], *cfg.hidden, NUM_CLASSES)
    init_fn, loss_fn, eval_fn = mlp_classifier(features)
    r = lr_range_test(
        init_fn,
        jdl.optim.OPTIMIZERS[cfg.optimizer],
        splits.train,
        splits.val,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        lr_min=cfg.lr_min,
        lr_max=cfg.lr_max,
        steps=cfg.steps,
        seeds=cfg.seeds,
        batch_size=cfg.batch_size,
        eval_every=cfg.eval_every,
        divergence_factor=cfg.divergence,
        smoothing=cfg.smoothing,
    )
    range_s = time.perf_counter() - start
    reference = grid(cfg, splits, features) if cfg.grid_lrs > 0 else None
    good = None if reference is None else reference["good_range"]
    inside = None if good is None else bool(good[0] <= r.suggestion <= good[1])

    def listed(a: np.ndarray) -> list:
        return [None if not np.isfinite(v) else float(v) for v in np.asarray(a).ravel()]

    results = {
        "config": dataclasses.asdict(cfg),
        "range_test": {
            "learning_rate": listed(r.learning_rate),
            "loss": [listed(c) for c in r.loss],
            "mean": listed(r.mean),
            "low": listed(r.low),
            "high": listed(r.high),
            "suggestion": r.suggestion,
            "per_seed": listed(r.per_seed),
            "rate_at_min": r.rate_at_min,
            "rule": r.rule,
            "diverged": r.diverged.tolist(),
            "timing": {k: r.search.timing[k] for k in ("compile_s", "run_s")},
        },
        "grid": reference,
        "suggestion_in_good_range": inside,
        "timing": {"range_test_s": range_s, "total_s": time.perf_counter() - start},
    }
    with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
        plot(r, good, cfg, folder / f"lr_find.{cfg.format}")
        (folder / "results.json").write_text(json.dumps(results, indent=2))
    spread = ", ".join(f"{v:.3g}" for v in r.per_seed)
    print(f"range test: suggested learning rate {r.suggestion:.3g} ({r.rule})")
    print(f"  per seed: {spread}; rate at the minimum / 10: {r.rate_at_min / 10:.3g}")
    if reference is not None:
        verdict = "inside" if inside else "OUTSIDE"
        print(
            f"grid ({cfg.grid_lrs} rates, {cfg.grid_steps} steps): best "
            f"{reference['best_learning_rate']:.3g}, "
            f"good range {good[0]:.3g} to {good[1]:.3g}; the suggestion is {verdict} it"
        )
    print(
        f"{results['timing']['total_s']:.1f} s; wrote {cfg.out}/lr_find.{cfg.format}, results.json"
    )
    return results


if __name__ == "__main__":
    cli.run(main)
