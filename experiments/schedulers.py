"""Schedulers at equal budgets: grid, random search, successive halving, ASHA with refills and PBT.

    python -m experiments.schedulers [--slots 16] [--steps 640] [--repetitions 3]
        [--eval-every 20] [--batch-size 64] [--hidden 64] [--patience 200] [--target LOSS]
        [--no-progress] [--out DIR]

Searches Adam's learning rate, b1 and weight decay (`jdl.optim.adamw`) for an MLP on the
digits with five schedulers on one population shape, ``--slots`` members trained side by side
for ``--steps`` steps of the clock: the same budget in member-steps (slots x steps) for every
scheduler. Grid: a product of 4 learning rates x 2 b1 x 2 weight decays (for 16 slots).
Random search: the first draws of a `jdl.search.Sampler` (learning rate log-uniform in
[1e-4, 0.3], b1 uniform in [0.5, 0.99], weight decay log-uniform in [1e-4, 1]). Successive
halving: those draws, eta = 2, four rungs. ASHA: eta = 3, a first rung of ``--steps`` / 10
(to whole chunks), each eliminated, finished or diverged slot refilled with the sampler's next
draw. PBT: those draws, an exploit/explore event every ``--steps`` / 8, the worst quarter
copying the best quarter. Each repetition uses other draws and another initialisation seed.

Writes ``results.json`` (per scheduler and repetition: the best validation loss against the
member-steps spent, after each chunk; the member-steps trained; the configurations tried; the
compute to reach the target) and ``schedulers.png`` (best validation loss against member-steps
spent, the median over repetitions with a band from the best to the worst), and prints which
scheduler reaches the target validation loss with the least compute. The default target is
the loosest scheduler's median final loss, a level that every scheduler reaches.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from experiments import cli, estimates
from experiments.cli import DIGITS_TRAIN_EXAMPLES, Parser, hidden_sizes, joined

PROG = "python -m experiments.schedulers"
SCHEDULERS = ("grid", "random", "halving", "asha", "pbt")
NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Config:
    """The comparison: population shape, budget, repetitions, model and target."""

    slots: int = 16
    steps: int = 640  # of the clock: the budget is slots x steps member-steps
    repetitions: int = 3
    eval_every: int = 20
    batch_size: int = 64
    hidden: tuple[int, ...] = (64,)
    patience: int = 200  # early stopping, in optimizer steps
    target: float | None = None  # None: the loosest scheduler's median final loss
    progress: bool = True
    out: str = "runs/schedulers"
    overwrite: bool = False
    format: str = "png"


def parse_args(argv: list[str] | None = None) -> Config:
    """The `Config` from command-line arguments; bad input exits with status 2 and one line."""
    d = Config()
    p = Parser(prog=PROG, doc=__doc__)
    p.add_argument("--slots", type=int, default=d.slots, help="members trained side by side")
    p.add_argument("--steps", type=int, default=d.steps, help="steps of the clock (budget/slots)")
    p.add_argument("--repetitions", type=int, default=d.repetitions, help="runs per scheduler")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="steps per chunk")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per step")
    p.add_argument("--hidden", type=hidden_sizes, default=joined(d.hidden), help="layer sizes")
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping, in steps")
    p.add_argument(
        "--target",
        type=float,
        default=None,
        help="validation loss to reach; default: the loosest scheduler's median final loss",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_allow_long_argument()
    p.add_output_arguments(d.out)
    a = p.parse_args(argv)
    p.require_positive_ints(a, "slots", "steps", "repetitions", "eval_every", "batch_size")
    p.require_positive_ints(a, "patience")
    p.require_batch_size(a.batch_size, DIGITS_TRAIN_EXAMPLES)
    if a.slots < 4:
        p.error(f"--slots must be >= 4 (PBT replaces a quarter of them), got {a.slots}")
    if a.steps % (8 * a.eval_every):
        p.error(
            f"--steps ({a.steps}) must be a multiple of 8 x --eval-every ({8 * a.eval_every}): "
            "the rungs and PBT's events fall on whole chunks"
        )
    if a.target is not None and not (math.isfinite(a.target) and a.target > 0):
        p.error(f"--target must be a finite loss > 0, got {a.target}")
    search = estimates.training(
        a.slots,
        a.steps,
        estimates.dense((cli.DIGITS_FEATURES, *a.hidden, NUM_CLASSES)),
        a.batch_size,
        eval_every=a.eval_every,
    )
    cost = search.repeated(len(SCHEDULERS) * a.repetitions)  # each scheduler's runs, in turn
    p.require_feasible(
        a, cost, "slots", "steps", "repetitions", "hidden", "batch_size", "eval_every"
    )
    p.require_output(a)
    values = {
        f.name: getattr(a, f.name) for f in dataclasses.fields(Config) if f.name != "progress"
    }
    return Config(**values, progress=not a.no_progress)


if __name__ == "__main__":
    cli.parsed(parse_args)  # --help and bad flags answer before JAX is imported below

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import jdl.optim
from experiments import output
from experiments.classifiers import mlp_classifier
from jdl.data import digits
from jdl.search import (
    Sampler,
    Search,
    asha,
    budget_curve,
    log_uniform,
    population,
    population_based_training,
    product,
    random_search,
    successive_halving,
    uniform,
)
from jdl.search.report import write_json
from jdl.train import early_stopping

SPACE = {
    "learning_rate": log_uniform(1e-4, 0.3),
    "b1": uniform(0.5, 0.99),
    "weight_decay": log_uniform(1e-4, 1.0),
}


def grid(slots: int) -> dict[str, np.ndarray]:
    """A product grid of ``slots`` configurations over the space: learning rates x {0.6,
    0.9} x {1e-3, 1e-1} (4 x 2 x 2 for 16 slots); extra slots repeat the first ones."""
    num_lr = max(1, slots // 4)
    axes = product(
        learning_rate=np.geomspace(3e-4, 0.1, num_lr), b1=[0.6, 0.9], weight_decay=[1e-3, 0.1]
    )
    index = np.arange(slots) % len(axes["learning_rate"])
    return {k: v[index] for k, v in axes.items()}


def run_one(kind: str, rep: int, search: Search, splits: Any, cfg: Config) -> dict[str, Any]:
    """One scheduler's search, repetition ``rep``: its curve and what it tried."""
    train, val = splits.train, splits.val
    sampler = Sampler(SPACE, seed=rep)
    drawn = random_search(sampler, cfg.slots, seeds=[rep])
    common = {"progress": cfg.progress}
    every, budget = cfg.eval_every, cfg.slots * cfg.steps
    trained, configs = None, cfg.slots
    if kind == "grid":
        result = search.run(
            population(grid(cfg.slots), [rep]), train, val, steps=cfg.steps, **common
        )
    elif kind == "random":
        result = search.run(drawn, train, val, steps=cfg.steps, **common)
    elif kind == "halving":
        out = successive_halving(
            search, drawn, train, val, rung_steps=cfg.steps // 4, eta=2, rungs=4, **common
        )
        result = out.result
    elif kind == "asha":
        first = max(every, cfg.steps // 10 // every * every)
        out = asha(
            search,
            sampler,
            train,
            val,
            num_slots=cfg.slots,
            budget=budget,
            min_steps=first,
            eta=3,
            seeds=[rep],
            **common,
        )
        result, trained, configs = out.result, out.member_steps, len(out.trials)
    else:
        bounds = {k: (d.values[0], d.values[1]) for k, d in SPACE.items()}
        out = population_based_training(
            search,
            drawn,
            train,
            val,
            steps=cfg.steps,
            ready_steps=cfg.steps // 8,
            key=jax.random.key(rep),
            bounds=bounds,
            **common,
        )
        result = out.result
    curve = budget_curve(result, every)
    return {
        "paid": curve.paid.tolist(),
        "best": [float(v) for v in curve.best],
        "trained": int(curve.trained[-1]) if trained is None else int(trained),
        "configurations": configs,
        "final": float(curve.best[-1]),
    }


def first_reach(paid: list[int], best: list[float], target: float) -> float:
    """The member-steps paid when the best loss first reaches ``target`` (inf: never)."""
    hits = [p for p, b in zip(paid, best, strict=True) if b <= target]
    return float(hits[0]) if hits else math.inf


def plot(runs: dict[str, list[dict]], target: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, reps in runs.items():
        paid = np.asarray(reps[0]["paid"])
        best = np.asarray([r["best"] for r in reps])
        line = ax.plot(paid, np.median(best, axis=0), label=kind)[0]
        ax.fill_between(paid, best.min(axis=0), best.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.axhline(target, color="gray", ls="--", lw=1, label=f"target {target:.3f}")
    ax.set(xlabel="member-steps spent (slots x steps)", ylabel="best validation loss so far")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Schedulers at equal budgets (median, band: best to worst repetition)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs every scheduler ``repetitions`` times and writes results.json and the figure."""
    cfg = parse_args(argv)
    splits = digits(seed=0)
    init_fn, loss_fn, eval_fn = mlp_classifier((splits.train.x.shape[1], *cfg.hidden, NUM_CLASSES))
    search = Search(
        init_fn,
        lambda hp: jdl.optim.adamw(
            hp["learning_rate"], b1=hp["b1"], weight_decay=hp["weight_decay"]
        ),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=cfg.batch_size,
        eval_every=cfg.eval_every,
        early_stopping=early_stopping(cfg.patience, divergence_threshold=2 * math.log(NUM_CLASSES)),
        devices=1,
    )
    runs = {
        k: [run_one(k, rep, search, splits, cfg) for rep in range(cfg.repetitions)]
        for k in SCHEDULERS
    }
    medians = {k: float(np.median([r["final"] for r in reps])) for k, reps in runs.items()}
    target = max(medians.values()) if cfg.target is None else cfg.target
    reach = {}
    for kind, reps in runs.items():
        steps = [first_reach(r["paid"], r["best"], target) for r in reps]
        for r, s in zip(reps, steps, strict=True):
            r["to_target"] = s
        finite = [s for s in steps if math.isfinite(s)]
        reach[kind] = {
            "median": float(np.median(steps)),
            "min": min(steps),
            "max": max(steps),
            "reached": len(finite),
        }
    winner = min(SCHEDULERS, key=lambda k: (reach[k]["median"], k))
    results = {
        "config": dataclasses.asdict(cfg),
        "budget": cfg.slots * cfg.steps,
        "target": target,
        "runs": runs,
        "final_median": medians,
        "to_target": reach,
        "least_compute": winner,
        "compile_s": search.compile_seconds,
    }
    with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
        write_json(folder / "results.json", results)
        plot(runs, target, folder / f"schedulers.{cfg.format}")
    print(
        f"budget {cfg.slots * cfg.steps} member-steps ({cfg.slots} slots x {cfg.steps} steps), "
        f"{cfg.repetitions} repetitions; target validation loss {target:.4f}"
    )
    header = ("scheduler", "final (median)", "configs", "trained", "to target: median [min, max]")
    print(f"{header[0]:<9} {header[1]:>15} {header[2]:>8} {header[3]:>8}  {header[4]}")
    for kind, reps in runs.items():
        r = reach[kind]
        print(
            f"{kind:<9} {medians[kind]:>15.4f} "
            f"{np.median([x['configurations'] for x in reps]):>8.0f} "
            f"{np.median([x['trained'] for x in reps]):>8.0f}  "
            f"{r['median']:.0f} [{r['min']:.0f}, {r['max']:.0f}] ({r['reached']}/{len(reps)})"
        )
    least = reach[winner]["median"]
    print(f"least compute to reach {target:.4f}: {winner} ({least:.0f} member-steps, median)")
    print(f"wrote {Path(cfg.out)}/results.json, schedulers.{cfg.format}")
    return results


if __name__ == "__main__":
    cli.run(main)
