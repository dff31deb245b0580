r"""A population of training runs as one compiled, vmapped program, sharded over devices.

`Search` trains every member (s, h) of a `jdl.search.Population` by `jdl.train.make_chunk`
with its own hyper-parameters and early-stopping state. It compiles

    jit(vmap_s(vmap_h(chunk built from the traced hyper-parameters)))

once for a population shape and calls it from a Python loop between evaluations, stopping when
every member has stopped. The hyper-parameters are arguments, so any grid of the same shape
reuses the compiled program.

Members of one seed share their initial parameters, their data order and their dropout masks
(the same ``TrainState.key``), as separate runs with that seed would: under the inner ``vmap``
the mini-batch is then gathered once for all H configurations, and the first layer's matrix
products of all of them fuse into one. A member that diverges is frozen and flagged by the
train step and early stopping; the others never see it.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from jdl.data import Dataset
from jdl.hyperparams import check_count
from jdl.search.compiled import Programs, signature
from jdl.search.grid import HParams, Population
from jdl.search.interrupt import Interrupt, intact
from jdl.search.programs import PopulationPrograms, SearchState
from jdl.search.results import SearchResult, assemble, gather
from jdl.search.sharding import (
    member_mesh,
    member_sharding,
    pad_members,
    padded_size,
    replicate,
    to_host,
)
from jdl.train import EarlyStopping, LossFn
from jdl.train.boundary import check_evaluation

__all__ = ["Search", "SearchState"]

Params = Any
EvalFn = Callable[[Params, Dataset], dict[str, jax.Array]]


class Search:
    r"""A population of training runs as one compiled program, sharded over devices.

    Every member runs `jdl.train.make_chunk` with its own hyper-parameters:

    .. math::
        \theta^{(s)}_0 = \text{init\_fn}(k^{(s)}_{init}), \qquad
        \text{tx}^{(h)} = \text{optimizer}(\lambda_h), \qquad
        \text{state}^{(s,h)} \leftarrow \text{chunk}_{\lambda_h}(\text{state}^{(s,h)},
        D_{train}, D_{val}),

    with ``k_init, k_run = jax.random.split(jax.random.key(s))`` (``k_run`` is the
    ``TrainState.key``), so a member reproduces the separate run
    ``init_state(init_fn(k_init), optimizer(lambda_h), early_stopping, k_run)`` trained by the
    same chunks. The compiled program is ``jit(vmap_s(vmap_h(chunk)))``; the member axis is
    split over ``devices`` (padded to a multiple of their count), and ``run``'s
    ``members_per_chunk`` trains a population too large for memory a slice of configurations at
    a time, with the same results.

    Args:
      init_fn: ``init_fn(key) -> params``, the initial parameters of a seed.
      optimizer: ``optimizer(hparams) -> optax.GradientTransformation``; it receives traced
        scalars, e.g. ``lambda hp: jdl.optim.adam(hp["learning_rate"])``.
      loss_fn: the loss ``loss_fn(params, batch, key) -> (loss, aux)``, or
      make_loss_fn: ``make_loss_fn(hparams) -> loss_fn`` when the loss has hyper-parameters
        (a regularizer's weight); give exactly one of the two.
      eval_fn: ``eval_fn(params, data) -> dict`` of scalars with ``"loss"`` (monitored by early
        stopping) and, for the reports, ``"accuracy"``.
      batch_size: mini-batch size.
      chunk_steps: steps between two evaluations (one compiled chunk).
      early_stopping: the rule of every member (`jdl.train.early_stopping`).
      devices: None (all devices), a count, or a list of devices.

    Example::

      >>> search = Search(init_fn, lambda hp: jdl.optim.adam(hp["learning_rate"]),
      ...                 loss_fn=loss_fn, eval_fn=eval_fn, batch_size=128, chunk_steps=50,
      ...                 early_stopping=jdl.train.early_stopping(200))
      >>> result = search.run(population({"learning_rate": log_grid(1e-4, 1.0, 16)}, seeds=3),
      ...                     splits.train, splits.val, steps=1000, test=splits.test)

    References:
      J. Bergstra, Y. Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 13 (2012);
      JAX, "Distributed arrays and automatic parallelization" (``jax.sharding``),
      https://docs.jax.dev/en/latest/notebooks/Distributed_arrays_and_automatic_parallelization.html
    """

    def __init__(
        self,
        init_fn: Callable[[jax.Array], Params],
        optimizer: Callable[[HParams], optax.GradientTransformation],
        *,
        loss_fn: LossFn | None = None,
        make_loss_fn: Callable[[HParams], LossFn] | None = None,
        eval_fn: EvalFn,
        batch_size: int,
        chunk_steps: int,
        early_stopping: EarlyStopping,
        devices: int | Sequence[jax.Device] | None = None,
    ):
        for name, f in (("init_fn", init_fn), ("optimizer", optimizer), ("eval_fn", eval_fn)):
            if not callable(f):
                raise TypeError(f"{name} must be callable, got {type(f).__name__}")
        if (loss_fn is None) == (make_loss_fn is None):
            raise TypeError("give exactly one of loss_fn and make_loss_fn")
        if not callable(loss_fn if make_loss_fn is None else make_loss_fn):
            raise TypeError("loss_fn / make_loss_fn must be callable")
        if not isinstance(early_stopping, EarlyStopping):
            raise TypeError(
                "early_stopping must be built by jdl.train.early_stopping, got "
                f"{type(early_stopping).__name__}"
            )
        self._optimizer = optimizer
        self._make_loss_fn = make_loss_fn if make_loss_fn is not None else (lambda hp: loss_fn)
        self._eval_fn = eval_fn
        self._batch_size = check_count("batch_size", batch_size)
        self.chunk_steps = check_count("chunk_steps", chunk_steps)
        self._early_stopping = early_stopping
        self.mesh = member_mesh(devices)
        self.num_devices = self.mesh.devices.size
        self._call = Programs(self._shardings)
        self._programs = PopulationPrograms(
            optimizer,
            self._make_loss_fn,
            eval_fn,
            self._batch_size,
            self.chunk_steps,
            early_stopping,
        )
        self._init_fn = init_fn
        self._param_shapes: Any = None
        self._state_shapes: dict[tuple, Any] = {}

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

    def _validate(self, pop: Population) -> None:
        if not isinstance(pop, Population):
            raise TypeError(f"expected a Population (see jdl.search.population), got {pop!r}")
        for h in range(pop.num_configs):
            config = pop.config(h)
            for what, factory in (
                ("optimizer", self._optimizer),
                ("make_loss_fn", self._make_loss_fn),
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
          ahead: ``(num_steps,)`` to compile `advance` for these ``num_steps`` in the
            background meanwhile.

        Raises:
          ValueError / TypeError: not a `Population`, or a configuration that the optimizer or
            the loss factory rejects, or a size that does not hold it or does not divide over
            the devices.
        """
        self._validate(pop)
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
        train, val = self._place(train, val)
        if self._param_shapes is None:
            self._param_shapes = jax.eval_shape(self._init_fn, jax.eval_shape(jax.random.key, 0))
        replicated = NamedSharding(self.mesh, PartitionSpec())
        params = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((num_seeds, *a.shape), a.dtype, sharding=replicated),
            self._param_shapes,
        )
        shapes_key = signature((hp, params, seeds))
        if shapes_key not in self._state_shapes:
            self._state_shapes[shapes_key] = jax.eval_shape(self._programs.init, hp, params, seeds)
        shapes = self._state_shapes[shapes_key]
        # The metrics: "train_loss" and "val_<k>" for each entry k of eval_fn's dict.
        evaluation = jax.eval_shape(self._eval_fn, self._param_shapes, val)
        check_evaluation(evaluation)
        dtypes = {"train_loss": jnp.dtype(jnp.float32)}
        dtypes.update({f"val_{k}": jnp.dtype(v.dtype) for k, v in evaluation.items()})
        last = {
            k: np.full((num_seeds, size), np.nan if jnp.issubdtype(d, jnp.floating) else 0, d)
            for k, d in dtypes.items()
        }
        at_best = {k: v for k, v in last.items() if k.startswith("val_")}
        last = jax.device_put(last, self._shardings(last))
        at_best = jax.device_put(at_best, self._shardings(at_best))  # own buffers: donated
        if ahead is not None:
            # Compile the chunk in the background while the members are initialised (the
            # critical path of a first run: it starts before any eager computation).
            shapes = jax.tree.map(
                lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                shapes,
                self._shardings(shapes),
            )
            num_steps = ahead[0]
            self._call.compile_ahead(
                f"advance{num_steps}",
                self._advance_fn(num_steps),
                hp,
                shapes,
                clock,
                last,
                at_best,
                train,
                val,
                donate=(1, 3, 4),
            )
        # Each seed's parameters, stacked on the host (an eager stack would compile).
        init = [self._init_fn(jax.random.split(jax.random.key(int(seed)))[0]) for seed in pop.seeds]
        params = jax.tree.map(lambda *leaves: np.stack(leaves), *jax.device_get(init))
        state = self._call("init", self._programs.init, hp, replicate(params, self.mesh), seeds)
        return SearchState(hp, state, clock, last, at_best, valid)

    def advance(
        self, state: SearchState, train: Dataset, val: Dataset, *, num_steps: int | None = None
    ) -> tuple[SearchState, dict[str, jax.Array]]:
        """One compiled chunk for every member: ``chunk_steps`` steps, an evaluation and an
        early-stopping update. Steps at t >= ``num_steps`` are no-ops (ends a run whose length
        is not a multiple of ``chunk_steps``).

        Returns:
          The new state (the old one's buffers are donated) and the chunk's metrics, shape
          (S, H'), NaN for members that had stopped before it.
        """
        train, val = self._place(train, val)
        fn = self._advance_fn(num_steps)
        new, clock, last, at_best, metrics = self._call(
            f"advance{num_steps}",
            fn,
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

    def _advance_fn(self, num_steps: int | None) -> Callable:
        return functools.partial(self._programs.advance, num_steps=num_steps)

    def evaluate(self, params: Params, data: Dataset) -> dict[str, jax.Array]:
        """``eval_fn`` of every member's parameters (leaves (S, H', ...)), shape (S, H')."""
        (data,) = self._place(data)
        return self._call("evaluate", self._programs.evaluate, params, data)

    def copy_members(
        self, state: SearchState, source: jax.typing.ArrayLike, hparams: HParams
    ) -> SearchState:
        """Member h of seed s becomes a copy of member ``source[s, h]`` of the same seed
        (parameters, optimizer state, early-stopping state, steps) and takes ``hparams[.][s,
        h]``; one compiled gather along the member axis, so nothing recompiles.
        Used by successive halving and population-based training."""
        source = jax.device_put(jnp.asarray(source, jnp.int32), self._shardings(state.train.step))
        hparams = jax.device_put(
            {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()},
            self._shardings(state.hparams),
        )
        return self._call("copy", self._programs.copy, state, source, hparams, donate=(0,))

    def _place(self, *datasets: Dataset) -> tuple[Dataset, ...]:
        """The data sets replicated on every device of the mesh (a no-op once they are)."""
        for d in datasets:
            if not isinstance(d, Dataset):
                raise TypeError(f"expected a jdl.data.Dataset, got {type(d).__name__}")
        return tuple(replicate(jax.tree.map(jnp.asarray, d), self.mesh) for d in datasets)

    def _fetch(
        self,
        state: SearchState,
        history: list[dict[str, jax.Array]],
        test: Dataset | None,
        num_configs: int,
    ) -> dict:
        """Evaluates the best parameters on the test set and brings everything to the host,
        padding dropped."""
        best_params = state.train.stop.best_params
        best = dict(state.at_best)
        if test is not None:
            best.update({f"test_{k}": v for k, v in self.evaluate(best_params, test).items()})
        return gather(state.train, state.last, best, history, num_configs)

    def collect(
        self,
        pop: Population,
        state: SearchState,
        history: list[dict[str, jax.Array]],
        *,
        steps: int,
        test: Dataset | None = None,
        compile_s: float = 0.0,
        run_s: float = 0.0,
    ) -> SearchResult:
        """The `SearchResult` of a population trained step by step with `advance` (as
        successive halving and population-based training do).

        Args:
          pop: the population the state was built from (``init``).
          state: its state after training.
          history: the metrics returned by each ``advance``.
          steps: the step budget (a member that took fewer stopped early).
          test: evaluated with the best parameters when given.
          compile_s, run_s: the times to report.
        """
        test = None if test is None else self._place(test)[0]
        piece = self._fetch(state, history, test, pop.num_configs)
        num_chunks = max(len(history), 1)
        return assemble(pop, [piece], num_chunks, self.chunk_steps, steps, compile_s, run_s)

    def run(
        self,
        pop: Population,
        train: Dataset,
        val: Dataset,
        *,
        steps: int,
        test: Dataset | None = None,
        members_per_chunk: int | None = None,
        progress: bool = True,
    ) -> SearchResult:
        """Trains the whole population for at most ``steps`` steps and collects the results.

        The Python loop calls the compiled chunk ``ceil(steps / chunk_steps)`` times and stops
        as soon as every member has stopped; with ``members_per_chunk`` it repeats this for
        each slice of configurations (all of the same padded size: one compile).

        Args:
          pop: the population (`population`).
          train: training set.
          val: validation set (monitored by early stopping).
          steps: the step budget of every member, >= 1.
          test: evaluated with each member's best parameters when given.
          members_per_chunk: train at most this many configurations (times the S seeds) at
            once, for a population too large for memory; None: all at once.
          progress: show a tqdm progress bar between chunks (steps, members still training,
            the best validation loss so far).

        Returns:
          A `SearchResult`, padding dropped.

        A KeyboardInterrupt (Ctrl-C) once a chunk has run stops the loop when the chunk in
        flight is done and returns what was trained so far, evaluated as usual, with
        ``interrupted=True``; with ``members_per_chunk``, the configurations of slices that
        had not run a chunk are left out. A KeyboardInterrupt before the first chunk, or a
        second one, propagates.
        """
        steps = check_count("steps", steps)
        compile_before = self.compile_seconds
        start = time.perf_counter()
        self._validate(pop)
        placed = self._place(train, val, *([test] if test is not None else []))
        train, val = placed[:2]
        num_chunks = math.ceil(steps / self.chunk_steps)
        num_steps = None if steps % self.chunk_steps == 0 else steps
        num_configs = pop.num_configs
        if members_per_chunk is not None:
            check_count("members_per_chunk", members_per_chunk)
        part = num_configs if members_per_chunk is None else members_per_chunk
        part = padded_size(min(part, num_configs), self.num_devices)
        slices = range(0, num_configs, part)
        test_set = placed[2] if test is not None else None
        pieces, best_loss, interrupted = [], np.inf, False
        with (
            tqdm(total=len(slices) * steps, disable=not progress, unit="step") as bar,
            Interrupt() as interrupt,
        ):
            for lo in slices:
                sub = Population({k: v[lo : lo + part] for k, v in pop.hparams.items()}, pop.seeds)
                kept = min(part, num_configs - lo)
                done = (lo // part) * steps  # steps of the slices before this one
                state, history = None, []
                try:
                    state = self.init(sub, train, val, size=part, ahead=(num_steps,))
                    for c in range(1, num_chunks + 1):
                        state, metrics = self.advance(state, train, val, num_steps=num_steps)
                        history.append(metrics)
                        interrupt.armed = True
                        # The stop flags and best losses, for the bar and the loop: one transfer.
                        stopped, best = to_host(
                            (state.train.stop.should_stop, state.train.stop.best_metric)
                        )
                        best = best[:, :kept]
                        best_loss = min(best_loss, np.where(np.isfinite(best), best, np.inf).min())
                        bar.set_postfix(
                            members=f"{int((~stopped[:, :kept]).sum())}/{best.size} training",
                            best_val_loss=f"{best_loss:.4g}",
                            refresh=False,
                        )
                        bar.update(done + min(c * self.chunk_steps, steps) - bar.n)
                        if stopped.all() or interrupt.requested:
                            break
                except KeyboardInterrupt:
                    # Raised in the loop (no handler of ours, or by a function it calls): keep
                    # this slice if it ran a chunk and its state survived, else the ones before.
                    usable = bool(history) and intact(state)
                    if interrupt.requested or not (usable or pieces):
                        raise
                    interrupted = True
                    if not usable:
                        break
                pieces.append(self._fetch(state, history, test_set, kept))
                interrupted = interrupted or interrupt.requested
                if interrupted:
                    break
        compile_s = self.compile_seconds - compile_before
        run_s = time.perf_counter() - start - compile_s
        trained = sum(piece["train"][0].shape[1] for piece in pieces)
        if trained < num_configs:
            pop = Population({k: v[:trained] for k, v in pop.hparams.items()}, pop.seeds)
        return assemble(
            pop,
            pieces,
            num_chunks,
            self.chunk_steps,
            steps,
            compile_s,
            run_s,
            interrupted=interrupted,
        )
