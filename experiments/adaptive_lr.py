"""Adaptive learning-rate re-estimation against the best fixed rate and time-constant decay.

    python -m experiments.adaptive_lr [--optimizer sgd] [--lr-min 1e-3] [--lr-max 10]
        [--num-lrs 9] [--seeds 2] [--rounds 10] [--period 90] [--probe-steps 10]
        [--probe-size 256] [--multipliers 0.5,1,2] [--initial-lr 0.01] [--tau-fraction 0.25]
        [--batch-size 64] [--hidden 64] [--out DIR]

Three ways to set the learning rate of the same MLP on digits, each for the same number of
optimizer steps T = rounds x (period + probe_steps), over ``--seeds`` seeds:

* fixed: the best constant rate of a log grid (one `jdl.search.Search`);
* time-constant decay: eta_t = eta_0 tau / max(t, tau), tau = tau_fraction T
  (`jdl.optim.time_constant_decay`), eta_0 the best of the same grid (both trained in the same
  search: a constant rate is the decay with tau >= T);
* adaptive: the course's brute-force re-estimation (`jdl.search.make_adaptive`) from
  ``--initial-lr``: every round, N copies with the rates eta x multipliers train K steps on a
  fixed subset of ``--probe-size`` training examples and the best is kept.

Writes ``results.json`` (test accuracy of each method's best parameters, mean and std over
seeds; the adaptive rates round by round) and ``adaptive_lr.png`` (validation loss and
learning rate against the step) into ``--out``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from experiments import cli, estimates
from experiments.cli import Parser, hidden_sizes, joined, positive_numbers

PROG = "python -m experiments.adaptive_lr"
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adagrad", "adamax", "nadam", "amsgrad")
NUM_CLASSES = 10
INT_FLAGS = ("num_lrs", "seeds", "rounds", "period", "probe_steps", "probe_size", "batch_size")


@dataclasses.dataclass(frozen=True)
class Config:
    """The comparison: optimizer, grid, seeds, re-estimation schedule, decay, model."""

    optimizer: str = "sgd"
    lr_min: float = 1e-3
    lr_max: float = 10.0
    num_lrs: int = 9
    seeds: int = 2
    rounds: int = 10
    period: int = 90
    probe_steps: int = 10
    probe_size: int = 256
    multipliers: tuple[float, ...] = (0.5, 1.0, 2.0)
    initial_lr: float = 0.01
    tau_fraction: float = 0.25
    batch_size: int = 64
    hidden: tuple[int, ...] = (64,)
    checkpoint_dir: str | None = None  # None: no checkpoints
    out: str = "runs/adaptive_lr"
    overwrite: bool = False
    format: str = "png"  # of the figure

    @property
    def steps(self) -> int:
        """T = rounds x (period + probe_steps)."""
        return self.rounds * (self.period + self.probe_steps)


def parse_args(argv: list[str] | None = None) -> Config:
    """The `Config` from command-line arguments; bad input exits with status 2 and one line."""
    d = Config()
    p = Parser(prog=PROG, doc=__doc__)
    p.add_argument("--optimizer", default=d.optimizer, help=f"one of {', '.join(OPTIMIZERS)}")
    helps = {
        "lr_min": "smallest rate of the fixed grid",
        "lr_max": "largest rate of the fixed grid",
        "initial_lr": "first rate of the re-estimation",
        "tau_fraction": "decay's tau as a fraction of the steps, in (0, 1]",
        "num_lrs": "rates of the fixed grid (log grid)",
        "seeds": "seeds of every method",
        "rounds": "re-estimation rounds",
        "period": "training steps per round",
        "probe_steps": "steps of each probe copy per round",
        "probe_size": "training examples of the probe subset",
        "batch_size": "examples per step",
    }
    for name in ("lr_min", "lr_max", "initial_lr", "tau_fraction"):
        p.add_argument(cli.flag(name), type=float, default=getattr(d, name), help=helps[name])
    for name in INT_FLAGS:
        p.add_argument(cli.flag(name), type=int, default=getattr(d, name), help=helps[name])
    p.add_argument(
        "--multipliers",
        type=positive_numbers,
        default=joined(d.multipliers),
        help="rate multipliers of the probe copies",
    )
    p.add_argument("--hidden", type=hidden_sizes, default=joined(d.hidden), help="layer sizes")
    p.add_checkpoint_argument()
    p.add_allow_long_argument()
    p.add_output_arguments(d.out)
    a = p.parse_args(argv)
    if a.optimizer not in OPTIMIZERS:
        p.error(f"unknown optimizer {a.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    p.require_positive_numbers(a, "lr_min", "lr_max", "initial_lr", "multipliers")
    p.require_ordered(a, "lr_min", "lr_max")
    if not 0 < a.tau_fraction <= 1:
        p.error(f"--tau-fraction must be in (0, 1], got {a.tau_fraction}")
    p.require_positive_ints(a, *INT_FLAGS)
    p.require_batch_size(a.batch_size, cli.DIGITS_TRAIN_EXAMPLES)
    if a.probe_size > cli.DIGITS_TRAIN_EXAMPLES:
        p.error(f"--probe-size {a.probe_size} exceeds the {cli.DIGITS_TRAIN_EXAMPLES} examples")
    if a.rounds * (a.period + a.probe_steps) > cli.INT32_MAX:
        p.error("--rounds x (--period + --probe-steps) must fit an int32 step counter")
    mlp = estimates.dense((cli.DIGITS_FEATURES, *a.hidden, NUM_CLASSES))
    chunk = a.period + a.probe_steps
    fixed_and_decay = estimates.training(
        2 * a.num_lrs * a.seeds, a.rounds * chunk, mlp, a.batch_size, eval_every=chunk
    )
    adaptive = estimates.training(
        a.seeds, a.rounds * a.period, mlp, a.batch_size, eval_every=a.period
    )
    probes = estimates.training(  # a copy per multiplier, --probe-steps steps a round
        a.seeds * len(a.multipliers), a.rounds * a.probe_steps, mlp, a.batch_size
    )
    p.require_feasible(
        a,
        fixed_and_decay.then(adaptive).then(probes),
        "num_lrs",
        "seeds",
        "rounds",
        "period",
        "probe_steps",
        "multipliers",
        "hidden",
        "batch_size",
    )
    p.require_output(a)
    return Config(**{f.name: getattr(a, f.name) for f in dataclasses.fields(Config)})


if __name__ == "__main__":
    cli.parsed(parse_args)  # --help and bad flags answer before JAX is imported below

import jax
import jax.numpy as jnp
import numpy as np

import jdl.optim
from experiments import output
from experiments.classifiers import mlp_classifier
from jdl.data import digits
from jdl.search import AdaptiveState, Search, log_grid, make_adaptive, product, run_adaptive
from jdl.search import population as make_population
from jdl.search.report import write_json
from jdl.train import early_stopping, init_state


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the three methods and writes results.json and adaptive_lr.png."""
    cfg = parse_args(argv)
    splits = digits(seed=0)
    n_train = splits.train.x.shape[0]
    if max(cfg.batch_size, cfg.probe_size) > n_train:
        Parser(prog=PROG).error(
            f"--batch-size and --probe-size must not exceed the {n_train} training examples"
        )
    features = (splits.train.x.shape[1], *cfg.hidden, NUM_CLASSES)
    init_fn, loss_fn, eval_fn = mlp_classifier(features)

    make_tx = getattr(jdl.optim, cfg.optimizer)
    steps, chunk = cfg.steps, cfg.period + cfg.probe_steps
    es = early_stopping(10 * steps, divergence_threshold=2.0 * math.log(NUM_CLASSES))
    tau = max(1.0, cfg.tau_fraction * steps)

    # Fixed rates and time-constant decay in one search: a constant rate is tau >= T.
    search = Search(
        init_fn,
        lambda hp: make_tx(jdl.optim.time_constant_decay(hp["learning_rate"], hp["tau"])),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=cfg.batch_size,
        eval_every=chunk,
        early_stopping=es,
    )
    grid = log_grid(cfg.lr_min, cfg.lr_max, cfg.num_lrs)
    pop = make_population(product(tau=[float(steps), tau], learning_rate=grid), cfg.seeds)
    result = search.run(
        pop,
        splits.train,
        splits.val,
        steps=steps,
        test=splits.test,
        checkpoint_dir=cli.checkpoint_folder(cfg.checkpoint_dir, "fixed-and-decay"),
    )
    constant = pop.hparams["tau"] >= steps
    score = np.where(result.diverged, np.inf, result.best_val_loss).mean(axis=0)  # (H,)

    def summary(cols: np.ndarray, name: str) -> dict[str, Any]:
        h = int(cols[np.argmin(score[cols])])
        return {
            "learning_rate": float(pop.hparams["learning_rate"][h]),
            "tau": None if name == "fixed" else tau,
            "best_val_loss_mean": float(score[h]),
            "test_accuracy_mean": float(result.best["test_accuracy"][:, h].mean()),
            "test_accuracy_std": float(result.best["test_accuracy"][:, h].std()),
            "val_loss_curve": result.history["val_loss"][:, :, h].mean(axis=1),
            "steps": result.history["step"],
        }

    fixed = summary(np.flatnonzero(constant), "fixed")
    decay = summary(np.flatnonzero(~constant), "decay")

    # Adaptive re-estimation: one compiled round, vmapped over the seeds, on the run driver.
    round_fn = make_adaptive(
        loss_fn,
        make_tx,
        batch_size=cfg.batch_size,
        period=cfg.period,
        probe_steps=cfg.probe_steps,
        multipliers=cfg.multipliers,
        eval_fn=eval_fn,
        early_stopping=es,
    )
    states = []
    for seed in range(cfg.seeds):
        k_init, k_run = jax.random.split(jax.random.key(seed))
        states.append(init_state(init_fn(k_init), make_tx(cfg.initial_lr), es, k_run))
    lr0 = jnp.full((cfg.seeds,), cfg.initial_lr, jnp.float32)
    states = AdaptiveState(jax.tree.map(lambda *xs: jnp.stack(xs), *states), lr0)
    rng = np.random.default_rng(0)
    probe_idx = np.sort(rng.choice(n_train, cfg.probe_size, replace=False))
    probe = jax.tree.map(lambda a: a[probe_idx], splits.train)
    adaptive_run = run_adaptive(
        round_fn,
        states,
        splits.train,
        splits.val,
        probe,
        rounds=cfg.rounds,
        checkpoint_dir=cli.checkpoint_folder(cfg.checkpoint_dir, "adaptive"),
    )
    final, history = adaptive_run.state.train, adaptive_run.history
    test_eval = jax.vmap(eval_fn, in_axes=(0, None))(final.stop.best_params, splits.test)
    lrs = np.asarray(history.learning_rate)  # (S, rounds)
    best_metric = np.asarray(final.stop.best_metric)
    adaptive = {
        "initial_learning_rate": cfg.initial_lr,
        "learning_rates": lrs,
        "best_val_loss_mean": float(best_metric.mean()),
        "test_accuracy_mean": float(np.asarray(test_eval["accuracy"]).mean()),
        "test_accuracy_std": float(np.asarray(test_eval["accuracy"]).std()),
        "val_loss_curve": np.asarray(history.metrics["val_loss"]).mean(axis=0),
        "steps": np.asarray(history.step)[0],
        "diverged": np.asarray(final.stop.diverged),
        "probe_step_computations": cfg.rounds * len(cfg.multipliers) * cfg.probe_steps,
    }
    results = {
        "config": {**dataclasses.asdict(cfg), "steps": steps},
        "fixed": fixed,
        "decay": decay,
        "adaptive": adaptive,
        "grid": {
            "learning_rate": pop.hparams["learning_rate"],
            "tau": pop.hparams["tau"],
            "best_val_loss_mean": score,
            "test_accuracy_mean": result.best["test_accuracy"].mean(axis=0),
        },
    }
    with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
        write_json(folder / "results.json", results)
        _plot(folder / f"adaptive_lr.{cfg.format}", cfg, fixed, decay, adaptive, tau)
    out = Path(cfg.out)
    for name, r in (("fixed", fixed), ("decay", decay), ("adaptive", adaptive)):
        lr = r.get("learning_rate", r.get("initial_learning_rate"))
        print(
            f"{name:9s} lr {lr:.3g}  best val loss {r['best_val_loss_mean']:.4f}  test accuracy "
            f"{r['test_accuracy_mean']:.4f} +- {r['test_accuracy_std']:.4f}"
        )
    print(f"adaptive rates, seed 0: {' '.join(f'{v:.3g}' for v in lrs[0])}")
    print(f"wrote {out}/results.json, adaptive_lr.{cfg.format}")
    return results


def _plot(path: Path, cfg: Config, fixed: dict, decay: dict, adaptive: dict, tau: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = cfg.steps
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    methods = (("best fixed", fixed), ("time-constant decay", decay), ("adaptive", adaptive))
    # Distinct markers and dashes: curves that coincide stay visible one over the other.
    styles = (("o", "-", 7), ("s", "--", 5), ("^", ":", 4))
    for (name, r), (marker, ls, ms) in zip(methods, styles, strict=True):
        ax1.plot(
            r["steps"], r["val_loss_curve"], marker=marker, ls=ls, ms=ms, mfc="none", label=name
        )
    ax1.set_xlabel("optimizer step")
    ax1.set_ylabel("validation cross-entropy (mean over seeds)")
    ax1.set_title("validation loss")
    ax1.grid(True, alpha=0.3)
    ax1.legend(loc="upper right")
    t = np.arange(steps)
    ax2.plot(t, np.full(steps, fixed["learning_rate"]), label="best fixed")
    ax2.plot(t, decay["learning_rate"] * tau / np.maximum(t, tau), ls="--", label="decay")
    starts = np.concatenate([[0], adaptive["steps"]])
    for s, lrs in enumerate(adaptive["learning_rates"]):
        label = "adaptive (one line per seed)" if s == 0 else None
        ax2.step(starts, np.append(lrs, lrs[-1]), where="post", color="C2", alpha=0.7, label=label)
    ax2.set_yscale("log")
    ax2.set_xlabel("optimizer step")
    ax2.set_ylabel("learning rate η (log scale)")
    ax2.set_title("learning rate")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(loc="lower left")
    fig.suptitle(
        f"{cfg.optimizer} on digits, MLP 64-{'-'.join(map(str, cfg.hidden))}-10: best fixed rate, "
        f"time-constant decay (τ = {tau:g}) and adaptive re-estimation"
    )
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    cli.run(main)
