"""JAX's persistent compilation cache, in a folder under the user's cache directory.

A compiled program is written to disk, keyed by its lowered text, the compile options, the
devices and the JAX/XLA versions; a later process that compiles the same program (the same
shapes, whatever the values) reads it back instead of compiling. The experiments and the
benchmarks turn it on by default; ``JDL_COMPILE_CACHE=0`` (or their ``--no-compile-cache``)
turns it off.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["CACHE_ENV", "default_cache_dir", "use_compile_cache"]

CACHE_ENV = "JDL_COMPILE_CACHE"
"""The environment variable: ``0`` (or ``off``, ``false``, ``no``) turns the cache off; a path
puts it there; unset or ``1`` keeps the default folder."""

_OFF = ("0", "off", "false", "no")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/jdl/jax``, else ``~/.cache/jdl/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jdl" / "jax"


def use_compile_cache(
    folder: str | os.PathLike | None = None, *, min_compile_time_s: float = 0.1
) -> Path | None:
    """Turns on JAX's persistent compilation cache (unless ``$JDL_COMPILE_CACHE`` says off).

    Sets ``jax_compilation_cache_dir`` and ``jax_persistent_cache_min_compile_time_secs``: a
    program that took at least ``min_compile_time_s`` to compile is saved (JAX's default, 1 s,
    would miss a search's chunk on a fast machine). Call it before the first compilation.

    Args:
      folder: where to keep the compiled programs; default ``$JDL_COMPILE_CACHE`` when it is
        a path, else `default_cache_dir`.
      min_compile_time_s: programs that compile faster than this are not saved (>= 0).

    Returns:
      The cache folder, or None when ``$JDL_COMPILE_CACHE`` turns the cache off.

    Raises:
      ValueError: a negative ``min_compile_time_s``.

    References:
      JAX, "Persistent compilation cache",
      https://docs.jax.dev/en/latest/persistent_compilation_cache.html
    """
    if not min_compile_time_s >= 0:
        raise ValueError(f"min_compile_time_s must be >= 0, got {min_compile_time_s}")
    env = os.environ.get(CACHE_ENV, "").strip()
    if env.lower() in _OFF:
        return None
    if folder is None:
        folder = env if env and env != "1" else default_cache_dir()
    path = Path(folder).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
