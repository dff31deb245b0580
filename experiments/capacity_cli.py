"""The capacity study's configuration and flags, shared with `experiments.regularization`.

Apart from `experiments.capacity` so that both experiments parse their command line, and answer
``--help`` or a bad flag, before JAX is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from experiments import estimates
from experiments.cli import DIGITS_FEATURES, Parser, hidden_sizes, joined

NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Config:
    """Data size, optimizer, training length, seeds and the widths of the sweep."""

    train_size: int = 200
    steps: int = 1500
    batch_size: int = 50
    learning_rate: float = 1e-2
    eval_every: int = 50
    seeds: int = 5
    widths: tuple[int, ...] = (1, 2, 4, 8, 12, 16, 32, 128, 512)
    data_seed: int = 0
    # Fraction of training labels replaced by another class: with clean labels the validation
    # loss barely rises past the best width (0.227 at 16, 0.235 at 32, 0.222 at 128, 0.221 at 512).
    label_noise: float = 0.2
    folds: int = 0  # experiments.capacity only: k-fold cross-validation on the subset (0: off)
    out: str = "runs/capacity"
    overwrite: bool = False
    format: str = "png"  # of the figures


def add_arguments(p: Parser, d: Config) -> None:
    """The flags of `Config`'s fields, with ``d``'s defaults."""
    helps = {
        "train_size": "training examples (a stratified subset)",
        "steps": "optimizer steps per run",
        "batch_size": "examples per step",
        "eval_every": "steps between evaluations",
        "seeds": "seeds per configuration (>= 2)",
        "data_seed": "seed of the data split and subset",
    }
    for name, text in helps.items():
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name), help=text)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="Adam's")
    p.add_argument(
        "--label-noise",
        type=float,
        default=d.label_noise,
        help="fraction of training labels replaced by another class, in [0, 1)",
    )
    p.add_argument("--widths", type=hidden_sizes, default=joined(d.widths), help="hidden widths")
    p.add_allow_long_argument()
    p.add_output_arguments(d.out)


def check_arguments(p: Parser, a: Any) -> None:
    """Exits with status 2 and one line on a bad value of a `Config` field."""
    p.require_positive_ints(a, "train_size", "steps", "batch_size", "eval_every", "seeds")
    p.require_positive_numbers(a, "learning_rate")
    if a.seeds < 2:
        p.error("--seeds must be >= 2 (the spread over seeds is reported)")
    p.require_batch_size(a.batch_size, a.train_size, "examples of --train-size")
    p.require_counts(a, "data_seed")
    if not 0 <= a.label_noise < 1:
        p.error(f"--label-noise must be in [0, 1), got {a.label_noise}")
    p.require_output(a)


def sweep(a: Any, members: int) -> estimates.Cost:
    """The estimate of the sweep over ``--widths``: one search of ``members`` MLPs per width,
    all compiled at the largest width (width by masking)."""
    mlp = estimates.dense((DIGITS_FEATURES, max(a.widths), NUM_CLASSES))
    runs = members * len(a.widths)
    return estimates.training(runs, a.steps, mlp, a.batch_size, eval_every=a.eval_every)
