"""Smoke test of python -m experiments.lr_search: files, keys, finite numbers, CLI errors."""

import csv
import dataclasses
import json
import math
import signal

import chex
import jax
import pytest

import jdl.optim
from experiments import lr_search
from experiments.classifiers import mlp_classifier
from experiments.lr_search_cli import Config
from jdl.data import digits, mnist1d, standardize
from jdl.models import functional
from jdl.run import fit, load_params
from jdl.search import Search
from jdl.train import classification, early_stopping
from tests.models.test_conv import reference_cnn

MEMBER_KEYS = {
    "learning_rate",
    "seed",
    "final_train_loss",
    "best_val_loss",
    "best_step",
    "val_accuracy",
    "test_accuracy",
    "stopped_early",
    "diverged",
}
RESULT_KEYS = {"config", "members", "best", "timing", "devices", "good_range"}


def test_lr_search_small(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "--num-lrs",
        "3",
        "--lr-min",
        "1e-2",
        "--lr-max",
        "100",
        "--seeds",
        "2",
        "--steps",
        "45",
        "--batch-size",
        "32",
        "--hidden",
        "16",
        "--patience",
        "20",
        "--optimizer",
        "sgd",
        "--standardize",
        "--out",
        str(out),
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--export-best",
        str(tmp_path / "best"),
    ]
    lr_search.main(argv)
    for name in ("results.json", "results.csv", "lr_curve.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert set(saved) == RESULT_KEYS
    assert saved["devices"] >= 1 and saved["config"]["steps"] == 45
    assert saved["config"]["standardize"] is True
    low, high = saved["good_range"]  # the best rate is in it, the diverging 100 is not
    assert low <= saved["best"]["learning_rate"] <= high < 100
    assert set(saved["timing"]) == {"compile_s", "run_s", "member_steps_per_s"}
    assert len(saved["members"]) == 6 and all(set(m) == MEMBER_KEYS for m in saved["members"])
    # SGD at a learning rate of 100 blows up: a row of the table, not a crash.
    wild = [m for m in saved["members"] if m["learning_rate"] == pytest.approx(100.0)]
    assert len(wild) == 2 and all(m["diverged"] for m in wild)
    calm = [m for m in saved["members"] if not m["diverged"]]
    assert calm and all(math.isfinite(m["best_val_loss"]) for m in calm)
    assert all(0.0 <= m["test_accuracy"] <= 1.0 for m in saved["members"])
    assert saved["best"]["learning_rate"] < 100 and math.isfinite(
        saved["best"]["best_val_loss_mean"]
    )
    assert all(math.isfinite(v) and v >= 0 for v in saved["timing"].values())
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and set(rows[0]) >= MEMBER_KEYS
    printed = capsys.readouterr().out
    assert "good learning rates" in printed
    assert "best learning rate:" in printed and "best_val_loss_mean" in printed  # seed aggregate

    # The best member's parameters, exported, continue training with fit from where they were.
    assert f"to {tmp_path / 'best'}" in printed
    exported = load_params(tmp_path / "best")
    features = (64, 16, 10)
    _, loss_fn, eval_fn = mlp_classifier(features)
    splits = standardize(digits(seed=0))
    before = float(eval_fn(exported, splits.val)["loss"])
    best = min((m for m in saved["members"] if not m["diverged"]), key=lambda m: m["best_val_loss"])
    assert before == pytest.approx(best["best_val_loss"], rel=1e-5)
    more = fit(
        loss_fn,
        exported,
        jdl.optim.sgd(saved["best"]["learning_rate"]),
        splits.train,
        splits.val,
        eval_fn=eval_fn,
        steps=20,
        batch_size=32,
        eval_every=20,
        progress=False,
    )
    assert int(more.state.step) == 20 and math.isfinite(more.history["val_loss"][0])

    # The same command again resumes from the finished checkpoint: the same members.
    argv.append("--overwrite")
    lr_search.main(argv)
    again = json.loads((out / "results.json").read_text())
    assert again["members"] == saved["members"]
    # Another grid refuses the checkpoint, in one line, with status 2.
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        lr_search.main([*argv[:1], "2", *argv[2:]])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "another configuration (differs in: hparams" in err and err.count("\n") == 1


@pytest.mark.usefixtures("interactive_sigint")
def test_lr_search_interrupted_writes_and_exits_130(tmp_path, capsys, monkeypatch):
    """Ctrl-C (SIGINT sent to itself while chunk 2 runs: no timing) stops after that chunk;
    the four files hold the members so far, then the exit status is 130."""
    advance, calls = Search.advance, []

    def interrupted(self, *args, **kwargs):
        out = advance(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(Search, "advance", interrupted)
    out = tmp_path / "run"
    argv = ["--num-lrs", "2", "--lr-max", "0.01", "--steps", "40", "--batch-size", "32"]
    with pytest.raises(SystemExit) as exc:
        lr_search.main([*argv, "--hidden", "16", "--out", str(out)])
    assert exc.value.code == 130 and len(calls) == 2
    for name in ("results.json", "results.csv", "lr_curve.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert saved["interrupted"] is True and saved["config"]["steps"] == 40
    assert len(saved["members"]) == 2
    # Two chunks of 40 // 20 = 2 steps each.
    assert all(0 < m["best_step"] <= 4 for m in saved["members"])
    assert all(math.isfinite(m["best_val_loss"]) for m in saved["members"])
    with (out / "results.csv").open() as f:
        assert [int(r["steps"]) for r in csv.DictReader(f)] == [4, 4]
    captured = capsys.readouterr()
    assert "best learning rate:" in captured.out
    notice = [line for line in captured.err.splitlines() if line.startswith("interrupted")]
    assert notice == [
        'interrupted at step 4 of 40: the files hold the search so far, marked "interrupted": true'
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--optimizer", "adamm"], "unknown optimizer 'adamm'"),
        (["--lr-min", "1", "--lr-max", "0.1"], "must not exceed --lr-max"),
        (["--num-lrs", "0"], "--num-lrs must be a positive int"),
        (["--seeds", "-1"], "--seeds must be a positive int"),
        (["--steps", "0"], "--steps must be a positive int"),
        (["--hidden", "12,x"], "comma-separated positive ints"),
        (["--lr-min", "nan"], "finite number > 0"),
        (["--bogus"], "unrecognized arguments"),
        (["--devices", "0"], "--devices must be a positive int"),
        (["--coordinator", "h:1"], "need --distributed"),
        (["--memory-budget", "0"], "--memory-budget must be a positive number of MiB or auto"),
        (["--memory-budget", "lots"], "--memory-budget must be a positive number of MiB or auto"),
        (["--data", "mnist"], "argument --data: invalid choice: 'mnist'"),
        (["--model", "rnn"], "argument --model: invalid choice: 'rnn'"),
        (["--channels", "8"], "--channels sets the CNN's convolutions: it needs --model cnn"),
        (["--model", "cnn", "--channels", "0"], "--channels must be a positive int"),
        (["--data", "mnist1d", "--batch-size", "3601"], "exceeds the 3600 training examples"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        lr_search.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_lr_search_asha_with_a_budget_adds_its_lineage(tmp_path):
    out = tmp_path / "run"
    argv = ["--scheduler", "asha", "--budget", "400", "--num-lrs", "4", "--lr-min", "1e-3"]
    argv += ["--hidden", "16", "--batch-size", "32", "--out", str(out)]
    lr_search.main(argv)
    saved = json.loads((out / "results.json").read_text())
    assert set(saved) == RESULT_KEYS | {"scheduler"}
    assert saved["config"]["steps"] == 100 and saved["config"]["budget"] == 400
    record = saved["scheduler"]
    assert record["kind"] == "asha" and len(record["trials"]) > 4  # slots were refilled
    assert record["member_steps"]["paid"] == 400 >= record["member_steps"]["trained"] > 0
    # Each member's row gives the learning rate of the trial its slot holds at the end.
    held = [record["trials"][t]["hparams"]["learning_rate"] for t in record["slot_trials"]]
    assert [m["learning_rate"] for m in saved["members"]] == pytest.approx(held)
    assert all(set(m) == MEMBER_KEYS for m in saved["members"])
    assert all(1e-3 <= lr <= 1.0 for lr in held)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budget", "400"], "--budget applies to --scheduler random, halving, asha or pbt"),
        (["--scheduler", "asha", "--budget", "400", "--steps", "100"], "not both"),
        (["--scheduler", "hyperband"], "unknown scheduler 'hyperband'"),
        (["--scheduler", "pbt", "--num-lrs", "1"], "needs --num-lrs >= 2"),
        (["--scheduler", "halving", "--steps", "1001"], "--steps a multiple of"),
        (["--scheduler", "random", "--budget", "3", "--num-lrs", "4"], "less than one step"),
    ],
)
def test_bad_scheduler_combinations_exit_2(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        lr_search.parse_args([*argv, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_memory_budget_too_small_for_one_member_exits_2_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--num-lrs", "2", "--steps", "4", "--hidden", "8", "--memory-budget", "0.001"]
    with pytest.raises(SystemExit) as exc:
        lr_search.main([*argv, "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "one member per device needs" in err and err.count("\n") == 1
    assert not out.exists()


def test_the_model_flags_resolve_each_models_defaults(tmp_path):
    out = ["--out", str(tmp_path / "o")]
    mlp = lr_search.parse_args(out)
    assert (mlp.data, mlp.model, mlp.hidden, mlp.channels) == ("digits", "mlp", (128, 128), None)
    cnn = lr_search.parse_args(["--data", "mnist1d", "--model", "cnn", *out])
    assert (cnn.data, cnn.model, cnn.hidden, cnn.channels) == ("mnist1d", "cnn", (), 32)
    head = lr_search.parse_args(["--model", "cnn", "--hidden", "64", "--channels", "8", *out])
    assert (head.hidden, head.channels) == ((64,), 8)


def test_lr_search_cnn_on_mnist1d_writes_the_default_schema_and_its_best_member_is_one_fit(
    tmp_path, capsys
):
    """The CNN on MNIST-1D writes the default search's files and keys; the best member's
    exported parameters equal one `fit` of the same ConvNet from the member's seed contract."""
    out, best = tmp_path / "run", tmp_path / "best"
    argv = ["--data", "mnist1d", "--model", "cnn", "--channels", "25", "--num-lrs", "2"]
    argv += ["--lr-min", "1e-3", "--lr-max", "1e-2", "--steps", "10", "--batch-size", "32"]
    lr_search.main([*argv, "--out", str(out), "--export-best", str(best)])
    for name in ("results.json", "results.csv", "lr_curve.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert set(saved) == RESULT_KEYS
    assert set(saved["config"]) == {f.name for f in dataclasses.fields(Config)}
    config = saved["config"]
    assert (config["data"], config["model"], config["channels"], config["hidden"]) == (
        "mnist1d",
        "cnn",
        25,
        [],
    )
    assert len(saved["members"]) == 2 and all(set(m) == MEMBER_KEYS for m in saved["members"])
    with (out / "results.csv").open() as f:
        assert set(next(csv.DictReader(f))) >= MEMBER_KEYS
    printed = capsys.readouterr().out
    assert printed.startswith("learning_rate  seed  best_val_loss  final_val_loss  val_accuracy")

    # The documented CNN, the MNIST-1D reference CNN with GELU units, trained alone by fit.
    loss_fn, eval_fn = classification(functional(reference_cnn(activation=jax.nn.gelu))[0])
    k_init, k_run = jax.random.split(jax.random.key(0))  # seed 0's contract
    splits = mnist1d(seed=0)
    single = fit(
        loss_fn,
        functional(reference_cnn(k_init, activation=jax.nn.gelu))[1],
        jdl.optim.adam(saved["best"]["learning_rate"]),
        splits.train,
        splits.val,
        eval_fn=eval_fn,
        steps=10,
        batch_size=32,
        eval_every=1,  # a twentieth of the steps, at least 1
        early_stopping=early_stopping(200, divergence_threshold=2.0 * math.log(10)),
        key=k_run,
        progress=False,
    )
    with pytest.raises(ValueError, match="cannot read parameters"):
        load_params(best, like={"kernel": jax.ShapeDtypeStruct((3,), "float32")})
    exported = load_params(best, like=single.best_params)  # the model's integer list keys
    chex.assert_trees_all_close(exported, single.best_params, rtol=1e-5, atol=1e-6)
    member = min(saved["members"], key=lambda m: m["best_val_loss"])
    assert float(eval_fn(exported, splits.val)["loss"]) == pytest.approx(
        member["best_val_loss"], rel=1e-5
    )
