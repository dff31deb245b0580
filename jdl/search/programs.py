"""The pure programs that a search compiles: one population's init, chunk, evaluation and
member copy, each vmapped over the seeds and the configurations.

Their arguments are the population's arrays with a seed axis S and a configuration axis H'
(`SearchState`); `jdl.search.Search` compiles them once per shape and places the arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jdl.data import Dataset
from jdl.run.spec import RunSpec
from jdl.train import TrainState, init_state
from jdl.train.model_state import evaluate
from jdl.types import HParams, Params, Variables

InitMember = Callable[[Params, HParams], Params]
"""``init_member(params, hp) -> params``: a member's initial parameters from its seed's."""


class SearchState(NamedTuple):
    """A population in training, with a leading seed axis S and a member axis H' (padded).

    Attributes:
      hparams: name -> values, shape (S, H').
      train: the members' `TrainState`s: ``step`` of shape (S, H') (each member's own
        optimizer steps), params / opt_state / stop / model_state with leaves (S, H', ...)
        (each member its own running statistics), and ``key`` of shape (S,): members of one
        seed share their key, hence their data order.
      clock: steps since the start, shape (); every member still training has taken exactly
        this many steps.
      last: the metrics of each member's last chunk before it stopped, shape (S, H').
      at_best: the validation metrics (``val_<k>``) of each member's evaluation with the best
        loss so far, i.e. ``eval_fn`` of its best parameters, shape (S, H').
      valid: false on the padding, shape (H',).
    """

    hparams: HParams
    train: TrainState
    clock: jax.Array  # shape=(), int32
    last: dict[str, jax.Array]
    at_best: dict[str, jax.Array]
    valid: jax.Array  # shape=(H',), bool


class PopulationPrograms(NamedTuple):
    """The programs of a population whose member (s, h) is the run of seed s and
    hyper-parameters ``hp[s, h]`` described by ``spec`` (`jdl.run.RunSpec`), starting from
    its seed's parameters, through ``init_member`` when given."""

    spec: RunSpec
    init_member: InitMember | None = None

    def _member_init(self, hp: HParams, params: Params, key: jax.Array) -> TrainState:
        if self.init_member is not None:
            if isinstance(params, Variables):
                params = Variables(self.init_member(params.params, hp), params.model_state)
            else:
                params = self.init_member(params, hp)
        return init_state(params, self.spec.transformation(hp), self.spec.rule(hp), key)

    def init(self, hp: HParams, params: Params, seeds: jax.Array) -> TrainState:
        """Every member at step 0: its seed's parameters (leaves (S, ...); `jdl.types.Variables`
        with the model state) and run key
        ``k_run`` (``k_init, k_run = split(key(seed))``), and its configuration's optimizer and
        early-stopping states."""
        keys = jax.vmap(lambda seed: jax.random.split(jax.random.key(seed))[1])(seeds)
        inner = jax.vmap(self._member_init, in_axes=(0, None, None))
        state = jax.vmap(inner)(hp, params, keys)
        return state._replace(key=keys)

    def _member_chunk(
        self,
        hp: HParams,
        params: Params,
        opt_state: Any,
        stop: Any,
        model_state: Any,
        key: jax.Array,
        clock: jax.Array,
        train: Dataset,
        val: Dataset,
        steps: int | None,
    ) -> tuple:
        chunk = self.spec.chunk(hp, steps)
        # A live member has taken exactly `clock` steps; passing the shared, unbatched clock
        # (and the seed's key) keeps the batch gather out of the inner vmap. With `own_steps`
        # `clock` is the member's own step count instead (batched).
        state = TrainState(clock, params, opt_state, stop, key, model_state)
        state, metrics = chunk(state, train, val)
        return state.step, state.params, state.opt_state, state.stop, state.model_state, metrics

    def advance(
        self,
        hp: HParams,
        state: TrainState,
        clock: jax.Array,
        last: dict[str, jax.Array],
        at_best: dict[str, jax.Array],
        train: Dataset,
        val: Dataset,
        *,
        steps: int | None,
        own_steps: bool = False,
    ) -> tuple[TrainState, jax.Array, dict, dict, dict]:
        """One chunk of every member. Members normally run at the shared ``clock`` (every live
        member has taken exactly that many steps); with ``own_steps`` each runs at its own step
        count ``state.step`` (its data order, loss keys and early-stopping deadline those of a
        run started at step 0), for populations whose members started at different times
        (slots refilled by `reset`); the batch is then gathered per member."""

        def member(hp, params, opt_state, stop, model_state, key, clock, train, val):
            return self._member_chunk(
                hp, params, opt_state, stop, model_state, key, clock, train, val, steps
            )

        at = 0 if own_steps else None
        inner = jax.vmap(member, in_axes=(0, 0, 0, 0, 0, None, at, None, None))
        members = (hp, state.params, state.opt_state, state.stop, state.model_state)
        when = state.step if own_steps else clock
        if state.key.shape[0] == 1:
            # One seed: a single vmap (a size-1 outer one costs ~5% on CPU).
            first = jax.tree.map(lambda a: a[0], members)
            out = inner(*first, state.key[0], when[0] if own_steps else clock, train, val)
            out = jax.tree.map(lambda a: a[None], out)
        else:
            outer = jax.vmap(inner, in_axes=(0, 0, 0, 0, 0, 0, at, None, None))
            out = outer(*members, state.key, when, train, val)
        step, params, opt_state, stop, model_state, metrics = out
        live = ~state.stop.should_stop
        step = jnp.where(live, step, state.step)
        last = {k: jnp.where(live, metrics[k], last[k]) for k in last}
        improved = stop.best_step != state.stop.best_step
        at_best = {k: jnp.where(improved, metrics[k], at_best[k]) for k in at_best}
        shown = {k: jnp.where(live, v, jnp.nan) for k, v in metrics.items()}
        new = TrainState(step, params, opt_state, stop, state.key, model_state)
        return new, clock + self.spec.eval_every, last, at_best, shown

    def evaluate(self, params: Params, model_state: Any, data: Dataset) -> dict[str, jax.Array]:
        def member(params: Params, model_state: Any) -> dict[str, jax.Array]:
            return evaluate(self.spec.eval_fn, params, model_state, data)

        return jax.vmap(jax.vmap(member))(params, model_state)

    def copy(self, state: SearchState, source: jax.Array, hparams: HParams) -> SearchState:
        def take(leaf: jax.Array) -> jax.Array:
            return jax.vmap(lambda row, src: row[src])(leaf, source)

        train = state.train
        moved = jax.tree.map(take, (train.step, train.params, train.opt_state, train.stop))
        return state._replace(
            hparams=hparams,
            train=TrainState(
                *moved, key=train.key, model_state=jax.tree.map(take, train.model_state)
            ),
            last=jax.tree.map(take, state.last),
            at_best=jax.tree.map(take, state.at_best),
        )

    def reset(
        self,
        state: SearchState,
        params: Params,
        fresh: jax.Array,
        halt: jax.Array,
        hparams: HParams,
    ) -> SearchState:
        """Members with ``fresh[s, h]`` start again from step 0 as new runs of
        ``hparams[.][s, h]``: their seed's initial parameters ``params`` (leaves (S, ...);
        with the model state, as `init` takes them), a new optimizer state and early-stopping
        state, no metrics yet; members with
        ``halt[s, h]`` stop where they are; the others are untouched. Every member takes
        ``hparams``."""
        init = jax.vmap(jax.vmap(self._member_init, in_axes=(0, None, None)))
        new = init(hparams, params, state.train.key)

        def pick(mask: jax.Array) -> Any:
            def select(a: jax.Array, b: jax.Array) -> jax.Array:
                return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 2)), a, b)

            return select

        old = state.train
        moved = jax.tree.map(
            pick(fresh),
            (new.step, new.params, new.opt_state, new.stop, new.model_state),
            (old.step, old.params, old.opt_state, old.stop, old.model_state),
        )
        step, params, opt_state, stop, model_state = moved
        stop = stop._replace(should_stop=stop.should_stop | halt)
        return state._replace(
            hparams=hparams,
            train=TrainState(step, params, opt_state, stop, old.key, model_state),
            last={k: _cleared(v, fresh) for k, v in state.last.items()},
            at_best={k: _cleared(v, fresh) for k, v in state.at_best.items()},
        )


def _cleared(metric: jax.Array, mask: jax.Array) -> jax.Array:
    """``metric`` with the entries under ``mask`` back to "none yet" (NaN; 0 if integer)."""
    empty = jnp.nan if jnp.issubdtype(metric.dtype, jnp.floating) else 0
    return jnp.where(mask, jnp.asarray(empty, metric.dtype), metric)
