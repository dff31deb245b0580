"""The experiments' command lines: one-line errors with exit status 2, and the checks they share.

Each experiment builds a `Parser`, reads comma-separated lists with `hidden_sizes`, `numbers`
or `positive_numbers`, and checks the parsed values with the parser's ``require_*`` methods,
so that every bad flag ends the same way: ``PROG: error: MESSAGE`` on one line of stderr and
exit status 2, before any computation. This module imports nothing heavy: an experiment parses
its command line before it imports JAX, so ``--help`` and a mistyped flag answer at once.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from experiments import estimates

INT32_MAX = 2**31 - 1  # step counters and sizes are int32 inside the compiled programs
FLOAT32_TINY = 2.0**-126  # the smallest normal float32; XLA on CPU flushes smaller ones to 0
DIGITS_TRAIN_EXAMPLES = 1077  # len(jdl.data.digits().train), for checks before JAX; tested
DIGITS_FEATURES = 64  # jdl.data.digits()'s inputs: 8 x 8 pixels; tested
MNIST1D_TRAIN_EXAMPLES = 3600  # len(jdl.data.mnist1d().train): 90% of the 4000 reference signals
# Per data set, an example's shape (positions..., channels): signals of 40 positions, 8 x 8
# images; `jdl.data` gives them flat. The experiments' CNN (`experiments.classifiers.cnn`):
# three stride-2 convolutions with padding 1, and each one's kernel size per data set.
DATA_SHAPES = {"mnist1d": (40, 1), "digits": (8, 8, 1)}
CNN_KERNELS = {"mnist1d": (5, 3, 3), "digits": (3, 3, 3)}
FORMATS = ("png", "svg", "pdf")
# jdl.optim.OPTIMIZERS's names in its order, so that --help needs no JAX; a test keeps them equal.
OPTIMIZER_NAMES = (
    "sgd",
    "momentum",
    "nesterov",
    "adagrad",
    "adadelta",
    "adam",
    "adamax",
    "nadam",
    "amsgrad",
    "adamw",
    "qhm",
    "qhadam",
    "aggmo",
)


def flag(name: str) -> str:
    """The flag of an argparse destination: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def summary(doc: str | None) -> str:
    """The first paragraph of a docstring on one line: the whole sentence, never cut."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def _float32(value: float) -> float:
    """``value`` rounded to float32 (inf where it overflows)."""
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit status 2, with shared checks.

    ``--help`` shows every flag with its default; `add_argument` requires a ``help`` text.
    """

    def __init__(self, prog: str, doc: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(prog=prog, description=summary(doc) or None, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if not kwargs.get("help") and kwargs.get("action") not in ("help", "version"):
            raise TypeError(f"{args[0]}: every flag needs a one-line help text")
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """`argparse.ArgumentParser.parse_args`, then the environment: ``JDL_XLA_DEFAULTS``
        (`jdl.search.compiled.compiler_options`) must be 1, 0 or unset."""
        parsed = super().parse_args(*args, **kwargs)
        setting = os.environ.get("JDL_XLA_DEFAULTS", "").strip()
        if setting not in ("", "0", "1"):
            self.error(f"$JDL_XLA_DEFAULTS must be 1 or 0 (or unset), got {setting!r}")
        return parsed

    def require_positive_ints(self, args: argparse.Namespace, *names: str) -> None:
        """Exits with an error unless every ``args.NAME`` is an int in [1, 2**31 - 1]."""
        self.require_counts(args, *names, minimum=1)

    def require_counts(self, args: argparse.Namespace, *names: str, minimum: int = 0) -> None:
        """Exits with an error unless every ``args.NAME`` is an int in [minimum, 2**31 - 1]."""
        for name in names:
            value = getattr(args, name)
            if not minimum <= value <= INT32_MAX:
                if minimum == 1:
                    self.error(
                        f"{flag(name)} must be a positive int (at most {INT32_MAX}), got {value}"
                    )
                self.error(f"{flag(name)} must be an int in [{minimum}, {INT32_MAX}], got {value}")

    def require_positive_numbers(self, args: argparse.Namespace, *names: str) -> None:
        """Exits with an error unless every ``args.NAME`` is > 0 and finite, also in float32
        (the precision of the compiled programs: 1e-50 would silently become 0)."""
        for name in names:
            value = getattr(args, name)
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                if not (math.isfinite(v) and v > 0):
                    self.error(f"{flag(name)} must be a finite number > 0, got {v}")
                if v < FLOAT32_TINY or not math.isfinite(_float32(v)):
                    self.error(
                        f"{flag(name)} {v} is not a normal float32 number (the precision of the "
                        "computation); use a value in [1.2e-38, 3.4e38]"
                    )

    def require_ordered(self, args: argparse.Namespace, low: str, high: str) -> None:
        """Exits with an error if ``args.LOW > args.HIGH`` (the two ends of a range)."""
        if getattr(args, low) > getattr(args, high):
            self.error(
                f"{flag(low)} ({getattr(args, low)}) must not exceed {flag(high)} "
                f"({getattr(args, high)})"
            )

    def require_batch_size(
        self, batch_size: int, examples: int, what: str = "training examples"
    ) -> None:
        """Exits with an error if a batch is larger than the data it is drawn from."""
        if batch_size > examples:
            self.error(f"--batch-size {batch_size} exceeds the {examples} {what}")

    def add_allow_long_argument(self) -> None:
        """``--allow-long``: lifts `require_feasible`'s refusal of a run estimated to take more
        than a day."""
        self.add_argument(
            "--allow-long",
            action="store_true",
            help=(
                f"run even if estimated at more than {estimates.duration(estimates.TIME_LIMIT)} "
                f"at {estimates.RATE} (otherwise refused)"
            ),
        )

    def require_feasible(self, args: argparse.Namespace, cost: estimates.Cost, *names: str) -> None:
        """Exits with an error if the run that ``cost`` estimates (a low estimate, from the
        flags ``names``, which the message shows) needs more than half the machine's physical
        memory or, without ``--allow-long``, more than a day at `estimates.FLOP_RATE`.

        Removes ``args.allow_long``, which concerns the command line, not the run's
        configuration; an experiment whose runs cannot be long (its estimate has no FLOPs)
        does not add the flag."""
        allow_long = vars(args).pop("allow_long", False)
        shown = [f"{flag(n)} ({_shown(getattr(args, n))})" for n in names]
        flags = ", ".join(shown[:-1]) + f" or {shown[-1]}" if len(shown) > 1 else shown[0]
        physical = estimates.physical_memory()
        if cost.memory > estimates.MEMORY_FRACTION * physical:
            self.error(
                f"this run needs at least {estimates.size(cost.memory)} of memory (estimated "
                f"from its flags), more than {estimates.MEMORY_FRACTION:.0%} of this machine's "
                f"{estimates.size(physical)}; reduce {flags}"
            )
        if cost.seconds > estimates.TIME_LIMIT and not allow_long:
            self.error(
                f"this run needs at least {estimates.duration(cost.seconds)} ({cost.flops:.1e} "
                f"FLOPs at {estimates.RATE}, estimated from its flags), more than "
                f"{estimates.duration(estimates.TIME_LIMIT)}; reduce {flags}, or pass "
                "--allow-long to run it anyway"
            )

    def add_checkpoint_argument(self) -> None:
        """``--checkpoint-dir``: each run of the experiment saves its state there between chunks
        (one sub-folder per run); the same command again resumes where it stopped."""
        self.add_argument(
            "--checkpoint-dir",
            default=None,
            help="save every run between chunks; the same command again resumes from there",
        )

    def add_output_arguments(self, default_out: str) -> None:
        """``--out``, ``--overwrite`` and ``--format``, checked by `require_output`."""
        self.add_argument("--out", default=default_out, help="folder for the results and figures")
        self.add_argument(
            "--overwrite",
            action="store_true",
            help="replace the files of a previous run in --out (otherwise refused)",
        )
        self.add_argument(
            "--format", default="png", choices=FORMATS, help="file format of the figures"
        )

    def require_output(self, args: argparse.Namespace) -> None:
        """Exits with an error unless ``args.out`` can receive a new set of files: not empty,
        not a file, writable, and not holding a previous run's files unless ``--overwrite``."""
        text = args.out
        if not text.strip():
            self.error("--out must name a folder, got an empty string")
        out = Path(text)
        if out.exists() and not out.is_dir():
            self.error(f"--out {text} exists and is not a folder")
        if out.is_dir() and any(out.iterdir()) and not args.overwrite:
            self.error(
                f"--out {text} already holds files (of a previous run?); "
                "pass --overwrite to replace them, or choose another --out"
            )
        parent = out.absolute().parent  # the files are written next to --out, then moved
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            self.error(f"--out {text} cannot be written: {parent} is not a writable folder")


def _exit_130(signum: int, frame: Any) -> None:
    # At once: an exception raised from a signal handler can land where it is swallowed (a
    # garbage-collection callback) or half-way through an extension's initialisation, and
    # nothing is open yet that needs closing.
    os.write(2, b"interrupted: nothing written\n")
    os._exit(130)


def _exit_130_done(signum: int, frame: Any) -> None:
    os._exit(130)


def parsed(parse_args: Callable[[], Any]) -> None:
    """Parses an experiment's command line (``--help`` and bad flags end here, before JAX is
    imported); a Ctrl-C during the imports that follow exits with status 130 and one line."""
    parse_args()
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _exit_130)


def run(main: Callable[[], Any]) -> None:
    """Runs an experiment's ``main``; a Ctrl-C that reaches here exits with status 130 and one
    line (the files of a previous run are untouched: nothing was moved into ``--out``)."""
    if signal.getsignal(signal.SIGINT) is _exit_130:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as the search expects
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        sys.exit(130)
    # The files are written; a Ctrl-C while the interpreter shuts down still exits 130.
    signal.signal(signal.SIGINT, _exit_130_done)


def checkpoint_folder(root: str | None, run: str) -> str | None:
    """The checkpoint folder of one run of an experiment under ``--checkpoint-dir`` (None:
    no checkpoints)."""
    return None if root is None else os.path.join(root, run)


def cnn_network(data: str, channels: int, head: tuple[int, ...]) -> estimates.Network:
    """`estimates.convolutions` of the experiments' CNN on ``data`` with ``channels`` channels
    and the dense head ``head`` (its output included)."""
    shape = DATA_SHAPES[data]
    spatial, taps, positions = shape[:-1], [], []
    for k in CNN_KERNELS[data]:
        spatial = tuple((n + 2 - k) // 2 + 1 for n in spatial)  # stride 2, padding 1
        taps.append(k ** len(spatial))
        positions.append(math.prod(spatial))
    return estimates.convolutions(math.prod(shape), taps, positions, channels, head)


def _shown(value: Any) -> str:
    """A flag's value as it would be typed, or the number of values of a long list."""
    if not isinstance(value, tuple):
        return str(value)
    return joined(value) if len(value) <= 4 else f"{len(value)} values"


def joined(values: tuple[float, ...]) -> str:
    """A tuple default as the flag would be typed: ``(128, 128)`` -> ``"128,128"``."""
    return ",".join(str(v) for v in values)


def hidden_sizes(text: str) -> tuple[int, ...]:
    """Comma-separated positive layer sizes, such as ``128,128`` -> ``(128, 128)``."""
    try:
        sizes = tuple(int(t) for t in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or any(not 1 <= n <= INT32_MAX for n in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive ints such as 128,128, got {text!r}"
        )
    return sizes


def numbers(text: str) -> tuple[float, ...]:
    """Comma-separated finite numbers, such as ``0.25,0.5`` -> ``(0.25, 0.5)``."""
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.1,1, got {text!r}"
        )
    return values


def positive_numbers(text: str) -> tuple[float, ...]:
    """Comma-separated finite numbers > 0, such as ``1e-3,1e-2`` -> ``(0.001, 0.01)``."""
    values = numbers(text)
    if not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"values must be positive numbers, got {text!r}")
    return values


def coordinator(text: str) -> str:
    """A coordinator address ``HOST:PORT`` (``[v6]:PORT`` for IPv6), port in [1, 65535]; the
    check of `jdl.search.distributed.parse_coordinator`, here without importing JAX."""
    host, _, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
    plain = host and not any(c in host for c in ":[] \t")
    if not (bracketed or plain) or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT with a port in [1, 65535], such as 127.0.0.1:1234, got {text!r}"
        )
    return text
