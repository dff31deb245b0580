"""Checkpoints of a run with orbax: the whole `TrainState` (periodically) and the best params.

A directory holds two orbax ``CheckpointManager`` trees: ``state/<step>/`` (the whole state and
the metric history so far; the last two are kept) and ``best/<step>/`` (the best parameters,
the last one kept). Orbax writes each checkpoint to a temporary directory and renames it when
complete, so a run killed at any moment leaves only complete checkpoints.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

import jax
import orbax.checkpoint as ocp

from jdl.train.state import Params, TrainState

History = dict[str, list[float]]


def _is_typed_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _saveable(state: TrainState) -> TrainState:
    """Orbax stores plain arrays: a typed PRNG key is stored as its key data."""
    return state._replace(key=jax.random.key_data(state.key)) if _is_typed_key(state.key) else state


class Checkpoints:
    """Saves and restores one run's checkpoints in ``directory``.

    Use it as a context manager (``with Checkpoints(path) as ckpt: ...``) or call ``close``.
    ``fit(..., checkpoint_dir=path)`` uses it: it saves the best parameters whenever they
    improve and the whole state every ``checkpoint_every`` chunks, and resumes from the latest
    state.

    Args:
      directory: where the checkpoints live (created if missing).
      max_to_keep: how many state checkpoints to keep (>= 1).

    References:
      orbax-checkpoint ``CheckpointManager``, https://orbax.readthedocs.io/
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 2):
        if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(f"max_to_keep must be a positive int, got {max_to_keep!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self._state = ocp.CheckpointManager(
            os.path.join(self.directory, "state"),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True
            ),
        )
        self._best = ocp.CheckpointManager(
            os.path.join(self.directory, "best"),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, enable_async_checkpointing=False, create=True
            ),
        )

    def latest_step(self) -> int | None:
        """The step of the latest complete state checkpoint, or None."""
        return self._state.latest_step()

    def save(self, state: TrainState, history: History) -> None:
        """Saves the whole state and the history so far, under the state's step."""
        step = int(state.step)
        if self._state.latest_step() == step:
            return
        self._state.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_saveable(state)),
                history=ocp.args.JsonSave(history),
            ),
        )

    def restore(self, like: TrainState) -> tuple[TrainState, History] | None:
        """The latest state (with the structure of ``like``) and its history, or None."""
        step = self._state.latest_step()
        if step is None:
            return None
        try:
            restored = self._state.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(_saveable(like)),
                    history=ocp.args.JsonRestore(),
                ),
            )
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(
                f"the checkpoint at step {step} in {self.directory} does not match this run's "
                f"state (another model or optimizer?): {e}"
            ) from e
        state = restored.state
        if _is_typed_key(like.key):
            state = state._replace(
                key=jax.random.wrap_key_data(state.key, impl=jax.random.key_impl(like.key))
            )
        return state, dict(restored.history)

    def save_best(self, params: Params, step: int) -> None:
        """Saves the best parameters, found at ``step``."""
        if self._best.latest_step() == step:
            return
        self._best.save(step, args=ocp.args.StandardSave(params))

    def restore_best(self, like: Params) -> tuple[Params, int] | None:
        """The saved best parameters (structure of ``like``) and their step, or None."""
        step = self._best.latest_step()
        if step is None:
            return None
        return self._best.restore(step, args=ocp.args.StandardRestore(like)), step

    def close(self) -> None:
        """Waits for pending writes and releases the managers."""
        self._state.close()
        self._best.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
