"""Live metrics in TensorBoard: each member's curves as its own run, the population's
hyper-parameters with their final metrics in the HParams dashboard.

The run driver calls a `TensorBoard` writer after every chunk (as its ``callback``), so the
curves appear while a run trains; `finish` adds the hyper-parameters and final metrics. The
event files are written with tensorboardX (the optional extra ``jdl[tensorboard]``), only by
process 0 of a multi-process run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

__all__ = ["TensorBoard", "read_scalars"]


def _writer_class() -> Any:
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:  # the optional extra
        raise ValueError(
            "tensorboard=... needs tensorboardX: pip install 'jdl[tensorboard]'"
        ) from e
    return SummaryWriter


class TensorBoard:
    """TensorBoard event files of a run's members, written between chunks.

    Member m's scalars (``train_loss``, ``val_loss``, ``val_<k>``) go to ``logdir/<name_m>``,
    each at the member's step; a member that has stopped writes nothing more.

    Args:
      logdir: the folder TensorBoard reads (``tensorboard --logdir logdir``).
      members: per member, its run name and hyper-parameters, in the order of the flattened
        (seed, configuration) axes of the driver's rows (one member for `jdl.run.fit`); None
        for padding, which is not written.

    Raises:
      ValueError: tensorboardX is not installed, or ``logdir`` is a file.
    """

    def __init__(
        self,
        logdir: str | os.PathLike,
        members: Sequence[tuple[str, Mapping[str, float]] | None],
    ):
        self.logdir = os.fspath(logdir)
        if os.path.exists(self.logdir) and not os.path.isdir(self.logdir):
            raise ValueError(f"tensorboard folder {self.logdir} is a file, not a folder")
        self._members = list(members)
        self._writers: dict[int, Any] = {}
        self._make = _writer_class()
        self._on = jax.process_index() == 0

    def _writer(self, m: int) -> Any:
        if m not in self._writers:
            name = self._members[m][0]
            # Its own file name: add_hparams opens a second writer on the same folder.
            folder = os.path.join(self.logdir, name)
            self._writers[m] = self._make(folder, flush_secs=10, filename_suffix=".curves")
        return self._writers[m]

    def __call__(self, state: Any, row: Mapping[str, Any]) -> None:
        """Writes one chunk's metrics, ``row[k]`` (a scalar for one run, the members' axes for
        a population: flattened in the order of ``members``), at ``row["step"]``."""
        if not self._on:
            return
        step = int(np.max(row["step"]))
        for k, v in row.items():
            if k in ("step", "time_s"):
                continue
            values = np.asarray(v, np.float64).reshape(-1)[: len(self._members)]
            for m, value in enumerate(values):
                if self._members[m] is not None and math.isfinite(value):
                    self._writer(m).add_scalar(k, value, step)
        for w in self._writers.values():
            w.flush()

    def finish(self, final: Mapping[str, np.ndarray]) -> None:
        """Adds each member's hyper-parameters with its final metrics (``final[k]``, one value
        per member, flattened like ``members``) to the HParams dashboard, and closes."""
        if self._on:
            for m, member in enumerate(self._members):
                if member is None:
                    continue
                metrics = {
                    f"hparam/{k}": float(np.asarray(v).reshape(-1)[m]) for k, v in final.items()
                }
                metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
                if member[1]:
                    self._writer(m).add_hparams(dict(member[1]), metrics, name=".")
        for w in self._writers.values():
            w.close()
        self._writers.clear()


def read_scalars(logdir: str | os.PathLike) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """The scalars of every event file under ``logdir``: run (sub-folder) -> tag -> [(step,
    value)], read with tensorboardX's protocol buffers (no TensorBoard needed)."""
    import struct

    from tensorboardX.proto import event_pb2

    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for folder, _, files in os.walk(logdir):
        for name in sorted(f for f in files if "tfevents" in f):
            run = os.path.relpath(folder, logdir)
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            pos = 0
            while pos + 12 <= len(data):
                (length,) = struct.unpack("<Q", data[pos : pos + 8])
                record = data[pos + 12 : pos + 12 + length]
                pos += 12 + length + 4
                event = event_pb2.Event.FromString(record)
                for value in event.summary.value:
                    if value.HasField("simple_value"):
                        tags = out.setdefault(run, {})
                        tags.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out
