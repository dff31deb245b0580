"""Smoke test of python -m experiments.schedulers: files, keys, equal budgets, and ASHA's
refills trying more configurations than the slots in the same member-steps."""

import json
import math

import pytest

from experiments import schedulers


def test_schedulers_small(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--slots", "4", "--steps", "80", "--eval-every", "10", "--repetitions", "1"]
    argv += ["--hidden", "16", "--batch-size", "32", "--no-progress", "--out", str(out)]
    results = schedulers.main(argv)
    for name in ("results.json", "schedulers.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["runs"]) == set(schedulers.SCHEDULERS) and saved["budget"] == 320
    for kind, (run,) in saved["runs"].items():
        # Every scheduler is paid the same budget, chunk by chunk, and its curve only improves.
        assert run["paid"] == [40 * c for c in range(1, 9)], kind
        assert all(b <= a for a, b in zip(run["best"], run["best"][1:], strict=False)), kind
        assert 0 < run["trained"] <= saved["budget"] and math.isfinite(run["final"]), kind
    runs = {k: v[0] for k, v in saved["runs"].items()}
    # The one inequality a broken refill flips: ASHA tries more configurations than it has
    # slots, in the budget in which the grid tries exactly its slots.
    assert runs["grid"]["configurations"] == 4 < runs["asha"]["configurations"]
    assert saved["least_compute"] in schedulers.SCHEDULERS
    assert saved["target"] == pytest.approx(max(saved["final_median"].values()))
    assert results["target"] == saved["target"]
    assert "least compute to reach" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--slots", "2"], "--slots must be >= 4"),
        (["--steps", "100"], "must be a multiple of 8 x --eval-every"),
        (["--target", "-1"], "--target must be a finite loss > 0"),
    ],
)
def test_bad_flags_exit_2(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        schedulers.parse_args([*argv, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
