"""Smoke test of python -m experiments.capacity, run small and in-process."""

import json
import math

import numpy as np
import pytest

from experiments.capacity import load, main, noisy_labels, u_shape
from experiments.capacity_cli import Config


def test_writes_figure_and_results_and_rejects_bad_flags(tmp_path, capsys):
    argv = ["--train-size", "40", "--steps", "20", "--eval-every", "10", "--batch-size", "20"]
    argv += ["--seeds", "2", "--widths", "8", "--out", str(tmp_path)]
    results = main(argv)
    assert (tmp_path / "capacity.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["train_examples"] == 40 and saved["config"]["widths"] == [8]
    capacity = saved["capacity"]
    assert capacity["steps"] == [10, 20]
    assert [r["width"] for r in capacity["rows"]] == [8] and capacity["best_width"] == 8
    for row in capacity["rows"]:
        w = row["width"]
        assert row["parameters"] == 64 * w + w + w * 10 + 10
        assert len(row["val_curve"]) == 2 and all(math.isfinite(v) for v in row["val_curve"])
        for key in ("train_loss", "val_loss", "best_val_loss", "best_step", "val_accuracy"):
            assert math.isfinite(row[key]["mean"]) and row[key]["std"] >= 0
        assert row["best_val_loss"]["mean"] <= row["val_loss"]["mean"] + 1e-6
    assert saved["timing"]["total_s"] > 0
    assert capacity["label_noise"] == 0.2 and capacity["u_shape"] is None  # one width
    capsys.readouterr()
    for bad in (
        ["--label-noise", "1"],
        ["--label-noise", "-0.1"],
        ["--widths", "8,0"],
        ["--seeds", "1"],
        ["--learning-rate", "nan"],
        ["--batch-size", "500"],
        ["--train-size", "100000"],
        ["--l2", "1e-3"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*bad, "--out", str(tmp_path / "bad")])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "error" in err


def test_folds_add_cross_validation_mean_and_std_over_folds(tmp_path, capsys):
    argv = ["--train-size", "40", "--steps", "20", "--eval-every", "10", "--batch-size", "10"]
    argv += ["--seeds", "2", "--widths", "4,8", "--folds", "2", "--out", str(tmp_path)]
    results = main(argv)
    cv = results["capacity"]["cross_validation"]
    assert cv["folds"] == 2 and [r["width"] for r in cv["rows"]] == [4, 8]
    for r in cv["rows"]:
        assert r["folds"] == 2 and len(r["final_val_loss_per_fold"]) == 2
        per_fold = r["final_val_loss_per_fold"]
        assert r["final_val_loss_mean"] == pytest.approx(sum(per_fold) / 2)
        assert r["final_val_loss_std"] == pytest.approx(abs(per_fold[0] - per_fold[1]) / 2**0.5)
    means = {r["width"]: r["final_val_loss_mean"] for r in cv["rows"]}
    assert cv["best_width"] == min(means, key=means.get)
    assert "best width (cross-validation, fold mean)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--folds", "1", "--out", str(tmp_path / "bad")])
    assert exit_info.value.code == 2 and "--folds must be 0" in capsys.readouterr().err


def test_label_noise_changes_that_fraction_of_training_labels_only():
    clean = load(Config(label_noise=0.0), "prog")
    noisy = load(Config(label_noise=0.2), "prog")
    changed = np.asarray(clean[0].y) != np.asarray(noisy[0].y)
    assert changed.sum() == round(0.2 * changed.size)  # each chosen label moved to another class
    np.testing.assert_array_equal(clean[0].x, noisy[0].x)
    for c, n in zip(clean[1:], noisy[1:], strict=True):  # validation and test stay clean
        np.testing.assert_array_equal(c.y, n.y)
    again = noisy_labels(clean[0], 0.2, 0)
    np.testing.assert_array_equal(again.y, noisy[0].y)  # the same seed, the same labels


def test_u_shape_finds_the_first_bottom_and_the_peak_after_it():
    widths = [1, 2, 4, 8, 16, 64]
    u = u_shape(widths, [2.3, 1.8, 1.9, 2.4, 2.0, 1.4])  # a U, then the second descent
    assert (u["bottom_width"], u["top_width"]) == (2, 8)
    assert math.isclose(u["rise"], 2.4 / 1.8 - 1)
    assert u_shape(widths, [2.3, 1.8, 1.5, 1.4, 1.3, 1.2]) is None  # never rises
