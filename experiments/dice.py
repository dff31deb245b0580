"""Class imbalance in segmentation: pixel-wise cross-entropy against the Dice loss.

    python -m experiments.dice [--size 16] [--train-size 512] [--test-size 256] [--steps 400]
        [--batch-size 64] [--learning-rate 0.01] [--channels 8] [--contrast 1.0]
        [--seed 0] [--out runs/dice] [--overwrite] [--format png]

A synthetic segmentation problem: ``size`` x ``size`` images, each with one small disk of
foreground (radius 1.2 to 2.2 pixels: about 2-6% of the pixels) brighter by ``--contrast``,
under unit Gaussian pixel noise. A tiny convolutional model (3x3 convolution to ``channels``
ReLU maps, then a 3x3 convolution to one logit per pixel) is trained twice from the same
initial parameters and batches, with Adam, in one compiled program (``vmap`` over the loss's
mixing weight w in L = w CE + (1 - w) (1 - D), w = 1 and w = 0), with

    CE = -(1/P) sum_i [y_i log p_i + (1 - y_i) log(1 - p_i)],
    D = 2 sum_i p_i y_i / (sum_i p_i + sum_i y_i)        (the course's Dice, per image).

The cross-entropy is dominated by the many background pixels, so its model predicts mostly
background (p_i < 0.5 on most foreground pixels); the Dice loss ignores true negatives and
recovers the foreground. On the test images, with the prediction p_i > 0.5, both models
report the Dice score 2 TP / (2 TP + FP + FN) and the recall TP / (TP + FN) over all pixels.

Writes into ``--out``: ``dice.png`` (test images, true masks and both models' predictions, and
the training curves) and ``results.json`` with ``config``, ``foreground_fraction``, per model
(``cross_entropy``, ``dice``) ``dice_score``, ``recall``, ``precision`` and
``predicted_foreground_fraction``, the training ``curves`` and ``time_s``.

Reference: F. Milletari, N. Navab, S.-A. Ahmadi, V-Net, 3DV 2016, arXiv:1606.04797.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from experiments import cli, estimates
from experiments.cli import Parser

PROG = "python -m experiments.dice"
MODELS = ("cross_entropy", "dice")  # the loss's mixing weight w = 1, 0


@dataclasses.dataclass(frozen=True)
class Config:
    """The synthetic images, the model and its training."""

    size: int = 16
    train_size: int = 512
    test_size: int = 256
    steps: int = 400
    batch_size: int = 64
    learning_rate: float = 0.01
    channels: int = 8
    contrast: float = 1.0
    seed: int = 0
    out: str = "runs/dice"
    overwrite: bool = False
    format: str = "png"  # of the figure


HELP = {
    "size": "image side in pixels (>= 8)",
    "train_size": "training images",
    "test_size": "test images",
    "steps": "Adam steps of each model",
    "batch_size": "images per mini-batch",
    "learning_rate": "Adam's learning rate",
    "channels": "feature maps of the hidden convolution",
    "contrast": "how much brighter the foreground disk is than the background",
    "seed": "seed of the images and the initial parameters",
}


def parse_args(argv: list[str] | None = None) -> Config:
    """The `Config` from command-line arguments; bad input exits with status 2 and one line."""
    d = Config()
    p = Parser(prog=PROG, doc=__doc__)
    for name, text in HELP.items():
        value = getattr(d, name)
        p.add_argument(cli.flag(name), type=type(value), default=value, help=text)
    p.add_allow_long_argument()
    p.add_output_arguments(d.out)
    args = p.parse_args(argv)
    p.require_counts(args, "train_size", "test_size", "steps", "batch_size", "channels", minimum=1)
    p.require_positive_numbers(args, "learning_rate", "contrast")
    if args.size < 8:
        p.error(f"--size must be at least 8 pixels, got {args.size}")
    p.require_batch_size(args.batch_size, args.train_size, "training images (--train-size)")
    p.require_feasible(
        args, cost(args), "size", "train_size", "test_size", "steps", "batch_size", "channels"
    )
    p.require_output(args)
    return Config(**vars(args))


def network(size: int, channels: int) -> estimates.Network:
    """The model of `logits_fn` on ``size`` x ``size`` images, for the estimate: two 3x3
    convolutions, 1 -> ``channels`` -> 1 maps."""
    pixels, c = size**2, channels
    return estimates.Network(
        parameters=9 * c + c + 9 * c + 1,
        units=pixels * (c + 2),
        flops=estimates.step_flops([2 * pixels * 9 * c, 2 * pixels * 9 * c]),
    )


def cost(a: argparse.Namespace) -> estimates.Cost:
    """The estimate of the run: both models side by side on the images and masks, with every
    step's batch indices drawn in advance and every step's loss kept."""
    images = 2 * (a.train_size + a.test_size) * a.size**2  # and their masks
    data = (images + a.steps * (a.batch_size + 2)) * 4
    model = network(a.size, a.channels)
    return estimates.training(len(MODELS), a.steps, model, a.batch_size, data=data)


if __name__ == "__main__":
    cli.parsed(parse_args)  # --help and bad flags answer before JAX is imported below

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

from experiments import output
from jdl.losses import binary_cross_entropy_with_logits, dice_loss

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def make_images(
    rng: np.random.Generator, n: int, size: int, contrast: float
) -> tuple[np.ndarray, np.ndarray]:
    """n noisy images (n, size, size, 1), one bright disk each, and their masks (n, size, size)."""
    centre = rng.uniform(2.5, size - 3.5, (n, 2, 1, 1))
    radius = rng.uniform(1.2, 2.2, (n, 1, 1))
    rows, cols = np.mgrid[:size, :size]
    masks = (rows - centre[:, 0]) ** 2 + (cols - centre[:, 1]) ** 2 <= radius**2
    images = contrast * masks + rng.standard_normal((n, size, size))
    return images[..., None].astype(np.float32), masks.astype(np.float32)


def init_params(key: jax.Array, channels: int) -> dict[str, jax.Array]:
    """He-initialised 3x3 kernels (HWIO) and zero biases."""
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (3, 3, 1, channels)) * jnp.sqrt(2.0 / 9),
        "b1": jnp.zeros(channels),
        "w2": jax.random.normal(k2, (3, 3, channels, 1)) * jnp.sqrt(2.0 / (9 * channels)),
        "b2": jnp.zeros(1),
    }


def logits_fn(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """Per-pixel logits (n, size, size) of images x (n, size, size, 1)."""

    def conv(z: jax.Array, w: jax.Array) -> jax.Array:
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(z, w, (1, 1), "SAME", dimension_numbers=dims)

    h = jax.nn.relu(conv(x, params["w1"]) + params["b1"].reshape(1, 1, 1, -1))
    return conv(h, params["w2"])[..., 0] + params["b2"][0]


def loss_fn(params: dict[str, jax.Array], x: jax.Array, y: jax.Array, w: jax.Array) -> jax.Array:
    """w CE + (1 - w) (1 - D): w = 1 is the pixel-wise cross-entropy, w = 0 the Dice loss."""
    logits = logits_fn(params, x)
    ce = binary_cross_entropy_with_logits(logits, y)
    return w * ce + (1.0 - w) * dice_loss(jax.nn.sigmoid(logits), y)


def train(cfg: Config, train_x: np.ndarray, train_y: np.ndarray):
    """Both models from the same initial parameters and batches: vmap over w of a scan."""
    key = jax.random.key(cfg.seed)
    init_key, data_key = jax.random.split(key)
    tx = optax.adam(cfg.learning_rate)
    batches = jax.vmap(
        lambda k: jax.random.choice(k, cfg.train_size, (cfg.batch_size,), replace=False)
    )(jax.random.split(data_key, cfg.steps))
    x, y = jnp.asarray(train_x), jnp.asarray(train_y)

    def run(w: jax.Array):
        params = init_params(init_key, cfg.channels)

        def step(carry, idx):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, x[idx], y[idx], w)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), batches)
        return params, losses

    return jax.jit(jax.vmap(run))(jnp.array([1.0, 0.0]))


def scores(pred: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Hard Dice score, recall and precision over all pixels, and the predicted fraction."""
    tp = float(np.sum(pred * mask))
    fp, fn = float(np.sum(pred * (1 - mask))), float(np.sum((1 - pred) * mask))
    return {
        "dice_score": 2 * tp / max(2 * tp + fp + fn, 1.0),
        "recall": tp / max(tp + fn, 1.0),
        "precision": tp / max(tp + fp, 1.0),
        "predicted_foreground_fraction": float(np.mean(pred)),
    }


def _plot(x, mask, preds, losses, path: Path, shown: int = 4) -> None:
    fig, axes = plt.subplots(4, shown + 1, figsize=(2.2 * (shown + 1), 8.4), layout="constrained")
    rows = [("image", x[..., 0]), ("true mask", mask)]
    rows += [(f"{m} p>0.5", preds[i]) for i, m in enumerate(MODELS)]
    for r, (label, images) in enumerate(rows):
        for c in range(shown):
            axes[r, c].imshow(images[c], cmap="gray")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label)
    for r in range(4):
        axes[r, shown].remove()
    curves = fig.add_subplot(axes[0, 0].get_gridspec()[1:3, shown])
    for i, m in enumerate(MODELS):
        curves.plot(losses[i], label=f"{m} loss")
    curves.set_xlabel("step")
    curves.set_yscale("log")
    curves.legend(fontsize=8)
    curves.set_title("training loss")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Trains both models, writes ``dice.png`` and ``results.json``; returns the results."""
    cfg = parse_args(argv)
    start = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    train_x, train_y = make_images(rng, cfg.train_size, cfg.size, cfg.contrast)
    test_x, test_y = make_images(rng, cfg.test_size, cfg.size, cfg.contrast)
    params, losses = train(cfg, train_x, train_y)
    probs = jax.vmap(lambda p: jax.nn.sigmoid(logits_fn(p, jnp.asarray(test_x))))(params)
    preds = (np.asarray(probs) > 0.5).astype(np.float32)
    models = {m: scores(preds[i], test_y) for i, m in enumerate(MODELS)}
    losses = np.asarray(losses)
    results = {
        "config": dataclasses.asdict(cfg),
        "foreground_fraction": float(np.mean(test_y)),
        **models,
        "curves": {m: losses[i].tolist() for i, m in enumerate(MODELS)},
        "time_s": time.perf_counter() - start,
    }
    with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
        _plot(test_x, test_y, preds, losses, folder / f"dice.{cfg.format}")
        (folder / "results.json").write_text(json.dumps(results, indent=2))
    out = Path(cfg.out)
    print(f"foreground: {results['foreground_fraction']:.3f} of the test pixels")
    print(f"{'model':<15}{'Dice score':>12}{'recall':>10}{'precision':>11}{'predicted fg':>14}")
    for m in MODELS:
        s = models[m]
        print(
            f"{m:<15}{s['dice_score']:>12.3f}{s['recall']:>10.3f}{s['precision']:>11.3f}"
            f"{s['predicted_foreground_fraction']:>14.3f}"
        )
    print(f"wrote {out / 'results.json'} in {results['time_s']:.1f} s")
    return results


if __name__ == "__main__":
    cli.run(main)
