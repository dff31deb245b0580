"""An experiment's output files, written as one set: all of them or none, never a mix.

    with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
        write_json(folder / "results.json", results)
        fig.savefig(folder / "curves.png")

The files go into a hidden temporary folder next to ``out`` (``.NAME.PID.partial``, on the same
file system), which replaces ``out`` in one rename when the block ends. Where ``out`` holds a
previous run (``overwrite=True``), the two folders are exchanged atomically (``renameat2`` with
``RENAME_EXCHANGE`` on Linux; elsewhere two renames, and the next run puts a previous set left
aside by a kill between them back in place). So a kill at any moment leaves the previous
complete set or the new complete set in ``out``. A Ctrl-C while the files are written is held
until the set is in place, then the program exits with status 130; an exception inside the
block discards the new files.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swaps two paths (Linux renameat2); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recover(out: Path) -> None:
    """Tidies what a killed writer left next to ``out``: its partial folders are removed, and a
    previous set it had moved aside (``.old``) goes back into ``out`` if ``out`` is missing."""
    for leftover in out.parent.glob(f".{out.name}.*.*"):
        pid, _, kind = leftover.name[len(out.name) + 2 :].partition(".")
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        if kind == "old" and not out.exists():
            leftover.rename(out)
        elif kind in ("old", "partial"):
            shutil.rmtree(leftover, ignore_errors=True)


def _commit(folder: Path, out: Path, overwrite: bool) -> None:
    """Moves the complete ``folder`` into ``out``, replacing a previous set atomically."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        folder.rename(out)
        return
    if not overwrite:
        raise FileExistsError(f"{out} already holds files; pass overwrite=True to replace them")
    if _exchange(folder, out):
        shutil.rmtree(folder)  # now the previous set
        return
    old = out.with_name(f".{out.name}.{os.getpid()}.old")
    out.rename(old)
    folder.rename(out)
    shutil.rmtree(old)


class _HeldInterrupt:
    """Holds a Ctrl-C (SIGINT) until the set of files is in place.

    `jdl.run.Interrupt` does the same between chunks, but importing it imports JAX (2.4 s):
    this module stays on the standard library, so that a writer that is not training (as the
    tests' writers) starts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _HeldInterrupt:
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
        self.requested = True
        os.write(2, b"\nwriting the results: they are finished first, then the program stops\n")


@contextlib.contextmanager
def files(out: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yields an empty folder to write into; on a clean exit it becomes ``out`` as one set.

    Args:
      out: the folder the files end up in; its parents are created.
      overwrite: replace the files of a previous run in ``out``; without it, a ``out`` that
        holds files raises FileExistsError when the set is moved into place.

    Raises:
      SystemExit: 130 once the set is in place, after a Ctrl-C during the block.
    """
    out = Path(out).absolute()
    with _HeldInterrupt() as held:
        out.parent.mkdir(parents=True, exist_ok=True)
        _recover(out)
        folder = out.with_name(f".{out.name}.{os.getpid()}.partial")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        try:
            yield folder
            _commit(folder, out, overwrite)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    if held.requested:
        print(f"interrupted: the files are complete in {out}", file=sys.stderr)
        sys.exit(130)
