r"""Adaptive learning-rate re-estimation: the course's brute-force heuristic, one compiled program.

Every R steps the current model is forked into N copies with the learning rates
:math:`\eta \cdot c_i` (multipliers :math:`c_1, \dots, c_N` around 1); each copy trains K steps
on a fixed small subset of the training set, and the copy with the lowest loss on that subset
(its parameters, optimizer state and learning rate) is kept until the next re-estimation.
Between re-estimations the kept model trains R steps with `jdl.train.make_chunk` (evaluation
and early stopping included). The N copies train side by side under ``vmap``, the rounds run
in a ``lax.scan``: the whole procedure is one ``jit``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdl.data import Dataset
from jdl.hyperparams import check_count
from jdl.train import EarlyStopping, LossFn, TrainState, make_chunk, train_step

__all__ = ["AdaptiveHistory", "make_adaptive"]

Params = Any
EvalFn = Callable[[Params, Dataset], dict[str, jax.Array]]


class AdaptiveHistory(NamedTuple):
    """What happened at each of the rounds (leading axis: rounds).

    Attributes:
      learning_rate: the learning rate kept at each round's re-estimation.
      probe_loss: loss on the subset of each of the N copies, shape (rounds, N) (inf for a
        copy that diverged).
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
    num_rounds: int,
    probe_batch_size: int | None = None,
) -> Callable[..., tuple[TrainState, jax.Array, AdaptiveHistory]]:
    r"""Builds the re-estimating training run ``run(state, learning_rate, train, val, probe)``.

    Each of the ``num_rounds`` rounds:

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
      num_rounds: the number of rounds.
      probe_batch_size: the copies' mini-batch size (default: ``batch_size``, at most the
        subset's size).

    Returns:
      ``run(state, learning_rate, train, val, probe) -> (state, learning_rate, history)``,
      pure: wrap it in ``jax.jit`` (and ``jax.vmap`` over seeds).

    References:
      Y. LeCun, L. Bottou, G. Orr, K.-R. Müller, "Efficient BackProp", 1998, section 4.7;
      Y. Bengio, "Practical recommendations for gradient-based training of deep
      architectures", 2012, arXiv:1206.5533, section 3.1.
    """
    check_count("batch_size", batch_size)
    check_count("period", period)
    check_count("probe_steps", probe_steps)
    check_count("num_rounds", num_rounds)
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
            score = jnp.asarray(eval_fn(s.params, probe)["loss"], jnp.float32)
            return s, jnp.where(jnp.isfinite(score) & ~s.stop.diverged, score, jnp.inf)

        candidates = lr * mult_j
        forks, scores = jax.vmap(fork)(candidates)
        best = jnp.argmin(scores)
        chosen = jax.tree.map(
            lambda leaf: leaf[best], (forks.step, forks.params, forks.opt_state, forks.stop)
        )
        # A stopped run stays as it is (its copies were frozen anyway).
        frozen = state.stop.should_stop
        kept = jax.tree.map(
            lambda old, new: jnp.where(frozen, old, new),
            (state.step, state.params, state.opt_state, state.stop),
            chosen,
        )
        return TrainState(*kept, key=state.key), jnp.where(frozen, lr, candidates[best]), scores

    def run(
        state: TrainState,
        learning_rate: jax.typing.ArrayLike,
        train: Dataset,
        val: Dataset,
        probe: Dataset,
    ) -> tuple[TrainState, jax.Array, AdaptiveHistory]:
        def one_round(
            carry: tuple[TrainState, jax.Array], _: None
        ) -> tuple[tuple[TrainState, jax.Array], AdaptiveHistory]:
            s, lr = carry
            s, lr, scores = reestimate(s, lr, probe)
            chunk = make_chunk(
                loss_fn,
                optimizer(lr),
                batch_size=batch_size,
                chunk_steps=period,
                eval_fn=eval_fn,
                early_stopping=early_stopping,
            )
            s, metrics = chunk(s, train, val)
            return (s, lr), AdaptiveHistory(lr, scores, s.step, metrics)

        lr0 = jnp.asarray(learning_rate, jnp.float32)
        (state, lr), history = jax.lax.scan(one_round, (state, lr0), None, length=num_rounds)
        return state, lr, history

    return run
