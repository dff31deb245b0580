r"""Grids of hyper-parameters crossed with seeds, trained as one compiled, vmapped program.

A *population* is H configurations of numeric hyper-parameters (a log grid of learning rates,
a Cartesian product or zipped lists of several) crossed with S seeds: P = S x H members.
Member (s, h) is an ordinary `jdl.train` run: its parameters come from ``init_fn`` and seed s,
its optimizer from ``optimizer(hparams_h)``, and it trains by `jdl.train.make_chunk`, with its
own early-stopping state. `Search` compiles

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

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jdl.data import Dataset
from jdl.search.sharding import (
    member_mesh,
    member_sharding,
    pad_members,
    padded_size,
    replicate,
    to_host,
)
from jdl.train import EarlyStopping, LossFn, TrainState, init_state, make_chunk

__all__ = [
    "HParams",
    "Population",
    "Search",
    "SearchResult",
    "SearchState",
    "log_grid",
    "population",
    "product",
    "zipped",
]

Params = Any
HParams = dict[str, jax.Array]
"""Hyper-parameters by name; scalars inside one member, arrays over the population."""
EvalFn = Callable[[Params, Dataset], dict[str, jax.Array]]


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def log_grid(low: float, high: float, num: int) -> np.ndarray:
    r"""``num`` values evenly spaced on a log scale from ``low`` to ``high``, both included.

    .. math:: x_i = \text{low} \cdot (\text{high} / \text{low})^{i / (\text{num} - 1)},
        \quad i = 0, \dots, \text{num} - 1

    (the single value ``low`` when num = 1): the course's advice to try learning rates spread
    over orders of magnitude (1e-4, 1e-3, ..., 1).

    Args:
      low: smallest value, finite and > 0.
      high: largest value, finite and >= low.
      num: number of values >= 1.

    Returns:
      A float64 NumPy array of shape (num,).

    Raises:
      ValueError: a bound not finite and positive, low > high, or num not a positive int.

    References:
      Y. Bengio, "Practical recommendations for gradient-based training of deep
      architectures", 2012, arXiv:1206.5533, section 3.1 (log-scale learning-rate search).
    """
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float | np.number):
            raise ValueError(f"{name} must be a number > 0, got {v!r}")
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be finite and > 0, got {v!r}")
    if low > high:
        raise ValueError(f"low must be <= high, got low={low!r} > high={high!r}")
    num = _check_count("num", num)
    return np.geomspace(low, high, num)


def _axis_values(name: str, values: Any) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"hyper-parameter {name!r} needs a non-empty 1-D list of values")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"hyper-parameter {name!r} must be numeric, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"hyper-parameter {name!r} has non-finite values: {a.tolist()}")
    return a.astype(np.float64)


def product(**axes: Sequence[float]) -> dict[str, np.ndarray]:
    r"""The Cartesian product of hyper-parameter lists: every combination once.

    ``product(learning_rate=[a, b], weight_decay=[c, d])`` gives the H = 4 configurations
    (a, c), (a, d), (b, c), (b, d), the last name varying fastest:
    :math:`H = \prod_k n_k`.

    Args:
      **axes: name -> non-empty 1-D list of finite numbers.

    Returns:
      name -> float64 array of shape (H,).

    Raises:
      ValueError: no axis, an empty or non-numeric list, or a non-finite value.
    """
    if not axes:
        raise ValueError("product needs at least one hyper-parameter")
    lists = {k: _axis_values(k, v) for k, v in axes.items()}
    combos = np.array(list(itertools.product(*lists.values())), dtype=np.float64)
    return {k: combos[:, i] for i, k in enumerate(lists)}


def zipped(**axes: Sequence[float]) -> dict[str, np.ndarray]:
    """Hyper-parameter lists taken together, position by position (like ``zip``).

    ``zipped(learning_rate=[a, b], b1=[c, d])`` gives the H = 2 configurations (a, c), (b, d).

    Args:
      **axes: name -> 1-D list of finite numbers, all of the same length H >= 1.

    Returns:
      name -> float64 array of shape (H,).

    Raises:
      ValueError: no axis, lists of different lengths, an empty or non-numeric list, or a
        non-finite value.
    """
    if not axes:
        raise ValueError("zipped needs at least one hyper-parameter")
    lists = {k: _axis_values(k, v) for k, v in axes.items()}
    lengths = {k: len(v) for k, v in lists.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"zipped hyper-parameters need lists of one length, got {lengths}")
    return lists


class Population(NamedTuple):
    """H hyper-parameter configurations crossed with S seeds: member (s, h) for each pair.

    Attributes:
      hparams: name -> values of the H configurations, float64 of shape (H,) (float32 on the
        devices).
      seeds: the S seeds, int64 of shape (S,).
    """

    hparams: dict[str, np.ndarray]
    seeds: np.ndarray

    @property
    def num_configs(self) -> int:
        """H, the number of hyper-parameter configurations."""
        return len(next(iter(self.hparams.values())))

    @property
    def num_members(self) -> int:
        """P = S x H."""
        return len(self.seeds) * self.num_configs

    def config(self, h: int) -> dict[str, float]:
        """Configuration h as Python floats."""
        return {k: float(v[h]) for k, v in self.hparams.items()}


def population(hparams: Mapping[str, Any], seeds: int | Sequence[int] = 1) -> Population:
    """A population: configurations (from `log_grid`, `product`, `zipped` or by hand) x seeds.

    Args:
      hparams: name -> values of the H configurations, 1-D and of one length; a learning rate
        is named ``"learning_rate"`` and must be > 0.
      seeds: a count S (the seeds 0, ..., S-1) or a list of distinct non-negative ints.

    Returns:
      A `Population`.

    Raises:
      ValueError: no hyper-parameter, lists of different lengths, empty, non-numeric or
        non-finite values, a non-positive learning rate, or bad seeds.
    """
    if not isinstance(hparams, Mapping) or not hparams:
        raise ValueError("hparams must be a non-empty mapping name -> list of values")
    for name in hparams:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"hyper-parameter names must be identifiers, got {name!r}")
    values = zipped(**hparams)
    lr = values.get("learning_rate")
    if lr is not None and np.any(lr <= 0):
        raise ValueError(f"learning_rate values must be > 0, got {lr.tolist()}")
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool):
        seed_list = np.arange(_check_count("seeds", seeds), dtype=np.int64)
    else:
        try:
            seed_list = np.asarray(seeds)
        except (TypeError, ValueError) as e:
            raise ValueError(f"seeds must be a count or a list of ints, got {seeds!r}") from e
        if (
            seed_list.ndim != 1
            or seed_list.size == 0
            or not np.issubdtype(seed_list.dtype, np.integer)
        ):
            raise ValueError(f"seeds must be a count or a non-empty list of ints, got {seeds!r}")
        if np.any(seed_list < 0) or len(np.unique(seed_list)) != len(seed_list):
            raise ValueError(f"seeds must be distinct non-negative ints, got {seeds!r}")
        seed_list = seed_list.astype(np.int64)
    return Population(values, seed_list)


class SearchState(NamedTuple):
    """A population in training, with a leading seed axis S and a member axis H' (padded).

    Attributes:
      hparams: name -> values, shape (S, H').
      train: the members' `TrainState`s: ``step`` of shape (S, H') (each member's own
        optimizer steps), params / opt_state / stop with leaves (S, H', ...), and ``key`` of
        shape (S,): members of one seed share their key, hence their data order.
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


def _signature(args: Any) -> tuple:
    """What a compiled program depends on: tree structure, shapes, dtypes and shardings (of
    arrays or of their ``jax.ShapeDtypeStruct`` descriptions), shardings up to equivalence."""
    leaves, treedef = jax.tree.flatten(args)
    return treedef, tuple(
        (tuple(leaf.shape), str(leaf.dtype), _layout(getattr(leaf, "sharding", None)))
        if isinstance(leaf, jax.Array | jax.ShapeDtypeStruct)
        else (np.shape(leaf), str(np.asarray(leaf).dtype), None)
        for leaf in leaves
    )


def _layout(sharding: Any) -> Any:
    """A canonical form of a sharding: on one device every layout is the same, and trailing
    unsplit dimensions do not count."""
    if not isinstance(sharding, NamedSharding):
        return sharding
    if sharding.mesh.size == 1:
        return ("one device", tuple(sharding.mesh.devices.flat))
    spec = list(sharding.spec)
    while spec and spec[-1] is None:
        spec.pop()
    return (sharding.mesh, tuple(spec))


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
        self._init_fn = init_fn
        self._optimizer = optimizer
        self._make_loss_fn = make_loss_fn if make_loss_fn is not None else (lambda hp: loss_fn)
        self._eval_fn = eval_fn
        self._batch_size = _check_count("batch_size", batch_size)
        self.chunk_steps = _check_count("chunk_steps", chunk_steps)
        self._early_stopping = early_stopping
        self.mesh = member_mesh(devices)
        self.num_devices = self.mesh.devices.size
        self._compiled: dict[tuple, Any] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._state_shapes: dict[tuple, Any] = {}
        self._param_shapes: Any = None
        self.compilations = 0
        self.compile_seconds = 0.0

    # ----------------------------------------------------------------- compiled programs

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

    def _call(self, name: str, fn: Callable, *args: Any, donate: tuple[int, ...] = ()) -> Any:
        """Runs ``jit(fn)`` compiled ahead of time, once per argument signature; the compile
        time is recorded apart."""
        key = (name, _signature(args))
        compiled = self._compiled.get(key)
        if compiled is None:
            start = time.perf_counter()
            self._compiled[key] = compiled = self._compile(fn, args, donate)
            self.compile_seconds += time.perf_counter() - start
            self.compilations += 1
        if isinstance(compiled, Future):
            start = time.perf_counter()
            self._compiled[key] = compiled = compiled.result()
            self.compile_seconds += time.perf_counter() - start  # the time waited for it
        return compiled(*args)

    def _compile(self, fn: Callable, args: Any, donate: tuple[int, ...]) -> Any:
        def placed(*a: Any) -> Any:  # outputs sharded like the inputs (one trace)
            out = fn(*a)
            return jax.lax.with_sharding_constraint(out, self._shardings(out))

        return jax.jit(placed, donate_argnums=donate).lower(*args).compile()

    def _compile_ahead(self, name: str, fn: Callable, *args: Any, donate: tuple[int, ...]) -> None:
        """Compiles ``jit(fn)`` for the argument descriptions ``args`` in a background thread
        (XLA releases the GIL), while the caller goes on; ``_call`` waits for it."""
        key = (name, _signature(args))
        if key in self._compiled:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1)
        self.compilations += 1
        self._compiled[key] = self._pool.submit(self._compile, fn, args, donate)

    def _member_init(self, hp: HParams, params: Params, key: jax.Array) -> TrainState:
        return init_state(params, self._optimizer(hp), self._early_stopping, key)

    def _init_program(self, hp: HParams, params: Params, keys: jax.Array) -> TrainState:
        inner = jax.vmap(self._member_init, in_axes=(0, None, None))
        state = jax.vmap(inner)(hp, params, keys)
        return state._replace(key=keys)

    def _member_chunk(
        self,
        hp: HParams,
        params: Params,
        opt_state: Any,
        stop: Any,
        key: jax.Array,
        clock: jax.Array,
        train: Dataset,
        val: Dataset,
        num_steps: int | None,
    ) -> tuple:
        chunk = make_chunk(
            self._make_loss_fn(hp),
            self._optimizer(hp),
            batch_size=self._batch_size,
            chunk_steps=self.chunk_steps,
            eval_fn=self._eval_fn,
            early_stopping=self._early_stopping,
            num_steps=num_steps,
        )
        # A live member has taken exactly `clock` steps; passing the shared, unbatched clock
        # (and the seed's key) keeps the batch gather out of the inner vmap.
        state, metrics = chunk(TrainState(clock, params, opt_state, stop, key), train, val)
        return state.step, state.params, state.opt_state, state.stop, metrics

    def _advance_program(
        self,
        hp: HParams,
        state: TrainState,
        clock: jax.Array,
        last: dict[str, jax.Array],
        at_best: dict[str, jax.Array],
        train: Dataset,
        val: Dataset,
        *,
        num_steps: int | None,
    ) -> tuple[TrainState, jax.Array, dict, dict, dict]:
        def member(hp, params, opt_state, stop, key, clock, train, val):
            return self._member_chunk(
                hp, params, opt_state, stop, key, clock, train, val, num_steps
            )

        inner = jax.vmap(member, in_axes=(0, 0, 0, 0, None, None, None, None))
        members = (hp, state.params, state.opt_state, state.stop)
        if state.key.shape[0] == 1:
            # One seed: a single vmap (a size-1 outer one costs ~5% on CPU).
            out = inner(*jax.tree.map(lambda a: a[0], members), state.key[0], clock, train, val)
            out = jax.tree.map(lambda a: a[None], out)
        else:
            outer = jax.vmap(inner, in_axes=(0, 0, 0, 0, 0, None, None, None))
            out = outer(*members, state.key, clock, train, val)
        step, params, opt_state, stop, metrics = out
        live = ~state.stop.should_stop
        step = jnp.where(live, step, state.step)
        last = {k: jnp.where(live, metrics[k], last[k]) for k in last}
        improved = stop.best_step != state.stop.best_step
        at_best = {k: jnp.where(improved, metrics[k], at_best[k]) for k in at_best}
        shown = {k: jnp.where(live, v, jnp.nan) for k, v in metrics.items()}
        new = TrainState(step, params, opt_state, stop, state.key)
        return new, clock + self.chunk_steps, last, at_best, shown

    def _eval_program(self, params: Params, data: Dataset) -> dict[str, jax.Array]:
        return jax.vmap(jax.vmap(self._eval_fn, in_axes=(0, None)), in_axes=(0, None))(params, data)

    def _copy_program(self, state: SearchState, source: jax.Array, hparams: HParams) -> SearchState:
        def take(leaf: jax.Array) -> jax.Array:
            return jax.vmap(lambda row, src: row[src])(leaf, source)

        train = state.train
        moved = jax.tree.map(take, (train.step, train.params, train.opt_state, train.stop))
        return state._replace(
            hparams=hparams,
            train=TrainState(*moved, key=train.key),
            last=jax.tree.map(take, state.last),
            at_best=jax.tree.map(take, state.at_best),
        )

    # ----------------------------------------------------------------- public steps

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
        init_keys, run_keys = [], []
        for seed in pop.seeds:
            k_init, k_run = jax.random.split(jax.random.key(int(seed)))
            init_keys.append(k_init)
            run_keys.append(k_run)
        keys = replicate(jnp.stack(run_keys), self.mesh)
        valid = replicate(np.arange(size) < num_configs, self.mesh)
        clock = replicate(np.zeros((), np.int32), self.mesh)
        train, val = self._place(train, val)
        if self._param_shapes is None:
            self._param_shapes = jax.eval_shape(self._init_fn, init_keys[0])
        # The metrics: "train_loss" and "val_<k>" for each entry k of eval_fn's dict.
        evaluation = jax.eval_shape(self._eval_fn, self._param_shapes, val)
        if not isinstance(evaluation, dict) or "loss" not in evaluation:
            raise ValueError(
                "eval_fn must return a dict of scalars containing 'loss' (the monitored value)"
            )
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
            # Compile the chunk in the background while the parameters are initialised.
            replicated = NamedSharding(self.mesh, PartitionSpec())
            params_shapes = jax.tree.map(
                lambda a: jax.ShapeDtypeStruct((num_seeds, *a.shape), a.dtype, sharding=replicated),
                self._param_shapes,
            )
            shapes_key = _signature((hp, params_shapes, keys))
            if shapes_key not in self._state_shapes:
                self._state_shapes[shapes_key] = jax.eval_shape(
                    self._init_program, hp, params_shapes, keys
                )
            shapes = self._state_shapes[shapes_key]
            shapes = jax.tree.map(
                lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                shapes,
                self._shardings(shapes),
            )
            num_steps = ahead[0]
            self._compile_ahead(
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
        params = jax.tree.map(
            lambda *leaves: jnp.stack(leaves), *[self._init_fn(k) for k in init_keys]
        )
        params = replicate(params, self.mesh)
        state = self._call("init", self._init_program, hp, params, keys)
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
        def fn(hp, state, clock, last, at_best, train, val):
            return self._advance_program(
                hp, state, clock, last, at_best, train, val, num_steps=num_steps
            )

        return fn

    def evaluate(self, params: Params, data: Dataset) -> dict[str, jax.Array]:
        """``eval_fn`` of every member's parameters (leaves (S, H', ...)), shape (S, H')."""
        (data,) = self._place(data)
        return self._call("evaluate", self._eval_program, params, data)

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
        return self._call("copy", self._copy_program, state, source, hparams, donate=(0,))

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
        stop = state.train.stop
        host = to_host(
            {
                "train": (
                    state.train.step,
                    stop.best_step,
                    stop.best_metric,
                    stop.should_stop,
                    stop.diverged,
                ),
                "final": state.last,
                "best": best,
                "history": history,
                "best_params": best_params,
                "params": state.train.params,
            }
        )
        return _drop_padding(host, num_configs)

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
        return _assemble(pop, [piece], num_chunks, self.chunk_steps, steps, compile_s, run_s)

    def run(
        self,
        pop: Population,
        train: Dataset,
        val: Dataset,
        *,
        steps: int,
        test: Dataset | None = None,
        members_per_chunk: int | None = None,
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

        Returns:
          A `SearchResult`, padding dropped.
        """
        steps = _check_count("steps", steps)
        compile_before = self.compile_seconds
        start = time.perf_counter()
        self._validate(pop)
        placed = self._place(train, val, *([test] if test is not None else []))
        train, val = placed[:2]
        num_chunks = math.ceil(steps / self.chunk_steps)
        num_steps = None if steps % self.chunk_steps == 0 else steps
        num_configs = pop.num_configs
        if members_per_chunk is not None:
            _check_count("members_per_chunk", members_per_chunk)
        part = num_configs if members_per_chunk is None else members_per_chunk
        part = padded_size(min(part, num_configs), self.num_devices)
        pieces = []
        for lo in range(0, num_configs, part):
            sub = Population({k: v[lo : lo + part] for k, v in pop.hparams.items()}, pop.seeds)
            state = self.init(sub, train, val, size=part, ahead=(num_steps,))
            history = []
            for _ in range(num_chunks):
                state, metrics = self.advance(state, train, val, num_steps=num_steps)
                history.append(metrics)
                if bool(jnp.all(state.train.stop.should_stop)):
                    break
            pieces.append(
                self._fetch(
                    state,
                    history,
                    placed[2] if test is not None else None,
                    min(part, num_configs - lo),
                )
            )
        compile_s = self.compile_seconds - compile_before
        run_s = time.perf_counter() - start - compile_s
        return _assemble(pop, pieces, num_chunks, self.chunk_steps, steps, compile_s, run_s)


def _drop_padding(host: dict, n: int) -> dict:
    """Keeps the first n configurations of every (S, H', ...) array (axis 1), and of every
    history entry (C, S, H') (axis 2)."""
    out = dict(host)
    out["train"] = tuple(a[:, :n] for a in host["train"])
    out["final"] = {k: v[:, :n] for k, v in host["final"].items()}
    out["best"] = {k: v[:, :n] for k, v in host["best"].items()}
    out["history"] = [{k: v[:, :n] for k, v in m.items()} for m in host["history"]]
    out["best_params"] = jax.tree.map(lambda a: a[:, :n], host["best_params"])
    out["params"] = jax.tree.map(lambda a: a[:, :n], host["params"])
    return out


def _assemble(
    pop: Population,
    pieces: list[dict],
    num_chunks: int,
    chunk_steps: int,
    steps: int,
    compile_s: float,
    run_s: float,
) -> SearchResult:
    """Concatenates the slices of configurations along axis 1; pads each history with NaN to
    ``num_chunks`` chunks (a slice whose members had all stopped ended early)."""

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
    history["step"] = np.minimum(np.arange(1, num_chunks + 1) * chunk_steps, steps)
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
    )
