"""The experiments' command lines: one-line errors with exit status 2, and the checks they share.

Each experiment builds a `Parser`, reads comma-separated lists with `hidden_sizes`, `numbers`
or `positive_numbers`, and checks the parsed values with the parser's ``require_*`` methods,
so that every bad flag ends the same way: ``PROG: error: MESSAGE`` on one line of stderr and
exit status 2, before any computation.
"""

from __future__ import annotations

import argparse
import math
from typing import NoReturn


def _flag(name: str) -> str:
    """The flag of an argparse destination: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit status 2, with shared checks."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")

    def require_positive_ints(self, args: argparse.Namespace, *names: str) -> None:
        """Exits with an error unless every ``args.NAME`` is an int >= 1."""
        for name in names:
            value = getattr(args, name)
            if value < 1:
                self.error(f"{_flag(name)} must be a positive int, got {value}")

    def require_positive_numbers(self, args: argparse.Namespace, *names: str) -> None:
        """Exits with an error unless every ``args.NAME`` is a finite number > 0."""
        for name in names:
            value = getattr(args, name)
            if not (math.isfinite(value) and value > 0):
                self.error(f"{_flag(name)} must be a finite number > 0, got {value}")

    def require_ordered(self, args: argparse.Namespace, low: str, high: str) -> None:
        """Exits with an error if ``args.LOW > args.HIGH`` (the two ends of a range)."""
        if getattr(args, low) > getattr(args, high):
            self.error(
                f"{_flag(low)} ({getattr(args, low)}) must not exceed {_flag(high)} "
                f"({getattr(args, high)})"
            )


def hidden_sizes(text: str) -> tuple[int, ...]:
    """Comma-separated positive layer sizes, such as ``128,128`` -> ``(128, 128)``."""
    try:
        sizes = tuple(int(t) for t in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or any(n < 1 for n in sizes):
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
