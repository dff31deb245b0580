"""The up-front estimates of memory and time: every experiment refuses an absurd run with one
line and exit status 2 before JAX is imported, ``--allow-long`` lifts the time limit only, the
defaults pass with a wide margin, and the estimates' model sizes are the library's."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from flax import nnx

import jdl
from benchmarks.machine import flops_per_member_step
from experiments import cli, dice, estimates
from experiments.classifiers import cnn

ROOT = Path(__file__).resolve().parents[2]
MACHINE = 16 * 2**30  # the physical memory the in-process tests assume: the limit is 8 GiB
HUGE = ("--steps", "2000000000")  # about a day or more of computing in every experiment below
NEVER_LONG = ("optimizer_paths",)  # its estimate has no FLOPs, and it has no --allow-long

MEMORY = [  # (experiment, flags) whose estimate exceeds 8 GiB of memory
    ("lr_search", ["--num-lrs", "100000000"]),
    ("lr_search", ["--seeds", "10000000"]),
    ("lr_search", ["--hidden", "100000,100000"]),
    ("lr_search", ["--memory-budget", "100", "--seeds", "10000000"]),  # all members' results
    ("lr_search", ["--model", "cnn", "--channels", "1000000"]),
    ("lr_find", ["--grid-lrs", "100000000"]),
    ("lr_find", [*HUGE, "--eval-every", "1", "--hidden", "1", "--batch-size", "1"]),  # history
    ("schedulers", ["--slots", "100000000"]),
    ("adaptive_lr", ["--seeds", "100000000"]),
    ("early_stopping", ["--hidden", "100000,100000"]),
    ("capacity", ["--widths", "10000000"]),
    ("regularization", ["--hidden", "10000000"]),
    ("regularization", ["--k", "100000000"]),
    ("dice", ["--size", "100000"]),
    ("dice", ["--train-size", "1000000000"]),
    ("dice", ["--channels", "1000000000"]),
    ("stacked_denoising", ["--hidden", "100000,100000,100000"]),
    ("weight_sharing", ["--channels", "1000000"]),
    ("weight_sharing", ["--mlp-hidden", "100000,100000"]),
    ("optimizer_paths", ["--num-lrs", "1000000000"]),
    ("optimizer_paths", ["--rosenbrock-steps", "2000000000"]),
    ("optimizer_paths", ["--sparse-steps", "2000000000"]),
]
TIME = [  # (experiment, flags) estimated at more than a day, within the memory
    ("lr_search", [*HUGE]),
    ("lr_search", ["--data", "mnist1d", "--model", "cnn", "--steps", "1000000000"]),
    ("lr_find", [*HUGE, "--eval-every", "100000", "--grid-lrs", "0"]),
    ("schedulers", [*HUGE, "--eval-every", "1000"]),
    ("schedulers", ["--repetitions", "100000000"]),
    ("adaptive_lr", ["--rounds", "20000", "--period", "100000", "--batch-size", "1000"]),
    ("early_stopping", [*HUGE]),
    ("early_stopping", ["--seeds", "100000000"]),
    ("capacity", [*HUGE, "--eval-every", "1000000"]),
    ("regularization", [*HUGE, "--eval-every", "1000000"]),
    ("autoencoders", [*HUGE, "--batch-size", "1000"]),
    ("autoencoders", ["--seeds", "10000000"]),
    ("stacked_denoising", ["--pretrain-steps", "2000000000"]),
    ("stacked_denoising", ["--seeds", "10000000"]),
    ("weight_sharing", [*HUGE]),
]


@pytest.fixture
def small_machine(monkeypatch):
    monkeypatch.setattr(estimates, "physical_memory", lambda: MACHINE)


def _parse(name: str, argv: list[str]):
    module = importlib.import_module(f"experiments.{name}")
    return (getattr(module, "parse_args", None) or module._parse)(argv)


def _refusal(name: str, argv: list[str], tmp_path: Path, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        _parse(name, [*argv, "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"python -m experiments.{name}: error: "), err
    return err


@pytest.mark.parametrize(("name", "argv"), MEMORY)
def test_a_population_beyond_the_memory_exits_2(name, argv, small_machine, tmp_path, capsys):
    err = _refusal(name, argv, tmp_path, capsys)
    assert "of memory (estimated from its flags), more than 50% of this machine's 16.0 GiB" in err
    assert f"{argv[-2]} ({argv[-1]})" in err  # the flag to reduce, with its value
    if name not in NEVER_LONG:  # --allow-long concerns the time, not the memory
        assert "of memory" in _refusal(name, [*argv, "--allow-long"], tmp_path, capsys)


@pytest.mark.parametrize(("name", "argv"), TIME)
def test_a_run_longer_than_a_day_exits_2_unless_allowed(
    name, argv, small_machine, tmp_path, capsys
):
    err = _refusal(name, argv, tmp_path, capsys)
    assert "days (" in err and "FLOPs at 1e12 FLOP/s" in err and "more than 1 day" in err
    assert err.rstrip().endswith("or pass --allow-long to run it anyway")
    config = _parse(name, [*argv, "--allow-long", "--out", str(tmp_path / "out")])
    assert not hasattr(config, "allow_long")  # a matter of the command line only


def _experiments() -> list[str]:
    return sorted(
        p.stem for p in (ROOT / "experiments").glob("*.py") if "cli.parsed(" in p.read_text()
    )


def test_every_experiment_is_checked():
    assert {name for name, _ in MEMORY + TIME} == set(_experiments())


@pytest.mark.parametrize("name", _experiments())
def test_the_refusal_comes_before_jax_on_one_line(name, tmp_path):
    # the first case of the experiment, a time beyond the limit or else 48 TiB of memory or more
    argv = next(argv for n, argv in TIME + MEMORY if n == name)
    out = str(tmp_path / "out")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", f"experiments.{name}", *argv, "--out", out],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    report = [ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:")]
    assert len(report) == 1 and "needs at least" in report[0], report
    imported = {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.splitlines() if "|" in ln}
    assert "experiments.estimates" in imported and not {"jax", "jdl"} & imported


@pytest.mark.parametrize("name", _experiments())
def test_the_defaults_are_far_below_the_limits(name, monkeypatch, tmp_path):
    seen = []
    check = cli.Parser.require_feasible

    def spy(parser, args, cost, *names):
        seen.append(cost)
        check(parser, args, cost, *names)

    monkeypatch.setattr(cli.Parser, "require_feasible", spy)
    _parse(name, ["--out", str(tmp_path / "out")])
    (cost,) = seen
    assert cost.memory < 2**30 and cost.seconds < 1e-3 * estimates.TIME_LIMIT


def test_training_counts_parameters_activations_history_and_work():
    net = estimates.Network(parameters=100, units=10, flops=200)
    cost = estimates.training(2, 10, net, 4, eval_every=5)
    # 2 members x (final and best parameters + 2 evaluations' history) + 2 x (gradients and a
    # moment + value and gradient of 10 units x 4 examples), float32.
    assert cost.memory == 2 * (2 * 100 * 4 + 2 * 8) + 2 * (2 * 100 + 2 * 10 * 4) * 4
    assert cost.flops == 2 * 10 * 4 * 200 and cost.overhead == 2 * estimates.EVAL_SECONDS
    sliced = estimates.training(2, 10, net, 4, eval_every=5, at_once=1, data=1000)
    assert sliced.memory == 1000 + 2 * (2 * 100 * 4 + 2 * 8) + (2 * 100 + 2 * 10 * 4) * 4
    both = cost.then(sliced.repeated(3))
    assert both.memory == cost.memory > sliced.memory and both.flops == 4 * cost.flops
    assert estimates.size(3 * 2**30) == "3.0 GiB" and estimates.duration(90000) == "1.04 days"
    assert estimates.duration(86400) == "1 day" and estimates.duration(0.5) == "0.5 seconds"


def test_the_estimates_model_sizes_are_the_librarys():
    def count(make) -> int:  # shapes only: nothing is computed
        module = nnx.eval_shape(lambda: make(nnx.Rngs(0)))
        return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))

    main_job = estimates.dense((64, 128, 128, 10))
    assert main_job.parameters == count(lambda rngs: jdl.models.MLP((64, 128, 128, 10), rngs=rngs))
    assert main_job.flops * 128 == flops_per_member_step((64 * 128, 128 * 128, 128 * 10), 128)
    for data in ("mnist1d", "digits"):
        for head in ((10,), (32, 10)):
            net = cli.cnn_network(data, 7, head)
            assert net.parameters == count(cnn(data, 10, 7, hidden=head[:-1])), (data, head)
    params = jax.eval_shape(lambda: dice.init_params(jax.random.key(0), 5))
    assert dice.network(16, 5).parameters == sum(x.size for x in jax.tree.leaves(params))
    assert estimates.MEMORY_FRACTION == jdl.search.memory.CPU_FRACTION
