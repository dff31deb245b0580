"""Smoke test of python -m experiments.stacked_denoising, run small and in-process."""

import json
import math

import pytest

from experiments.stacked_denoising import main, parse_args


def test_writes_results_and_figure_and_rejects_bad_flags(tmp_path, capsys):
    results = main(
        [
            "--seeds",
            "1",
            "--hidden",
            "12",
            "--noise-levels",
            "0.2",
            "--label-fractions",
            "0.5",
            "--pretrain-steps",
            "20",
            "--finetune-steps",
            "20",
            "--eval-every",
            "10",
            "--out",
            str(tmp_path),
        ]
    )
    assert (tmp_path / "stacked_denoising.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert len(saved["pretraining"]["val_denoising_mse"]) == 1  # one layer
    assert math.isfinite(saved["pretraining"]["val_denoising_mse"][0]["mean"])
    entry = saved["fine_tuning"]["0.5"]
    assert entry["labelled_train"] < 1000 and entry["labelled_val"] < 300
    for arm in ("pretrained", "random"):
        for key in ("test_accuracy", "best_step", "stop_step", "best_epoch", "stop_epoch"):
            stats = entry[arm][key]
            assert len(stats["per_seed"]) == 1 and math.isfinite(stats["mean"]), (arm, key)
        assert 0.0 <= entry[arm]["test_accuracy"]["mean"] <= 1.0
        assert entry[arm]["stop_step"]["mean"] <= 20
    assert math.isfinite(entry["pretraining_gain"]) and isinstance(
        entry["gain_exceeds_spread"], bool
    )
    capsys.readouterr()
    for bad in (
        ["--seeds", "0"],
        ["--bogus"],
        ["--hidden", "10,10", "--noise-levels", "0.1"],
        ["--noise", "blur"],
        ["--label-fractions", "0"],
        ["--noise-levels", "2,0.1,0.1"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(bad)
        assert exit_info.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
