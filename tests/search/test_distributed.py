"""Several processes for real: `python -m experiments.lr_search --distributed` as 2 processes
on 127.0.0.1 (2 CPU devices each, gloo collectives), killed (both) when a chunk starts and
started again (both) from their checkpoints, ends bit for bit as the uninterrupted search of
1 process with 4 devices; only process 0 writes files; every process gets the whole result;
a missing peer, disagreeing processes and a malformed address are one-line errors.

One 2-process run serves both claims (2 processes = 1 process; resumed = uninterrupted) to
keep the suite fast: a fault in either would break the bit-for-bit equality.

The processes are this file run as a script (`worker`): it calls `experiments.lr_search.main`
and writes what main returned on its process to ``returned-<process>.json``. Every process
runs in its own process group under a timeout, killed whole if it hangs, so a hung peer fails
the test instead of hanging the suite.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240  # per phase; a healthy run takes a fraction of it
KILL_AT = 4  # the resumed run's processes kill themselves when chunk 4 starts
# 4 learning rates x 2 seeds of an MLP 64-16-10, 8 chunks of one step: a member per device.
FLAGS = [
    "--num-lrs", "4", "--seeds", "2", "--steps", "8", "--hidden", "16", "--batch-size", "32",
    "--lr-min", "1e-3", "--lr-max", "0.3", "--patience", "100",
]  # fmt: skip
COMPARED = ("members", "best", "good_range", "devices")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path, name: str, args: list[str], kill_at: int = 0) -> subprocess.Popen:
    """A worker running ``lr_search`` with ``args``, in its own process group."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    # The suite's flags (tests/conftest.py) without a device count (--devices sets them).
    flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in flags if "device_count" not in f)
    with open(folder / f"{name}.out", "w") as out:  # the child has its own descriptor
        return subprocess.Popen(
            [sys.executable, __file__, str(folder), str(kill_at), *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def distributed(folder: Path, port: int, extra: list[str], kill_at: int = 0) -> list:
    """The two processes of one 2-process run (2 CPU devices each)."""
    return [
        start(
            folder,
            f"process{i}",
            [
                *FLAGS,
                "--distributed",
                "--coordinator", f"127.0.0.1:{port}",
                "--num-processes", "2",
                "--process-id", str(i),
                "--devices", "2",
                "--out", str(folder / f"out{i}"),
                *extra,
            ],
            kill_at,
        )
        for i in range(2)
    ]  # fmt: skip


def wait(procs: list[subprocess.Popen]) -> list[int]:
    """The return codes; every process group is killed if any process outlives the timeout."""
    try:
        return [p.wait(timeout=TIMEOUT_S) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        pytest.fail(f"a process did not end within {TIMEOUT_S} s (a peer hung)")
    finally:
        for p in procs:
            p.wait()


def log(folder: Path, name: str) -> str:
    return (folder / f"{name}.out").read_text()[-3000:]


def returned(folder: Path, process: int) -> dict:
    return json.loads((folder / f"returned-{process}.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Phase 1, side by side: a 2-process run killed when chunk ``KILL_AT`` starts, the
    1-process 4-device reference, and a process whose peer never comes. Phase 2: the killed
    run started again, both processes, to the end."""
    root = tmp_path_factory.mktemp("distributed")
    ports = [free_port() for _ in range(2)]
    checkpoints = ["--checkpoint-dir", str(root / "checkpoints")]
    killed = distributed(root / "killed", ports[0], checkpoints, kill_at=KILL_AT)
    one = start(
        root / "one", "process0", [*FLAGS, "--devices", "4", "--out", str(root / "one/out0")]
    )
    alone = start(
        root / "alone",
        "process1",
        [*FLAGS, "--distributed", "--coordinator", f"127.0.0.1:{ports[1]}", "--num-processes",
         "2", "--process-id", "1", "--join-timeout", "1", "--out", str(root / "alone/out")],
    )  # fmt: skip
    codes = dict(
        zip(["killed0", "killed1", "one0", "alone"], wait([*killed, one, alone]), strict=True)
    )
    folder = root / "checkpoints"
    chunks = {int(p.name): sorted(os.listdir(p / "state")) for p in folder.glob("[0-9]*")}
    resumed = distributed(root / "resumed", ports[0], checkpoints)
    codes["resumed0"], codes["resumed1"] = wait(resumed)
    return root, codes, chunks


def test_two_processes_resumed_equal_one_process_with_four_devices(runs):
    root, codes, chunks = runs
    # Both processes died when chunk KILL_AT started, after the checkpoints of the chunks before
    # it (orbax keeps the last two): each process saved its own shards of them. A process whose
    # peer was killed first may abort in the collective before it kills itself (SIGABRT).
    hard = {-signal.SIGKILL, -signal.SIGABRT}
    assert codes["killed0"] in hard and codes["killed1"] in hard, log(root / "killed", "process0")
    assert -signal.SIGKILL in (codes["killed0"], codes["killed1"])
    assert sorted(chunks) == [KILL_AT - 2, KILL_AT - 1]
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= set(chunks[KILL_AT - 1])
    assert not (root / "killed/out0").exists()  # killed before writing anything
    for name, processes in (("resumed", (0, 1)), ("one", (0,))):
        for i in processes:
            assert codes[f"{name}{i}"] == 0, log(root / name, f"process{i}")
    # Only process 0 writes the experiment's files and prints; process 1 writes nothing.
    written = sorted(p.name for p in (root / "resumed/out0").iterdir())
    assert written == ["curves.png", "lr_curve.png", "results.csv", "results.json"]
    assert not (root / "resumed/out1").exists()
    assert "wrote" in log(root / "resumed", "process0")
    assert "wrote" not in log(root / "resumed", "process1")
    # Every process gets the whole result: main returns the same members on both.
    r0, r1 = returned(root / "resumed", 0), returned(root / "resumed", 1)
    assert len(r0["members"]) == 8 and r0["devices"] == 4
    for k in COMPARED:
        assert r0[k] == r1[k], k
    # Bit for bit (the JSON floats round-trip): every device trains the same members with the
    # same program as the 4 devices of one process, and the resumed chunks continue exactly.
    file = json.loads((root / "resumed/out0/results.json").read_text())
    reference = json.loads((root / "one/out0/results.json").read_text())
    assert reference["devices"] == 4
    for k in COMPARED:
        assert file[k] == reference[k] == r0[k], k
    diverged = [m["diverged"] for m in file["members"]]
    assert 0 < sum(diverged) < len(diverged)  # training members and diverged ones, both equal


def test_a_peer_that_never_comes_is_a_one_line_error_exit_2(runs):
    root, codes, _ = runs
    out = log(root / "alone", "process1").strip().splitlines()
    assert codes["alone"] == 2, out
    assert out[-1].startswith("python -m experiments.lr_search: error: process 0 did not answer")


def test_library_errors_before_jax_joins():
    from jdl.search import initialize_distributed

    with pytest.raises(ValueError, match=r"HOST:PORT .*got 'localhost'"):
        initialize_distributed("localhost", num_processes=2, process_id=0)
    with pytest.raises(ValueError, match="HOST:PORT"):
        initialize_distributed("127.0.0.1:70000", num_processes=2, process_id=1)
    port = free_port()
    with pytest.raises(ValueError, match=r"process 0 did not answer at 127.0.0.1:\d+ within 1 s"):
        initialize_distributed(f"127.0.0.1:{port}", num_processes=2, process_id=1, timeout_s=1)
    with pytest.raises(ValueError, match=r"process\(es\) 1, 2 of 3 did not join .* within 1 s"):
        initialize_distributed(f"127.0.0.1:{port}", num_processes=3, process_id=0, timeout_s=1)
    # Process counts that disagree: both processes are told, and neither reaches JAX.
    errors = []

    def peer():
        try:
            initialize_distributed(f"127.0.0.1:{port}", num_processes=3, process_id=1, timeout_s=20)
        except ValueError as e:
            errors.append(str(e))

    thread = threading.Thread(target=peer)
    thread.start()
    with pytest.raises(ValueError, match="disagree on their number: process 0 was started with 2"):
        initialize_distributed(f"127.0.0.1:{port}", num_processes=2, process_id=0, timeout_s=20)
    thread.join(timeout=30)
    assert errors == [
        "the processes disagree on their number: process 0 was started with 2, process 1 with 3"
    ]


def test_cli_malformed_coordinator_exits_2_before_jax():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for address in ("localhost", "127.0.0.1:0", "127.0.0.1:http", ":1234"):
        proc = subprocess.run(
            [sys.executable, "-m", "experiments.lr_search", "--distributed", "--coordinator",
             address, "--num-processes", "2", "--process-id", "0"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert (
            proc.stderr.strip()
            .splitlines()[-1]
            .startswith(
                "python -m experiments.lr_search: error: argument --coordinator: expected HOST:PORT"
            )
        )


def worker(folder: str, kill_at: int, argv: list[str]) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from experiments import lr_search
    from jdl.search import Search

    if kill_at:  # die when chunk kill_at starts: the checkpoints before it are on disk
        original, calls = Search.advance, []

        def advance(*args, **kwargs):
            calls.append(1)
            if len(calls) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        Search.advance = advance
    results = lr_search.main(argv)
    path = Path(folder) / f"returned-{jax.process_index()}.json"
    path.write_text(json.dumps(results, default=str))


if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
