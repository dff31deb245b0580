"""Smoke test of python -m experiments.early_stopping, run small and in-process."""

import json
import math

import pytest

from experiments.early_stopping import main


def test_writes_curves_and_results_and_rejects_bad_flags(tmp_path, capsys):
    results = main(
        [
            "--train-size",
            "60",
            "--hidden",
            "16",
            "--steps",
            "80",
            "--eval-every",
            "10",
            "--batch-size",
            "16",
            "--patience",
            "20",
            "--bengio-patience",
            "20",
            "--learning-rate",
            "0.01",
            "--no-progress",
            "--seeds",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    assert (tmp_path / "curves.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["train_examples"] == 60 and saved["history"]["step"][-1] == 80
    keys = {
        "stopped_early",
        "stop_step",
        "best_step",
        "best_val_loss",
        "final_val_loss",
        "test_accuracy_restored",
        "test_accuracy_final",
    }
    for name in ("none", "keras", "bengio"):
        rule = saved["rules"][name]
        assert set(rule) == keys
        assert all(math.isfinite(v) for v in rule.values())
        assert 0 <= rule["best_step"] <= rule["stop_step"] <= 80
        assert 0.0 <= rule["test_accuracy_restored"] <= 1.0
    assert not saved["rules"]["none"]["stopped_early"]
    # Same seed, same trajectory: every rule finds the same best model until it stops.
    none, keras = saved["rules"]["none"], saved["rules"]["keras"]
    if keras["best_step"] < keras["stop_step"]:
        assert keras["best_val_loss"] >= none["best_val_loss"]
    # Over seeds: seed 0's numbers are the first of each list; mean and std are theirs.
    for name, rule in saved["over_seeds"].items():
        for key, stats in rule.items():
            assert len(stats["values"]) == 2
            assert stats["values"][0] == pytest.approx(saved["rules"][name][key])
            assert stats["mean"] == pytest.approx(sum(stats["values"]) / 2)
            assert stats["std"] == pytest.approx(abs(stats["values"][0] - stats["values"][1]) / 2)
    capsys.readouterr()
    bad_flags = (["--steps", "0"], ["--bogus"], ["--hidden", "a,b"], ["--patience-increase", "1"])
    for bad in (*bad_flags, ["--seeds", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*bad, "--out", str(tmp_path / "bad")])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "error" in err
