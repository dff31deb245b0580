"""Learning-rate search: jdl.search against the searches users write by hand, like for like.

    python -m benchmarks.lr_search [--workload {mlp,cnn}] [--members 32] [--steps 500]
        [--eval-every 100] [--repeats 3] [--sequential-members N] [--torch-python PATH]
        [--no-compile-cache] [--out FILE]

N Adam members (learning rates on a log grid) of a workload (`benchmarks.machine`): the MLP
64-128-128-10 on digits (the default) or, with ``--workload cnn``, the CNN of
`experiments.classifiers.cnn` on MNIST-1D (three stride-2 convolutions of 32 channels, each
computed by `jdl.models.Conv` as one matrix product per kernel tap); batch 128, every variant
on the same devices (on a CPU host, one device per core, `use_cpu_cores`):

1. jdl: ``jdl.search.Search`` (one ``jit(vmap(...))`` over the members, evaluation and early
   stopping every ``--eval-every`` steps) sharded over every device; 1b: on one device;
2. the N runs one after another as most users write them: ``optax.adam(lr)`` built per run, a
   jitted step called from Python on host-drawn batches (every run compiles), the validation
   loss every ``--eval-every`` steps; 3: the same, one compiled step for all runs;
4. a hand-written optax ``inject_hyperparams`` + ``vmap`` + ``lax.scan`` program, one call for
   all steps, one batch per step shared by the members, sharded over every device as jdl is;
   4b: on one device; 4c: on one device, compiled with the XLA options jdl chooses there
   (`jdl.search.compiled.compiler_options`), so that 1b against 4b shows what jdl's choice of
   options gives and 1b against 4c what remains;
5. PyTorch ``torch.func`` with a hand-written vectorised Adam, a plain eager loop, in the
   interpreter ``--torch-python`` (the MLP only; skipped when torch is absent).

Timed alike: the clock starts before the members' parameters are initialised and stops when
the last parameters are ready (``block_until_ready``); every program compiles inside the first
timer (cold: a fresh program, JAX's persistent cache off). Each variant is the best of the
same ``--repeats`` cold runs (wall time, compilation included: the headline), interleaved; the
compiled ones (1, 1b, 4, 4b) also run ``--repeats`` more times warm, for the run throughput.
A member-step counts only the matrix products computed (`benchmarks.machine`), checked against
XLA's cost analysis, and the FLOP rate is given as a share of the whole machine's measured
fp32 matmul peak. Last, jdl's variant 1 runs twice more in fresh processes sharing a
persistent compilation cache: the second is a cached run (``--no-compile-cache``: skipped).

On the CNN every variant computes the convolutions as `jdl.models.Conv` does; under ``vmap``
each tap's product becomes one matrix product batched over the members, where a vmapped
``lax.conv_general_dilated`` becomes a grouped convolution that XLA's CPU backend runs slower
(`benchmarks.vmapped_conv` compares the two).

On an accelerator the same command runs unchanged with ``--members`` up to 1024; the sequential
variants then run ``--sequential-members`` runs and are scaled to N (said in the table).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jdl.optim
from benchmarks import baselines
from benchmarks.machine import (
    BATCH,
    WORKLOADS,
    flops_per_member_step,
    matmul_peak,
    setup,
    xla_flops_per_member_step,
)
from jdl.data import Dataset
from jdl.losses import accuracy, softmax_cross_entropy
from jdl.search import Search, log_grid, member_mesh, population, use_cpu_cores
from jdl.search.compiled import compiler_options
from jdl.train import early_stopping


def run_jdl(
    lrs: np.ndarray, steps: int, eval_every: int, devices: int | None, workload: str = "mlp"
) -> tuple[dict[str, float], Callable[[], float]]:
    """Variant 1: a fresh ``Search`` (nothing compiled) trains the population of ``workload``,
    sharded over ``devices``. Returns the figures and ``rerun() -> seconds`` of the same,
    compiled, search."""
    w = setup(workload)
    apply_fn, init_fn, train, val = w.apply_fn, w.init_fn, w.train, w.val

    def loss_fn(params: Any, batch: Dataset, key: jax.Array) -> tuple[jax.Array, dict]:
        return softmax_cross_entropy(apply_fn(params, batch.x), batch.y), {}

    def eval_fn(params: Any, data: Dataset) -> dict[str, jax.Array]:
        logits = apply_fn(params, data.x)
        return {"loss": softmax_cross_entropy(logits, data.y), "accuracy": accuracy(logits, data.y)}

    start = time.perf_counter()
    search = Search(
        init_fn,
        lambda hp: jdl.optim.adam(hp["learning_rate"]),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=BATCH,
        eval_every=eval_every,
        early_stopping=early_stopping(10 * steps),  # no member stops: the same work as others
        devices=devices,
    )
    pop = population({"learning_rate": lrs})
    first = search.run(pop, train, val, steps=steps, progress=False)  # results on the host
    wall = time.perf_counter() - start
    assert (first.steps == steps).all()

    def rerun() -> float:
        start = time.perf_counter()
        search.run(pop, train, val, steps=steps, progress=False)
        return time.perf_counter() - start

    figures: dict[str, Any] = {
        "compile_s": first.timing["compile_s"],
        "run_s": wall - first.timing["compile_s"],
        "wall_s": wall,
        "member_steps": float(len(lrs) * steps),
        "devices": float(search.num_devices),
        "search": search,
        "inputs": (pop, train, val),
    }
    return figures, rerun


def cached_walls(members: int, steps: int, eval_every: int, workload: str) -> list[float]:
    """Variant 1's wall time in two fresh processes sharing an empty persistent compilation
    cache: the first compiles and fills it, the second reads its programs back."""
    walls = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, JDL_COMPILE_CACHE=cache, PYTHONPATH=os.getcwd())
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.lr_search", "--jdl-only", "--members",
                 str(members), "--steps", str(steps), "--eval-every", str(eval_every),
                 "--workload", workload],
                capture_output=True, text=True, check=True, env=env,
            )  # fmt: skip
            walls.append(json.loads(out.stdout.strip().splitlines()[-1])["wall_s"])
    return walls


def _default_torch_python() -> str | None:
    """``$JDL_TORCH_PYTHON``, else this interpreter if it has torch, else None (skip)."""
    if os.environ.get("JDL_TORCH_PYTHON"):
        return os.environ["JDL_TORCH_PYTHON"]
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.lr_search", description=__doc__)
    p.add_argument(
        "--workload",
        default="mlp",
        choices=WORKLOADS,
        help="the MLP on digits or the CNN on MNIST-1D (benchmarks.machine)",
    )
    p.add_argument("--members", type=int, default=32, help="members N")
    p.add_argument("--steps", type=int, default=500, help="steps per member")
    p.add_argument("--eval-every", type=int, default=100, help="steps between evaluations")
    p.add_argument("--repeats", type=int, default=3, help="runs of every variant (best)")
    p.add_argument(
        "--sequential-members",
        type=int,
        default=None,
        help="runs of variants 2-3, scaled to N (default: N on CPU, min(N, 32) elsewhere)",
    )
    p.add_argument(
        "--torch-python",
        default=_default_torch_python(),
        help="a Python interpreter with torch for variant 5 (default: $JDL_TORCH_PYTHON)",
    )
    p.add_argument(
        "--no-compile-cache", action="store_true", help="skip the cached run (persistent cache)"
    )
    p.add_argument("--jdl-only", action="store_true", help="variant 1 once, as JSON (internal)")
    p.add_argument("--out", default=None, help="also write the figures as JSON")
    a = p.parse_args(argv)
    if min(a.members, a.steps, a.eval_every, a.repeats, a.sequential_members or 1) < 1:
        p.error("--members, --steps, --eval-every, --repeats, --sequential-members must be >= 1")
    return a


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs every variant in this process and prints times, rates and ratios."""
    a = parse(argv)
    # jdl shards its population over the devices; on a CPU host, one device per core. The
    # hand-written program is given the same devices.
    use_cpu_cores()
    lrs = log_grid(1e-4, 1e-1, a.members)
    if a.jdl_only:
        from jdl.run import use_compile_cache

        use_compile_cache()
        figures, _ = run_jdl(lrs, a.steps, a.eval_every, None, a.workload)
        print(json.dumps({k: v for k, v in figures.items() if isinstance(v, float)}))
        return figures
    accelerator = jax.default_backend() != "cpu"
    seq_n = a.sequential_members or (min(a.members, 32) if accelerator else a.members)
    seq_lrs = log_grid(1e-4, 1e-1, seq_n)
    peak = matmul_peak()
    workload = setup(a.workload)
    flop = flops_per_member_step(workload.products)
    xla_flop = xla_flops_per_member_step(workload)
    d = len(jax.devices())
    names = {
        "all": f"1 jdl.search, {d} devices",
        "one": "1b jdl.search, 1 device",
        "seq": "2 sequential, recompiled",
        "seq1": "3 sequential, one compile",
        "hand": f"4 hand-written vmap+scan, {d} devices",
        "hand1": "4b hand-written vmap+scan, 1 device",
        "hand1x": "4c 4b with jdl's XLA options",
    }
    one_device_options = compiler_options(list(member_mesh(1).devices.flat))
    cold: dict[str, Callable[[], tuple[dict, Callable | None]]] = {
        "all": lambda: run_jdl(lrs, a.steps, a.eval_every, None, a.workload),
        "one": lambda: run_jdl(lrs, a.steps, a.eval_every, 1, a.workload),
        "seq": lambda: (
            baselines.sequential(seq_lrs, a.steps, a.eval_every, reuse=False, workload=a.workload),
            None,
        ),
        "seq1": lambda: (
            baselines.sequential(seq_lrs, a.steps, a.eval_every, reuse=True, workload=a.workload),
            None,
        ),
        "hand": lambda: baselines.handwritten(lrs, a.steps, None, a.workload),
        "hand1": lambda: baselines.handwritten(lrs, a.steps, 1, a.workload),
        "hand1x": lambda: baselines.handwritten(
            lrs, a.steps, 1, a.workload, options=one_device_options
        ),
    }
    if not one_device_options:  # jdl keeps XLA's defaults on one device: 4c would be 4b
        del cold["hand1x"]
    best: dict[str, dict] = {}
    reruns: dict[str, Callable[[], float]] = {}
    walls: dict[str, list[float]] = {k: [] for k in cold}
    for _ in range(a.repeats):  # interleaved: a busy machine slows every variant alike
        for k, fn in cold.items():
            figures, rerun = fn()
            figures = {k: v for k, v in figures.items() if isinstance(v, float)}
            walls[k].append(figures["wall_s"])
            if k not in best or figures["wall_s"] < best[k]["wall_s"]:
                best[k] = figures
            if rerun is not None:
                reruns[k] = rerun
    warm: dict[str, list[float]] = {k: [] for k in reruns}
    for _ in range(a.repeats):
        for k, rerun in reruns.items():
            warm[k].append(rerun())
    results: dict[str, dict] = {}
    for k, figures in best.items():
        r = dict(figures)
        scale = a.members / seq_n if k.startswith("seq") else 1.0
        for t in ("wall_s", "compile_s", "run_s"):
            r[t] *= scale
        r["member_steps"] *= scale
        r["walls_s"] = [w * scale for w in walls[k]]
        if k in warm:
            r["run_s"], r["warm_runs_s"] = min(warm[k]), warm[k]
        results[names[k]] = r
    if a.workload == "mlp":  # the torch script writes the MLP
        torch_result = baselines.torch_func(a.torch_python, lrs, a.steps)
        if torch_result is not None:
            results["5 torch.func vmap (eager)"] = torch_result
    cached = (
        None if a.no_compile_cache else cached_walls(a.members, a.steps, a.eval_every, a.workload)
    )
    print(f"jdl's XLA options on one device: {one_device_options or 'XLA defaults'}")
    return report(a, workload.model, results, names, peak, flop, xla_flop, cached, seq_n)


def report(
    a: argparse.Namespace,
    model: str,
    results: dict[str, dict],
    names: dict[str, str],
    peak: float,
    flop: float,
    xla_flop: float,
    cached: list[float] | None,
    seq_n: int,
) -> dict[str, Any]:
    """Prints the table and the ratios; writes ``--out``; returns everything."""
    jdl_all, jdl_one = results[names["all"]], results[names["one"]]
    hand_all, hand_one = results[names["hand"]], results[names["hand1"]]
    print(
        f"{a.members} Adam members, {model}, batch {BATCH}, "
        f"{a.steps} steps, best of {a.repeats}; {jax.devices()[0].platform}, "
        f"{len(jax.devices())} devices, {os.cpu_count()} cores"
    )
    print(f"measured fp32 matmul peak (all devices): {peak / 1e9:.1f} GFLOP/s")
    print(
        f"FLOP per member-step: {flop / 1e6:.2f} M counted (matrix products computed), "
        f"{xla_flop / 1e6:.2f} M by XLA's cost analysis of one compiled step "
        f"({xla_flop / flop:.3f}x: biases, activations, loss, Adam)\n"
    )
    if seq_n != a.members:
        print(f"(variants 2-3: {seq_n} runs, scaled to {a.members})")
    header = (
        f"{'variant':34s} {'wall s':>7s} {'compile s':>9s} {'run s':>7s} "
        f"{'member-steps/s':>14s} {'% peak':>6s} {'jdl wall x':>10s} {'jdl thrpt x':>11s}"
    )
    print(header + "\n" + "-" * len(header))
    for name, r in results.items():
        r["member_steps_per_s"] = r["member_steps"] / r["run_s"]
        r["fraction_of_peak"] = r["member_steps_per_s"] * flop / peak
        # Against jdl on the same devices: 1b for the one-device variants, else 1.
        ref = jdl_one if name.startswith(("1b", "4b", "4c")) else jdl_all
        r["jdl_wall_speedup"] = r["wall_s"] / ref["wall_s"]
        r["jdl_throughput_ratio"] = ref["member_steps"] / ref["run_s"] / r["member_steps_per_s"]
        print(
            f"{name:34s} {r['wall_s']:7.2f} {r['compile_s']:9.2f} {r['run_s']:7.2f} "
            f"{r['member_steps_per_s']:14.0f} {100 * r['fraction_of_peak']:6.1f} "
            f"{r['jdl_wall_speedup']:10.2f} {r['jdl_throughput_ratio']:11.2f}"
        )

    def rate(r: dict) -> float:
        return r["member_steps"] / r["run_s"]

    summary = {
        "wall_vs_sequential_recompiled": results[names["seq"]]["jdl_wall_speedup"],
        "wall_vs_sequential_one_compile": results[names["seq1"]]["jdl_wall_speedup"],
        "wall_vs_handwritten_same_devices": hand_all["wall_s"] / jdl_all["wall_s"],
        "throughput_vs_handwritten_same_devices": rate(jdl_all) / rate(hand_all),
        "wall_vs_handwritten_1_device": hand_one["wall_s"] / jdl_one["wall_s"],
        "throughput_vs_handwritten_1_device": rate(jdl_one) / rate(hand_one),
        "throughput_all_devices_vs_handwritten_1_device": rate(jdl_all) / rate(hand_one),
        "jdl_fraction_of_peak": jdl_all["fraction_of_peak"],
    }
    if names["hand1x"] in results:
        same = results[names["hand1x"]]
        summary["throughput_vs_handwritten_1_device_jdl_options"] = rate(jdl_one) / rate(same)
    if cached is not None:
        summary["jdl_wall_first_process_s"], summary["jdl_wall_cached_process_s"] = cached
    print("\njdl over the others (ratios > 1: jdl faster):")
    print("\n".join(f"  {k}: {v:.3f}" for k, v in summary.items()))
    out = {
        "config": vars(a),
        "peak_flop_per_s": peak,
        "flop_per_member_step": flop,
        "xla_flop_per_member_step": xla_flop,
        "variants": results,
        "summary": summary,
    }
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
