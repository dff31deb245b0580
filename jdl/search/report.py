r"""Reports of a search: per-member records, aggregates over seeds, table, JSON/CSV, figures.

A record is one member (s, h) as a flat dict of Python values: its hyper-parameters, its seed,
and what it reached (best and final validation loss, accuracies of its best parameters, best
step, whether it stopped early or diverged). Aggregating over seeds gives, for each
configuration h, the mean and standard deviation over the S seeds:
:math:`\bar m_h = \frac1S \sum_s m_{s,h}`, :math:`\sigma_h = \sqrt{\frac1S \sum_s (m_{s,h} -
\bar m_h)^2}`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from jdl.search.results import SearchResult

__all__ = [
    "aggregate",
    "best_config",
    "format_table",
    "plot_curves",
    "plot_lr_curve",
    "records",
    "to_json",
    "write_csv",
    "write_json",
]

Record = dict[str, Any]


def records(result: SearchResult) -> list[Record]:
    """One record per member, configurations in order and the seeds of each together.

    Keys: each hyper-parameter's name, ``seed``, ``steps``, ``final_train_loss``,
    ``final_val_loss``, ``best_val_loss``, ``best_step``, ``val_accuracy`` and
    ``test_accuracy`` (of the best parameters, when ``eval_fn`` gives ``"accuracy"`` and the
    search had test data), ``stopped_early``, ``diverged``. Numbers are Python floats (NaN or
    inf where a member diverged), flags Python bools.
    """
    if not isinstance(result, SearchResult):
        raise TypeError(f"expected a SearchResult, got {type(result).__name__}")
    pop = result.population
    rows = []
    for h in range(pop.num_configs):
        for s, seed in enumerate(pop.seeds):
            row: Record = dict(pop.config(h))
            row["seed"] = int(seed)
            row["steps"] = int(result.steps[s, h])
            row["final_train_loss"] = float(result.final["train_loss"][s, h])
            row["final_val_loss"] = float(result.final["val_loss"][s, h])
            row["best_val_loss"] = float(result.best_val_loss[s, h])
            row["best_step"] = int(result.best_step[s, h])
            for split in ("val", "test"):
                if f"{split}_accuracy" in result.best:
                    row[f"{split}_accuracy"] = float(result.best[f"{split}_accuracy"][s, h])
            row["stopped_early"] = bool(result.stopped_early[s, h])
            row["diverged"] = bool(result.diverged[s, h])
            rows.append(row)
    return rows


def aggregate(rows: Sequence[Record], by: Sequence[str]) -> list[Record]:
    """Mean and standard deviation over seeds of each configuration.

    Args:
      rows: `records` of a search.
      by: the hyper-parameter names that identify a configuration.

    Returns:
      One record per configuration (in first-seen order): the ``by`` values, ``seeds`` (the
      count), ``<m>_mean`` and ``<m>_std`` of every float field m (over the seeds with a finite
      value; NaN when none), ``best_step_mean``, and the counts ``stopped_early`` and
      ``diverged``.
    """
    groups: dict[tuple, list[Record]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    out = []
    for key, members in groups.items():
        agg: Record = dict(zip(by, key, strict=True))
        agg["seeds"] = len(members)
        for name, value in members[0].items():
            if name in by or name in ("seed", "steps", "best_step"):
                continue
            if isinstance(value, bool):
                agg[name] = sum(bool(m[name]) for m in members)
            elif isinstance(value, float):
                vals = np.array([m[name] for m in members], dtype=np.float64)
                finite = vals[np.isfinite(vals)]
                agg[f"{name}_mean"] = float(finite.mean()) if finite.size else math.nan
                agg[f"{name}_std"] = float(finite.std()) if finite.size else math.nan
        agg["best_step_mean"] = float(np.mean([m["best_step"] for m in members]))
        out.append(agg)
    return out


def best_config(rows: Sequence[Record], by: Sequence[str]) -> Record:
    """The configuration with the lowest mean (over seeds) best validation loss among those
    that no seed diverged on (or among all, when every one diverged somewhere).

    Returns:
      Its aggregate record (see `aggregate`).

    Raises:
      ValueError: no configuration reached a finite validation loss.
    """
    aggs = aggregate(rows, by)
    finite = [a for a in aggs if math.isfinite(a["best_val_loss_mean"])]
    if not finite:
        raise ValueError("no configuration reached a finite validation loss")
    calm = [a for a in finite if a["diverged"] == 0] or finite
    return min(calm, key=lambda a: a["best_val_loss_mean"])


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4f}"
    return str(value)


def format_table(rows: Sequence[Record], columns: Sequence[str] | None = None) -> str:
    """A fixed-width text table, one line per record, numbers to 4 significant digits.

    Args:
      rows: records (`records` or `aggregate`).
      columns: the keys to show, in order (default: every key of the first record).
    """
    if not rows:
        return "(no members)"
    columns = list(rows[0]) if columns is None else list(columns)
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def to_json(value: Any) -> Any:
    """``value`` with NumPy scalars/arrays as Python values and non-finite floats as None
    (JSON has no NaN or infinity)."""
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return to_json(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, value: Any) -> None:
    """Writes ``to_json(value)`` as indented, strict JSON."""
    Path(path).write_text(json.dumps(to_json(value), indent=2, allow_nan=False) + "\n")


def write_csv(path: str | Path, rows: Sequence[Record]) -> None:
    """Writes the records as CSV with a header line (the first record's keys)."""
    if not rows:
        raise ValueError("write_csv needs at least one record")
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_lr_curve(
    result: SearchResult,
    path: str | Path,
    *,
    hparam: str = "learning_rate",
    metric: str = "val_loss",
) -> None:
    r"""The course's learning-rate curve: the final validation loss against the learning rate
    on a log axis, the mean over seeds as a line and the seeds' range as a band.

    Too small a rate has not got far in the step budget, too large a one bounces or diverges;
    the minimum is the rate that is "just right". The mean and band are over the members that
    did not diverge. The y axis is clipped at 1.5 times the largest of their values (diverged
    members' losses can be orders of magnitude larger and would flatten the curve): a diverged
    member is a cross at its learning rate and loss, on the top edge when its loss is above the
    clip or not finite, and the legend mentions crosses only when there are some.

    Args:
      result: a search over ``hparam`` (other hyper-parameters: one line per value set).
      path: the figure file to write (its suffix gives the format: png, svg, pdf).
      hparam: the hyper-parameter on the x axis.
      metric: the entry of ``result.final`` on the y axis.
    """
    pop = result.population
    if hparam not in pop.hparams:
        raise ValueError(f"the population has no hyper-parameter {hparam!r}")
    x = pop.hparams[hparam].astype(np.float64)
    y = np.asarray(result.final[metric], np.float64)  # (S, H)
    diverged = np.asarray(result.diverged, bool)  # (S, H)
    kept = np.where(diverged | ~np.isfinite(y), np.nan, y)
    others = [k for k in pop.hparams if k != hparam]
    labels = [tuple(float(pop.hparams[k][h]) for k in others) for h in range(pop.num_configs)]
    finite = kept[np.isfinite(kept)]
    top = 1.5 * float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    fig, ax = plt.subplots(figsize=(7.0, 4.6), layout="constrained")
    any_diverged = False
    for label in dict.fromkeys(labels):
        cols = np.array([h for h in range(pop.num_configs) if labels[h] == label])
        cols = cols[np.argsort(x[cols])]
        stats = [col[np.isfinite(col)] for col in kept[:, cols].T]
        mean = np.array([c.mean() if c.size else np.nan for c in stats])
        lo = np.array([c.min() if c.size else np.nan for c in stats])
        hi = np.array([c.max() if c.size else np.nan for c in stats])
        name = ", ".join(f"{k}={v:g}" for k, v in zip(others, label, strict=True)) or "mean"
        (line,) = ax.plot(
            x[cols], mean, marker="o", label=f"{name} ({_count(len(pop.seeds), 'seed')})"
        )
        if len(pop.seeds) > 1:
            ax.fill_between(x[cols], lo, hi, alpha=0.25, color=line.get_color(), lw=0)
        seed_idx, col_idx = np.nonzero(diverged[:, cols])
        if seed_idx.size:
            any_diverged = True
            values = y[seed_idx, cols[col_idx]]
            shown = np.where(np.isfinite(values) & (values < top), values, top)
            ax.plot(
                x[cols][col_idx], shown, "x", color=line.get_color(), ms=9, mew=2, clip_on=False
            )
    if any_diverged:
        ax.plot([], [], "x", color="0.3", ms=9, mew=2, label="diverged (top edge: loss above it)")
    ax.set_xscale("log")
    ax.set_ylim(0.0, top)
    ax.set_xlabel(hparam.replace("_", " ") + " (log scale)")
    what = metric.replace("val_", "validation ").replace("_", " ")
    ax.set_ylabel(f"final {what} (mean over seeds; band: range)")
    ax.set_title(f"Final {what} against the {hparam.replace('_', ' ')}")
    # Outside the axes, so that it never covers a point.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(result: SearchResult, path: str | Path, *, hparam: str = "learning_rate") -> None:
    """Training and validation loss curves of every member against the step, coloured by
    ``hparam`` on a log colour scale; a curve ends where its member stopped."""
    pop = result.population
    if hparam not in pop.hparams:
        raise ValueError(f"the population has no hyper-parameter {hparam!r}")
    steps = result.history["step"]
    values = pop.hparams[hparam].astype(np.float64)
    norm = matplotlib.colors.LogNorm(values.min(), max(values.max(), values.min() * 1.0001))
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, name in zip(axes, ("train_loss", "val_loss"), strict=True):
        curves = result.history[name]  # (C, S, H)
        for h in range(pop.num_configs):
            for s in range(len(pop.seeds)):
                ax.plot(steps, curves[:, s, h], color=cmap(norm(values[h])), lw=1, alpha=0.8)
        finite = curves[np.isfinite(curves)]
        if finite.size:
            ax.set_ylim(0.0, float(np.percentile(finite, 98)) * 1.2)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(name.replace("_", " "))
        ax.set_title(name.replace("_", " ").replace("val", "validation"))
        ax.grid(True, alpha=0.3)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes)
    bar.set_label(hparam.replace("_", " "))
    fig.suptitle(
        f"Loss curves of {_count(pop.num_members, 'member')} "
        f"({_count(len(pop.seeds), 'seed')}), coloured by {hparam.replace('_', ' ')}"
    )
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _count(n: int, noun: str) -> str:
    """``"1 seed"``, ``"3 seeds"``: a count with its noun in the singular or the plural."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
