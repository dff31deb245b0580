"""Smoke test of python -m experiments.lr_search: files, keys, finite numbers, CLI errors."""

import csv
import json
import math

import pytest

from experiments import lr_search

MEMBER_KEYS = {
    "learning_rate",
    "seed",
    "final_train_loss",
    "best_val_loss",
    "best_step",
    "val_accuracy",
    "test_accuracy",
    "stopped_early",
    "diverged",
}


def test_lr_search_small(tmp_path, capsys):
    out = tmp_path / "run"
    lr_search.main(
        [
            "--num-lrs",
            "3",
            "--lr-min",
            "1e-2",
            "--lr-max",
            "100",
            "--seeds",
            "2",
            "--steps",
            "45",
            "--batch-size",
            "32",
            "--hidden",
            "16",
            "--patience",
            "20",
            "--optimizer",
            "sgd",
            "--out",
            str(out),
        ]
    )
    for name in ("results.json", "results.csv", "lr_curve.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert set(saved) == {"config", "members", "best", "timing", "devices"}
    assert saved["devices"] >= 1 and saved["config"]["steps"] == 45
    assert set(saved["timing"]) == {"compile_s", "run_s", "member_steps_per_s"}
    assert len(saved["members"]) == 6 and all(set(m) == MEMBER_KEYS for m in saved["members"])
    # SGD at a learning rate of 100 blows up: a row of the table, not a crash.
    wild = [m for m in saved["members"] if m["learning_rate"] == pytest.approx(100.0)]
    assert len(wild) == 2 and all(m["diverged"] for m in wild)
    calm = [m for m in saved["members"] if not m["diverged"]]
    assert calm and all(math.isfinite(m["best_val_loss"]) for m in calm)
    assert all(0.0 <= m["test_accuracy"] <= 1.0 for m in saved["members"])
    assert saved["best"]["learning_rate"] < 100 and math.isfinite(
        saved["best"]["best_val_loss_mean"]
    )
    assert all(math.isfinite(v) and v >= 0 for v in saved["timing"].values())
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and set(rows[0]) >= MEMBER_KEYS
    printed = capsys.readouterr().out
    assert "best learning rate:" in printed and "best_val_loss_mean" in printed  # seed aggregate


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--optimizer", "adamm"], "unknown optimizer 'adamm'"),
        (["--lr-min", "1", "--lr-max", "0.1"], "must not exceed --lr-max"),
        (["--num-lrs", "0"], "--num-lrs must be a positive int"),
        (["--seeds", "-1"], "--seeds must be a positive int"),
        (["--steps", "0"], "--steps must be a positive int"),
        (["--hidden", "12,x"], "comma-separated positive ints"),
        (["--lr-min", "nan"], "finite number > 0"),
        (["--bogus"], "unrecognized arguments"),
        (["--devices", "0"], "--devices must be a positive int"),
        (["--coordinator", "h:1"], "need --distributed"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        lr_search.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
