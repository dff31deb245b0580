"""The command line of `experiments.lr_search`: its `Config`, flags and checks, with no heavy
import (``--help`` and a bad flag answer before JAX loads).

Learning-rate search: many training runs of an MLP or a CNN on digits or MNIST-1D as one
compiled program.
"""

from __future__ import annotations

import dataclasses
import math

from experiments import estimates
from experiments.cli import (
    DATA_SHAPES,
    DIGITS_TRAIN_EXAMPLES,
    MNIST1D_TRAIN_EXAMPLES,
    OPTIMIZER_NAMES,
    Parser,
    cnn_network,
    coordinator,
    hidden_sizes,
    joined,
)

DOC = (
    "Learning-rate search: many training runs of an MLP or a CNN on digits or MNIST-1D as one "
    "compiled program."
)

PROG = "python -m experiments.lr_search"
GOOD = 1.25  # the good range: mean best validation loss <= GOOD x the best one
OPTIMIZERS = tuple(sorted(OPTIMIZER_NAMES))
NUM_CLASSES = 10  # of both data sets
TRAIN_EXAMPLES = {"digits": DIGITS_TRAIN_EXAMPLES, "mnist1d": MNIST1D_TRAIN_EXAMPLES}
FEATURES = {data: math.prod(shape) for data, shape in DATA_SHAPES.items()}  # flat inputs
MODELS = ("mlp", "cnn")
CHANNELS = 32  # the CNN's channels per convolution when --channels is not given
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


SCHEDULERS = ("grid", "random", "halving", "asha", "pbt")
NEEDS_TWO = ("halving", "asha", "pbt")  # they compare slots


def check_scheduler(kind: str, num_lrs: int, steps: int, every: int) -> str | None:
    """What is wrong with this combination of flags, in one line, or None."""
    rungs = max(1, math.ceil(math.log2(max(num_lrs, 1)) - 1e-9))
    unit = {"halving": rungs * every, "asha": every, "pbt": 5 * every}.get(kind, 1)
    if kind in NEEDS_TWO and num_lrs < 2:
        return f"--scheduler {kind} compares slots: it needs --num-lrs >= 2, got {num_lrs}"
    if steps % unit:
        return f"--scheduler {kind} needs --steps a multiple of {unit} (whole chunks), got {steps}"
    return None


def eval_period(steps: int) -> int:
    """Steps between two evaluations: a twentieth of the run."""
    return max(1, steps // 20)


@dataclasses.dataclass(frozen=True)
class Config:
    """The search: data, model, optimizer, log grid of learning rates, seeds, training and
    devices. ``hidden`` is the MLP's hidden layers, or the CNN's dense head's (none unless
    given); ``channels`` is the CNN's channels per convolution (None with the MLP)."""

    optimizer: str = "adam"
    lr_min: float = 1e-4
    lr_max: float = 1.0
    num_lrs: int = 16
    seeds: int = 1
    steps: int = 1000
    batch_size: int = 128
    hidden: tuple[int, ...] = (128, 128)
    data: str = "digits"
    model: str = "mlp"
    channels: int | None = None
    patience: int = 200  # in optimizer steps
    standardize: bool = False
    devices: int | None = None  # None: every device
    out: str = "runs/lr_search"
    checkpoint_dir: str | None = None
    export_best: str | None = None
    tensorboard: str | None = None
    overwrite: bool = False
    format: str = "png"  # of the figures
    distributed: bool = False
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    scheduler: str = "grid"
    budget: int | None = None  # member-steps; None: num_lrs x seeds x steps
    join_timeout: int = 300  # seconds
    memory_budget: str | None = None  # MiB, or "auto"
    no_compile_cache: bool = False


def parse_args(argv: list[str] | None = None) -> Config:
    """The `Config` from command-line arguments; bad input exits with status 2 and one line."""
    d = Config()
    p = Parser(prog=PROG, doc=DOC)
    p.add_argument("--optimizer", default=d.optimizer, help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr-min", type=float, default=d.lr_min, help="smallest learning rate")
    p.add_argument("--lr-max", type=float, default=d.lr_max, help="largest learning rate")
    p.add_argument("--num-lrs", type=int, default=d.num_lrs, help="learning rates (log grid)")
    p.add_argument("--seeds", type=int, default=d.seeds, help="seeds per learning rate")
    p.add_argument(
        "--steps", type=int, default=None, help=f"steps per member ({d.steps}; or from --budget)"
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per step")
    p.add_argument(
        "--data", default=d.data, choices=tuple(TRAIN_EXAMPLES), help="the data set to train on"
    )
    p.add_argument(
        "--model",
        default=d.model,
        choices=MODELS,
        help="an MLP, or the CNN of experiments.weight_sharing (1-D on mnist1d, 2-D on digits)",
    )
    p.add_argument(
        "--hidden",
        type=hidden_sizes,
        default=None,
        help=f"hidden layer sizes: the MLP's ({joined(d.hidden)}), or the CNN head's (none)",
    )
    p.add_argument(
        "--channels",
        type=int,
        default=None,
        help=f"channels of each of the CNN's 3 convolutions ({CHANNELS}; --model cnn only)",
    )
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping, in steps")
    p.add_argument(
        "--standardize", action="store_true", help="standardize inputs (training statistics)"
    )
    p.add_argument(
        "--devices",
        type=int,
        default=d.devices,
        help=(
            "devices to shard the members over; None: all (on a CPU host, one per core); with "
            "--distributed: this process's CPU devices, and the search uses every process's"
        ),
    )
    p.add_output_arguments(d.out)
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        help="save the search after every chunk; the same command resumes from it",
    )
    p.add_argument(
        "--tensorboard",
        default=None,
        help="write every member's curves and the hyper-parameters to this TensorBoard folder",
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
    p.add_argument(
        "--coordinator", type=coordinator, default=None, help="HOST:PORT of process 0 (multi-host)"
    )
    p.add_argument("--num-processes", type=int, default=None, help="processes (multi-host)")
    p.add_argument("--process-id", type=int, default=None, help="this process (multi-host)")
    p.add_argument(
        "--scheduler", default=d.scheduler, help=f"how the slots are used: {', '.join(SCHEDULERS)}"
    )
    p.add_argument(
        "--budget", type=int, default=None, help="member-steps in all (not with grid or --steps)"
    )
    p.add_argument(
        "--join-timeout",
        type=int,
        default=d.join_timeout,
        help="seconds to wait for the other processes (multi-host)",
    )
    p.add_argument(
        "--memory-budget",
        default=None,
        help="train in slices of members that fit this many MiB (auto: the devices' memory)",
    )
    p.add_allow_long_argument()
    p.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (~/.cache/jdl/jax)",
    )
    a = p.parse_args(argv)
    if a.memory_budget is not None:
        if a.memory_budget != "auto":
            try:
                budget = float(a.memory_budget)
            except ValueError:
                budget = math.nan
            if not (math.isfinite(budget) and budget > 0):
                p.error(
                    "--memory-budget must be a positive number of MiB or auto, got "
                    f"{a.memory_budget!r}"
                )
        if a.scheduler not in ("grid", "random"):
            p.error(
                "--memory-budget slices a grid or random search, not --scheduler " + a.scheduler
            )
    if a.scheduler not in SCHEDULERS:
        p.error(f"unknown scheduler {a.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    if a.budget is not None:
        if a.scheduler == "grid":
            p.error("--budget applies to --scheduler random, halving, asha or pbt, not grid")
        if a.steps is not None:
            p.error("give --steps or --budget, not both (steps = budget / (num_lrs x seeds))")
        p.require_positive_ints(a, "budget", "num_lrs", "seeds")
        a.steps = a.budget // (a.num_lrs * a.seeds)
        if a.steps < 1:
            p.error(f"--budget {a.budget} is less than one step for each of the members")
    elif a.steps is None:
        a.steps = d.steps
    if a.optimizer not in OPTIMIZERS:
        p.error(f"unknown optimizer {a.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    p.require_positive_numbers(a, "lr_min", "lr_max")
    p.require_ordered(a, "lr_min", "lr_max")
    p.require_positive_ints(a, "num_lrs", "seeds", "steps", "batch_size", "patience")
    p.require_batch_size(a.batch_size, TRAIN_EXAMPLES[a.data])
    if a.model == "mlp":
        if a.channels is not None:
            p.error("--channels sets the CNN's convolutions: it needs --model cnn")
        a.hidden = d.hidden if a.hidden is None else a.hidden
    else:
        a.hidden = () if a.hidden is None else a.hidden
        a.channels = CHANNELS if a.channels is None else a.channels
        p.require_positive_ints(a, "channels")
    wrong = check_scheduler(a.scheduler, a.num_lrs, a.steps, eval_period(a.steps))
    if wrong is not None:
        p.error(wrong)
    if a.devices is not None:
        p.require_positive_ints(a, "devices")
    members = a.num_lrs * a.seeds
    sliced = a.memory_budget is not None or a.distributed  # in slices, or over several hosts
    if a.model == "mlp":
        network = estimates.dense((FEATURES[a.data], *a.hidden, NUM_CLASSES))
    else:
        network = cnn_network(a.data, a.channels, (*a.hidden, NUM_CLASSES))
    cost = estimates.training(
        members,
        a.steps,
        network,
        a.batch_size,
        eval_every=eval_period(a.steps),
        at_once=1 if sliced else members,
    )
    flags = ("num_lrs", "seeds", "steps", "hidden", "batch_size")
    p.require_feasible(a, cost, *flags, *(("channels",) if a.model == "cnn" else ()))
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
    p.require_positive_ints(a, "join_timeout")
    return Config(**{f.name: getattr(a, f.name) for f in dataclasses.fields(Config)})
