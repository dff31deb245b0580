"""Smoke test of python -m experiments.optimizer_paths, run small and in-process."""

import json
import math

import pytest

from experiments import optimizer_paths


def test_writes_figures_and_results(tmp_path):
    out = tmp_path / "paths"
    results = optimizer_paths.main(
        [
            "--optimizers", "sgd,adam",
            "--ravine-steps", "60",
            "--rosenbrock-steps", "80",
            "--num-lrs", "4",
            "--tol", "0.5",
            "--sparse-steps", "150",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert (out / "paths.png").stat().st_size > 0
    assert (out / "lr_regimes.png").stat().st_size > 0
    assert (out / "claims.png").stat().st_size > 0
    assert json.loads((out / "results.json").read_text()) == results
    assert len(results["learning_rates"]) == 4
    for landscape in ("ravine", "rosenbrock"):
        assert set(results[landscape]) == {"sgd", "adam"}
        for r in results[landscape].values():
            assert r["learning_rate"] in results["learning_rates"]
            assert math.isfinite(r["final_loss"])
            assert len(r["final_loss_per_lr"]) == 4
    assert results["ravine"]["adam"]["steps_to_tol"] is not None
    regimes = results["lr_regimes"]
    assert regimes["about right"]["final_loss"] < regimes["too small"]["final_loss"]
    assert regimes["too large"]["steps_to_tol"] is None  # SGD diverges above 2/L

    # One shared rate 1/L < eta: SGD crosses the floor at every step until damped (factor
    # 1 - eta L < 0); heavy-ball momentum crosses less often but oscillates longer (sqrt(gamma)).
    shared = results["claims"]["shared_rate"]
    sgd, momentum = shared["sgd"], shared["momentum"]
    assert sgd["sign_changes"] == sgd["steps_until_amplitude_below_1pct"] >= 2
    assert momentum["sign_changes"] < momentum["steps_until_amplitude_below_1pct"]
    assert momentum["steps_until_amplitude_below_1pct"] > sgd["steps_until_amplitude_below_1pct"]
    # Adagrad's effective step shrinks, and is smaller along the steep coordinate.
    step = results["claims"]["adagrad_effective_step"]
    assert step["flat"][0] > step["flat"][-1] and step["steep"][0] > step["steep"][-1]
    assert all(s < f for s, f in zip(step["steep"], step["flat"], strict=True))
    # Rare informative features: Adagrad ends lower than SGD, each at its best rate.
    sparse = results["claims"]["sparse_features"]
    assert sparse["adagrad"]["final_mse"] < 0.5 * sparse["sgd"]["final_mse"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--optimizers", "adam,lbfgs"],
        ["--ravine-steps", "0"],
        ["--lr-min", "1.0", "--lr-max", "0.1"],
        ["--tol", "nan"],
        ["--regimes", "0.1,0.01,1"],
        ["--shared-lr", "0"],
        ["--sparse-steps", "0"],
        ["--no-such-flag"],
    ],
)
def test_bad_flags_exit_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        optimizer_paths.main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err
