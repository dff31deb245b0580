"""Stacked denoising autoencoder on digits: layer-wise pre-training vs random initialisation.

    python -m experiments.stacked_denoising [--seeds 3] [--hidden 100,100,100]
        [--noise masking] [--noise-levels 0.25,0.25,0.25] [--label-fractions 0.1,1.0]
        [--pretrain-steps 3000] [--finetune-steps 4000] [--batch-size 64]
        [--learning-rate 0.01] [--finetune-learning-rate 0.003] [--patience 1000]
        [--weight-decay 1e-5] [--tied] [--reconstruction mse] [--out runs/stacked_denoising]

For each seed: greedy layer-wise pre-training of a stack of denoising autoencoders (by default
the course's: sigmoid units, separate encoder and decoder weights, squared error and weight
decay lambda (||W1||^2 + ||W2||^2); ``--tied`` and ``--reconstruction bce`` are options) on the
training images (no labels; each layer on the clean codes of the one below, with its own
corruption level), each stage through `jdl.run.fit`; then, for each fraction of labelled
training examples (10% and all by default; the validation set is cut to the same fraction, so
that "few labels" means few labels everywhere), the decoders are dropped, a softmax layer is
added and the whole network is fine-tuned with early stopping on the validation loss, next to
the same network (same shape, same softmax-layer initialisation) trained from random
initialisation. Writes into ``--out``:

- ``results.json``: per label fraction and initialisation, the test accuracy (mean, standard
  deviation and per seed), the steps and epochs to the best validation loss and to the stop;
  the pre-training's per-layer validation denoising error (MSE against the clean codes of a
  fixed corrupted validation set) and steps;
- ``stacked_denoising.png``: test accuracy per label fraction (bars: mean, whiskers: standard
  deviation, dots: seeds) and the validation accuracy during fine-tuning (seed 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

from experiments import cli, estimates
from experiments.cli import Parser, hidden_sizes, joined, numbers

PROG = "python -m experiments.stacked_denoising"
NUM_CLASSES = 10
ARMS = ("pretrained", "random")
NOISES = ("gaussian", "masking", "salt_and_pepper")  # jdl.run.pretraining.NOISES; tested


@dataclasses.dataclass(frozen=True)
class Config:
    """Pre-training, fine-tuning, label fractions, seeds and output."""

    seeds: int = 3
    hidden: tuple[int, ...] = (100, 100, 100)
    noise: str = "masking"
    noise_levels: tuple[float, ...] = (0.25, 0.25, 0.25)
    label_fractions: tuple[float, ...] = (0.1, 1.0)
    pretrain_steps: int = 3000
    finetune_steps: int = 4000
    batch_size: int = 64
    learning_rate: float = 1e-2  # Adam, pre-training
    finetune_learning_rate: float = 3e-3  # Adam, fine-tuning
    patience: int = 1000  # in optimizer steps, every stage
    eval_every: int = 50
    weight_decay: float = 1e-5  # lambda of the pre-training's weight decay
    tied: bool = False  # decoder weights W^T instead of a separate V
    reconstruction: str = "mse"  # or "bce"
    out: str = "runs/stacked_denoising"
    overwrite: bool = False
    format: str = "png"  # of the figure


def parse_args(argv: list[str] | None = None) -> Config:
    """The `Config` from command-line arguments; bad input exits with status 2 and one line."""
    d = Config()
    p = Parser(prog=PROG, doc=__doc__)
    p.add_argument("--seeds", type=int, default=d.seeds, help="seeds per arm and label fraction")
    p.add_argument("--hidden", type=hidden_sizes, default=joined(d.hidden), help="layer sizes")
    p.add_argument("--noise", default=d.noise, help=f"one of {', '.join(NOISES)}")
    p.add_argument(
        "--noise-levels", type=numbers, default=joined(d.noise_levels), help="one per layer"
    )
    p.add_argument(
        "--label-fractions",
        type=numbers,
        default=joined(d.label_fractions),
        help="fractions of labelled training examples, in (0, 1]",
    )
    p.add_argument("--pretrain-steps", type=int, default=d.pretrain_steps, help="per layer")
    p.add_argument(
        "--finetune-steps", type=int, default=d.finetune_steps, help="most fine-tuning steps"
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per step")
    p.add_argument(
        "--learning-rate", type=float, default=d.learning_rate, help="Adam's, pre-training"
    )
    p.add_argument(
        "--finetune-learning-rate",
        type=float,
        default=d.finetune_learning_rate,
        help="Adam's, fine-tuning",
    )
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping, in steps")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between evaluations")
    p.add_argument(
        "--weight-decay", type=float, default=d.weight_decay, help="pre-training's lambda, >= 0"
    )
    p.add_argument(
        "--tied",
        action=argparse.BooleanOptionalAction,
        default=d.tied,
        help="decoder weights W^T (tied) instead of separate ones",
    )
    p.add_argument(
        "--reconstruction",
        choices=("mse", "bce"),
        default=d.reconstruction,
        help="pre-training's reconstruction error",
    )
    p.add_allow_long_argument()
    p.add_output_arguments(d.out)
    a = p.parse_args(argv)
    if not (a.weight_decay >= 0 and math.isfinite(a.weight_decay)):
        p.error(f"--weight-decay must be a finite number >= 0, got {a.weight_decay}")
    p.require_positive_ints(
        a, "seeds", "pretrain_steps", "finetune_steps", "batch_size", "patience", "eval_every"
    )
    if a.noise not in NOISES:
        p.error(f"unknown noise {a.noise!r}; choose one of {', '.join(NOISES)}")
    if len(a.noise_levels) != len(a.hidden):
        p.error(
            f"--noise-levels needs one level per hidden layer ({len(a.hidden)}), got "
            f"{len(a.noise_levels)}"
        )
    high = math.inf if a.noise == "gaussian" else 1.0
    if any(not 0.0 <= v <= high for v in a.noise_levels):
        p.error(f"--noise-levels must lie in [0, {high}] for {a.noise} noise, got {a.noise_levels}")
    if any(not 0.0 < f <= 1.0 for f in a.label_fractions):
        p.error(f"--label-fractions must lie in (0, 1], got {a.label_fractions}")
    p.require_positive_numbers(a, "learning_rate", "finetune_learning_rate")
    fewest = _labelled(cli.DIGITS_TRAIN_EXAMPLES, min(a.label_fractions))
    p.require_batch_size(a.batch_size, fewest, "labelled examples of the smallest fraction")
    p.require_feasible(
        a,
        cost(a),
        "seeds",
        "hidden",
        "label_fractions",
        "pretrain_steps",
        "finetune_steps",
        "batch_size",
    )
    p.require_output(a)
    return Config(**{f.name: getattr(a, f.name) for f in dataclasses.fields(Config)})


def _labelled(n: int, fraction: float) -> int:
    """The labelled training examples of a fraction of ``n``: at least one per class."""
    return n if fraction == 1.0 else max(NUM_CLASSES, round(fraction * n))


def cost(a: argparse.Namespace) -> estimates.Cost:
    """The estimate of the run, per seed in turn: each layer's autoencoder, then both arms'
    fine-tuning for each label fraction."""
    sizes = (cli.DIGITS_FEATURES, *a.hidden)
    total = estimates.Cost()
    for n_in, n_out in itertools.pairwise(sizes):
        autoencoder = estimates.dense((n_in, n_out, n_in))
        layer = estimates.training(
            1, a.pretrain_steps, autoencoder, a.batch_size, eval_every=a.eval_every
        )
        total = total.then(layer.repeated(a.seeds))
    mlp = estimates.dense((*sizes, NUM_CLASSES))
    fine_tuning = estimates.training(
        1, a.finetune_steps, mlp, a.batch_size, eval_every=a.eval_every
    )
    return total.then(fine_tuning.repeated(a.seeds * len(a.label_fractions) * len(ARMS)))


if __name__ == "__main__":
    cli.parsed(parse_args)  # --help and bad flags answer before JAX is imported below

import jax
import matplotlib
import numpy as np
from flax import nnx

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from experiments import output
from jdl.data import digits, stratified_subset
from jdl.losses import accuracy
from jdl.models import stacked_classifier
from jdl.optim import adam
from jdl.run import fine_tune, pretrain_layerwise


def _stats(values: list[float]) -> dict[str, Any]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": values}


def _subset(data, fraction: float, seed: int):
    n = data.x.shape[0]
    return data if fraction == 1.0 else stratified_subset(data, _labelled(n, fraction), seed)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs pre-training and fine-tuning; writes results.json and stacked_denoising.png."""
    cfg = parse_args(argv)
    start = time.perf_counter()
    splits = digits(seed=0)
    features = (splits.train.x.shape[1], *cfg.hidden)
    runs: dict[tuple[float, str], list[dict[str, Any]]] = {
        (f, arm): [] for f in cfg.label_fractions for arm in ARMS
    }
    pretraining = []
    for seed in range(cfg.seeds):
        key = jax.random.key(seed)
        t0 = time.perf_counter()
        pre = pretrain_layerwise(
            splits.train.x,
            splits.val.x,
            cfg.hidden,
            noise_levels=cfg.noise_levels,
            noise=cfg.noise,
            optimizer=adam(cfg.learning_rate),
            key=jax.random.fold_in(key, 0),
            batch_size=cfg.batch_size,
            steps=cfg.pretrain_steps,
            eval_every=cfg.eval_every,
            patience=cfg.patience,
            tied=cfg.tied,
            reconstruction=cfg.reconstruction,
            weight_decay=cfg.weight_decay,
        )
        pretraining.append(
            {
                "val_denoising_mse": [min(r.history["val_loss"]) for r in pre.results],
                "best_step": [int(r.state.stop.best_step) for r in pre.results],
                "seconds": time.perf_counter() - t0,
            }
        )
        for fraction in cfg.label_fractions:
            train = _subset(splits.train, fraction, seed)
            val = _subset(splits.val, fraction, seed)
            batch_size = min(cfg.batch_size, train.x.shape[0])
            examples_per_step = batch_size / train.x.shape[0]  # epochs = steps * B / n
            for arm in ARMS:
                apply_fn, params = stacked_classifier(
                    features,
                    NUM_CLASSES,
                    encoders=pre.encoders if arm == "pretrained" else None,
                    rngs=nnx.Rngs(jax.random.fold_in(key, 1)),
                )
                result = fine_tune(
                    apply_fn,
                    params,
                    train,
                    val,
                    optimizer=adam(cfg.finetune_learning_rate),
                    key=jax.random.fold_in(key, 2),
                    batch_size=batch_size,
                    steps=cfg.finetune_steps,
                    eval_every=cfg.eval_every,
                    patience=cfg.patience,
                )
                best_step, stop_step = int(result.state.stop.best_step), int(result.state.step)
                runs[(fraction, arm)].append(
                    {
                        "test_accuracy": float(
                            accuracy(apply_fn(result.best_params, splits.test.x), splits.test.y)
                        ),
                        "best_step": best_step,
                        "stop_step": stop_step,
                        "best_epoch": best_step * examples_per_step,
                        "stop_epoch": stop_step * examples_per_step,
                        "history": {
                            "step": result.history["step"],
                            "val_accuracy": result.history["val_accuracy"],
                        },
                        "labelled_train": int(train.x.shape[0]),
                        "labelled_val": int(val.x.shape[0]),
                    }
                )
                print(
                    f"seed {seed} labels {fraction:>4.0%} {arm:10s} test accuracy "
                    f"{runs[(fraction, arm)][-1]['test_accuracy']:.4f} (best step {best_step})",
                    flush=True,
                )
    results = {
        "config": dataclasses.asdict(cfg),
        "pretraining": {
            "val_denoising_mse": _layers_stats([p["val_denoising_mse"] for p in pretraining]),
            "best_step": _layers_stats([p["best_step"] for p in pretraining]),
            "seconds": _stats([p["seconds"] for p in pretraining]),
        },
        "fine_tuning": {
            f"{fraction:g}": {
                "labelled_train": runs[(fraction, ARMS[0])][0]["labelled_train"],
                "labelled_val": runs[(fraction, ARMS[0])][0]["labelled_val"],
                **{
                    arm: {
                        key: _stats([r[key] for r in runs[(fraction, arm)]])
                        for key in (
                            "test_accuracy",
                            "best_step",
                            "stop_step",
                            "best_epoch",
                            "stop_epoch",
                        )
                    }
                    for arm in ARMS
                },
            }
            for fraction in cfg.label_fractions
        },
    }
    for entry in results["fine_tuning"].values():
        pre, rand = entry["pretrained"]["test_accuracy"], entry["random"]["test_accuracy"]
        entry["pretraining_gain"] = pre["mean"] - rand["mean"]
        entry["gain_exceeds_spread"] = bool(
            pre["mean"] - rand["mean"] > max(pre["std"], rand["std"])
        )
    results["timing"] = {"total_s": time.perf_counter() - start}
    with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
        (folder / "results.json").write_text(json.dumps(results, indent=2))
        _plot(folder / f"stacked_denoising.{cfg.format}", cfg, runs)
    out = Path(cfg.out)
    for fraction, entry in results["fine_tuning"].items():
        pre, rand = entry["pretrained"], entry["random"]
        print(
            f"labels {float(fraction):>4.0%} ({entry['labelled_train']} examples): pre-trained "
            f"{pre['test_accuracy']['mean']:.4f} +- {pre['test_accuracy']['std']:.4f} "
            f"(stop epoch {pre['stop_epoch']['mean']:.0f}), random "
            f"{rand['test_accuracy']['mean']:.4f} +- {rand['test_accuracy']['std']:.4f} "
            f"(stop epoch {rand['stop_epoch']['mean']:.0f})"
        )
    print(f"wrote {out}/results.json, stacked_denoising.{cfg.format}")
    return results


def _layers_stats(per_seed: list[list[float]]) -> list[dict[str, Any]]:
    """Per layer, the mean/std/per-seed of a quantity given as per_seed[seed][layer]."""
    return [_stats([float(s[k]) for s in per_seed]) for k in range(len(per_seed[0]))]


def _plot(path: Path, cfg: Config, runs: dict[tuple[float, str], list[dict[str, Any]]]) -> None:
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.38
    colors = {"pretrained": "tab:blue", "random": "tab:orange"}
    for j, arm in enumerate(ARMS):
        for i, fraction in enumerate(cfg.label_fractions):
            acc = [r["test_accuracy"] for r in runs[(fraction, arm)]]
            x = i + (j - 0.5) * width
            bars.bar(
                x,
                np.mean(acc),
                width,
                yerr=np.std(acc),
                color=colors[arm],
                label=arm if i == 0 else None,
                capsize=4,
            )
            bars.scatter(np.full(len(acc), x), acc, color="k", s=8, zorder=3)
            history = runs[(fraction, arm)][0]["history"]
            curves.plot(
                history["step"],
                history["val_accuracy"],
                color=colors[arm],
                linestyle="-" if fraction == max(cfg.label_fractions) else "--",
                label=f"{arm}, {fraction:.0%} labels",
            )
    bars.set_xticks(range(len(cfg.label_fractions)))
    bars.set_xticklabels([f"{f:.0%} labels" for f in cfg.label_fractions])
    chance = 1 / NUM_CLASSES  # the bars start at chance, not at the lowest bar
    bars.set_ylim(chance, 1.0)
    bars.set_ylabel(f"test accuracy (axis from chance, {chance:g}); dots: seeds")
    bars.set_title(f"{'-'.join(map(str, cfg.hidden))} + softmax, {cfg.seeds} seeds")
    bars.legend(loc="upper left")
    curves.set_xlabel("fine-tuning step")
    curves.set_ylabel("validation accuracy")
    curves.set_title("fine-tuning, seed 0")
    curves.legend(fontsize=8, loc="lower right")
    fig.suptitle("Stacked denoising pre-training against random initialisation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    cli.run(main)
