"""Checkpoints of a run with orbax: the whole state pytree and a JSON record, per chunk.

A directory holds one orbax ``CheckpointManager`` tree, ``<chunk>/state`` (the state pytree:
every member's parameters, optimizer state, early-stopping state and keys) and
``<chunk>/record`` (JSON: the history so far, the scheduler's log, the time spent and the
run's fingerprint). Orbax writes each checkpoint to a temporary directory and renames it when
complete, so a run killed at any moment, a save included, leaves only complete checkpoints;
the last two are kept, and a latest one that cannot be read is skipped with a warning for the
one before it. With several processes each saves and restores its own shards of the state,
and orbax writes the JSON record once (process 0) and has every process read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from types import TracebackType
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

__all__ = [
    "Checkpoints",
    "ConfigurationMismatchError",
    "fingerprint",
    "load_params",
    "save_params",
]

Record = dict[str, Any]


class ConfigurationMismatchError(ValueError):
    """A checkpoint written by a run of another configuration."""


def fingerprint(**parts: Any) -> dict[str, str]:
    """What makes a run the same run, one short digest per named part.

    Each part is hashed from its JSON form, or from its bytes for arrays and from the text of
    a lowered program (`jax.stages.Lowered`): the program's text holds the model, the loss and
    every constant an optimizer closes over, so another model, loss or optimizer gives another
    digest."""

    def digest(value: Any) -> str:
        h = hashlib.blake2b(digest_size=8)
        if isinstance(value, jax.stages.Lowered):
            h.update(value.as_text().encode())
        elif isinstance(value, np.ndarray | jax.Array):
            value = _host(value)
            h.update(str((value.shape, value.dtype)).encode())
            h.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, list | tuple) and any(
            isinstance(v, np.ndarray | jax.Array) for v in value
        ):
            for v in value:
                h.update(digest(v).encode())
        else:
            h.update(json.dumps(value, sort_keys=True, default=str).encode())
        return h.hexdigest()

    return {name: digest(value) for name, value in parts.items()}


def _host(value: np.ndarray | jax.Array) -> np.ndarray:
    """The whole array on the host: a global array split over several processes is gathered
    (every process computes the fingerprint, in the same order), never read by ``np.asarray``,
    which would fail."""
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        if value.is_fully_replicated:
            return np.asarray(value.addressable_data(0))
        return multihost_utils.process_allgather(value, tiled=True)
    return np.asarray(value)


def _is_typed_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _saveable(tree: Any) -> Any:
    """Orbax stores plain arrays: typed PRNG keys are stored as their key data."""
    return jax.tree.map(lambda a: jax.random.key_data(a) if _is_typed_key(a) else a, tree)


def _unsaveable(tree: Any, like: Any) -> Any:
    return jax.tree.map(
        lambda a, ref: (
            jax.random.wrap_key_data(a, impl=jax.random.key_impl(ref)) if _is_typed_key(ref) else a
        ),
        tree,
        like,
    )


class Checkpoints:
    """Saves and restores one run's checkpoints in ``directory``.

    The run driver (`jdl.run.drive`) uses it: it saves the state every ``checkpoint_every``
    chunks, at the end and when interrupted, and a run started again with the same
    configuration resumes from the latest checkpoint. A checkpoint written by a run of another
    configuration (another fingerprint) is refused.

    Args:
      directory: where the checkpoints live (created if missing).
      fingerprint: the run's `fingerprint`, stored with every checkpoint and compared on
        restore.
      max_to_keep: how many checkpoints to keep (>= 1; 2 leaves a fallback).

    Raises:
      ValueError: ``directory`` is a file, or cannot be created.

    References:
      orbax-checkpoint ``CheckpointManager``, https://orbax.readthedocs.io/
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        fingerprint: dict[str, str],
        max_to_keep: int = 2,
    ):
        if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(f"max_to_keep must be a positive int, got {max_to_keep!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise ValueError(f"checkpoint directory {self.directory} is a file, not a folder")
        try:
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True
                ),
            )
        except OSError as e:
            raise ValueError(f"cannot use checkpoint directory {self.directory}: {e}") from e
        self.fingerprint = dict(fingerprint)

    def latest(self) -> int | None:
        """The chunk of the latest complete checkpoint, or None."""
        return self._manager.latest_step()

    def save(self, chunk: int, state: Any, record: Record) -> None:
        """Saves ``state`` and the JSON ``record`` as the checkpoint after ``chunk`` chunks."""
        if self._manager.latest_step() == chunk:
            return
        self._manager.save(
            chunk,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_saveable(state)),
                record=ocp.args.JsonSave({**record, "fingerprint": self.fingerprint}),
            ),
        )

    def restore(self, like: Any) -> tuple[int, Any, Record] | None:
        """``(chunk, state, record)`` of the latest readable checkpoint (the state with the
        structure, shapes and shardings of ``like``), or None when there is none.

        Raises:
          ConfigurationMismatchError: the checkpoint was written by a run of another configuration.
          ValueError: no checkpoint in the folder can be read.
        """
        steps = sorted(self._manager.all_steps(), reverse=True)
        for i, chunk in enumerate(steps):
            try:
                record = self._manager.restore(
                    chunk, args=ocp.args.Composite(record=ocp.args.JsonRestore())
                ).record
                self._check(record, chunk)
                restored = self._manager.restore(
                    chunk,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(_saveable(like))),
                ).state
            except ConfigurationMismatchError:
                raise
            except Exception as e:  # a corrupt or partly deleted checkpoint
                error: Exception = e
            else:
                return chunk, _unsaveable(restored, like), record
            later = f"; using the one after chunk {steps[i + 1]}" if i + 1 < len(steps) else ""
            warnings.warn(
                f"cannot read the checkpoint after chunk {chunk} in {self.directory} "
                f"({type(error).__name__}: {' '.join(str(error).split())[:200]}){later}",
                RuntimeWarning,
                stacklevel=2,
            )
        if steps:
            raise ValueError(f"no checkpoint in {self.directory} can be read")
        return None

    def verify(self) -> None:
        """Refuses, before anything runs, a folder whose latest checkpoint another
        configuration wrote.

        Raises:
          ConfigurationMismatchError: as `restore` would.
        """
        chunk = self._manager.latest_step()
        if chunk is None:
            return
        try:
            args = ocp.args.Composite(record=ocp.args.JsonRestore())
            record = self._manager.restore(chunk, args=args).record
        except Exception:  # unreadable: restore falls back to an earlier one
            return
        self._check(record, chunk)

    def _check(self, record: Record, chunk: int) -> None:
        saved = record.get("fingerprint", {})
        names = set(saved) | set(self.fingerprint)
        differ = sorted(k for k in names if saved.get(k) != self.fingerprint.get(k))
        if differ:
            raise ConfigurationMismatchError(
                f"the checkpoint in {self.directory} (chunk {chunk}) was written by a run of "
                f"another configuration (differs in: {', '.join(differ)}); resume with the same "
                "arguments, or give another checkpoint folder"
            )

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self._manager.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def save_params(path: str | os.PathLike, params: Any) -> None:
    """Writes a pytree of parameters to the folder ``path`` with orbax, atomically (a
    temporary folder renamed when complete); an existing ``path`` is replaced.

    `load_params` reads it back, for example to continue training with `jdl.run.fit`. With
    several processes every process calls it with the same ``params`` (orbax synchronizes
    them, and process 0 writes); called on one process only, it waits for the others."""
    path = os.path.abspath(os.fspath(path))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, params, force=True)


def load_params(path: str | os.PathLike, like: Any = None) -> Any:
    """The pytree of parameters that `save_params` wrote to ``path``, as NumPy arrays.

    Args:
      path: the folder.
      like: parameters (arrays or ``jax.ShapeDtypeStruct``) of the same structure, for
        example the model's initial ones: the result takes their tree structure (a saved
        folder keeps dict keys as strings, so the integer keys of an NNX layer list come
        back as "0", "1", ... without it).

    Raises:
      ValueError: ``path`` is not a folder that `save_params` wrote, or holds parameters of
        another structure or shape than ``like``.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise ValueError(f"{path} is not a folder of saved parameters")
    target = None
    if like is not None:
        target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), like)
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            return jax.tree.map(np.asarray, checkpointer.restore(path, target))
    except Exception as e:
        reason = " ".join(str(e).split())[:200]
        raise ValueError(f"cannot read parameters from {path}: {type(e).__name__}: {reason}") from e
