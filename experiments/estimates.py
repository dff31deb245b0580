"""A low estimate of what a run needs, from its flags alone: memory, and time at a stated rate.

Each experiment estimates its run in plain arithmetic (`training` for a population trained by
the usual loop, `Cost` directly otherwise), and `experiments.cli.Parser.require_feasible`
refuses, with one line and exit status 2, a run that even so would not fit in memory or end
within a day. Each term is a low estimate, the least that the models and optimizers here
need, so that a refusal is not a false alarm:

- memory: each member trained holds 4 float32 copies of its parameters (the parameters, their
  gradients, the best parameters and one optimizer moment, where Adam keeps two), each unit's
  value and gradient for every example of a batch, and 8 bytes of history per evaluation (two
  float32 metrics); plus the data. The limit is half the machine's physical memory, the share
  `jdl.search.memory` gives a search on CPU devices.
- time: a training step computes, for each example of its batch, the matrix products of the
  forward pass, of the weight gradients and of the gradients of every layer's input but the
  first (as ``benchmarks.lr_search`` counts a member-step), at 1e12 FLOP/s, several times the
  fp32 matrix-product peak measured on a 2-core CPU; and each evaluation takes at least 100
  microseconds of the loop between compiled chunks (0.4 ms measured for ``jdl.fit`` with an
  MLP 64-4-10 on a 2-core CPU). The limit is one day; ``--allow-long`` lifts it.

Nothing here imports JAX: the estimate is made while the command line is read.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence

FLOAT_BYTES = 4  # float32
PARAMETER_COPIES = 4  # parameters, gradients, best parameters, one optimizer moment
ACTIVATION_COPIES = 2  # each unit's value and its gradient, per example of a batch
HISTORY_BYTES = 8  # kept per member and evaluation: the training and validation losses
FLOP_RATE = 1e12  # FLOP/s
RATE = f"{FLOP_RATE:.0e}".replace("e+", "e") + " FLOP/s"  # as the messages write it
EVAL_SECONDS = 1e-4  # the least time of one evaluation: a round trip through the driver loop
MEMORY_FRACTION = 0.5  # of the physical memory; jdl.search.memory.CPU_FRACTION, tested
TIME_LIMIT = 86400.0  # seconds: one day


@dataclasses.dataclass(frozen=True)
class Network:
    """What an estimate needs of a model: its parameters, the units (activations, the input
    included) of one example, and the FLOPs of one example's training step."""

    parameters: int
    units: int
    flops: int


def step_flops(layers: Sequence[int]) -> int:
    """The FLOPs of one example's training step from each layer's forward FLOPs f_l:
    forward, weight gradients and input gradients but the first layer's, 3 sum f_l - f_1."""
    return 3 * sum(layers) - layers[0]


def dense(sizes: Sequence[int]) -> Network:
    """A dense network with layer sizes ``(n_0, ..., n_L)``, input and output included:
    sum (n_{l-1} + 1) n_l parameters and forward FLOPs 2 n_{l-1} n_l per layer."""
    pairs = list(itertools.pairwise(sizes))
    return Network(
        parameters=sum((a + 1) * b for a, b in pairs),
        units=sum(sizes),
        flops=step_flops([2 * a * b for a, b in pairs]),
    )


def convolutions(
    inputs: int, taps: Sequence[int], positions: Sequence[int], channels: int, head: Sequence[int]
) -> Network:
    """Convolutions of ``channels`` output channels on one input channel of ``inputs`` values,
    layer l with ``taps[l]`` kernel taps (K^d) at ``positions[l]`` output positions, then a
    dense head of sizes ``head`` (its output included) on the last layer's flattened output."""
    fan_in = [1] + [channels] * (len(taps) - 1)
    top = dense((positions[-1] * channels, *head))
    return Network(
        parameters=sum((t * c + 1) * channels for t, c in zip(taps, fan_in, strict=True))
        + top.parameters,
        units=inputs + channels * sum(positions[:-1]) + top.units,
        flops=step_flops(
            [2 * p * t * c * channels for p, t, c in zip(positions, taps, fan_in, strict=True)]
            + [2 * a * b for a, b in itertools.pairwise((positions[-1] * channels, *head))]
        ),
    )


@dataclasses.dataclass(frozen=True)
class Cost:
    """A run's needs: the bytes it holds at once, the FLOPs it computes, and the seconds it
    spends beyond them (the evaluations' round trips)."""

    memory: float = 0.0
    flops: float = 0.0
    overhead: float = 0.0

    @property
    def seconds(self) -> float:
        """The time at `FLOP_RATE`, the overhead included."""
        return self.flops / FLOP_RATE + self.overhead

    def repeated(self, times: int) -> Cost:
        """``times`` such runs, one after another: the same memory, ``times`` the work."""
        return Cost(self.memory, times * self.flops, times * self.overhead)

    def then(self, other: Cost) -> Cost:
        """This run followed by ``other``: the larger of the memories, the sum of the work."""
        return Cost(
            max(self.memory, other.memory),
            self.flops + other.flops,
            self.overhead + other.overhead,
        )


def training(
    members: int,
    steps: int,
    network: Network,
    batch: int,
    *,
    eval_every: int | None = None,
    at_once: int | None = None,
    data: float = 0.0,
) -> Cost:
    """``members`` copies of ``network`` trained for ``steps`` steps of ``batch`` examples.

    Args:
      members: the population (1 for a single run).
      steps: the optimizer steps of each member.
      network: the model.
      batch: the examples of one step.
      eval_every: steps between two evaluations (each recorded in the history); None: none.
      at_once: the members trained side by side (default: all); the others hold only their
        final and best parameters and their history.
      data: the bytes held besides the members (the data sets, batches drawn in advance).
    """
    at_once = members if at_once is None else at_once
    evaluations = 0 if eval_every is None else steps // eval_every
    kept = 2 * network.parameters * FLOAT_BYTES + evaluations * HISTORY_BYTES
    working = (
        (PARAMETER_COPIES - 2) * network.parameters + ACTIVATION_COPIES * network.units * batch
    ) * FLOAT_BYTES
    return Cost(
        memory=data + members * kept + at_once * working,
        flops=float(members) * steps * batch * network.flops,
        overhead=evaluations * EVAL_SECONDS,
    )


def physical_memory() -> int:
    """The machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def size(n: float) -> str:
    """Bytes in binary units: ``3 * 2**30`` -> ``"3.0 GiB"``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:,.1f} {units[i]}"


def duration(seconds: float) -> str:
    """Seconds in the largest unit that keeps a number >= 1: ``90000`` -> ``"1.04 days"``."""
    units = (("day", 86400), ("hour", 3600), ("minute", 60))
    unit, length = next(((u, n) for u, n in units if seconds >= n), ("second", 1))
    text = f"{seconds / length:.3g}"
    return f"{text} {unit}" + ("" if text == "1" else "s")
