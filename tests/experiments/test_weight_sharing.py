"""Smoke test of python -m experiments.weight_sharing: files, keys, the CNN's advantage, CLI."""

import json
import math

import pytest

from experiments import cli, weight_sharing
from jdl.data import mnist1d


def test_weight_sharing_small(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--steps", "150", "--seeds", "2", "--num-lrs", "2", "--eval-every", "50"]
    weight_sharing.main([*argv, "--lr-min", "1e-2", "--lr-max", "3e-2", "--out", str(out)])
    for name in ("results.json", "weight_sharing.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert set(saved) == {
        "config",
        "models",
        "runs",
        "reference",
        "cnn_advantage",
        "timing",
    }
    # Comparable sizes: 8010 (CNN, 32 channels) and 7434 (MLP 40-64-64-10) parameters.
    assert saved["models"]["cnn"]["parameters"] == 8010
    assert saved["models"]["mlp"]["parameters"] == 7434
    for model in ("mlp", "cnn"):
        for variant in ("ordered", "shuffled"):
            run = saved["runs"][model][variant]
            acc = run["test_accuracy"]
            assert len(acc["per_seed"]) == 2 and all(0.0 <= a <= 1.0 for a in acc["per_seed"])
            assert math.isfinite(acc["std"]) and run["learning_rate"] in (
                pytest.approx(1e-2),
                pytest.approx(3e-2),
            )
            assert len(run["grid"]) == 2
    # Weight sharing is the right prior for ordered positions even after 150 steps (measured:
    # CNN about 0.9, MLP about 0.55); with the positions shuffled it no longer helps. A model
    # that ignored the order, or a data variant that did not shuffle, fails one of the two.
    advantage = saved["cnn_advantage"]
    assert advantage["ordered"] > 0.15
    assert advantage["shuffled"] < advantage["ordered"] - 0.15
    assert "CNN - MLP" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "1"], "--seeds must be at least 2"),
        (["--steps", "0"], "--steps must be a positive int"),
        (["--lr-min", "1", "--lr-max", "0.1"], "must not exceed --lr-max"),
        (["--mlp-hidden", "64,x"], "expected comma-separated positive ints"),
        (["--batch-size", "3601"], "exceeds the 3600 training signals"),
    ],
)
def test_bad_flags_exit_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        weight_sharing.parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_training_set_size_known_before_loading_matches_the_data():
    assert len(mnist1d().train.y) == cli.MNIST1D_TRAIN_EXAMPLES


def test_batch_norm_cnn_is_searched_as_a_model_with_state():
    import jax

    from jdl.types import Variables

    cfg = weight_sharing.parse_args(["--batch-norm", "--out", "unused"])
    assert cfg.batch_norm
    search, size = weight_sharing._search(cfg, weight_sharing.make_model(cfg, "cnn"))
    # BatchNorm adds a scale and a shift per channel of each of the 3 convolutions.
    assert size == 8010 + 3 * 2 * cfg.channels
    variables = jax.eval_shape(search._init_fn, jax.random.key(0))
    assert isinstance(variables, Variables)
    assert sorted(variables.model_state["norms"][0]) == ["mean", "var"]
