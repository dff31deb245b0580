"""Early stopping on an overfitting MLP: where Keras's patience and Bengio's patience increase
stop, and what restoring the best model buys.

    python -m experiments.early_stopping [--train-size 200] [--hidden 256,256] [--steps 3000]
        [--batch-size 32] [--learning-rate 1e-3] [--eval-every 25] [--patience 250]
        [--bengio-patience 250] [--patience-increase 2.0] [--improvement 0.005] [--seed 0]
        [--seeds 3] [--no-progress] [--out DIR]

Trains an MLP with Adam on a small stratified subset of the digits (``--train-size``; 0 uses
the whole training split) with `jdl.run.fit` for ``--steps`` without early stopping (long
enough to overfit: the reference curve), then once with each rule,
``fit(..., early_stopping=rule)``: Keras-style patience (deadline t* + p) and Bengio's
multiplicative patience increase (deadline max(T, t* k), improvements relative to
``--improvement``). With the same seed every run trains along the same trajectory until its
rule stops it. Patience is in optimizer steps. Writes ``curves.png`` (training and validation loss
against steps, each rule's stop and best step) and ``results.json`` (per rule: stop step,
best step, best validation loss, test accuracy of the restored best model and of the final
model at the stop; rule "none" is the whole run) into ``--out``. The whole comparison is
repeated for ``--seeds`` seeds (seed, seed + 1, ...: another split, initialization and order);
``results.json["over_seeds"]`` has each rule's numbers per seed and their mean and standard
deviation (the curves are the first seed's).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments import cli, estimates
from experiments.cli import DIGITS_FEATURES, DIGITS_TRAIN_EXAMPLES, Parser, hidden_sizes, joined

PROG = "python -m experiments.early_stopping"


@dataclasses.dataclass(frozen=True)
class Config:
    """The run: data size, model, optimizer, training length and the two stopping rules."""

    train_size: int = 200  # 0: the whole training split
    hidden: tuple[int, ...] = (256, 256)
    steps: int = 3000
    batch_size: int = 32
    learning_rate: float = 1e-3
    eval_every: int = 25
    patience: int = 250  # Keras-style, in optimizer steps
    bengio_patience: int = 250  # initial deadline, in optimizer steps
    patience_increase: float = 2.0
    improvement: float = 0.005  # Bengio's 1 - improvement_threshold
    seed: int = 0
    seeds: int = 3
    progress: bool = True
    out: str = "runs/early_stopping"
    overwrite: bool = False
    format: str = "png"  # of the figure


def parse_args(argv: list[str] | None = None) -> Config:
    """The `Config` from command-line arguments; bad input exits with status 2 and one line."""
    d = Config()
    p = Parser(prog=PROG, doc=__doc__)
    p.add_argument("--train-size", type=int, default=d.train_size, help="examples; 0: all")
    p.add_argument("--hidden", type=hidden_sizes, default=joined(d.hidden), help="layer sizes")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps of the run")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per step")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="Adam's")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between evaluations")
    p.add_argument("--patience", type=int, default=d.patience, help="Keras-style, in steps")
    p.add_argument(
        "--bengio-patience", type=int, default=d.bengio_patience, help="Bengio's first deadline"
    )
    p.add_argument(
        "--patience-increase", type=float, default=d.patience_increase, help="Bengio's k (> 1)"
    )
    p.add_argument(
        "--improvement", type=float, default=d.improvement, help="Bengio's relative improvement"
    )
    p.add_argument("--seed", type=int, default=d.seed, help="of the data, model and order")
    p.add_argument("--seeds", type=int, default=d.seeds, help="seeds, from --seed on")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=d.progress,
        help="show a progress bar",
    )
    p.add_allow_long_argument()
    p.add_output_arguments(d.out)
    a = p.parse_args(argv)
    p.require_positive_ints(
        a, "steps", "batch_size", "eval_every", "patience", "bengio_patience", "seeds"
    )
    p.require_counts(a, "train_size", "seed")
    p.require_positive_numbers(a, "learning_rate")
    if not a.patience_increase > 1:
        p.error(f"--patience-increase must be > 1, got {a.patience_increase}")
    if not 0 <= a.improvement < 1:
        p.error(f"--improvement must be in [0, 1), got {a.improvement}")
    if a.train_size > DIGITS_TRAIN_EXAMPLES:
        p.error(f"--train-size must be at most the {DIGITS_TRAIN_EXAMPLES} training examples")
    p.require_batch_size(a.batch_size, a.train_size or DIGITS_TRAIN_EXAMPLES, "training examples")
    mlp = estimates.dense((DIGITS_FEATURES, *a.hidden, 10))
    run = estimates.training(1, a.steps, mlp, a.batch_size, eval_every=a.eval_every)
    cost = run.repeated(3 * a.seeds)  # per seed, in turn: no rule, Keras', Bengio's
    p.require_feasible(a, cost, "seeds", "steps", "hidden", "batch_size", "eval_every")
    p.require_output(a)
    return Config(**vars(a))


if __name__ == "__main__":
    cli.parsed(parse_args)  # --help and bad flags answer before JAX is imported below

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from flax import nnx

import jdl.optim
from experiments import output
from jdl.data import Dataset, digits, stratified_subset
from jdl.models import MLP, functional
from jdl.run import FitResult, fit
from jdl.train import EarlyStopping, classification, early_stopping


def _runs(
    cfg: Config, train: Dataset, val: Dataset, test: Dataset
) -> tuple[dict[str, FitResult], Callable[[Any], float]]:
    """The run without early stopping (rule "none") and one run per rule, all through `fit`
    from the same initial parameters and seed; and the test accuracy function."""
    apply_fn, params = functional(MLP((train.x.shape[1], *cfg.hidden, 10), rngs=nnx.Rngs(cfg.seed)))
    loss_fn, eval_fn = classification(apply_fn)
    runs = {}
    for name, rule in {"none": None, **_rules(cfg)}.items():
        runs[name] = fit(
            loss_fn,
            params,
            jdl.optim.adam(cfg.learning_rate),
            train,
            val,
            eval_fn=eval_fn,
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            eval_every=cfg.eval_every,
            early_stopping=rule,
            key=cfg.seed,
            progress=cfg.progress,
        )
    test_accuracy = jax.jit(lambda p: eval_fn(p, test)["accuracy"])
    return runs, lambda p: float(test_accuracy(p))


def _rules(cfg: Config) -> dict[str, EarlyStopping]:
    """Keras-style patience and Bengio's multiplicative patience increase."""
    return {
        "keras": early_stopping(cfg.patience),
        "bengio": early_stopping(
            cfg.bengio_patience,
            patience_increase=cfg.patience_increase,
            min_delta=cfg.improvement,
            relative=True,
        ),
    }


def _summary(result: FitResult, test_accuracy: Callable[[Any], float]) -> dict[str, Any]:
    """A rule's outcome: where it stopped, the best model it restored, and both on test."""
    stop = result.state.stop
    return {
        "stopped_early": bool(stop.should_stop) and not bool(stop.diverged),
        "stop_step": int(result.state.step),
        "best_step": max(int(stop.best_step), 0),
        "best_val_loss": float(stop.best_metric),
        "final_val_loss": result.history["val_loss"][-1],
        "test_accuracy_restored": test_accuracy(result.best_params),
        "test_accuracy_final": test_accuracy(result.state.params),
    }


def _plot(path: Path, history: dict[str, list[float]], rules: dict[str, dict]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(history["step"], history["train_loss"], label="training loss", color="tab:blue")
    ax.plot(history["step"], history["val_loss"], label="validation loss", color="tab:orange")
    styles = {
        "keras": ("tab:red", "Keras patience (t* + p)"),
        "bengio": ("tab:green", "Bengio increase (t* x k)"),
    }
    for name, (color, label) in styles.items():
        r = rules[name]
        ax.axvline(r["stop_step"], color=color, linestyle="--", label=f"{label}: stop")
        ax.plot(
            r["best_step"],
            r["best_val_loss"],
            "o",
            color=color,
            label=f"{label}: best model restored",
        )
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy")
    ax.set_title("Early stopping: stop at the deadline, restore the best model")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _one_seed(cfg: Config) -> tuple[int, dict[str, list[float]], dict[str, dict]]:
    """Training examples, the history of the run without stopping, and each rule's summary."""
    splits = digits(seed=cfg.seed)
    train = splits.train
    if cfg.train_size:
        if cfg.train_size > train.x.shape[0]:
            Parser(prog=PROG).error(
                f"--train-size must be at most the {train.x.shape[0]} training examples"
            )
        train = stratified_subset(train, cfg.train_size, seed=cfg.seed)
    runs, test_accuracy = _runs(cfg, train, splits.val, splits.test)
    history = runs["none"].history
    rules = {name: _summary(result, test_accuracy) for name, result in runs.items()}
    return int(train.x.shape[0]), history, rules


def over_seeds(per_seed: list[dict[str, dict]]) -> dict[str, dict[str, Any]]:
    """Per rule and number: the values per seed, their mean and (population) std."""
    out: dict[str, dict[str, Any]] = {}
    for name in per_seed[0]:
        out[name] = {}
        for key in ("stop_step", "best_step", "best_val_loss", "test_accuracy_restored",
                    "test_accuracy_final"):  # fmt: skip
            values = np.array([float(r[name][key]) for r in per_seed])
            out[name][key] = {
                "values": values.tolist(),
                "mean": float(values.mean()),
                "std": float(values.std()),
            }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment and returns the results written to ``results.json``."""
    cfg = parse_args(argv)
    examples, history, rules = _one_seed(cfg)
    per_seed = [rules]
    for seed in range(cfg.seed + 1, cfg.seed + cfg.seeds):
        per_seed.append(_one_seed(dataclasses.replace(cfg, seed=seed))[2])
    results = {
        "config": dataclasses.asdict(cfg),
        "train_examples": examples,
        "rules": rules,
        "over_seeds": over_seeds(per_seed),
        "history": {k: history[k] for k in ("step", "train_loss", "val_loss", "val_accuracy")},
    }
    with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
        _plot(folder / f"curves.{cfg.format}", history, rules)
        (folder / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    print(f"seed {cfg.seed}:")
    for name, r in rules.items():
        print(
            f"{name:>6}: stop {r['stop_step']:5d}  best {r['best_step']:5d}  "
            f"best val loss {r['best_val_loss']:.4f}  test acc restored "
            f"{r['test_accuracy_restored']:.4f}  final {r['test_accuracy_final']:.4f}"
        )
    print(f"over {cfg.seeds} seeds (mean ± std):")
    for name, r in results["over_seeds"].items():
        cells = [
            f"{key} {r[key]['mean']:.{digits_}f} ± {r[key]['std']:.{digits_}f}"
            for key, digits_ in (("stop_step", 0), ("best_val_loss", 4),
                                 ("test_accuracy_restored", 4), ("test_accuracy_final", 4))
        ]  # fmt: skip
        print(f"{name:>6}: " + "  ".join(cells))
    return results


if __name__ == "__main__":
    cli.run(main)
