"""jdl.search.report on a hand-made result: records, seed aggregates, JSON/CSV, table, figures."""

import json
import math

import numpy as np
import pytest

from jdl.search import SearchResult, population
from jdl.search.report import (
    aggregate,
    best_config,
    format_table,
    plot_curves,
    plot_lr_curve,
    records,
    to_json,
    write_csv,
    write_json,
)


@pytest.fixture(scope="module")
def result():
    pop = population({"learning_rate": [0.01, 0.1, 10.0]}, seeds=[0, 1])
    nan = np.nan
    best_val = np.array([[0.5, 0.2, np.inf], [0.7, 0.4, np.inf]], np.float32)
    history = {
        "train_loss": np.array(
            [[[1.0, 0.5, nan], [1.1, 0.6, 9.0]], [[0.8, 0.3, nan], [0.9, 0.4, nan]]], np.float32
        ),
        "val_loss": np.array(
            [[[0.6, 0.3, nan], [0.8, 0.5, 9.0]], [[0.5, 0.2, nan], [0.7, 0.4, nan]]], np.float32
        ),
        "step": np.array([5, 10]),
    }
    return SearchResult(
        population=pop,
        steps=np.array([[10, 10, 2], [10, 10, 7]]),
        best_step=np.array([[10, 10, -1], [10, 10, -1]]),
        best_val_loss=best_val,
        stopped_early=np.zeros((2, 3), bool),
        diverged=np.array([[False, False, True], [False, False, True]]),
        final={"train_loss": history["train_loss"][-1], "val_loss": history["val_loss"][-1]},
        best={
            "val_accuracy": np.array([[0.8, 0.9, nan], [0.7, 0.95, nan]], np.float32),
            "test_accuracy": np.array([[0.8, 0.9, 0.1], [0.7, 0.95, 0.1]], np.float32),
        },
        history=history,
        best_params={},
        params={},
        timing={"compile_s": 1.0, "run_s": 2.0, "member_steps": 49.0, "member_steps_per_s": 24.5},
    )


def test_records_aggregate_best(result):
    rows = records(result)
    assert [(r["learning_rate"], r["seed"]) for r in rows][:3] == [(0.01, 0), (0.01, 1), (0.1, 0)]
    assert rows[4]["diverged"] and math.isinf(rows[4]["best_val_loss"])
    agg = aggregate(rows, ["learning_rate"])
    assert [a["seeds"] for a in agg] == [2, 2, 2]
    assert agg[1]["best_val_loss_mean"] == pytest.approx(0.3)
    assert agg[1]["best_val_loss_std"] == pytest.approx(0.1)
    assert agg[2]["diverged"] == 2 and math.isnan(agg[2]["best_val_loss_mean"])
    assert best_config(rows, ["learning_rate"])["learning_rate"] == pytest.approx(0.1)
    table = format_table(rows, ["learning_rate", "seed", "best_val_loss", "diverged"])
    assert len(table.splitlines()) == 2 + 6 and "inf" in table and "yes" in table


def test_files(result, tmp_path):
    rows = records(result)
    write_json(tmp_path / "r.json", {"members": rows, "x": np.float32(0.5)})
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["members"][4]["best_val_loss"] is None and saved["x"] == 0.5
    assert to_json({"a": [np.nan, 1.0], "b": np.arange(2)}) == {"a": [None, 1.0], "b": [0, 1]}
    write_csv(tmp_path / "r.csv", rows)
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert len(lines) == 7 and lines[0].startswith("learning_rate,seed,steps")
    plot_lr_curve(result, tmp_path / "lr.png")
    plot_curves(result, tmp_path / "curves.png")
    assert (tmp_path / "lr.png").stat().st_size > 0 and (tmp_path / "curves.png").stat().st_size
    with pytest.raises(ValueError, match="no hyper-parameter 'momentum'"):
        plot_lr_curve(result, tmp_path / "x.png", hparam="momentum")
    with pytest.raises(TypeError, match="SearchResult"):
        records({"not": "a result"})


def test_figure_labels_count_seeds(result, tmp_path, monkeypatch):
    import jdl.search.report as report

    one_seed = result._replace(
        population=population(dict(result.population.hparams), seeds=[0]),
        final={k: v[:1] for k, v in result.final.items()},
        diverged=result.diverged[:1],
        history={k: v if k == "step" else v[:, :1] for k, v in result.history.items()},
    )
    figures = []
    monkeypatch.setattr(report.plt, "close", figures.append)
    plot_lr_curve(one_seed, tmp_path / "lr.png")
    plot_curves(one_seed, tmp_path / "curves.png")
    plot_lr_curve(result, tmp_path / "lr2.png")
    legend = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert legend == ["mean (1 seed)", "diverged (top edge: loss above it)"]
    assert figures[1]._suptitle.get_text().startswith("Loss curves of 3 members (1 seed)")
    assert [t.get_text() for t in figures[2].axes[0].get_legend().get_texts()] == [
        "mean (2 seeds)",
        "diverged (top edge: loss above it)",
    ]


def test_lr_curve_clips_huge_diverged_losses_and_says_diverged_only_if_any(
    result, tmp_path, monkeypatch
):
    import jdl.search.report as report

    figures = []
    monkeypatch.setattr(report.plt, "close", figures.append)
    huge = {**result.final, "val_loss": np.array([[0.5, 0.2, 1e6], [0.7, 0.4, 3e5]])}
    plot_lr_curve(result._replace(final=huge), tmp_path / "lr.svg")
    ax = figures[0].axes[0]
    assert ax.get_ylim() == pytest.approx((0.0, 1.5 * 0.7))  # the good rates fill the axis
    crosses = [ln for ln in ax.get_lines() if ln.get_marker() == "x" and len(ln.get_xdata())]
    assert len(crosses) == 1
    np.testing.assert_allclose(crosses[0].get_xdata(), [10.0, 10.0])  # where they are
    np.testing.assert_allclose(crosses[0].get_ydata(), [1.05, 1.05])  # on the top edge
    assert (tmp_path / "lr.svg").read_text().startswith("<?xml")
    calm = result._replace(
        population=population({"learning_rate": [0.01, 0.1]}, seeds=[0, 1]),
        final={k: v[:, :2] for k, v in result.final.items()},
        diverged=result.diverged[:, :2],
    )
    plot_lr_curve(calm, tmp_path / "calm.png")
    legend = [t.get_text() for t in figures[1].axes[0].get_legend().get_texts()]
    assert legend == ["mean (2 seeds)"]  # no promise of crosses when nothing diverged
    assert figures[1].axes[0].get_xlabel() and figures[1].axes[0].get_title()
