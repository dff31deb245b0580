"""Smoke test of python -m experiments.regularization, run small and in-process."""

import json
import math

import pytest

from experiments.regularization import main


def test_writes_figures_and_table_and_rejects_bad_flags(tmp_path, capsys):
    argv = ["--train-size", "40", "--hidden", "8", "--steps", "20", "--eval-every", "10"]
    argv += ["--batch-size", "20", "--seeds", "2", "--widths", "8", "--l2", "1e-3,1e-1"]
    argv += ["--l1", "1e-4,1e-1", "--output", "1e-3,1e-1"]
    argv += ["--methods", "none,l2,l1,output_penalty,early_stopping,weight_sharing"]
    argv += ["--out", str(tmp_path)]
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
    methods = ["none", "l2", "l1", "early_stopping", "output_penalty", "weight_sharing"]
    assert list(saved["methods"]) == methods
    for method, entry in saved["methods"].items():
        for key in ("val_accuracy", "test_accuracy"):
            assert 0.0 <= entry[key]["mean"] <= 1.0 and math.isfinite(entry[key]["std"])
        assert entry["chosen"] in [None] + [g["value"] for g in entry["grid"]], method
    assert [g["value"] for g in saved["methods"]["l2"]["grid"]] == [1e-3, 1e-1]
    assert 0 <= saved["methods"]["early_stopping"]["chosen"] <= 20
    sharing = saved["methods"]["weight_sharing"]
    assert sharing["chosen"] == 3658 and sharing["mlp_same_size"]["parameters"] == 3610
    # A choice at either end of its grid is flagged.
    for method, entry in saved["methods"].items():
        values = [g["value"] for g in entry["grid"]]
        edge = method not in ("none", "early_stopping", "weight_sharing") and entry["chosen"] in (
            values[0],
            values[-1],
        )
        assert entry["at_grid_edge"] == edge, method
        assert (method in saved["chosen_at_grid_edge"]) == edge, method
    # L1's claim: a large lambda drives kernel weights to zero (|w| < 1e-3); without a penalty
    # almost none are (20 Adam steps of lr 1e-2 move a weight by up to 0.2).
    zeros = {m: saved["methods"][m]["near_zero_weights"] for m in ("none", "l1")}
    assert [z["value"] for z in zeros["l1"]] == [1e-4, 1e-1]
    assert zeros["l1"][-1]["mean"] > 3 * max(zeros["none"][0]["mean"], zeros["l1"][0]["mean"])
    verdict = saved["verdict"]
    assert verdict["best"] in methods[1:]
    assert set(verdict["comparison"]) == set(methods[1:])
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


def test_output_and_weight_jacobian_terms_match_their_closed_forms():
    """For y = x W (K outputs), ||y||^2 is the output penalty and dy_k/dW = x e_k^T gives
    ||dy/dW||_F^2 = K ||x||^2 per example, which the one-probe estimate matches on average."""
    import jax
    import numpy as np

    from experiments.regularization_methods import (
        WEIGHT_JACOBIAN_EXAMPLES,
        make_loss_fn,
        weight_jacobian_estimate,
    )
    from jdl.data import Dataset
    from jdl.regularizers import weight_jacobian_penalty

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5)).astype(np.float32)
    w = rng.normal(size=(5, 3)).astype(np.float32)
    batch = Dataset(x, np.arange(16) % 3)

    def apply_fn(params, z, key=None):
        return z @ params["kernel"]

    def loss(methods, name, value):
        make = make_loss_fn(apply_fn, methods, k=1)
        return float(make({name: value})({"kernel": w}, batch, jax.random.key(0))[0])

    added = loss(("output_penalty",), "output_penalty", 0.5) - loss(
        ("output_penalty",), "output_penalty", 0.0
    )
    np.testing.assert_allclose(added, 0.5 * np.mean(np.sum((x @ w) ** 2, axis=1)), rtol=1e-4)

    # The dy/dw estimate is unbiased: its mean over many probe draws is the exact penalty.
    params, xs = {"kernel": jax.numpy.asarray(w)}, jax.numpy.asarray(x[:WEIGHT_JACOBIAN_EXAMPLES])
    draws = jax.vmap(lambda k: weight_jacobian_estimate(apply_fn, params, xs, k, 0.5))(
        jax.random.split(jax.random.key(1), 4000)
    )
    exact = 0.5 * 3 * np.mean(np.sum(x[:WEIGHT_JACOBIAN_EXAMPLES] ** 2, axis=1))
    np.testing.assert_allclose(float(np.mean(draws)), exact, rtol=0.05)
    np.testing.assert_allclose(
        exact, float(weight_jacobian_penalty(apply_fn, params, xs, 0.5)), rtol=1e-4
    )
    assert loss(("weight_jacobian",), "weight_jacobian", 0.5) > loss(
        ("weight_jacobian",), "weight_jacobian", 0.0
    )
