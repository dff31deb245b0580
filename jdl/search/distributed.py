"""Several processes, one search: ``jax.distributed.initialize`` behind a check of its arguments.

Every process of a multi-process run calls `initialize_distributed` with the same coordinator
(process 0's ``"host:port"``) and the same number of processes N, and its own rank. JAX's
runtime then joins them; but when a peer never comes, JAX aborts every process after its
timeout with a C++ stack trace, and when the processes disagree on N it joins them anyway
(the disagreement shows up later, as a hang or an abort). So the arguments are checked first,
in plain Python sockets, before JAX is called:

- the address is ``host:port`` (port in [1, 65535]);
- process 0 listens on the port until the N - 1 others have said hello with their N and rank,
  and answers each one; a rank seen twice, another N, or a peer missing after ``timeout_s``
  gives every process concerned a one-line ``ValueError``;
- then process 0 frees the port and every process calls ``jax.distributed.initialize``, whose
  coordination service takes the port (its clients retry until it is up).

The check holds no state after it returns and carries none of the run's data: training and
every transfer between processes go through JAX's runtime.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

__all__ = ["check_same", "initialize_distributed", "parse_coordinator"]

_HELLO = "jdl-join"
_ADDRESS = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]+)):(?P<port>\d{1,5})$")


def parse_coordinator(address: str) -> tuple[str, int]:
    """``(host, port)`` of a coordinator address ``"host:port"`` (``"[v6]:port"`` for IPv6).

    Raises:
      ValueError: anything else, or a port outside [1, 65535].
    """
    match = _ADDRESS.match(address) if isinstance(address, str) else None
    port = int(match["port"]) if match else 0
    if not 1 <= port <= 65535:
        raise ValueError(
            f"the coordinator address must be HOST:PORT with a port in [1, 65535] "
            f"(e.g. 127.0.0.1:1234), got {address!r}"
        )
    return match["v6"] or match["host"], port


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
    *,
    timeout_s: int = 300,
) -> None:
    """Joins this process to a multi-process run: ``jax.distributed.initialize(...)``.

    Call it once per process, before any other JAX call. Every process then sees the devices
    of all processes in ``jax.devices()``; a search built afterwards shards its population over
    all of them (each process runs the members on its own devices), and every process gets the
    whole result. Without arguments JAX detects the cluster (Cloud TPU, SLURM, Open MPI,
    Kubernetes); elsewhere give the three values explicitly, the same coordinator everywhere::

        initialize_distributed("10.0.0.1:1234", num_processes=2, process_id=0)  # on host 0
        initialize_distributed("10.0.0.1:1234", num_processes=2, process_id=1)  # on host 1

    With explicit values the processes first check one another (see the module's docstring):
    a peer that does not come within ``timeout_s``, processes started with different
    ``num_processes`` or the same ``process_id``, or a malformed address give a one-line
    ValueError on the processes concerned instead of JAX's abort.

    Args:
      coordinator_address: ``"host:port"`` of process 0, reachable from every process.
      num_processes: the number of processes N >= 1.
      process_id: this process's rank in [0, N).
      local_device_ids: the devices of this host that this process uses (default: all).
      timeout_s: how long to wait for the other processes, in seconds (>= 1); also JAX's
        ``initialization_timeout``.

    Raises:
      ValueError: the arguments as above, only some of the three values given, or the
        processes did not all join in time or disagree.

    References:
      JAX, "Multi-host and multi-process environments",
      https://docs.jax.dev/en/latest/multi_process.html
    """
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError(
            "give coordinator_address, num_processes and process_id together (or none of them "
            "to let JAX detect the cluster)"
        )
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s < 1:
        raise ValueError(f"timeout_s must be an int >= 1 (seconds), got {timeout_s!r}")
    if num_processes is not None:
        if isinstance(num_processes, bool) or not isinstance(num_processes, int):
            raise ValueError(f"num_processes must be an int >= 1, got {num_processes!r}")
        if num_processes < 1:
            raise ValueError(f"num_processes must be >= 1, got {num_processes}")
        if isinstance(process_id, bool) or not isinstance(process_id, int):
            raise ValueError(f"process_id must be an int, got {process_id!r}")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
        host, port = parse_coordinator(coordinator_address)
        if num_processes > 1:
            if process_id == 0:
                _welcome(port, num_processes, timeout_s)
            else:
                _join(host, port, num_processes, process_id, timeout_s)
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        initialization_timeout=timeout_s,
    )


def _welcome(port: int, num_processes: int, timeout_s: float) -> None:
    """Process 0: waits for the hello of processes 1..N-1, then answers them all at once
    (``ok``, or the first disagreement)."""
    deadline = time.monotonic() + timeout_s
    try:
        server = socket.create_server(("", port))
    except OSError as e:
        raise ValueError(f"process 0 cannot listen on port {port}: {e.strerror or e}") from None
    joined: dict[int, socket.socket] = {}
    error = ""
    try:
        while len(joined) < num_processes - 1 and not error:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(set(range(1, num_processes)) - set(joined))
                error = (
                    f"process(es) {', '.join(map(str, missing))} of {num_processes} did not join "
                    f"port {port} within {timeout_s:g} s: start the same command with each "
                    "--process-id (or check the coordinator address and the firewall)"
                )
                break
            server.settimeout(left)
            try:
                conn, _ = server.accept()
                conn.settimeout(max(0.1, deadline - time.monotonic()))
                words = conn.makefile().readline().split()
            except OSError:  # the time is up, or a connection that said nothing
                continue
            if len(words) != 3 or words[0] != _HELLO or not all(w.isdigit() for w in words[1:]):
                conn.close()  # not one of ours
                continue
            n, rank = int(words[1]), int(words[2])
            if n != num_processes:
                error = (
                    f"the processes disagree on their number: process 0 was started with "
                    f"{num_processes}, process {rank} with {n}"
                )
            elif rank in joined or not 0 < rank < num_processes:
                error = f"two processes were started with process id {rank}"
            joined.setdefault(rank, conn)
            if joined[rank] is not conn:
                joined[-1 - len(joined)] = conn  # answer the duplicate too
        answer = f"error {error}\n" if error else "ok\n"
        for conn in joined.values():
            with contextlib.suppress(OSError):  # a peer gone: it times out on its own
                conn.sendall(answer.encode())
    finally:
        for conn in joined.values():
            conn.close()
        server.close()
    if error:
        raise ValueError(error)


def _join(host: str, port: int, num_processes: int, process_id: int, timeout_s: float) -> None:
    """Process I > 0: says hello to process 0 until it answers or the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ValueError(
                f"process 0 did not answer at {host}:{port} within {timeout_s:g} s: start the "
                "same command with --process-id 0 there (or check the address and the firewall)"
            )
        try:
            with socket.create_connection((host, port), timeout=min(left, 5.0)) as conn:
                conn.settimeout(max(0.1, deadline - time.monotonic()))
                conn.sendall(f"{_HELLO} {num_processes} {process_id}\n".encode())
                answer = conn.makefile().readline().strip()
        except OSError:  # not listening yet, or the answer did not come in time
            time.sleep(0.1)
            continue
        if answer == "ok":
            return
        if answer.startswith("error "):
            raise ValueError(answer[len("error ") :])
        time.sleep(0.1)  # a listener that is not process 0's check: try again


def check_same(digests: dict[str, str]) -> None:
    """Refuses a run whose processes disagree: each process's digests (a `jdl.run.fingerprint`
    of the population, the data, the initial parameters, ...) must equal process 0's.

    With several processes every process places the shards of its own devices from its own
    host values (`jdl.search.sharding.put`); a process that loaded other data would train
    other members silently. One all-gather of the digests' bytes; nothing with one process.

    Raises:
      ValueError: naming the parts on which the processes disagree.
    """
    if jax.process_count() == 1:
        return
    names = sorted(digests)
    parts = [np.frombuffer(bytes.fromhex(digests[k]), np.uint8) for k in names]
    everyone = multihost_utils.process_allgather(np.concatenate(parts))  # (processes, bytes)
    bounds = np.cumsum([0] + [p.size for p in parts])
    differ = [
        k
        for k, lo, hi in zip(names, bounds[:-1], bounds[1:], strict=True)
        if not (everyone[:, lo:hi] == everyone[:1, lo:hi]).all()
    ]
    if differ:
        raise ValueError(
            f"the {jax.process_count()} processes disagree on: {', '.join(differ)}; every "
            "process must run the same search on the same data"
        )
