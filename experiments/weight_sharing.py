"""Weight sharing on MNIST-1D: an MLP and a CNN of comparable size, ordered and shuffled positions.

    python -m experiments.weight_sharing [--steps 3000] [--batch-size 100] [--seeds 3]
        [--lr-min 4e-3] [--lr-max 8e-2] [--num-lrs 4] [--channels 32] [--mlp-hidden 64,64]
        [--eval-every 250] [--batch-norm] [--devices N] [--out runs/weight_sharing]
        [--overwrite] [--format png]

A convolution shares one kernel over all positions (`jdl.models.Conv`): it assumes that
neighbouring positions belong together and that a pattern means the same wherever it is. On
MNIST-1D (`jdl.data.mnist1d`) that prior is right, and a CNN (`experiments.classifiers.cnn`,
a `jdl.models.ConvNet`: three stride-2 convolutions of ``--channels`` channels, kernels 5, 3,
3, a linear head; the reference CNN of Greydanus 2020 with 32 instead of 25 channels) beats an
MLP (``40-hidden-10``) of comparable parameter count by far. With the 40 positions shuffled by one
fixed permutation (``mnist1d(shuffle_positions=True)``) the MLP, which treats its input as an
unordered vector, learns as well as before, while the CNN's prior is wrong and its advantage
vanishes.

For each model and variant, ``--num-lrs`` learning rates on a log grid x ``--seeds`` seeds train
in one vmapped `jdl.search.Search` (Adam, cosine decay of the learning rate to 0 over
``--steps``, GELU units, batches of ``--batch-size``). Early stopping watches the validation
error rate 1 - accuracy with a patience longer than the run, so each member keeps its
parameters of highest validation accuracy; the learning rate of highest mean validation
accuracy is chosen, and its test accuracy is reported as mean and sample standard deviation
over the seeds. The ordered and shuffled runs of a model share one compiled program. With
``--batch-norm`` the CNN normalises each convolution's output with BatchNorm (a model with state:
`jdl.models.stateful`; each member its own running statistics, evaluated with them).

Writes into ``--out``: ``results.json`` (``config``; ``models`` with each model's parameter
count; ``runs``: per model and variant the chosen learning rate, ``test_accuracy`` and
``val_accuracy`` as ``{"mean", "std", "per_seed"}`` and the whole grid; ``reference``, the
package's table; ``cnn_advantage`` per variant; ``timing`` with the wall time and the load
average) and ``weight_sharing.png`` (test accuracy per model and variant with its seed spread
next to the reference numbers, and the CNN's learned first-layer kernels on both variants).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments import cli, estimates
from experiments.cli import MNIST1D_TRAIN_EXAMPLES, Parser, hidden_sizes

PROG = "python -m experiments.weight_sharing"
NUM_CLASSES, LENGTH = 10, 40
MODELS = ("mlp", "cnn")
VARIANTS = ("ordered", "shuffled")
# Test accuracies of the mnist1d package's README (Greydanus 2020); no GRU or logistic
# regression here, they are listed for the table.
REFERENCE = {
    "logistic_regression": {"ordered": 0.32},
    "mlp": {"ordered": 0.68},
    "cnn": {"ordered": 0.94, "shuffled": 0.56},
    "gru": {"ordered": 0.91},
}


@dataclasses.dataclass(frozen=True)
class Config:
    """The two searches per model: learning-rate grid, seeds, training budget, model sizes."""

    steps: int = 3000
    batch_size: int = 100
    seeds: int = 3
    lr_min: float = 4e-3
    lr_max: float = 8e-2
    num_lrs: int = 4
    channels: int = 32
    mlp_hidden: tuple[int, ...] = (64, 64)
    eval_every: int = 250
    batch_norm: bool = False  # BatchNorm after each of the CNN's convolutions
    devices: int | None = None  # None: every device (on a CPU host, one per core)
    checkpoint_dir: str | None = None  # None: no checkpoints
    out: str = "runs/weight_sharing"
    overwrite: bool = False
    format: str = "png"  # of the figure


def parse_args(argv: list[str] | None = None) -> Config:
    """The `Config` from command-line arguments; bad input exits with status 2 and one line."""
    d = Config()
    p = Parser(prog=PROG, doc=__doc__)
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps per member")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="signals per step")
    p.add_argument("--seeds", type=int, default=d.seeds, help="seeds per learning rate, >= 2")
    p.add_argument("--lr-min", type=float, default=d.lr_min, help="smallest learning rate")
    p.add_argument("--lr-max", type=float, default=d.lr_max, help="largest learning rate")
    p.add_argument("--num-lrs", type=int, default=d.num_lrs, help="learning rates, log grid")
    p.add_argument(
        "--channels",
        type=int,
        default=d.channels,
        help="channels of each of the CNN's 3 convolutions",
    )
    p.add_argument(
        "--mlp-hidden",
        type=hidden_sizes,
        default=d.mlp_hidden,
        help="the MLP's hidden layer sizes, e.g. 64,64",
    )
    p.add_argument(
        "--eval-every", type=int, default=d.eval_every, help="steps between validation evaluations"
    )
    p.add_argument(
        "--batch-norm",
        action="store_true",
        help="BatchNorm after each of the CNN's convolutions (running statistics per member)",
    )
    p.add_argument(
        "--devices",
        type=int,
        default=d.devices,
        help="devices to shard the members over (omitted: all; on a CPU host, one per core)",
    )
    p.add_checkpoint_argument()
    p.add_allow_long_argument()
    p.add_output_arguments(d.out)
    a = p.parse_args(argv)
    p.require_counts(a, "steps", "batch_size", "seeds", "num_lrs", "channels", minimum=1)
    p.require_counts(a, "eval_every", minimum=1)
    if a.devices is not None:
        p.require_positive_ints(a, "devices")
    p.require_positive_numbers(a, "lr_min", "lr_max")
    p.require_ordered(a, "lr_min", "lr_max")
    p.require_batch_size(a.batch_size, MNIST1D_TRAIN_EXAMPLES, "training signals")
    if a.seeds < 2:
        p.error(f"--seeds must be at least 2 for a spread over seeds, got {a.seeds}")
    searches = [  # per model, the ordered and the shuffled search in turn
        estimates.training(
            a.num_lrs * a.seeds, a.steps, network, a.batch_size, eval_every=a.eval_every
        ).repeated(len(VARIANTS))
        for network in (
            estimates.dense((LENGTH, *a.mlp_hidden, NUM_CLASSES)),
            cli.cnn_network("mnist1d", a.channels, (NUM_CLASSES,)),
        )
    ]
    p.require_feasible(
        a,
        searches[0].then(searches[1]),
        "num_lrs",
        "seeds",
        "steps",
        "batch_size",
        "channels",
        "mlp_hidden",
        "eval_every",
    )
    p.require_output(a)
    return Config(**{f.name: getattr(a, f.name) for f in dataclasses.fields(Config)})


if __name__ == "__main__":
    cli.parsed(parse_args)  # --help and bad flags answer before JAX is imported below

import jax
import matplotlib
import numpy as np
import optax
from flax import nnx

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import jdl.optim
from experiments import output
from experiments.classifiers import cnn
from jdl.data import Dataset, mnist1d
from jdl.models import MLP, functional, stateful
from jdl.search import Search, log_grid, population, use_cpu_cores
from jdl.search.report import aggregate, best_config, records, write_json
from jdl.train import classification, early_stopping


def make_model(cfg: Config, name: str) -> Callable[[nnx.Rngs], nnx.Module]:
    """The model ``name`` ("mlp" or "cnn") of ``cfg`` as a function of its PRNG streams."""
    if name == "mlp":
        features = (LENGTH, *cfg.mlp_hidden, NUM_CLASSES)
        return lambda rngs: MLP(features, activation=jax.nn.gelu, rngs=rngs)
    return cnn("mnist1d", NUM_CLASSES, cfg.channels, batch_norm=cfg.batch_norm)


def _search(cfg: Config, model: Callable[[nnx.Rngs], nnx.Module]) -> tuple[Search, int]:
    """A `Search` of ``model`` (one compiled program for both variants) and its size."""
    # A model with BatchNorm has state: (params, model_state) and the stateful contract.
    split = stateful if _has_state(model(nnx.Rngs(0))) else functional
    apply_fn, params = split(model(nnx.Rngs(0)))
    loss_fn, metrics = classification(apply_fn, stateful=split is stateful)

    def error_rate(m: dict[str, jax.Array]) -> dict[str, jax.Array]:
        # Early stopping and the choice of learning rate watch the validation error rate.
        return {"loss": 1.0 - m["accuracy"], "accuracy": m["accuracy"], "xent": m["loss"]}

    if split is stateful:
        params = params.params

        def eval_fn(params: Any, model_state: Any, data: Dataset) -> dict[str, jax.Array]:
            return error_rate(metrics(params, model_state, data))
    else:

        def eval_fn(params: Any, data: Dataset) -> dict[str, jax.Array]:
            return error_rate(metrics(params, data))

    def init_fn(key: jax.Array) -> Any:
        return split(model(nnx.Rngs(key)))[1]

    def optimizer(hp: dict[str, jax.Array]) -> optax.GradientTransformation:
        # lr_t = lr (1 + cos(pi t / T)) / 2: the large steps early, the fine ones at the end.
        return jdl.optim.adam(optax.cosine_decay_schedule(hp["learning_rate"], cfg.steps))

    search = Search(
        init_fn,
        optimizer,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=cfg.batch_size,
        eval_every=cfg.eval_every,
        # Patience beyond the run: each member keeps its parameters of lowest validation error
        # (a non-finite one still stops and flags it).
        early_stopping=early_stopping(cfg.steps + 1),
        devices=cfg.devices,
    )
    return search, sum(leaf.size for leaf in jax.tree.leaves(params))


def _has_state(module: nnx.Module) -> bool:
    return any(isinstance(v, nnx.BatchStat) for _, v in nnx.iter_graph(module))


def _stats(values: list[float]) -> dict[str, Any]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)), "per_seed": a.tolist()}


def _run(
    search: Search, cfg: Config, model: str, shuffled: bool
) -> tuple[dict[str, Any], np.ndarray | None]:
    """One variant's search: the chosen learning rate's accuracies over the seeds, the grid,
    and a CNN's first-layer kernels (K, 1, C) of the chosen rate, seed 0 (None for the MLP)."""
    splits = mnist1d(seed=0, shuffle_positions=shuffled)
    pop = population({"learning_rate": log_grid(cfg.lr_min, cfg.lr_max, cfg.num_lrs)}, cfg.seeds)
    name = f"{model}-{'shuffled' if shuffled else 'ordered'}"
    result = search.run(
        pop,
        splits.train,
        splits.val,
        steps=cfg.steps,
        test=splits.test,
        checkpoint_dir=cli.checkpoint_folder(cfg.checkpoint_dir, name),
    )
    rows = records(result)
    for r in rows:  # the monitored "loss" is the error rate
        r["best_val_error"] = r.pop("best_val_loss")
        r["final_val_error"] = r.pop("final_val_loss")
    best = best_config(
        [{**r, "best_val_loss": r["best_val_error"]} for r in rows], ["learning_rate"]
    )
    chosen = [r for r in rows if r["learning_rate"] == best["learning_rate"]]
    h = [r["learning_rate"] for r in rows[:: cfg.seeds]].index(best["learning_rate"])
    convs = result.best_params.get("convs")
    kernel = None if convs is None else np.asarray(convs[0]["kernel"][0, h])  # (K, 1, C)
    run = {
        "learning_rate": best["learning_rate"],
        "test_accuracy": _stats([r["test_accuracy"] for r in chosen]),
        "val_accuracy": _stats([r["val_accuracy"] for r in chosen]),
        "diverged": int(best["diverged"]),
        "grid": aggregate(rows, ["learning_rate"]),
        "compile_s": result.timing["compile_s"],
        "run_s": result.timing["run_s"],
    }
    return run, kernel


def _plot(results: dict[str, Any], kernels: dict[str, np.ndarray], path: Path) -> None:
    fig = plt.figure(figsize=(12, 4.2))
    grid = fig.add_gridspec(1, 3, width_ratios=[1.3, 1, 1])
    ax = fig.add_subplot(grid[0])
    for i, model in enumerate(MODELS):
        for j, variant in enumerate(VARIANTS):
            acc = results["runs"][model][variant]["test_accuracy"]
            x = i * 3 + j
            color = ("C0", "C1")[j]
            ax.bar(x, acc["mean"], yerr=acc["std"], color=color, capsize=4, alpha=0.8)
            ax.plot([x] * len(acc["per_seed"]), acc["per_seed"], "k.", ms=4)
            ref = REFERENCE[model].get(variant)
            if ref is not None:
                ax.hlines(ref, x - 0.4, x + 0.4, colors="k", linestyles="--", lw=1)
    ax.set_xticks([0, 1, 3, 4])
    ax.set_xticklabels([f"{m.upper()}\n{v}" for m in MODELS for v in VARIANTS])
    ax.set_ylabel("test accuracy (bars: mean ± std over seeds)")
    ax.set_ylim(0.0, 1.0)
    ax.set_title("MNIST-1D (dashed: reference table)")
    for k, variant in enumerate(VARIANTS):
        w = kernels[variant][:, 0, :].T  # (channels, taps)
        axk = fig.add_subplot(grid[k + 1])
        lim = float(np.abs(w).max())
        image = axk.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        axk.set_xlabel("kernel tap k")
        axk.set_ylabel("output channel")
        axk.set_title(f"CNN first-layer kernels, {variant}")
        fig.colorbar(image, ax=axk, fraction=0.05)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the four searches, writes ``results.json`` and ``weight_sharing.png``, and returns
    the results dict.

    Raises:
      SystemExit: 2 on bad input.
    """
    cfg = parse_args(argv)
    use_cpu_cores(cfg.devices)
    start = time.perf_counter()
    runs: dict[str, dict[str, Any]] = {}
    sizes, kernels = {}, {}
    for name in MODELS:
        search, sizes[name] = _search(cfg, make_model(cfg, name))
        runs[name] = {}
        for variant in VARIANTS:
            runs[name][variant], kernel = _run(search, cfg, name, variant == "shuffled")
            if name == "cnn":
                kernels[variant] = kernel
    wall = time.perf_counter() - start
    results = {
        "config": dataclasses.asdict(cfg),
        "models": {
            "mlp": {"parameters": sizes["mlp"], "hidden": list(cfg.mlp_hidden)},
            "cnn": {
                "parameters": sizes["cnn"],
                "channels": cfg.channels,
                "batch_norm": cfg.batch_norm,
            },
        },
        "runs": runs,
        "reference": REFERENCE,
        "cnn_advantage": {
            v: runs["cnn"][v]["test_accuracy"]["mean"] - runs["mlp"][v]["test_accuracy"]["mean"]
            for v in VARIANTS
        },
        "timing": {"wall_s": wall, "load_average": list(os.getloadavg()), "cpus": os.cpu_count()},
    }
    with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
        write_json(folder / "results.json", results)
        _plot(results, kernels, folder / f"weight_sharing.{cfg.format}")
    out = Path(cfg.out)
    print(f"{'model':6} {'variant':9} {'params':>7} {'lr':>9} {'test accuracy':>16}")
    for name in MODELS:
        for variant in VARIANTS:
            r = runs[name][variant]
            acc = r["test_accuracy"]
            print(
                f"{name:6} {variant:9} {sizes[name]:7d} {r['learning_rate']:9.3g} "
                f"{acc['mean']:8.4f} ± {acc['std']:.4f}"
            )
    print(
        f"CNN - MLP: {results['cnn_advantage']['ordered']:+.4f} ordered, "
        f"{results['cnn_advantage']['shuffled']:+.4f} shuffled; {wall:.0f} s"
    )
    print(f"wrote {out}/results.json, weight_sharing.{cfg.format}")
    return results


if __name__ == "__main__":
    cli.run(main)
