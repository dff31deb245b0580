"""Smoke test of python -m experiments.regularization, run small and in-process."""

import json
import math

import pytest

from experiments.regularization import main


def test_writes_figures_and_table_and_rejects_bad_flags(tmp_path, capsys):
    argv = ["--train-size", "40", "--hidden", "8", "--steps", "20", "--eval-every", "10"]
    argv += ["--batch-size", "20", "--seeds", "2", "--widths", "8", "--l2", "1e-3,1e-1"]
    argv += ["--methods", "none,l2,early_stopping", "--out", str(tmp_path)]
    results = main(argv)
    for name in ("capacity.png", "regularizers.png"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["train_examples"] == 40
    (row,) = saved["capacity"]["rows"]
    assert row["width"] == 8 and row["parameters"] == 64 * 8 + 8 + 8 * 10 + 10
    assert len(row["val_curve"]) == 2 and all(math.isfinite(v) for v in row["val_curve"])
    for key in ("train_loss", "val_loss", "best_val_loss", "val_accuracy"):
        assert math.isfinite(row[key]["mean"]) and row[key]["std"] >= 0
    assert list(saved["methods"]) == ["none", "l2", "early_stopping"]
    for method, entry in saved["methods"].items():
        for key in ("val_accuracy", "test_accuracy"):
            assert 0.0 <= entry[key]["mean"] <= 1.0 and math.isfinite(entry[key]["std"])
        assert entry["chosen"] in [None] + [g["value"] for g in entry["grid"]], method
    assert [g["value"] for g in saved["methods"]["l2"]["grid"]] == [1e-3, 1e-1]
    assert 0 <= saved["methods"]["early_stopping"]["chosen"] <= 20
    verdict = saved["verdict"]
    assert verdict["best"] in ("l2", "early_stopping")
    assert set(verdict["comparison"]) == {"l2", "early_stopping"}
    assert "than the seed spread" in verdict["statement"]
    assert saved["timing"]["total_s"] > 0
    capsys.readouterr()
    for bad in (
        ["--steps", "0"],
        ["--bogus"],
        ["--methods", "l2,ridge"],
        ["--dropout", "1.5"],
        ["--l2", "-1e-3"],
        ["--seeds", "1"],
        ["--batch-size", "500"],
        ["--train-size", "100000"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*bad, "--out", str(tmp_path)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "error" in err
