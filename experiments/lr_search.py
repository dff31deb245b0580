"""Learning-rate search: many training runs of an MLP or a CNN on digits or MNIST-1D as one
compiled program.

    python -m experiments.lr_search [--data {digits,mnist1d}] [--model {mlp,cnn}]
        [--optimizer NAME] [--lr-min 1e-4] [--lr-max 1.0] [--num-lrs 16] [--seeds 1]
        [--steps 1000] [--batch-size 128] [--hidden 128,128] [--channels 32] [--patience N]
        [--standardize] [--devices N] [--out DIR] [--checkpoint-dir DIR]
        [--export-best DIR] [--tensorboard DIR] [--scheduler {grid,random,halving,asha,pbt}]
        [--budget MEMBER_STEPS] [--memory-budget MIB|auto] [--no-compile-cache] [--allow-long]
        [--distributed [--coordinator HOST:PORT --num-processes N --process-id I]
        [--join-timeout S]]

Trains ``num_lrs`` learning rates on a log grid x ``seeds`` seeds of a classifier with
`jdl.search.Search` (one ``jit(vmap(...))`` over the whole population, sharded over
``--devices``), prints the table (per member, or aggregated over seeds) and the best
learning rate, and writes ``results.json``, ``results.csv``, ``lr_curve.png`` (final validation
loss against the learning rate: the course's too small / just right / too large curve) and
``curves.png`` (loss curves of every member) into ``--out``. It also prints the good range:
the learning rates whose mean best validation loss is within ``GOOD`` (25%) of the best one.

The data (``--data``) are scikit-learn's digits (8 x 8 images, `jdl.data.digits`, the default)
or MNIST-1D (signals of 40 positions, `jdl.data.mnist1d`). The model (``--model``) is an MLP
input-``hidden``-10 (ReLU units; ``--hidden`` 128,128 by default), or the CNN of
`experiments.weight_sharing` (`experiments.classifiers.cnn`: three stride-2 convolutions of
``--channels`` channels, 32 by default, GELU units; 1-D kernels 5, 3, 3 on MNIST-1D, 3 x 3
on the digits), whose dense head has the hidden layers ``--hidden`` (none by default: a linear
head). ``--channels`` with the MLP exits with status 2. ``results.json``'s ``config`` records
the data, the model, its ``hidden`` layers and ``channels`` (null for the MLP).
``--standardize`` standardizes the inputs with the training split's statistics
(`jdl.data.standardize`), the setting of the course's advice for SGD: a learning rate between
1e-6 and 1, often 0.001 (``--optimizer sgd --standardize --lr-min 1e-6 --lr-max 10``).

``--scheduler`` uses the ``num_lrs`` slots as a grid (the default), random draws, successive
halving, ASHA or PBT (`experiments.lr_search_schedulers`) for ``num_lrs x seeds x steps``
member-steps, or ``--budget`` (then ``steps = budget / (num_lrs x seeds)``); a member's row
gives the rate its slot holds at the end, and results.json adds ``"scheduler"``: the lineage.

Ctrl-C stops the search after the chunk in flight: the four files then hold the members as
far as they got, results.json says ``"interrupted": true``, and the program exits with status
130. A second Ctrl-C aborts. With ``--checkpoint-dir`` the whole population is saved after
every chunk (and on Ctrl-C): the same command again resumes where it stopped, even after a
kill, and ends with the uninterrupted search's results; a checkpoint of another configuration
is refused. ``--export-best DIR`` writes the best member's early-stopped parameters
(`jdl.run.save_params`; read them with `jdl.run.load_params` and continue with `jdl.run.fit`).

``--distributed`` joins several processes (`jdl.search.initialize_distributed`): start the same
command in each, with its own ``--process-id``; ``--devices`` is then each process's number of
CPU devices, and the search uses every process's devices. Process 0 prints and writes the
files; a peer missing after ``--join-timeout`` seconds or processes that disagree exit with
status 2 and one line.

``--memory-budget MIB`` trains the population in the largest slices of members that fit that
many MiB on all devices together, as measured from the compiled chunk (``auto``: the devices'
memory; for CPU devices, half the host's). Compiled programs are kept in JAX's persistent
compilation cache (``~/.cache/jdl/jax``), so a second run of the same shapes does not compile;
``--no-compile-cache`` or ``JDL_COMPILE_CACHE=0`` turns it off. A search estimated, from its
flags, to need more than half the machine's memory is refused (`experiments.estimates`), and so
is one estimated at more than a day of computing unless ``--allow-long`` is given.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments import cli
from experiments.cli import Parser
from experiments.lr_search_cli import (
    GOOD,
    MEMBER_KEYS,
    NUM_CLASSES,
    PROG,
    Config,
    eval_period,
    parse_args,
)

if __name__ == "__main__":
    cli.parsed(parse_args)  # --help and bad flags answer before JAX is imported below

import jax
import numpy as np

import jdl.optim
from experiments import output
from experiments.classifiers import classifier, cnn, mlp_classifier
from experiments.lr_search_schedulers import search_with
from jdl.data import digits, mnist1d, standardize
from jdl.run import ConfigurationMismatchError, save_params, use_compile_cache
from jdl.search import Population, Search, initialize_distributed, use_cpu_cores
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


def make_search(cfg: Config, init_fn: Callable, loss_fn: Callable, eval_fn: Callable) -> Search:
    """The search of ``cfg``: ``cfg.optimizer`` at each member's learning rate, an evaluation
    every twentieth of the run, early stopping with ``cfg.patience`` that flags as diverged a
    validation loss above twice a uniform guess's."""
    make_tx = jdl.optim.OPTIMIZERS[cfg.optimizer]
    return Search(
        init_fn,
        lambda hp: make_tx(hp["learning_rate"]),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=cfg.batch_size,
        eval_every=eval_period(cfg.steps),
        # Twice the loss of a uniform guess, ln(10): worse than knowing nothing means diverged.
        early_stopping=early_stopping(
            cfg.patience, divergence_threshold=2.0 * math.log(NUM_CLASSES)
        ),
        devices=None if cfg.distributed else cfg.devices,
    )


def good_range(rows: list[dict[str, Any]]) -> tuple[dict, list[dict], list[float]]:
    """The best learning rate's record (`best_config`), every rate's (`aggregate`) and the good
    range: the lowest and highest rate whose mean best validation loss is within `GOOD` times
    the best one's."""
    best, per_lr = best_config(rows, ["learning_rate"]), aggregate(rows, ["learning_rate"])
    limit = GOOD * best["best_val_loss_mean"]
    good = [r["learning_rate"] for r in per_lr if r["best_val_loss_mean"] <= limit]
    return best, per_lr, [min(good), max(good)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the search and writes its four files; returns the results dict of results.json.

    Raises:
      SystemExit: 2 on bad input; 130 after writing the files of a search stopped by Ctrl-C.
    """
    cfg = parse_args(argv)
    if cfg.distributed:
        try:
            initialize_distributed(
                cfg.coordinator, cfg.num_processes, cfg.process_id, timeout_s=cfg.join_timeout
            )
        except ValueError as e:  # a peer missing, or the processes disagree
            Parser(prog=PROG).error(str(e))
    # On a CPU-only host each core becomes a device (the search shards its members over them);
    # this must precede JAX's first computation, and changes nothing once JAX is running.
    use_cpu_cores(cfg.devices)
    if not cfg.no_compile_cache:
        use_compile_cache()  # before the first compilation
    if cfg.devices is not None and cfg.devices > len(jax.local_devices()):
        Parser(prog=PROG).error(
            f"--devices {cfg.devices} but only {len(jax.local_devices())} devices are available"
        )
    splits = {"digits": digits, "mnist1d": mnist1d}[cfg.data](seed=0)
    if cfg.standardize:
        splits = standardize(splits)
    if cfg.batch_size > splits.train.x.shape[0]:
        Parser(prog=PROG).error(
            f"--batch-size {cfg.batch_size} exceeds the {splits.train.x.shape[0]} training examples"
        )
    if cfg.model == "mlp":
        init_fn, loss_fn, eval_fn = mlp_classifier(
            (splits.train.x.shape[1], *cfg.hidden, NUM_CLASSES)
        )
    else:
        init_fn, loss_fn, eval_fn = classifier(
            cnn(cfg.data, NUM_CLASSES, cfg.channels, hidden=cfg.hidden)
        )

    search = make_search(cfg, init_fn, loss_fn, eval_fn)
    start = time.perf_counter()
    try:
        searched = search_with(
            cfg.scheduler,
            search,
            lr_min=cfg.lr_min,
            lr_max=cfg.lr_max,
            num_lrs=cfg.num_lrs,
            seeds=cfg.seeds,
            steps=cfg.steps,
            train=splits.train,
            val=splits.val,
            test=splits.test,
            checkpoint_dir=cfg.checkpoint_dir,
            tensorboard=cfg.tensorboard,
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
    result, lr = searched.result, searched.learning_rate
    rows = records(result)
    for i, row in enumerate(rows):  # configuration-major: each slot's rate at the end
        row["learning_rate"] = float(lr[i % cfg.seeds, i // cfg.seeds])
    best, per_lr, good = good_range(rows)
    results = {
        "config": dataclasses.asdict(cfg),
        "members": [{k: row[k] for k in MEMBER_KEYS} for row in rows],
        "best": best,
        "good_range": good,
        "timing": {
            "compile_s": result.timing["compile_s"],
            "run_s": result.timing["run_s"],
            "member_steps_per_s": result.timing["member_steps_per_s"],
        },
        "devices": search.num_devices,
    }
    if searched.record is not None:
        results["scheduler"] = searched.record
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
    # The curve at the rates the members hold at the end (seed 0's, where they differ).
    held = Population({"learning_rate": lr[0]}, result.population.seeds)
    final = result._replace(population=held)
    kind = "learning rate" if cfg.scheduler == "grid" else f"{cfg.scheduler} slot"
    table = format_table(rows, columns) if cfg.seeds == 1 else format_table(per_lr, seed_columns)
    if cfg.export_best is not None:
        # Every process takes part in the save (orbax synchronizes them); process 0 writes.
        held = (lr == best["learning_rate"]) & ~result.diverged
        seed, h = np.unravel_index(
            np.argmin(np.where(held, result.best_val_loss, np.inf)), lr.shape
        )
        member = result.member(int(h), int(seed))
        save_params(cfg.export_best, member.best_params)
    if jax.process_index() == 0:
        with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
            write_json(folder / "results.json", results)
            write_csv(folder / "results.csv", rows)
            plot_lr_curve(final, folder / f"lr_curve.{cfg.format}")
            plot_curves(result, folder / f"curves.{cfg.format}")
        out = Path(cfg.out)
        print(table)
        print(
            f"\n{cfg.num_lrs * cfg.seeds} members ({_count(cfg.num_lrs, kind)} x "
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
            f"{good[0]:.3g} to {good[1]:.3g}"
        )
        print(f"wrote {out}/results.json, results.csv, lr_curve.{cfg.format}, curves.{cfg.format}")
        if cfg.export_best is not None:
            print(
                f"wrote the parameters of the best member (learning rate "
                f"{lr[seed, h]:.4g}, seed {member.seed}) to {cfg.export_best}"
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
