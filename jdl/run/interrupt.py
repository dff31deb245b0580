"""Ctrl-C during a run: stop after the chunk in flight and keep what was trained."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import jax


class Interrupt:
    """Ctrl-C during a run (`jdl.run.drive`), taken between chunks.

    A chunk donates the state it advances, so a KeyboardInterrupt raised while one is
    dispatched can lose the members' state. Inside this context (in the main thread, over
    Python's default SIGINT handler, restored on exit) a first Ctrl-C after some training
    (``armed``) only sets ``requested``, and the loop stops once the chunk in flight is done.
    Before any training, and on a second Ctrl-C, it raises KeyboardInterrupt at once.
    """

    def __init__(self) -> None:
        self.armed = False
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> Interrupt:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.armed or self.requested:
            raise KeyboardInterrupt
        self.requested = True
        # os.write, not print: a handler may run in the middle of a write to sys.stderr.
        os.write(2, b"\nstopping after the chunk in flight (Ctrl-C again to abort)\n")


def intact(state: Any) -> bool:
    """Whether the state's buffers still exist (a chunk donates them)."""
    if state is None:
        return False
    leaves = jax.tree.leaves(state)
    return not any(isinstance(a, jax.Array) and a.is_deleted() for a in leaves)
