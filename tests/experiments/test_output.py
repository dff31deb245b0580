"""experiments.output: all of a run's files or none, whatever interrupts the writing."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import output

ROOT = Path(__file__).resolve().parents[2]
# A writer of ten files, slowly (50 ms each), every one naming its run: a set is complete when
# all ten exist and name the same run.
WRITER = """
import signal, sys, time
from pathlib import Path
from experiments import cli, output

signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal

def main():
    out, run = sys.argv[1], sys.argv[2]
    print("ready", flush=True)
    with output.files(out, overwrite=True) as folder:
        for i in range(10):
            (folder / f"f{i}.json").write_text(run)
            time.sleep(0.05)

cli.run(main)
"""


def _set(out: Path) -> str | None:
    """The run whose complete set ``out`` holds; None if it does not exist; fails on a mix."""
    if not out.exists():
        return None
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"f{i}.json" for i in range(10)], names
    runs = {p.read_text() for p in out.iterdir()}
    assert len(runs) == 1, runs
    return runs.pop()


def _start(out: Path, run: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(out), run],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _finish(proc: subprocess.Popen) -> int:
    """The exit status, once the process has ended and its pipes are closed."""
    _, err = proc.communicate(timeout=30)
    # A SIGINT that lands while JAX's garbage-collection callback runs is reported by Python as
    # "Exception ignored in" that callback (it cannot propagate from there): a known race of
    # Python's KeyboardInterrupt with gc callbacks, not a traceback of the program.
    err = re.sub(
        r"Exception ignored in: <function _xla_gc_callback.*?KeyboardInterrupt:?\s*",
        "",
        err,
        flags=re.S,
    )
    assert "Traceback" not in err, err
    return proc.returncode


def test_complete_runs_replace_each_other(tmp_path):
    out = tmp_path / "out"
    for run in ("first", "second"):
        proc = _start(out, run)
        assert _finish(proc) == 0
        assert _set(out) == run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left beside it


@pytest.mark.parametrize("delay", [0.0, 0.12, 0.3, 0.45])
def test_ctrl_c_while_writing_finishes_the_set_then_exits_130(tmp_path, delay):
    out = tmp_path / "out"
    assert _finish(_start(out, "first")) == 0
    proc = _start(out, "second")
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    assert _finish(proc) == 130
    # The writing had begun (or was about to): the new set is complete, or the first one stays.
    assert _set(out) in ("first", "second")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.25, 0.4, 0.6])
def test_kill_at_any_moment_leaves_a_complete_set(tmp_path, delay):
    out = tmp_path / "out"
    assert _finish(_start(out, "first")) == 0
    proc = _start(out, "second")
    time.sleep(delay)
    proc.kill()
    _finish(proc)
    assert _set(out) in ("first", "second")
    # The next run tidies what the killed one left (its partial folder) and replaces the set.
    assert _finish(_start(out, "third")) == 0
    assert _set(out) == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_exception_while_writing_keeps_the_previous_set(tmp_path):
    out = tmp_path / "out"
    with output.files(out) as folder:
        (folder / "results.json").write_text(json.dumps({"run": 1}))
    with pytest.raises(RuntimeError), output.files(out, overwrite=True) as folder:
        (folder / "results.json").write_text(json.dumps({"run": 2}))
        raise RuntimeError("plotting failed")
    assert json.loads((out / "results.json").read_text()) == {"run": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_previous_set_is_kept_without_overwrite(tmp_path):
    out = tmp_path / "out"
    with output.files(out) as folder:
        (folder / "a.json").write_text("1")
    with pytest.raises(FileExistsError), output.files(out) as folder:
        (folder / "a.json").write_text("2")
    assert (out / "a.json").read_text() == "1"


def test_a_set_left_aside_by_a_killed_writer_is_put_back(tmp_path):
    """Where no atomic exchange exists, a kill between its two renames leaves the previous set
    aside as .NAME.PID.old; the next run puts it back before anything else."""
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_text())
    pid = int(dead.stdout)
    aside = tmp_path / f".out.{pid}.old"
    aside.mkdir()
    (aside / "a.json").write_text("previous")
    (tmp_path / f".out.{pid}.partial").mkdir()
    with pytest.raises(FileExistsError), output.files(out) as folder:
        (folder / "a.json").write_text("new")
    assert (out / "a.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _text() -> dict:
    return {"capture_output": True, "text": True, "timeout": 30}


@pytest.mark.parametrize("delay", [0.6, 1.5, 3.5])
def test_an_experiment_stopped_by_ctrl_c_at_any_stage_exits_130(tmp_path, delay):
    """SIGINT while JAX is imported, while it computes or while it writes: status 130 without a
    traceback, and ``--out`` holds the previous set or the complete new one."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("previous")
    argv = ["--optimizers", "sgd,adam", "--ravine-steps", "30", "--rosenbrock-steps", "30"]
    argv += ["--num-lrs", "2", "--out", str(out), "--overwrite"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # ``python -m experiments.optimizer_paths ARGV`` with SIGINT as from a terminal, whatever
    # this process inherited (no preexec_fn: forking a process that runs JAX is unsafe).
    launch = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv[0] = 'optimizer_paths'; "
        "runpy.run_module('experiments.optimizer_paths', run_name='__main__', alter_sys=True)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", launch, *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    status = _finish(proc)
    files = sorted(p.name for p in out.iterdir())
    if files == ["results.json"]:
        assert status == 130 and (out / "results.json").read_text() == "previous"
    else:  # the run had finished, or its files were being written: the whole new set
        assert status in (0, 130)
        assert files == ["claims.png", "lr_regimes.png", "paths.png", "results.json"]
        assert set(json.loads((out / "results.json").read_text())) >= {"ravine", "rosenbrock"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
