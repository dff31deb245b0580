r"""Adaptive learning-rate re-estimation: the course's brute-force heuristic, one compiled program.

Every R steps the current model is forked into N copies with the learning rates
:math:`\eta \cdot c_i` (multipliers :math:`c_1, \dots, c_N` around 1); each copy trains K steps
on a fixed small subset of the training set, and the copy with the lowest loss on that subset
(its parameters, optimizer state and learning rate) is kept until the next re-estimation.
Between re-estimations the kept model trains R steps with `jdl.train.make_chunk` (evaluation
and early stopping included). The N copies train side by side under ``vmap``: one round is one
compiled chunk, and `run_adaptive` calls it round after round through the run driver
(`jdl.run.drive`), vmapped over independent runs (seeds), with the driver's progress bar,
Ctrl-C handling and checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdl.data import Dataset
from jdl.hyperparams import check_count
from jdl.run import Checkpoints, Progress, drive, fingerprint
from jdl.run.driver import Row
from jdl.train import EarlyStopping, TrainState, make_chunk, train_step
from jdl.train.model_state import evaluate
from jdl.types import EvalFn, LossFn, Metrics

__all__ = ["AdaptiveHistory", "AdaptiveResult", "AdaptiveState", "make_adaptive", "run_adaptive"]


class AdaptiveState(NamedTuple):
    """A re-estimating run: its `TrainState` and its current learning rate."""

    train: TrainState
    learning_rate: jax.Array  # shape=(), float32


class AdaptiveHistory(NamedTuple):
    """What happened at each of the rounds (axes: runs, rounds).

    Attributes:
      learning_rate: the learning rate kept at each round's re-estimation.
      probe_loss: loss on the subset of each of the N copies, shape (runs, rounds, N) (inf for
        a copy that diverged).
      step: optimizer steps taken at the end of each round.
      metrics: the chunk metrics after each round (``train_loss``, ``val_loss``, ...).
    """

    learning_rate: jax.Array
    probe_loss: jax.Array
    step: jax.Array
    metrics: dict[str, jax.Array]


def make_adaptive(
    loss_fn: LossFn,
    optimizer: Callable[[jax.Array], optax.GradientTransformation],
    *,
    batch_size: int,
    period: int,
    probe_steps: int,
    multipliers: Sequence[float],
    eval_fn: EvalFn,
    early_stopping: EarlyStopping,
    probe_batch_size: int | None = None,
) -> Callable[[AdaptiveState, Dataset, Dataset, Dataset], tuple[AdaptiveState, Metrics]]:
    r"""Builds one round of the re-estimating run, ``round(state, train, val, probe)``.

    A round:

    .. math::
        \eta_i = c_i \eta, \quad
        s_i = \text{step}_{\eta_i}^{K}(s; D_{probe}), \quad
        i^* = \arg\min_i L(\theta(s_i); D_{probe}), \quad
        (s, \eta) \leftarrow (s_{i^*}, \eta_{i^*}), \quad
        s \leftarrow \text{chunk}_{\eta}^{R}(s; D_{train}, D_{val}),

    with :math:`\text{step}^K` K train steps (`jdl.train.train_step`) and
    :math:`\text{chunk}^R` R train steps, an evaluation and early stopping
    (`jdl.train.make_chunk`). The kept copy's K probe steps are real updates, so each round
    advances the model by K + R steps (and costs N K + R step computations). A stopped run no
    longer changes, nor does its learning rate.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> (loss, aux)``.
      optimizer: ``optimizer(learning_rate) -> optax.GradientTransformation`` (traced rate).
      batch_size: mini-batch size of the main training.
      period: R, steps between two re-estimations.
      probe_steps: K, steps each copy trains on the subset.
      multipliers: :math:`c_1, \dots, c_N`, positive, e.g. ``(0.5, 1, 2)``.
      eval_fn: ``eval_fn(params, data) -> dict`` with ``"loss"``; scores the copies on the
        subset and evaluates the main run on the validation set.
      early_stopping: the main run's rule (`jdl.train.early_stopping`).
      probe_batch_size: the copies' mini-batch size (default: ``batch_size``, at most the
        subset's size).

    Returns:
      ``round(state, train, val, probe) -> (state, record)``, pure, with ``record`` the
      round's ``learning_rate`` (kept), ``probe_loss`` (N,), ``optimizer_step`` and the
      chunk's metrics (``train_loss``, ``val_loss``, ...); its attribute ``steps_per_round``
      is K + R. `run_adaptive` runs the rounds.

    References:
      Y. LeCun, L. Bottou, G. Orr, K.-R. Müller, "Efficient BackProp", 1998, section 4.7;
      Y. Bengio, "Practical recommendations for gradient-based training of deep
      architectures", 2012, arXiv:1206.5533, section 3.1.
    """
    check_count("batch_size", batch_size)
    check_count("period", period)
    check_count("probe_steps", probe_steps)
    if probe_batch_size is not None:
        check_count("probe_batch_size", probe_batch_size)
    mult = np.asarray(multipliers, np.float64)
    if mult.ndim != 1 or mult.size == 0 or not np.all(np.isfinite(mult) & (mult > 0)):
        raise ValueError(f"multipliers must be a non-empty list of numbers > 0, got {multipliers}")
    mult_j = jnp.asarray(mult, jnp.float32)

    def reestimate(
        state: TrainState, lr: jax.Array, probe: Dataset
    ) -> tuple[TrainState, jax.Array, jax.Array]:
        n_probe = jax.tree.leaves(probe)[0].shape[0]
        probe_bs = min(probe_batch_size or batch_size, n_probe)

        def fork(candidate: jax.Array) -> tuple[TrainState, jax.Array]:
            step_fn = train_step(loss_fn, optimizer(candidate), batch_size=probe_bs)
            s, _ = jax.lax.scan(lambda s, _: step_fn(s, probe), state, None, length=probe_steps)
            score = evaluate(eval_fn, s.params, s.model_state, probe)["loss"]
            score = jnp.asarray(score, jnp.float32)
            return s, jnp.where(jnp.isfinite(score) & ~s.stop.diverged, score, jnp.inf)

        candidates = lr * mult_j
        forks, scores = jax.vmap(fork)(candidates)
        best = jnp.argmin(scores)
        carried = ("step", "params", "opt_state", "stop", "model_state")
        chosen = jax.tree.map(lambda leaf: leaf[best], [getattr(forks, f) for f in carried])
        # A stopped run stays as it is (its copies were frozen anyway).
        frozen = state.stop.should_stop
        kept = jax.tree.map(
            lambda old, new: jnp.where(frozen, old, new),
            [getattr(state, f) for f in carried],
            chosen,
        )
        new = state._replace(**dict(zip(carried, kept, strict=True)))
        return new, jnp.where(frozen, lr, candidates[best]), scores

    def one_round(
        state: AdaptiveState, train: Dataset, val: Dataset, probe: Dataset
    ) -> tuple[AdaptiveState, Metrics]:
        s, lr, scores = reestimate(state.train, state.learning_rate, probe)
        chunk = make_chunk(
            loss_fn,
            optimizer(lr),
            batch_size=batch_size,
            eval_every=period,
            eval_fn=eval_fn,
            early_stopping=early_stopping,
        )
        s, metrics = chunk(s, train, val)
        record = {"learning_rate": lr, "probe_loss": scores, "optimizer_step": s.step, **metrics}
        return AdaptiveState(s, lr), record

    one_round.steps_per_round = probe_steps + period  # type: ignore[attr-defined]
    return one_round


class AdaptiveResult(NamedTuple):
    """What `run_adaptive` returns.

    Attributes:
      state: the runs' final `AdaptiveState` (leaves with a leading axis of runs).
      history: an `AdaptiveHistory`, axes (runs, rounds, ...).
      interrupted: stopped by Ctrl-C; ``state`` and ``history`` hold the rounds run.
    """

    state: AdaptiveState
    history: AdaptiveHistory
    interrupted: bool


class _Rounds:
    """The rounds of several re-estimating runs as the run driver sees them."""

    def __init__(self, compiled: Callable, data: tuple[Dataset, Dataset, Dataset]):
        self._compiled, self._data = compiled, data

    def advance(self, state: AdaptiveState) -> tuple[AdaptiveState, Metrics]:
        return self._compiled(state, *self._data)

    def observe(self, state: AdaptiveState, metrics: Metrics) -> tuple[Row, Progress]:
        stop = state.train.stop
        row, stopped, diverged, best = jax.device_get(
            (metrics, stop.should_stop, stop.diverged, stop.best_metric)
        )
        finite = np.where(np.isfinite(best), best, np.inf)
        progress = Progress(
            step=int(np.max(row["optimizer_step"])),
            training=int((~stopped).sum()),
            stopped=int((stopped & ~diverged).sum()),
            diverged=int(diverged.sum()),
            best_loss=float(finite.min()),
        )
        return {k: np.asarray(v) for k, v in row.items()}, progress


def run_adaptive(
    round_fn: Callable[[AdaptiveState, Dataset, Dataset, Dataset], tuple[AdaptiveState, Metrics]],
    state: AdaptiveState,
    train: Dataset,
    val: Dataset,
    probe: Dataset,
    *,
    rounds: int,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
) -> AdaptiveResult:
    """Runs ``rounds`` rounds of ``round_fn`` (`make_adaptive`) for several runs at once.

    ``jit(vmap(round_fn))`` is compiled once, over the leading axis of ``state`` (one run per
    seed, say), and called round after round by the run driver: a progress bar, Ctrl-C after
    the round in flight, and with ``checkpoint_dir`` checkpoints from which the same call
    resumes (a checkpoint of another configuration is refused).

    Args:
      round_fn: one round, from `make_adaptive`.
      state: the runs' `AdaptiveState`s, leaves with a leading axis of runs.
      train, val, probe: the data sets (the probe subset of the re-estimations).
      rounds: the number of rounds.
      progress, checkpoint_dir, checkpoint_every: as in `jdl.run.fit`.

    Returns:
      An `AdaptiveResult`.
    """
    check_count("rounds", rounds)
    check_count("checkpoint_every", checkpoint_every)
    data = jax.tree.map(jnp.asarray, (train, val, probe))
    batched = jax.vmap(round_fn, in_axes=(0, None, None, None))
    lowered = jax.jit(batched, donate_argnums=0).lower(state, *data)
    ckpt = None
    if checkpoint_dir is not None:
        flat = [leaf for d in data for leaf in d]
        state_data = jax.tree.map(
            lambda a: jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a,
            state,
        )
        print_ = fingerprint(
            program=lowered, rounds=rounds, data=flat, state=jax.tree.leaves(state_data)
        )
        ckpt = Checkpoints(checkpoint_dir, fingerprint=print_)
    try:
        steps = int(np.max(np.asarray(state.train.step)))
        outcome = drive(
            _Rounds(lowered.compile(), data),
            state,
            chunks=rounds,
            total_steps=steps + rounds * round_fn.steps_per_round,
            checkpoints=ckpt,
            checkpoint_every=checkpoint_every,
            progress=progress,
        )
    finally:
        if ckpt is not None:
            ckpt.close()
    rows = outcome.history
    names = [k for k in rows[0] if k not in ("step", "time_s")]
    stacked = {k: np.stack([r[k] for r in rows], axis=1) for k in names}
    history = AdaptiveHistory(
        learning_rate=stacked.pop("learning_rate"),
        probe_loss=stacked.pop("probe_loss"),
        step=stacked.pop("optimizer_step"),
        metrics=stacked,
    )
    return AdaptiveResult(outcome.state, history, outcome.interrupted)
