r"""How a search scales with its population: memory and member-steps/s for N members.

    python -m benchmarks.scaling [--members 16,64,256,1024] [--steps 200] [--eval-every 50]
        [--repeats 2] [--no-compile-cache] [--out FILE]

N Adam members of the default MLP 64-128-128-10 on digits, batch 128, sharded over every
device (on a CPU host, one per core), each N in a fresh process. For each N:

- the members' own state: the bytes of the population's arrays (parameters, two Adam moments,
  the early-stopping best parameters, the step counters and metrics);
- XLA's memory analysis of the compiled chunk (arguments + outputs - donated + temporaries,
  summed over the devices), and the process's peak resident memory (``ru_maxrss``);
- the run throughput (best of ``--repeats`` warm runs, initialisation included) and the time
  per member-step.

A least-squares line through XLA's figures, :math:`M(N) = c + m N`, gives the bytes per member
m (to compare with its own state) and the constant c that does not grow with N (the data sets,
replicated on each device, and the buffers of one chunk's loop).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np


def one(members: int, steps: int, eval_every: int, repeats: int) -> dict[str, float]:
    """The figures of N = ``members`` in this process."""
    from benchmarks.lr_search import run_jdl
    from jdl.search import log_grid

    lrs = log_grid(1e-4, 1e-1, members)
    figures, rerun = run_jdl(lrs, steps, eval_every, None)
    search = figures.pop("search")
    pop, train, val = figures.pop("inputs")
    run_s = min(rerun() for _ in range(repeats))
    state = search.init(pop, train, val)
    own = sum(a.nbytes for a in jax.tree.leaves(state) if a.ndim >= 2)
    program = search.footprint(pop, train, val, None, pop.num_configs) * search.num_devices
    return {
        "members": float(members),
        "devices": float(search.num_devices),
        "state_bytes": float(own),
        "program_bytes": float(program),
        "peak_rss_bytes": float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
        "member_steps_per_s": members * steps / run_s,
        "us_per_member_step": 1e6 * run_s / (members * steps),
        "first_wall_s": figures["wall_s"],
    }


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__)
    p.add_argument("--members", default="16,64,256,1024", help="comma-separated N")
    p.add_argument("--steps", type=int, default=200, help="steps per member")
    p.add_argument("--eval-every", type=int, default=50, help="steps between evaluations")
    p.add_argument("--repeats", type=int, default=2, help="warm runs per N (best)")
    p.add_argument("--no-compile-cache", action="store_true", help="no persistent cache")
    p.add_argument("--one", type=int, default=None, help="one N in this process (internal)")
    p.add_argument("--out", default=None, help="also write the figures as JSON")
    a = p.parse_args(argv)
    if a.one is not None:
        from jdl.run import use_compile_cache
        from jdl.search import use_cpu_cores

        use_cpu_cores()
        if not a.no_compile_cache:
            use_compile_cache()
        row = one(a.one, a.steps, a.eval_every, a.repeats)
        print(json.dumps(row))
        return [row]
    sizes = [int(n) for n in a.members.split(",")]
    rows = []
    for n in sizes:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.scaling",
            "--one",
            str(n),
            "--steps",
            str(a.steps),
            "--eval-every",
            str(a.eval_every),
            "--repeats",
            str(a.repeats),
        ]
        cmd += ["--no-compile-cache"] if a.no_compile_cache else []  # fmt: skip
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    n = np.array([r["members"] for r in rows])
    m, c = np.polyfit(n, np.array([r["program_bytes"] for r in rows]), 1)
    per_state = np.mean([r["state_bytes"] / r["members"] for r in rows])
    print(f"MLP 64-128-128-10, Adam, batch 128, {a.steps} steps; {int(rows[0]['devices'])} devices")
    header = (
        f"{'N':>5s} {'own state MiB':>13s} {'XLA MiB':>8s} {'peak RSS MiB':>12s} "
        f"{'member-steps/s':>14s} {'us/member-step':>14s}"
    )
    print(header + "\n" + "-" * len(header))
    for r in rows:
        print(
            f"{int(r['members']):5d} {r['state_bytes'] / 2**20:13.1f} "
            f"{r['program_bytes'] / 2**20:8.1f} {r['peak_rss_bytes'] / 2**20:12.0f} "
            f"{r['member_steps_per_s']:14.0f} {r['us_per_member_step']:14.1f}"
        )
    print(
        f"\nXLA's footprint M(N) = {c / 2**20:.1f} MiB + {m / 1024:.1f} KiB x N "
        f"(a member's own state: {per_state / 1024:.1f} KiB)"
    )
    summary = {"constant_bytes": c, "bytes_per_member": m, "state_bytes_per_member": per_state}
    if a.out:
        Path(a.out).write_text(json.dumps({"rows": rows, "fit": summary}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
