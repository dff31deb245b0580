"""Smoke test of python -m experiments.adaptive_lr: files, keys, finite numbers, CLI errors."""

import json
import math

import pytest

from experiments import adaptive_lr


def test_adaptive_lr_small(tmp_path):
    out = tmp_path / "run"
    argv = [
        "--num-lrs",
        "2",
        "--lr-min",
        "0.03",
        "--lr-max",
        "0.3",
        "--seeds",
        "1",
        "--rounds",
        "2",
        "--period",
        "6",
        "--probe-steps",
        "2",
        "--probe-size",
        "64",
        "--batch-size",
        "32",
        "--hidden",
        "16",
        "--out",
        str(out),
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
    ]
    results = adaptive_lr.main(argv)
    assert (out / "adaptive_lr.png").stat().st_size > 0
    saved = json.loads((out / "results.json").read_text())
    assert set(saved) == {"config", "fixed", "decay", "adaptive", "grid"}
    assert saved["config"]["steps"] == 16
    for name in ("fixed", "decay", "adaptive"):
        r = saved[name]
        assert math.isfinite(r["best_val_loss_mean"]) and 0 <= r["test_accuracy_mean"] <= 1
        assert len(r["val_loss_curve"]) == 2 and r["steps"] == [8, 16]
    assert saved["decay"]["tau"] == 4.0 and saved["fixed"]["tau"] is None
    lrs = saved["adaptive"]["learning_rates"]  # (seeds, rounds), each a multiple 0.5, 1 or 2
    assert len(lrs) == 1 and len(lrs[0]) == 2
    assert any(math.isclose(lrs[0][0], 0.01 * m, rel_tol=1e-5) for m in (0.5, 1.0, 2.0))
    assert len(saved["grid"]["learning_rate"]) == 4  # 2 rates x (constant, decay)
    assert results["fixed"]["learning_rate"] in (pytest.approx(0.03), pytest.approx(0.3))
    # Again with the same checkpoints: every run resumes from its end, the same numbers.
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["adaptive", "fixed-and-decay"]
    adaptive_lr.main([*argv, "--overwrite"])
    resumed = json.loads((out / "results.json").read_text())
    assert {k: v for k, v in resumed.items() if k != "config"} == {
        k: v for k, v in saved.items() if k != "config"
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--optimizer", "nope"], "unknown optimizer"),
        (["--multipliers", "1,-2"], "positive"),
        (["--rounds", "0"], "--rounds must be a positive int"),
        (["--tau-fraction", "2"], "--tau-fraction must be in (0, 1]"),
    ],
)
def test_bad_input_exits_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        adaptive_lr.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
