"""Every experiment's command line: --help before JAX, one-line errors with status 2 for bad
counts, rates, batch sizes and --out, and the light copies of names kept equal to the library's."""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jdl
from experiments import autoencoders, cli, stacked_denoising

ROOT = Path(__file__).resolve().parents[2]
# Every runnable experiment: the modules that parse their command line before importing JAX.
EXPERIMENTS = tuple(
    sorted(
        path.stem
        for path in (ROOT / "experiments").glob("*.py")
        if "cli.parsed(parse_args)" in path.read_text()
    )
)
# The experiments that draw mini-batches, and a command line of theirs otherwise valid.
BATCHED = [e for e in EXPERIMENTS if e != "optimizer_paths"]


def _python(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _imported(importtime_stderr: str) -> set[str]:
    """The modules named by ``python -X importtime``'s report."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime_stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_help_lists_every_flag_with_default_before_jax(name):
    proc = _python("-X", "importtime", "-m", f"experiments.{name}", "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = _imported(proc.stderr)
    assert "experiments.cli" in imported or "cli" in {m.split(".")[-1] for m in imported}
    assert not {"jax", "jdl", "matplotlib"} & imported, sorted(imported)
    text = proc.stdout
    options = re.findall(r"^  (-h|--[\w-]+)", text, flags=re.MULTILINE)
    assert len(options) >= 5 and options[0] == "-h"
    # Every flag but -h has a description and shows its default.
    assert text.count("(default:") == len(options) - 1, text
    description = text.split("\n\n")[1]
    assert description.rstrip().endswith("."), description  # a whole sentence


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_mistyped_flag_exits_2_on_one_line_before_jax(name):
    proc = _python("-X", "importtime", "-m", f"experiments.{name}", "--lerning-rate", "1")
    assert proc.returncode == 2
    report = [ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:")]
    assert len(report) == 1 and "unrecognized arguments: --lerning-rate" in report[0]
    assert "jax" not in _imported(proc.stderr)


def _exits_2(name: str, argv: list[str], capsys) -> str:
    module = importlib.import_module(f"experiments.{name}")
    parse = getattr(module, "parse_args", None) or module._parse
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err, err
    return err


@pytest.mark.parametrize("name", BATCHED)
def test_batch_size_larger_than_the_data_exits_2(name, capsys, tmp_path):
    err = _exits_2(name, ["--batch-size", "5000", "--out", str(tmp_path / "o")], capsys)
    assert "--batch-size 5000 exceeds the" in err


@pytest.mark.parametrize(
    ("name", "argv", "message"),
    [
        ("lr_search", ["--steps", "2147483648"], "--steps must be a positive int (at most"),
        ("lr_search", ["--num-lrs", "99999999999"], "--num-lrs must be a positive int"),
        ("early_stopping", ["--seed", "4294967296"], "--seed must be an int in [0, 2147483647]"),
        ("capacity", ["--widths", "8,2147483648"], "comma-separated positive ints"),
        ("autoencoders", ["--eval-every", "3000000000"], "--eval-every must be a positive int"),
        ("stacked_denoising", ["--pretrain-steps", "2147483648"], "--pretrain-steps must be"),
        ("adaptive_lr", ["--rounds", "100000", "--period", "100000"], "fit an int32"),
        ("optimizer_paths", ["--rosenbrock-steps", "2147483648"], "--rosenbrock-steps must"),
    ],
)
def test_counts_that_overflow_int32_exit_2(name, argv, message, capsys, tmp_path):
    assert message in _exits_2(name, [*argv, "--out", str(tmp_path / "o")], capsys)


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("lr_search", ["--lr-min", "1e-50"]),
        ("early_stopping", ["--learning-rate", "1e-46"]),
        ("capacity", ["--learning-rate", "1e-39"]),  # a float32 denormal: XLA flushes it to 0
        ("autoencoders", ["--learning-rate", "1e300"]),  # overflows float32
        ("stacked_denoising", ["--finetune-learning-rate", "1e-45"]),
        ("adaptive_lr", ["--initial-lr", "1e-60"]),
        ("optimizer_paths", ["--lr-min", "1e-50"]),
        ("regularization", ["--l2", "1e-3,1e-50"]),
    ],
)
def test_rates_that_float32_cannot_hold_exit_2(name, argv, capsys, tmp_path):
    err = _exits_2(name, [*argv, "--out", str(tmp_path / "o")], capsys)
    assert "not a normal float32 number" in err


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_bad_out_exits_2_before_training(name, capsys, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert "empty string" in _exits_2(name, ["--out", ""], capsys)
    assert "is not a folder" in _exits_2(name, ["--out", str(a_file)], capsys)
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "results.json").write_text("{}")
    assert "pass --overwrite" in _exits_2(name, ["--out", str(previous)], capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_out_exits_2(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        err = _exits_2("lr_search", ["--out", str(locked / "run")], capsys)
        assert "cannot be written" in err
    finally:
        locked.chmod(0o700)


def test_overwrite_and_empty_out_are_accepted(tmp_path):
    from experiments import lr_search

    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "results.json").write_text("{}")
    assert lr_search.parse_args(["--out", str(previous), "--overwrite"]).overwrite
    (tmp_path / "empty").mkdir()
    assert lr_search.parse_args(["--out", str(tmp_path / "empty"), "--format", "svg"]).format == (
        "svg"
    )


def test_light_names_equal_the_librarys():
    assert tuple(jdl.optim.OPTIMIZERS) == cli.OPTIMIZER_NAMES
    assert jdl.data.digits(seed=0).train.x.shape == (cli.DIGITS_TRAIN_EXAMPLES, cli.DIGITS_FEATURES)
    assert set(stacked_denoising.NOISES) == set(jdl.run.pretraining.NOISES)
    assert tuple(autoencoders.VARIANTS) == autoencoders.VARIANT_NAMES
    noisy = {n for n, v in autoencoders.VARIANTS.items() if v.noise}
    assert set(autoencoders.DENOISERS) == noisy


def test_parser_requires_a_help_text():
    with pytest.raises(TypeError, match="help text"):
        cli.Parser(prog="p").add_argument("--x", type=int, default=1)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_a_bad_jdl_xla_defaults_exits_2_on_one_line(name, monkeypatch, capsys):
    monkeypatch.setenv("JDL_XLA_DEFAULTS", "yes")
    err = _exits_2(name, ["--out", "unused"], capsys)
    assert "$JDL_XLA_DEFAULTS must be 1 or 0 (or unset), got 'yes'" in err
