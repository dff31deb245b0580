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
from jdl.search.memory import device_budget, program_bytes, slice_members
from jdl.search.programs import PopulationPrograms, SearchState
from jdl.search.results import gather
from jdl.search.sharding import (
    member_mesh,
    member_sharding,
    pad_members,
    padded_size,
    replicate,
    to_host,
)
from jdl.types import HParams, Metrics, Params

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
        self._param_shapes = jax.eval_shape(init_fn, jax.eval_shape(jax.random.key, 0))
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
        self.spec.check(pop.config(0), self._param_shapes, key, train, val)

    def seed_params(self, pop: Population) -> Params:
        """Each seed's initial parameters ``init_fn(k_init)``, stacked on the host (leaves
        (S, ...)); the last population's are kept, since every slice of it starts from them."""
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
        ahead: tuple[int | None] | None = None,
    ) -> SearchState:
        """The population at step 0, padded to ``size`` configurations (default: the next
        multiple of the device count) and placed on the devices.

        Args:
          pop: the population.
          train, val: the data sets (their shapes fix the metrics' structure).
          size: the padded number of configurations H'.
          ahead: ``(steps,)`` to compile `advance` for these ``steps`` in the background
            meanwhile.

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
        hp = jax.device_put(hp, self._shardings(hp))
        # The seeds as jax.random.key reads a Python int (its low 32 bits).
        seeds = replicate(pop.seeds.astype(np.uint32), self.mesh)
        valid = replicate(np.arange(size) < num_configs, self.mesh)
        clock = replicate(np.zeros((), np.int32), self.mesh)
        train, val = self.place(train, val)
        last = {
            k: np.full((num_seeds, size), np.nan if jnp.issubdtype(d, jnp.floating) else 0, d)
            for k, d in self._metric_dtypes(val).items()
        }
        at_best = {k: v for k, v in last.items() if k.startswith("val_")}
        last = jax.device_put(last, self._shardings(last))
        at_best = jax.device_put(at_best, self._shardings(at_best))  # own buffers: donated
        if ahead is not None:
            # Compile the chunk in the background while the members are initialised (the
            # critical path of a first run: it starts before any eager computation).
            (steps,) = ahead
            args = self._advance_shapes(len(pop.seeds), size, pop.hparams, train, val)
            self._call.compile_ahead(
                f"advance{steps}", self._advance_fn(steps), *args, donate=(1, 3, 4)
            )
        params = replicate(self.seed_params(pop), self.mesh)
        state = self._call("init", self._programs.init, hp, params, seeds)
        return SearchState(hp, state, clock, last, at_best, valid)

    def _metric_dtypes(self, val: Dataset) -> dict[str, Any]:
        """The metrics' dtypes: "train_loss" and "val_<k>" for each entry k of eval_fn's dict."""
        evaluation = jax.eval_shape(self.spec.eval_fn, self._param_shapes, val)
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
            self._param_shapes,
        )
        seeds = jax.ShapeDtypeStruct((num_seeds,), jnp.uint32, sharding=replicated)
        key = signature((hp, params, seeds))
        if key not in self._state_shapes:
            self._state_shapes[key] = jax.eval_shape(self._programs.init, hp, params, seeds)
        last = {
            k: jax.ShapeDtypeStruct((num_seeds, size), d)
            for k, d in self._metric_dtypes(val).items()
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
            f"advance{steps}", self._advance_fn(steps), *args, donate=(1, 3, 4)
        )
        found = program_bytes(compiled)
        if found is None:
            found = 2 * sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(args[:5]))
            found //= self.num_devices
        return found

    def advance(
        self, state: SearchState, train: Dataset, val: Dataset, *, steps: int | None = None
    ) -> tuple[SearchState, Metrics]:
        """One compiled chunk for every member: ``eval_every`` steps, an evaluation and an
        early-stopping update. Steps at t >= ``steps`` are no-ops (ends a run whose length
        is not a multiple of ``eval_every``).

        Returns:
          The new state (the old one's buffers are donated) and the chunk's metrics, shape
          (S, H'), NaN for members that had stopped before it.
        """
        train, val = self.place(train, val)
        new, clock, last, at_best, metrics = self._call(
            f"advance{steps}",
            self._advance_fn(steps),
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
        self, state: SearchState, train: Dataset, val: Dataset, steps: int | None
    ) -> jax.stages.Lowered:
        """``advance``'s program lowered for ``state`` (its text fingerprints the run)."""
        args = (state.hparams, state.train, state.clock, state.last, state.at_best, train, val)
        return jax.jit(self._advance_fn(steps)).lower(*args)

    def _advance_fn(self, steps: int | None) -> Callable:
        return functools.partial(self._programs.advance, steps=steps)

    def evaluate(self, params: Params, data: Dataset) -> dict[str, jax.Array]:
        """``eval_fn`` of every member's parameters (leaves (S, H', ...)), shape (S, H')."""
        (data,) = self.place(data)
        return self._call("evaluate", self._programs.evaluate, params, data)

    def copy_members(self, state: SearchState, source: Any, hparams: HParams) -> SearchState:
        """Member h of seed s becomes a copy of member ``source[s, h]`` of the same seed
        (parameters, optimizer state, early-stopping state, steps) and takes ``hparams[.][s,
        h]``; one compiled gather along the member axis, so nothing recompiles.
        Used by successive halving and population-based training."""
        shardings = self._shardings(state.train.step)
        source = jax.device_put(np.asarray(source, np.int32), shardings)
        hparams = {k: np.asarray(v, np.float32) for k, v in hparams.items()}
        hparams = jax.device_put(hparams, self._shardings(state.hparams))
        return self._call("copy", self._programs.copy, state, source, hparams, donate=(0,))

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
            tested = self.evaluate(state.train.stop.best_params, test)
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
    ):
        self._members, self._steps, self._n = members, steps, num_configs
        self._train, self._val = members.place(train, val)
        self.best = best

    def advance(self, state: SearchState) -> tuple[SearchState, Metrics]:
        return self._members.advance(state, self._train, self._val, steps=self._steps)

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
