"""Smoke test of python -m experiments.lr_find: files, keys, finite numbers, CLI errors."""

import json
import math

import pytest

from experiments import lr_find


def test_lr_find_small(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--steps", "30", "--seeds", "2", "--eval-every", "3", "--hidden", "16"]
    argv += ["--lr-min", "1e-4", "--lr-max", "30", "--grid-lrs", "3", "--grid-steps", "20"]
    results = lr_find.main([*argv, "--batch-size", "32", "--out", str(out)])
    assert (out / "lr_find.png").stat().st_size > 0
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    r = saved["range_test"]
    assert len(r["learning_rate"]) == 10 and len(r["loss"]) == 2 and len(r["per_seed"]) == 2
    rates = r["learning_rate"]
    assert rates == sorted(rates) and 1e-4 < rates[0] < rates[-1] <= 30 * (1 + 1e-5)
    assert 1e-4 <= r["suggestion"] <= 30 and "steepest descent" in r["rule"]
    assert r["diverged"] == [True, True]  # Adam at a rate of 30 blows up
    assert all(v is None or math.isfinite(v) for curve in r["loss"] for v in curve)
    grid = saved["grid"]
    assert len(grid["learning_rate"]) == 3 and grid["good_range"][0] <= grid["good_range"][1]
    low, high = grid["good_range"]
    assert saved["suggestion_in_good_range"] == (low <= r["suggestion"] <= high)
    printed = capsys.readouterr().out
    assert "suggested learning rate" in printed and "good range" in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr-min", "1", "--lr-max", "1"], "must be below --lr-max"),
        (["--steps", "1"], "--steps must be >= 2"),
        (["--divergence", "1"], "--divergence must be a finite number > 1"),
        (["--smoothing", "1"], "--smoothing must be in [0, 1)"),
        (["--grid-lrs", "-1"], "--grid-lrs must be an int in"),
        (["--optimizer", "adamm"], "unknown optimizer"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        lr_find.main([*argv, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
