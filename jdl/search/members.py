"""A population's members on the devices: placement, the compiled programs, and the run that
the driver calls between chunks.

`Members` places a population's arrays (member axis split over a 1-D mesh, data replicated),
compiles `jdl.search.programs`' pure programs once per argument signature, and exposes them as
``init``, ``advance``, ``evaluate`` and ``copy_members``; `jdl.search.Search` adds ``run``.
`PopulationRun` is what `jdl.run.drive` sees of a population: one chunk, and the progress of
its members.
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
from jdl.run import Progress, RunSpec
from jdl.run.boundary import check_evaluation
from jdl.run.driver import Row
from jdl.search.compiled import Programs, signature
from jdl.search.grid import Population
from jdl.search.programs import PopulationPrograms, SearchState
from jdl.search.results import gather
from jdl.search.sharding import (
    member_mesh,
    member_sharding,
    pad_members,
    padded_size,
    put,
    replicate,
    to_host,
)
from jdl.train.model_state import evaluate
from jdl.types import HParams, Metrics, ModelState, Params, Variables

__all__ = ["Members", "PopulationRun"]


class Members:
    """A population's compiled programs on a mesh of devices (see `jdl.search.Search`)."""

    def __init__(
        self,
        init_fn: Callable[[jax.Array], Params],
        spec: RunSpec,
        devices: int | Sequence[jax.Device] | None,
    ):
        self.spec = spec
        self.eval_every = spec.eval_every
        self.mesh = member_mesh(devices)
        self.num_devices = self.mesh.devices.size
        self._call = Programs(self._shardings)
        self._programs = PopulationPrograms(spec)
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
        key = jax.random.split(jax.random.key(0))[1]
        self.spec.check(
            pop.config(0), self._param_shapes, key, train, val, self._model_state_shapes
        )

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
        replicated = NamedSharding(self.mesh, PartitionSpec())
        params = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((num_seeds, *a.shape), a.dtype, sharding=replicated),
            self._init_shapes,
        )
        shapes_key = signature((hp, params, seeds))
        if shapes_key not in self._state_shapes:
            self._state_shapes[shapes_key] = jax.eval_shape(self._programs.init, hp, params, seeds)
        shapes = self._state_shapes[shapes_key]
        # The metrics: "train_loss" and "val_<k>" for each entry k of eval_fn's dict.
        one = {k: jax.ShapeDtypeStruct((), jnp.float32) for k in pop.hparams}
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
        last = {
            k: np.full((num_seeds, size), np.nan if jnp.issubdtype(d, jnp.floating) else 0, d)
            for k, d in dtypes.items()
        }
        at_best = {k: v for k, v in last.items() if k.startswith("val_")}
        last = put(last, self._shardings(last))
        at_best = put(at_best, self._shardings(at_best))  # own buffers: donated
        if ahead is not None:
            # Compile the chunk in the background while the members are initialised (the
            # critical path of a first run: it starts before any eager computation).
            shapes = jax.tree.map(
                lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                shapes,
                self._shardings(shapes),
            )
            steps, own = ahead
            args = (hp, shapes, clock, last, at_best, train, val)
            self._call.compile_ahead(
                f"advance{steps}{own}", self._advance_fn(steps, own), *args, donate=(1, 3, 4)
            )
        params = replicate(self.seed_params(pop), self.mesh)
        state = self._call("init", self._programs.init, hp, params, seeds)
        return SearchState(hp, state, clock, last, at_best, valid)

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
        shardings = self._shardings(state.train.step)
        fresh = jax.device_put(np.asarray(fresh, bool), shardings)
        halt = jax.device_put(np.asarray(halt, bool), shardings)
        hparams = {k: np.asarray(v, np.float32) for k, v in hparams.items()}
        hparams = jax.device_put(hparams, self._shardings(state.hparams))
        if self._seed_params is None:
            raise ValueError("reset_members needs a population initialised by init")
        params = replicate(self._seed_params[1], self.mesh)
        args = (state, params, fresh, halt, hparams)
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


class PopulationRun:
    """A population as the run driver sees it: ``advance`` one chunk; ``observe`` the
    metrics and the members' progress in one transfer.

    Args:
      members: the population's programs (its ``advance`` is looked up at every call).
      train, val: the data sets.
      steps: steps at t >= ``steps`` are no-ops (None: every step runs).
      num_configs: the configurations that are not padding.
      best: the best validation loss and its hyper-parameters before this run (the slices
        of a population trained before it).
      own_steps: members run at their own step counts (see `Members.advance`).

    Attributes:
      best: the best validation loss so far and its hyper-parameters.
    """

    def __init__(
        self,
        members: Members,
        train: Dataset,
        val: Dataset,
        steps: int | None,
        num_configs: int,
        best: tuple[float, str] = (float("inf"), ""),
        own_steps: bool = False,
    ):
        self._members, self._steps, self._n = members, steps, num_configs
        self._own = own_steps
        self._train, self._val = members.place(train, val)
        self.best = best

    def advance(self, state: SearchState) -> tuple[SearchState, Metrics]:
        return self._members.advance(
            state, self._train, self._val, steps=self._steps, own_steps=self._own
        )

    def observe(self, state: SearchState, metrics: Metrics) -> tuple[Row, Progress]:
        stop = state.train.stop
        metrics, clock, stopped, diverged, best, hp = to_host(
            (metrics, state.clock, stop.should_stop, stop.diverged, stop.best_metric, state.hparams)
        )
        n = self._n
        stopped, diverged, best = stopped[:, :n], diverged[:, :n], best[:, :n]
        finite = np.where(np.isfinite(best), best, np.inf)
        s, h = np.unravel_index(np.argmin(finite), finite.shape)
        if finite[s, h] < self.best[0]:
            self.best = (
                float(finite[s, h]),
                ", ".join(f"{k}={v[s, h]:.4g}" for k, v in hp.items()),
            )
        progress = Progress(
            step=int(clock),
            training=int((~stopped).sum()),
            stopped=int((stopped & ~diverged).sum()),
            diverged=int(diverged.sum()),
            best_loss=self.best[0],
            best_at=self.best[1],
        )
        return dict(metrics), progress
