"""use_compile_cache: a second process of the same shapes reads its program from the folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jdl.run import use_compile_cache
from jdl.run.compile_cache import default_cache_dir

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, jax, jax.numpy as jnp
from jdl.run import use_compile_cache
hits = []
jax.monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if name.endswith("cache_hits") else None)
folder = use_compile_cache(min_compile_time_s=0.0)
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
f(jnp.ones((8, 8))).block_until_ready()
print(json.dumps({"folder": str(folder), "hits": len(hits)}))
"""


def run(env):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_reads_the_cache(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), JDL_COMPILE_CACHE=str(tmp_path / "c"))
    first = run(env)
    assert first == {"folder": str(tmp_path / "c"), "hits": 0}
    assert any((tmp_path / "c").iterdir())  # the program was written
    assert run(env)["hits"] >= 1  # and read back, not compiled


def test_default_folder_and_checks(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "jdl" / "jax"
    monkeypatch.setenv("JDL_COMPILE_CACHE", "0")  # as in every test: nothing is set
    assert use_compile_cache() is None
    with pytest.raises(ValueError, match="min_compile_time_s must be >= 0"):
        use_compile_cache(min_compile_time_s=-1.0)
