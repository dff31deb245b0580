"""The regularization study's methods, grids and flags, parsed before JAX is imported.

Apart from `experiments.regularization` so that the study's definitions (which methods, which
coefficient each searches over, its grid) live in one place, and ``--help`` or a bad flag answer
before JAX is imported.
"""

from __future__ import annotations

import argparse
import dataclasses

from experiments import capacity_cli, cli, estimates
from experiments.cli import Parser, joined, positive_numbers

METHODS = (
    "none",
    "l2",
    "l1",
    "dropout",
    "gaussian_noise",
    "worst_of_k",
    "unconstrained_noise",
    "early_stopping",
    "jacobian",
    "output_penalty",
    "weight_jacobian",
    "weight_sharing",
)
# The coefficient each method searches over, as written in the table.
HYPERPARAMETER = {
    "none": None,
    "l2": "lambda in (lambda/2)||W||^2",
    "l1": "lambda in lambda ||W||_1",
    "dropout": "dropout rate p",
    "gaussian_noise": "sigma of x + N(0, sigma^2 I)",
    "worst_of_k": "sigma of the k Gaussian draws",
    "unconstrained_noise": "sigma of p in l(x + theta) + log p(theta), one ascent step",
    "early_stopping": "training steps (best validation loss, per run)",
    "jacobian": "lambda in lambda ||dy/dx||_F^2",
    "output_penalty": "lambda in lambda ||y||^2 (y: the logits)",
    "weight_jacobian": "lambda in lambda ||dy/dw||_F^2",
    "weight_sharing": "parameters of the CNN (3x3 kernels shared over positions)",
}
# The flag (Config field) of each searched method's grid.
GRID_FIELD = {
    "l2": "l2",
    "l1": "l1",
    "dropout": "dropout",
    "gaussian_noise": "sigma",
    "worst_of_k": "worst_sigma",
    "unconstrained_noise": "unconstrained_sigma",
    "jacobian": "jacobian",
    "output_penalty": "output",
    "weight_jacobian": "weight_jacobian",
}


@dataclasses.dataclass(frozen=True)
class Config(capacity_cli.Config):
    """The capacity study's training and sweep, the regularized model and the grids."""

    # The regularizers are compared on clean labels, with the capacity sweep of before.
    widths: tuple[int, ...] = (2, 8, 32, 128, 512)
    label_noise: float = 0.0
    hidden: int = 256
    l2: tuple[float, ...] = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
    l1: tuple[float, ...] = (1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)
    dropout: tuple[float, ...] = (0.1, 0.25, 0.5)
    sigma: tuple[float, ...] = (0.1, 0.2, 0.4)
    worst_sigma: tuple[float, ...] = (0.1, 0.2, 0.4)
    k: int = 4
    unconstrained_sigma: tuple[float, ...] = (0.1, 0.2, 0.4)
    jacobian: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    output: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
    weight_jacobian: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3)
    methods: tuple[str, ...] = METHODS
    out: str = "runs/regularization"


def _methods(text: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown methods {unknown}; choose from {METHODS}")
    return tuple(m for m in METHODS if m in names or m == "none")


def parse(prog: str, doc: str | None, argv: list[str] | None) -> Config:
    """The `Config` from command-line arguments; bad input exits with status 2 and one line."""
    d = Config()
    p = Parser(prog=prog, doc=doc)
    capacity_cli.add_arguments(p, d)
    p.add_argument("--hidden", type=int, default=d.hidden, help="width of the regularized MLP")
    p.add_argument("--k", type=int, default=d.k, help="draws of worst-of-k noise")
    grids = {
        "l2": "grid of the L2 penalty's lambda",
        "l1": "grid of the L1 penalty's lambda",
        "dropout": "grid of dropout rates, in (0, 1)",
        "sigma": "grid of the Gaussian noise's sigma",
        "worst_sigma": "grid of worst-of-k noise's sigma",
        "unconstrained_sigma": "grid of the adaptive-unconstrained noise's prior sigma",
        "jacobian": "grid of the Jacobian penalty's lambda",
        "output": "grid of the output penalty's lambda",
        "weight_jacobian": "grid of the dy/dw penalty's lambda",
    }
    for name, text in grids.items():
        p.add_argument(
            cli.flag(name), type=positive_numbers, default=joined(getattr(d, name)), help=text
        )
    p.add_argument(
        "--methods",
        type=_methods,
        default=joined(d.methods),
        help="comma-separated; none always runs",
    )
    args = p.parse_args(argv)
    capacity_cli.check_arguments(p, args)
    p.require_positive_numbers(args, *grids)
    p.require_positive_ints(args, "hidden", "k")
    if not all(v < 1 for v in args.dropout):
        p.error(f"--dropout rates must lie in (0, 1), got {args.dropout}")
    p.require_feasible(
        args, cost(args), "widths", "seeds", "steps", "batch_size", "hidden", "k", "methods"
    )
    return Config(**vars(args))


def cost(a: argparse.Namespace) -> estimates.Cost:
    """The estimate of the study: the capacity sweep, the unregularized runs, then each
    method's grid x seeds in turn (worst-of-k's on k draws of every example), and weight
    sharing's MLP (its CNN left out: a low estimate)."""
    mlp = estimates.dense((cli.DIGITS_FEATURES, a.hidden, capacity_cli.NUM_CLASSES))
    total = capacity_cli.sweep(a, a.seeds)
    for m in ("none", *(m for m in a.methods if m in GRID_FIELD)):
        runs = 1 if m == "none" else len(getattr(a, GRID_FIELD[m]))
        batch = a.batch_size * (a.k if m == "worst_of_k" else 1)
        search = estimates.training(a.seeds * runs, a.steps, mlp, batch, eval_every=a.eval_every)
        total = total.then(search)
    if "weight_sharing" in a.methods:  # the CNN, then the MLP of as many parameters (counted)
        same_size = estimates.dense((cli.DIGITS_FEATURES, 48, capacity_cli.NUM_CLASSES))
        total = total.then(estimates.training(a.seeds, a.steps, same_size, a.batch_size))
    return total
