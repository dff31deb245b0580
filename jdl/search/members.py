"""A population's members on the devices: placement, the compiled programs, and the run that
the driver calls between chunks.

`Members` places a population's arrays (member axis split over a 1-D mesh, data replicated),
compiles `jdl.search.programs`' pure programs once per argument signature, and exposes them as
``init``, ``advance``, ``evaluate`` and ``copy_members``; `jdl.search.Search` adds ``run``.
`jdl.search.population_run.PopulationRun` is what the run driver sees of it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jdl.data import Dataset
from jdl.run import RunSpec
from jdl.run.boundary import check_evaluation
from jdl.run.driver import Row
from jdl.search.compiled import Programs, signature
from jdl.search.grid import Population
from jdl.search.memory import device_budget, program_bytes, slice_members
from jdl.search.programs import InitMember, PopulationPrograms, SearchState
from jdl.search.results import gather
from jdl.search.sharding import (
    member_mesh,
    member_sharding,
    pad_members,
    padded_size,
    put,
    replicate,
)
from jdl.train.model_state import evaluate
from jdl.types import HParams, Metrics, ModelState, Params, Variables

__all__ = ["Members"]


class Members:
    """A population's compiled programs on a mesh of devices (see `jdl.search.Search`)."""

    def __init__(
        self,
        init_fn: Callable[[jax.Array], Params],
        spec: RunSpec,
        devices: int | Sequence[jax.Device] | None,
        init_member: InitMember | None = None,
    ):
        self.spec = spec
        self.eval_every = spec.eval_every
        self.mesh = member_mesh(devices)
        self.num_devices = self.mesh.devices.size
        self._call = Programs(self._shardings, list(self.mesh.devices.flat))
        self._programs = PopulationPrograms(spec, init_member)
        self._init_fn = init_fn
        # init_fn returns params, or Variables(params, model_state) for a model with state.
        self._init_shapes = jax.eval_shape(init_fn, jax.eval_shape(jax.random.key, 0))
        self._param_shapes, self._model_state_shapes = self._init_shapes, None
        if isinstance(self._init_shapes, Variables):
            self._param_shapes, self._model_state_shapes = self._init_shapes
        self._state_shapes: dict[tuple, Any] = {}
        self._seed_params: tuple[tuple[int, ...], Any] | None = None

    @property
    def compilations(self) -> int:
        """The number of programs compiled so far (a new population shape adds some; new
        values never do)."""
        return self._call.compilations

    @property
    def compile_seconds(self) -> float:
        """The time spent compiling so far."""
        return self._call.compile_seconds

    def _shardings(self, shapes: Any) -> Any:
        """Member axis 1 split over the mesh for (S, H', ...) leaves; the rest replicated."""
        return jax.tree.map(
            lambda s: (
                member_sharding(self.mesh, len(s.shape), axis=1)
                if len(s.shape) >= 2
                else NamedSharding(self.mesh, PartitionSpec())
            ),
            shapes,
        )

    def check(self, pop: Population, train: Dataset, val: Dataset) -> None:
        """The boundary's checks before anything compiles: every configuration's optimizer and
        loss factory accept its values, and the first configuration's functions fit the data
        (the checks and messages of `jdl.run.fit`)."""
        if not isinstance(pop, Population):
            raise TypeError(f"expected a Population (see jdl.search.population), got {pop!r}")
        for h in range(pop.num_configs):
            config = pop.config(h)
            for what, factory in (
                ("optimizer", self.spec.transformation),
                ("make_loss_fn", self.spec.loss),
                ("make_eval_fn", self.spec.evaluation),
                ("early_stopping", self.spec.rule),
                ("init_member", self._check_init_member),
            ):
                try:
                    factory(dict(config))
                except KeyError as e:
                    raise ValueError(
                        f"{what} reads the hyper-parameter {e}, which the population lacks "
                        f"(it has {sorted(pop.hparams)})"
                    ) from None
                except (ValueError, TypeError) as e:
                    raise ValueError(f"configuration {config}: {e}") from None
        key = jax.eval_shape(lambda: jax.random.split(jax.random.key(0))[1])  # abstract
        self.spec.check(
            pop.config(0), self._param_shapes, key, train, val, self._model_state_shapes
        )

    def _check_init_member(self, hp: HParams) -> None:
        """``init_member`` of ``hp`` keeps the seed's parameters' shapes (abstractly)."""
        init, shapes = self._programs.init_member, self._param_shapes
        if init is not None and jax.eval_shape(lambda p: init(p, hp), shapes) != shapes:
            raise ValueError("init_member(params, hp) must return parameters of params' shapes")

    def seed_params(self, pop: Population) -> Params:
        """Each seed's initial parameters ``init_fn(k_init)`` (`jdl.types.Variables` for a
        model with state: each seed its own statistics), stacked on the host (leaves (S, ...));
        the last population's are kept, since every slice of it starts from them."""
        seeds = tuple(int(s) for s in pop.seeds)
        if self._seed_params is None or self._seed_params[0] != seeds:
            init = [self._init_fn(jax.random.split(jax.random.key(s))[0]) for s in seeds]
            stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *jax.device_get(init))
            self._seed_params = (seeds, stacked)
        return self._seed_params[1]

    def init(
        self,
        pop: Population,
        train: Dataset,
        val: Dataset,
        *,
        size: int | None = None,
        ahead: tuple[int | None, bool] | None = None,
    ) -> SearchState:
        """The population at step 0, padded to ``size`` configurations (default: the next
        multiple of the device count) and placed on the devices.

        Args:
          pop: the population.
          train, val: the data sets (their shapes fix the metrics' structure).
          size: the padded number of configurations H'.
          ahead: ``(steps, own_steps)`` to compile `advance` for these arguments in the
            background meanwhile.

        Raises:
          ValueError: a size that does not hold the population or does not divide over the
            devices.
        """
        num_configs = pop.num_configs
        size = padded_size(num_configs, self.num_devices) if size is None else size
        if size < num_configs or size % self.num_devices:
            raise ValueError(
                f"size must be >= {num_configs} and a multiple of {self.num_devices} devices, "
                f"got {size}"
            )
        num_seeds = len(pop.seeds)
        # Host-side NumPy for the small arrays: no eager JAX operation (each would compile).
        hp = pad_members({k: v.astype(np.float32) for k, v in pop.hparams.items()}, size)
        hp = {k: np.broadcast_to(v, (num_seeds, size)) for k, v in hp.items()}
        hp = put(hp, self._shardings(hp))
        # The seeds as jax.random.key reads a Python int (its low 32 bits).
        seeds = replicate(pop.seeds.astype(np.uint32), self.mesh)
        valid = replicate(np.arange(size) < num_configs, self.mesh)
        clock = replicate(np.zeros((), np.int32), self.mesh)
        train, val = self.place(train, val)
        last = {
            k: np.full((num_seeds, size), np.nan if jnp.issubdtype(d, jnp.floating) else 0, d)
            for k, d in self._metric_dtypes(pop.hparams, val).items()
        }
        at_best = {k: v for k, v in last.items() if k.startswith("val_")}
        last = put(last, self._shardings(last))
        at_best = put(at_best, self._shardings(at_best))  # own buffers: donated
        if ahead is not None:
            # Compile the chunk in the background while the members are initialised (the
            # critical path of a first run: it starts before any eager computation).
            steps, own = ahead
            args = self._advance_shapes(len(pop.seeds), size, pop.hparams, train, val)
            self._call.compile_ahead(
                f"advance{steps}{own}", self._advance_fn(steps, own), *args, donate=(1, 3, 4)
            )
        params = replicate(self.seed_params(pop), self.mesh)
        state = self._call("init", self._programs.init, hp, params, seeds)
        return SearchState(hp, state, clock, last, at_best, valid)

    def _metric_dtypes(self, hparams: HParams, val: Dataset) -> dict[str, Any]:
        """The metrics' dtypes: "train_loss" and "val_<k>" for each entry k of the dict of the
        validation set's evaluation function (of hyper-parameters named as ``hparams``)."""
        one = {k: jax.ShapeDtypeStruct((), jnp.float32) for k in hparams}
        evaluation = jax.eval_shape(
            lambda h, p, m, v: evaluate(self.spec.evaluation(h), p, m, v),
            one,
            self._param_shapes,
            self._model_state_shapes,
            val,
        )
        check_evaluation(evaluation)
        dtypes = {"train_loss": jnp.dtype(jnp.float32)}
        dtypes.update({f"val_{k}": jnp.dtype(v.dtype) for k, v in evaluation.items()})
        return dtypes

    def _advance_shapes(
        self, num_seeds: int, size: int, hparams: HParams, train: Dataset, val: Dataset
    ) -> tuple:
        """``advance``'s arguments for S seeds x ``size`` configurations, as placed
        ``jax.ShapeDtypeStruct`` descriptions (the data sets as given)."""
        hp = {k: jax.ShapeDtypeStruct((num_seeds, size), jnp.float32) for k in hparams}
        replicated = NamedSharding(self.mesh, PartitionSpec())
        params = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((num_seeds, *a.shape), a.dtype, sharding=replicated),
            self._init_shapes,
        )
        seeds = jax.ShapeDtypeStruct((num_seeds,), jnp.uint32, sharding=replicated)
        key = signature((hp, params, seeds))
        if key not in self._state_shapes:
            self._state_shapes[key] = jax.eval_shape(self._programs.init, hp, params, seeds)
        last = {
            k: jax.ShapeDtypeStruct((num_seeds, size), d)
            for k, d in self._metric_dtypes(hparams, val).items()
        }
        at_best = {k: v for k, v in last.items() if k.startswith("val_")}
        clock = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)

        def placed(tree: Any) -> Any:
            return jax.tree.map(
                lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                tree,
                self._shardings(tree),
            )

        state = placed(self._state_shapes[key])
        return placed(hp), state, clock, placed(last), placed(at_best), train, val

    def members_that_fit(
        self,
        pop: Population,
        train: Dataset,
        val: Dataset,
        steps: int | None,
        budget: int | None = None,
    ) -> int:
        """The most configurations (a multiple of the device count, at most the padded
        population) whose compiled chunk fits the memory budget (`jdl.search.memory`).

        The chunk for the whole population compiles first (the program a run that fits uses);
        when it does not fit, the chunk for one configuration per device gives the footprint
        of one member and of what does not grow with the members.

        Args:
          pop: the population.
          train, val: the data sets.
          steps: ``advance``'s ``steps``.
          budget: the bytes the population may use on all devices (None: the devices'
            memory, see `jdl.search.memory.device_budget`).

        Raises:
          ValueError: not even one configuration per device fits.
        """
        per_device = device_budget(list(self.mesh.devices.flat), budget)
        full = padded_size(pop.num_configs, self.num_devices)
        full_bytes = self.footprint(pop, train, val, steps, full)
        if full_bytes <= per_device:
            return full
        small_bytes = self.footprint(pop, train, val, steps, self.num_devices)
        return slice_members(full, full_bytes, small_bytes, self.num_devices, per_device)

    def footprint(
        self, pop: Population, train: Dataset, val: Dataset, steps: int | None, size: int
    ) -> int:
        """The bytes one device holds while the chunk runs for S seeds x ``size``
        configurations (XLA's memory analysis of the compiled chunk, which the run with these
        shapes then reuses; without one: the members' arrays, in and out)."""
        train, val = self.place(train, val)
        args = self._advance_shapes(len(pop.seeds), size, pop.hparams, train, val)
        compiled = self._call.compiled(
            f"advance{steps}False", self._advance_fn(steps), *args, donate=(1, 3, 4)
        )
        found = program_bytes(compiled)
        if found is None:
            found = 2 * sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(args[:5]))
            found //= self.num_devices
        return found

    def advance(
        self,
        state: SearchState,
        train: Dataset,
        val: Dataset,
        *,
        steps: int | None = None,
        own_steps: bool = False,
    ) -> tuple[SearchState, Metrics]:
        """One compiled chunk for every member: ``eval_every`` steps, an evaluation and an
        early-stopping update. Steps at t >= ``steps`` are no-ops (ends a run whose length
        is not a multiple of ``eval_every``). With ``own_steps`` each member runs at its own
        step count (members restarted by `reset_members`), not at the shared clock.

        Returns:
          The new state (the old one's buffers are donated) and the chunk's metrics, shape
          (S, H'), NaN for members that had stopped before it.
        """
        train, val = self.place(train, val)
        new, clock, last, at_best, metrics = self._call(
            f"advance{steps}{own_steps}",
            self._advance_fn(steps, own_steps),
            state.hparams,
            state.train,
            state.clock,
            state.last,
            state.at_best,
            train,
            val,
            donate=(1, 3, 4),
        )
        return state._replace(train=new, clock=clock, last=last, at_best=at_best), metrics

    def lowered_advance(
        self,
        state: SearchState,
        train: Dataset,
        val: Dataset,
        steps: int | None,
        own_steps: bool = False,
    ) -> jax.stages.Lowered:
        """``advance``'s program lowered for ``state`` (its text fingerprints the run)."""
        args = (state.hparams, state.train, state.clock, state.last, state.at_best, train, val)
        return jax.jit(self._advance_fn(steps, own_steps)).lower(*args)

    def _advance_fn(self, steps: int | None, own_steps: bool = False) -> Callable:
        return functools.partial(self._programs.advance, steps=steps, own_steps=own_steps)

    def evaluate(
        self, params: Params, data: Dataset, model_state: ModelState = None
    ) -> dict[str, jax.Array]:
        """``eval_fn`` of every member's parameters (leaves (S, H', ...)), and model state
        when the model has one, shape (S, H')."""
        (data,) = self.place(data)
        return self._call("evaluate", self._programs.evaluate, params, model_state, data)

    def copy_members(self, state: SearchState, source: Any, hparams: HParams) -> SearchState:
        """Member h of seed s becomes a copy of member ``source[s, h]`` of the same seed
        (parameters, model state, optimizer state, early-stopping state, steps) and takes
        ``hparams[.][s, h]``; one compiled gather along the member axis, so nothing
        recompiles.
        Used by successive halving and population-based training."""
        shardings = self._shardings(state.train.step)
        source = put(np.asarray(source, np.int32), shardings)
        hparams = {k: np.asarray(v, np.float32) for k, v in hparams.items()}
        hparams = put(hparams, self._shardings(state.hparams))
        return self._call("copy", self._programs.copy, state, source, hparams, donate=(0,))

    def reset_members(
        self, state: SearchState, fresh: Any, halt: Any, hparams: HParams
    ) -> SearchState:
        """Members with ``fresh[s, h]`` become new runs of ``hparams[.][s, h]`` from step 0:
        their seed's initial parameters ``init_fn(k_init)``, a new optimizer state and
        early-stopping state, no metrics yet (run them with ``advance(..., own_steps=True)``);
        members with ``halt[s, h]`` stop; every member takes ``hparams``. One compiled
        program for any masks and values, so nothing recompiles. Used by ASHA's refills."""
        size, shardings = state.valid.shape[0], self._shardings(state.train.step)
        masks = {"fresh": np.asarray(fresh, bool), "halt": np.asarray(halt, bool)}
        # padding members (to a multiple of the devices) follow the last member, as in init
        masks = jax.device_put(pad_members(masks, size, axis=1), shardings)
        hparams = {k: np.asarray(v, np.float32) for k, v in hparams.items()}
        hparams = jax.device_put(pad_members(hparams, size, axis=1), self._shardings(state.hparams))
        if self._seed_params is None:
            raise ValueError("reset_members needs a population initialised by init")
        params = replicate(self._seed_params[1], self.mesh)
        args = (state, params, masks["fresh"], masks["halt"], hparams)
        return self._call("reset", self._programs.reset, *args, donate=(0,))

    def place(self, *datasets: Dataset) -> tuple[Dataset, ...]:
        """The data sets replicated on every device of the mesh (a no-op once they are)."""
        for d in datasets:
            if not isinstance(d, Dataset):
                raise TypeError(f"expected a jdl.data.Dataset, got {type(d).__name__}")
        return tuple(replicate(jax.tree.map(jnp.asarray, d), self.mesh) for d in datasets)

    def fetch(
        self, state: SearchState, history: list[Row], test: Dataset | None, num_configs: int
    ) -> dict:
        """Evaluates the best parameters on the test set and brings everything to the host,
        padding dropped: a piece of `jdl.search.results.assemble`."""
        best = dict(state.at_best)
        if test is not None:
            stop = state.train.stop
            tested = self.evaluate(stop.best_params, test, stop.best_model_state)
            best.update({f"test_{k}": v for k, v in tested.items()})
        return gather(state.train, state.last, best, history, num_configs)
