"""Learning-rate search: many training runs of an MLP on digits as one compiled program.

    python -m experiments.lr_search [--optimizer NAME] [--lr-min 1e-4] [--lr-max 1.0]
        [--num-lrs 16] [--seeds 1] [--steps 1000] [--batch-size 128] [--hidden 128,128]
        [--patience N] [--standardize] [--devices N] [--out DIR] [--checkpoint-dir DIR]
        [--export-best DIR] [--memory-budget MIB|auto] [--no-compile-cache]
        [--distributed [--coordinator HOST:PORT --num-processes N --process-id I]]

Trains ``num_lrs`` learning rates on a log grid x ``seeds`` seeds of an MLP 64-hidden-10 on the
digits data with `jdl.search.Search` (one ``jit(vmap(...))`` over the whole population, sharded
over ``--devices``), prints the table (per member, or aggregated over seeds) and the best
learning rate, and writes ``results.json``, ``results.csv``, ``lr_curve.png`` (final validation
loss against the learning rate: the course's too small / just right / too large curve) and
``curves.png`` (loss curves of every member) into ``--out``. It also prints the good range:
the learning rates whose mean best validation loss is within ``GOOD`` (25%) of the best one.
``--standardize`` standardizes the inputs with the training split's statistics
(`jdl.data.standardize`), the setting of the course's advice for SGD: a learning rate between
1e-6 and 1, often 0.001 (``--optimizer sgd --standardize --lr-min 1e-6 --lr-max 10``).

Ctrl-C stops the search after the chunk in flight: the four files then hold the members as
far as they got, results.json says ``"interrupted": true``, and the program exits with status
130. A second Ctrl-C aborts. With ``--checkpoint-dir`` the whole population is saved after
every chunk (and on Ctrl-C): the same command again resumes where it stopped, even after a
kill, and ends with the uninterrupted search's results; a checkpoint of another configuration
is refused. ``--export-best DIR`` writes the best member's early-stopped parameters
(`jdl.run.save_params`; read them with `jdl.run.load_params` and continue with `jdl.run.fit`).
``--memory-budget MIB`` trains the population in the largest slices of members that fit that
many MiB on all devices together, as measured from the compiled chunk (``auto``: the devices'
memory; for CPU devices, half the host's). Compiled programs are kept in JAX's persistent
compilation cache (``~/.cache/jdl/jax``), so a second run of the same shapes does not compile;
``--no-compile-cache`` or ``JDL_COMPILE_CACHE=0`` turns it off.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

from experiments import cli
from experiments.cli import (
    DIGITS_TRAIN_EXAMPLES,
    OPTIMIZER_NAMES,
    Parser,
    hidden_sizes,
    joined,
)

PROG = "python -m experiments.lr_search"
GOOD = 1.25  # the good range: mean best validation loss <= GOOD x the best one
OPTIMIZERS = tuple(sorted(OPTIMIZER_NAMES))
NUM_CLASSES = 10
MEMBER_KEYS = (
    "learning_rate",
    "seed",
    "final_train_loss",
    "best_val_loss",
    "best_step",
    "val_accuracy",
    "test_accuracy",
    "stopped_early",
    "diverged",
)


@dataclasses.dataclass(frozen=True)
class Config:
    """The search: optimizer, log grid of learning rates, seeds, training and devices."""

    optimizer: str = "adam"
    lr_min: float = 1e-4
    lr_max: float = 1.0
    num_lrs: int = 16
    seeds: int = 1
    steps: int = 1000
    batch_size: int = 128
    hidden: tuple[int, ...] = (128, 128)
    patience: int = 200  # in optimizer steps
    standardize: bool = False
    devices: int | None = None  # None: every device
    out: str = "runs/lr_search"
    checkpoint_dir: str | None = None
    export_best: str | None = None
    overwrite: bool = False
    format: str = "png"  # of the figures
    distributed: bool = False
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    memory_budget: str | None = None  # MiB, or "auto"
    no_compile_cache: bool = False


def parse_args(argv: list[str] | None = None) -> Config:
    """The `Config` from command-line arguments; bad input exits with status 2 and one line."""
    d = Config()
    p = Parser(prog=PROG, doc=__doc__)
    p.add_argument("--optimizer", default=d.optimizer, help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr-min", type=float, default=d.lr_min, help="smallest learning rate")
    p.add_argument("--lr-max", type=float, default=d.lr_max, help="largest learning rate")
    p.add_argument("--num-lrs", type=int, default=d.num_lrs, help="learning rates (log grid)")
    p.add_argument("--seeds", type=int, default=d.seeds, help="seeds per learning rate")
    p.add_argument("--steps", type=int, default=d.steps, help="most optimizer steps per member")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per step")
    p.add_argument("--hidden", type=hidden_sizes, default=joined(d.hidden), help="layer sizes")
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping, in steps")
    p.add_argument(
        "--standardize", action="store_true", help="standardize inputs (training statistics)"
    )
    p.add_argument(
        "--devices",
        type=int,
        default=d.devices,
        help="devices to shard the members over; None: all (on a CPU host, one per core)",
    )
    p.add_output_arguments(d.out)
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        help="save the search after every chunk; the same command resumes from it",
    )
    p.add_argument(
        "--export-best",
        default=None,
        help="write the best member's parameters to this folder (jdl.run.load_params)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-host run (jax.distributed.initialize) before anything else",
    )
    p.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 (multi-host)")
    p.add_argument("--num-processes", type=int, default=None, help="processes (multi-host)")
    p.add_argument("--process-id", type=int, default=None, help="this process (multi-host)")
    p.add_argument(
        "--memory-budget",
        default=None,
        help="train in slices of members that fit this many MiB (auto: the devices' memory)",
    )
    p.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (~/.cache/jdl/jax)",
    )
    a = p.parse_args(argv)
    if a.memory_budget is not None and a.memory_budget != "auto":
        try:
            budget = float(a.memory_budget)
        except ValueError:
            budget = math.nan
        if not (math.isfinite(budget) and budget > 0):
            p.error(
                f"--memory-budget must be a positive number of MiB or auto, got {a.memory_budget!r}"
            )
    if a.optimizer not in OPTIMIZERS:
        p.error(f"unknown optimizer {a.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    p.require_positive_numbers(a, "lr_min", "lr_max")
    p.require_ordered(a, "lr_min", "lr_max")
    p.require_positive_ints(a, "num_lrs", "seeds", "steps", "batch_size", "patience")
    p.require_batch_size(a.batch_size, DIGITS_TRAIN_EXAMPLES)
    if a.devices is not None:
        p.require_positive_ints(a, "devices")
    p.require_output(a)
    multi = (a.coordinator, a.num_processes, a.process_id)
    if any(v is not None for v in multi):
        if not a.distributed:
            p.error("--coordinator, --num-processes and --process-id need --distributed")
        if any(v is None for v in multi):
            p.error("give --coordinator, --num-processes and --process-id together")
        if a.num_processes < 1 or not 0 <= a.process_id < a.num_processes:
            p.error(
                f"need --num-processes >= 1 and 0 <= --process-id < --num-processes, got "
                f"{a.num_processes} and {a.process_id}"
            )
    return Config(**{f.name: getattr(a, f.name) for f in dataclasses.fields(Config)})


if __name__ == "__main__":
    cli.parsed(parse_args)  # --help and bad flags answer before JAX is imported below

import jax
import numpy as np

import jdl.optim
from experiments import output
from experiments.mlp_classifier import mlp_classifier
from jdl.data import digits, standardize
from jdl.run import ConfigurationMismatchError, save_params, use_compile_cache
from jdl.search import Search, initialize_distributed, log_grid, population, use_cpu_cores
from jdl.search.memory import MemoryBudgetError
from jdl.search.report import (
    aggregate,
    best_config,
    format_table,
    plot_curves,
    plot_lr_curve,
    records,
    write_csv,
    write_json,
)
from jdl.train import early_stopping


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the search and writes its four files; returns the results dict of results.json.

    Raises:
      SystemExit: 2 on bad input; 130 after writing the files of a search stopped by Ctrl-C.
    """
    cfg = parse_args(argv)
    if cfg.distributed:
        initialize_distributed(cfg.coordinator, cfg.num_processes, cfg.process_id)
    # On a CPU-only host each core becomes a device (the search shards its members over them);
    # this must precede JAX's first computation, and changes nothing once JAX is running.
    use_cpu_cores(cfg.devices)
    if not cfg.no_compile_cache:
        use_compile_cache()  # before the first compilation
    if cfg.devices is not None and cfg.devices > len(jax.devices()):
        Parser(prog=PROG).error(
            f"--devices {cfg.devices} but only {len(jax.devices())} devices are available"
        )
    splits = digits(seed=0)
    if cfg.standardize:
        splits = standardize(splits)
    if cfg.batch_size > splits.train.x.shape[0]:
        Parser(prog=PROG).error(
            f"--batch-size {cfg.batch_size} exceeds the {splits.train.x.shape[0]} training examples"
        )
    features = (splits.train.x.shape[1], *cfg.hidden, NUM_CLASSES)
    init_fn, loss_fn, eval_fn = mlp_classifier(features)

    make_tx = jdl.optim.OPTIMIZERS[cfg.optimizer]
    eval_every = max(1, cfg.steps // 20)
    search = Search(
        init_fn,
        lambda hp: make_tx(hp["learning_rate"]),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=cfg.batch_size,
        eval_every=eval_every,
        # Twice the loss of a uniform guess, ln(10): worse than knowing nothing means diverged.
        early_stopping=early_stopping(
            cfg.patience, divergence_threshold=2.0 * math.log(NUM_CLASSES)
        ),
        devices=cfg.devices,
    )
    pop = population({"learning_rate": log_grid(cfg.lr_min, cfg.lr_max, cfg.num_lrs)}, cfg.seeds)
    start = time.perf_counter()
    try:
        result = search.run(
            pop,
            splits.train,
            splits.val,
            steps=cfg.steps,
            test=splits.test,
            checkpoint_dir=cfg.checkpoint_dir,
            members_per_chunk=None if cfg.memory_budget is None else "auto",
            memory_budget=(
                None
                if cfg.memory_budget in (None, "auto")
                else int(float(cfg.memory_budget) * 2**20)
            ),
        )
    except (ConfigurationMismatchError, MemoryBudgetError) as e:
        Parser(prog=PROG).error(str(e))
    wall = time.perf_counter() - start
    rows = records(result)
    by = ["learning_rate"]
    best = best_config(rows, by)
    per_lr = aggregate(rows, by)
    good = [
        r["learning_rate"]
        for r in per_lr
        if r["best_val_loss_mean"] <= GOOD * best["best_val_loss_mean"]
    ]
    results = {
        "config": dataclasses.asdict(cfg),
        "members": [{k: row[k] for k in MEMBER_KEYS} for row in rows],
        "best": best,
        "good_range": [min(good), max(good)],
        "timing": {
            "compile_s": result.timing["compile_s"],
            "run_s": result.timing["run_s"],
            "member_steps_per_s": result.timing["member_steps_per_s"],
        },
        "devices": search.num_devices,
    }
    if result.interrupted:
        results["interrupted"] = True
    columns = [
        "learning_rate",
        "seed",
        "best_val_loss",
        "final_val_loss",
        "val_accuracy",
        "test_accuracy",
        "best_step",
        "stopped_early",
        "diverged",
    ]
    seed_columns = [
        "learning_rate",
        "seeds",
        "best_val_loss_mean",
        "best_val_loss_std",
        "final_val_loss_mean",
        "val_accuracy_mean",
        "test_accuracy_mean",
        "test_accuracy_std",
        "best_step_mean",
        "stopped_early",
        "diverged",
    ]
    table = format_table(rows, columns) if cfg.seeds == 1 else format_table(per_lr, seed_columns)
    if jax.process_index() == 0:
        with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
            write_json(folder / "results.json", results)
            write_csv(folder / "results.csv", rows)
            plot_lr_curve(result, folder / f"lr_curve.{cfg.format}")
            plot_curves(result, folder / f"curves.{cfg.format}")
        out = Path(cfg.out)
        print(table)
        print(
            f"\n{pop.num_members} members ({_count(cfg.num_lrs, 'learning rate')} x "
            f"{_count(cfg.seeds, 'seed')}) on {_count(search.num_devices, 'device')} in "
            f"{wall:.1f} s (compile "
            f"{result.timing['compile_s']:.1f} s, {result.timing['member_steps_per_s']:.0f} "
            "member-steps/s)"
        )
        print(
            f"best learning rate: {best['learning_rate']:.4g} (best validation loss "
            f"{best['best_val_loss_mean']:.4f}, test accuracy {best['test_accuracy_mean']:.4f})"
        )
        print(
            f"good learning rates (best validation loss within {GOOD - 1:.0%} of the best): "
            f"{min(good):.3g} to {max(good):.3g}"
        )
        print(f"wrote {out}/results.json, results.csv, lr_curve.{cfg.format}, curves.{cfg.format}")
        if cfg.export_best is not None:
            h = int(np.flatnonzero(pop.hparams["learning_rate"] == best["learning_rate"])[0])
            seed = int(
                np.argmin(np.where(result.diverged[:, h], np.inf, result.best_val_loss[:, h]))
            )
            member = result.member(h, seed)
            save_params(cfg.export_best, member.best_params)
            print(
                f"wrote the parameters of the best member (learning rate "
                f"{member.hparams['learning_rate']:.4g}, seed {member.seed}) to {cfg.export_best}"
            )
        if result.interrupted:
            print(
                f"interrupted at step {int(result.steps.max())} of {cfg.steps}: the files hold "
                'the search so far, marked "interrupted": true',
                file=sys.stderr,
            )
    if result.interrupted:
        sys.exit(130)  # the status of a program ended by SIGINT
    return results


if __name__ == "__main__":
    cli.run(main)
