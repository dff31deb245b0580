"""Smoke test of python -m experiments.dice, run small and in-process."""

import json
import math

import pytest

from experiments.dice import main


def test_dice_recovers_the_foreground_that_cross_entropy_misses(tmp_path, capsys):
    argv = ["--train-size", "128", "--test-size", "64", "--steps", "150", "--batch-size", "32"]
    results = main([*argv, "--out", str(tmp_path)])
    assert (tmp_path / "dice.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert 0.01 < saved["foreground_fraction"] < 0.08  # a few percent of the pixels
    for model in ("cross_entropy", "dice"):
        for key in ("dice_score", "recall", "precision", "predicted_foreground_fraction"):
            assert 0.0 <= saved[model][key] <= 1.0 and math.isfinite(saved[model][key])
        assert len(saved["curves"][model]) == 150
    ce, dice = saved["cross_entropy"], saved["dice"]
    # The course's point: cross-entropy predicts mostly background, Dice finds the foreground.
    assert dice["recall"] > ce["recall"] + 0.1
    assert dice["dice_score"] > ce["dice_score"]
    assert ce["predicted_foreground_fraction"] < saved["foreground_fraction"]
    capsys.readouterr()
    for bad in (["--steps", "0"], ["--bogus"], ["--contrast", "-1"], ["--batch-size", "9999"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*bad, "--out", str(tmp_path)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "error" in err
