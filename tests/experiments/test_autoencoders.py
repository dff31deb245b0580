"""Smoke test of python -m experiments.autoencoders, run small and in-process."""

import json
import math

import pytest

from experiments.autoencoders import main, parse_args


def _finite(tree) -> bool:
    if isinstance(tree, dict):
        return all(_finite(v) for v in tree.values())
    if isinstance(tree, list):
        return all(_finite(v) for v in tree)
    return not isinstance(tree, float) or math.isfinite(tree)


def test_writes_results_and_figures_and_rejects_bad_flags(tmp_path, capsys):
    argv = ["--seeds", "1", "--steps", "30", "--eval-every", "15", "--patience", "15"]
    results = main([*argv, "--variants", "ae,denoising_masking", "--out", str(tmp_path)])
    for name in ("results.json", "reconstructions.png", "codes.png"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results)) and _finite(saved)
    # A denoiser brings its plain counterpart (same shape, clean training) for the comparison.
    assert list(saved["variants"]) == ["ae", "denoising_masking", "overcomplete"]
    assert set(saved["pca"]) == {
        "code_size",
        "test_mse",
        "test_mse_gaussian",
        "test_mse_masking",
        "probe_accuracy",
    }
    for name, v in saved["variants"].items():
        for key in (
            "test_mse",
            "test_mse_gaussian",
            "test_mse_masking",
            "code_mean_activation",
            "code_near_zero_fraction",
            "probe_accuracy",
            "best_step",
        ):
            assert len(v[key]["per_seed"]) == 1 and v[key]["std"] == 0.0, (name, key)
        assert 0.0 <= v["probe_accuracy"]["mean"] <= 1.0
        assert 0 <= v["best_step"]["mean"] <= 30
    ae, denoiser = saved["variants"]["ae"], saved["variants"]["denoising_masking"]
    assert ae["target_mse"] == 0.010 and isinstance(ae["meets_target"], bool)
    assert isinstance(ae["beats_pca"], bool) and "beats_pca" not in denoiser  # 128-d code
    plain = saved["variants"]["overcomplete"]["test_mse_masking"]["mean"]
    assert denoiser["plain_mse_on_corrupted"] == plain
    assert denoiser["denoiser_mse_on_corrupted"] == denoiser["test_mse_masking"]["mean"]
    capsys.readouterr()
    for bad in (["--steps", "0"], ["--bogus"], ["--variants", "vae"], ["--learning-rate", "nan"]):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(bad)
        assert exit_info.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
