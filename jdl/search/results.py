"""A search's results: the population's arrays brought to the host, padding dropped, slices
of configurations put back together as one `SearchResult`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from jdl.search.grid import Population
from jdl.search.sharding import to_host
from jdl.train import TrainState

__all__ = ["BudgetCurve", "Member", "SearchResult", "assemble", "budget_curve", "gather"]

Params = Any


class Member(NamedTuple):
    """One member of a search, in the form `jdl.run.fit` takes: its hyper-parameters and its
    parameters (continue training with ``fit(loss_fn, member.best_params, optimizer(
    member.hparams), ...)``).

    Attributes:
      hparams: the configuration's hyper-parameters, as Python floats.
      seed: the member's seed.
      best_params: the parameters at its best validation loss (the early-stopped model).
      params: its parameters at the end.
      best_val_loss: its best validation loss.
      steps: the optimizer steps it took.
      best_model_state: the model state saved with ``best_params`` (its own running
        statistics); None for a model without state.
      model_state: its model state at the end; None for a model without state.
    """

    hparams: dict[str, float]
    seed: int
    best_params: Params
    params: Params
    best_val_loss: float
    steps: int
    best_model_state: Any = None
    model_state: Any = None


class SearchResult(NamedTuple):
    """What a search found, as NumPy arrays with axes (S, H) (seeds, configurations).

    Attributes:
      population: the population searched.
      steps: optimizer steps each member took.
      best_step: the step of the best validation loss (-1: never a finite one).
      best_val_loss: the best validation loss (early stopping's best metric).
      stopped_early: stopped by early stopping's patience before the step budget.
      diverged: stopped by a non-finite loss or the divergence threshold.
      final: each member's metrics of its last chunk: ``train_loss``, ``val_loss``,
        ``val_<k>`` for each entry of ``eval_fn``.
      best: ``eval_fn`` of each member's best parameters: ``val_<k>`` (recorded at its best
        evaluation; NaN if none was ever finite) and, with test data, ``test_<k>``.
      history: metric -> (C, S, H) after each of the C chunks (NaN once a member stopped),
        and ``"step"`` -> (C,).
      best_params: the best parameters, leaves (S, H, ...).
      params: the final parameters, leaves (S, H, ...).
      timing: ``compile_s`` (programs compiled during this search), ``run_s`` (everything
        else), ``member_steps`` (steps taken, summed over members) and
        ``member_steps_per_s`` = member_steps / run_s.
      interrupted: the search was stopped by a KeyboardInterrupt (Ctrl-C) and holds what was
        trained until then: ``steps`` says how far each member got, ``history`` is NaN after
        its last chunk, and ``population`` holds the configurations trained (with
        ``Search.run``'s ``members_per_chunk``, the slices that had run a chunk).
      best_model_state: the model state saved with the best parameters, leaves (S, H, ...);
        None for a model without state.
      model_state: the final model state, leaves (S, H, ...); None without state.
    """

    population: Population
    steps: np.ndarray
    best_step: np.ndarray
    best_val_loss: np.ndarray
    stopped_early: np.ndarray
    diverged: np.ndarray
    final: dict[str, np.ndarray]
    best: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    best_params: Params
    params: Params
    timing: dict[str, float]
    interrupted: bool = False
    best_model_state: Params = None
    model_state: Params = None

    def member(self, config: int, seed: int = 0) -> Member:
        """Member (seed, config) as a `Member`: configuration index ``config`` (into
        ``population.hparams``) and seed index ``seed`` (into ``population.seeds``)."""
        num_seeds, num_configs = self.steps.shape
        if not (0 <= config < num_configs and 0 <= seed < num_seeds):
            raise IndexError(
                f"member (config {config}, seed {seed}) outside the {num_configs} "
                f"configurations x {num_seeds} seeds"
            )

        def take(tree: Params) -> Params:
            return jax.tree.map(lambda a: a[seed, config], tree)

        return Member(
            hparams=self.population.config(config),
            seed=int(self.population.seeds[seed]),
            best_params=take(self.best_params),
            params=take(self.params),
            best_val_loss=float(self.best_val_loss[seed, config]),
            steps=int(self.steps[seed, config]),
            best_model_state=take(self.best_model_state),
            model_state=take(self.model_state),
        )


def gather(
    train: TrainState,
    last: dict[str, jax.Array],
    best: dict[str, jax.Array],
    history: list[dict[str, np.ndarray]],
    num_configs: int,
) -> dict:
    """The members' states and metrics (leaves (S, H', ...)) as NumPy arrays on the host, in
    one transfer, the padding (configurations from ``num_configs`` on) dropped: a piece of
    `assemble`.

    Args:
      train: the members' final `TrainState`s.
      last: each member's metrics of its last chunk.
      best: the metrics of each member's best parameters.
      history: the metrics of each chunk, on the host (the run driver's rows).
      num_configs: the configurations kept (the rest is padding).
    """
    stop = train.stop
    host = to_host(
        {
            "train": (
                train.step,
                stop.best_step,
                stop.best_metric,
                stop.should_stop,
                stop.diverged,
            ),
            "final": last,
            "best": best,
            "best_params": stop.best_params,
            "params": train.params,
            "best_model_state": stop.best_model_state,
            "model_state": train.model_state,
        }
    )
    return _drop_padding({**host, "history": history}, num_configs)


def _drop_padding(host: dict, n: int) -> dict:
    """Keeps the first n configurations of every (S, H', ...) array (axis 1), and of every
    history entry (C, S, H') (axis 2)."""
    out = dict(host)
    out["train"] = tuple(a[:, :n] for a in host["train"])
    out["final"] = {k: v[:, :n] for k, v in host["final"].items()}
    out["best"] = {k: v[:, :n] for k, v in host["best"].items()}
    out["history"] = [
        {k: v[:, :n] for k, v in m.items() if k not in ("step", "time_s")} for m in host["history"]
    ]
    for name in ("best_params", "params", "best_model_state", "model_state"):
        out[name] = jax.tree.map(lambda a: a[:, :n], host[name])
    return out


def assemble(
    pop: Population,
    pieces: list[dict],
    num_chunks: int,
    eval_every: int,
    steps: int,
    compile_s: float,
    run_s: float,
    *,
    interrupted: bool = False,
) -> SearchResult:
    """Concatenates the slices of configurations along axis 1; pads each history with NaN to
    ``num_chunks`` chunks (a slice whose members had all stopped ended early, or that was
    interrupted)."""

    def cat(*xs: np.ndarray) -> np.ndarray:
        return np.concatenate(xs, axis=1)

    histories = []
    for piece in pieces:
        names = piece["final"].keys()
        rows = {k: [m[k] for m in piece["history"]] for k in names}
        shape = piece["train"][0].shape
        stacked = {}
        for k, r in rows.items():
            filler = [np.full(shape, np.nan, np.float32)] * (num_chunks - len(r))
            stacked[k] = np.stack(r + filler).astype(np.float32)
        histories.append(stacked)
    train = [np.concatenate(xs, axis=1) for xs in zip(*[p["train"] for p in pieces], strict=True)]
    steps_taken, best_step, best_metric, stopped, diverged = train
    history = {k: np.concatenate([h[k] for h in histories], axis=2) for k in histories[0]}
    history["step"] = np.minimum(np.arange(1, num_chunks + 1) * eval_every, steps)
    member_steps = float(steps_taken.sum())
    return SearchResult(
        population=pop,
        steps=steps_taken,
        best_step=best_step,
        best_val_loss=best_metric,
        stopped_early=stopped & ~diverged & (steps_taken < steps),
        diverged=diverged,
        final={k: cat(*[p["final"][k] for p in pieces]) for k in pieces[0]["final"]},
        best={k: cat(*[p["best"][k] for p in pieces]) for k in pieces[0]["best"]},
        history=history,
        best_params=jax.tree.map(cat, *[p["best_params"] for p in pieces]),
        params=jax.tree.map(cat, *[p["params"] for p in pieces]),
        timing={
            "compile_s": compile_s,
            "run_s": run_s,
            "member_steps": member_steps,
            "member_steps_per_s": member_steps / run_s if run_s > 0 else float("nan"),
        },
        interrupted=interrupted,
        best_model_state=jax.tree.map(cat, *[p["best_model_state"] for p in pieces]),
        model_state=jax.tree.map(cat, *[p["model_state"] for p in pieces]),
    )


class BudgetCurve(NamedTuple):
    """The best validation loss found against the compute spent, after each chunk.

    Attributes:
      paid: member-steps paid, shape (C,): every slot of the population costs a step per step
        of the clock, trained or stopped (a stopped member of a vmapped population is still
        computed); :math:`S H' t_c` after chunk c at clock step :math:`t_c`.
      trained: member-steps trained, shape (C,): the steps of members that were training.
      best: the best validation loss evaluated so far, shape (C,): the running minimum over
        chunks and configurations of the mean over seeds (inf before any finite one).
    """

    paid: np.ndarray
    trained: np.ndarray
    best: np.ndarray


def budget_curve(result: SearchResult, eval_every: int) -> BudgetCurve:
    r"""A search's `BudgetCurve`, from its history:

    .. math::
        \text{paid}_c = S H\, t_c, \qquad
        \text{trained}_c = T_e \sum_{c' \le c} \#\{(s, h) : \text{member trained in } c'\},
        \qquad
        \text{best}_c = \min_{c' \le c,\, h} \tfrac1S \textstyle\sum_s L^{val}_{c', s, h},

    with :math:`T_e` = ``eval_every`` (a member trained in chunk c' when its training loss is
    recorded; one that diverges within a chunk counts none of it). Comparable across
    schedulers of one population shape (grid, successive halving, ASHA, PBT): equal
    ``paid`` is an equal budget.
    """
    val = result.history["val_loss"]  # (C, S, H), NaN once stopped
    num_seeds, num_configs = val.shape[1:]
    finite = np.isfinite(val)
    count = finite.sum(axis=1)
    mean = np.where(
        count > 0, np.where(finite, val, 0.0).sum(axis=1) / np.maximum(count, 1), np.inf
    )
    best = np.minimum.accumulate(mean.min(axis=1, initial=np.inf))
    trained = np.cumsum(np.isfinite(result.history["train_loss"]).sum(axis=(1, 2))) * eval_every
    paid = np.asarray(result.history["step"], np.int64) * num_seeds * num_configs
    return BudgetCurve(paid=paid, trained=trained.astype(np.int64), best=best)
