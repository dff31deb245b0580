r"""A population of training runs as one compiled, vmapped program, sharded over devices.

`Search` trains every member (s, h) of a `jdl.search.Population` by `jdl.train.make_chunk`
with its own hyper-parameters and early-stopping state. It compiles

    jit(vmap_s(vmap_h(chunk built from the traced hyper-parameters)))

once for a population shape; the run driver (`jdl.run.drive`) calls it between evaluations,
with a scheduler (successive halving, population-based training) when one rewrites the
population between chunks. The hyper-parameters are arguments, so any grid of the same shape
reuses the compiled program.

Members of one seed share their initial parameters, their data order and their dropout masks
(the same ``TrainState.key``), as separate runs with that seed would: under the inner ``vmap``
the mini-batch is then gathered once for all H configurations, and the first layer's matrix
products of all of them fuse into one. A member that diverges is frozen and flagged by the
train step and early stopping; the others never see it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Literal

import jax
import optax
from tqdm.auto import tqdm

from jdl.data import Dataset
from jdl.hyperparams import check_count
from jdl.run import RunSpec, Scheduler, drive
from jdl.search.grid import Population
from jdl.search.members import Members
from jdl.search.outputs import final_metrics, slice_board, slice_checkpoints
from jdl.search.population_run import PopulationRun
from jdl.search.programs import SearchState
from jdl.search.results import SearchResult, assemble
from jdl.search.sharding import padded_size
from jdl.train import EarlyStopping
from jdl.types import EvalFn, HParams, LossFn, Params

__all__ = ["Search", "SearchState"]


class Search(Members):
    r"""A population of training runs as one compiled program, sharded over devices.

    Every member runs `jdl.train.make_chunk` with its own hyper-parameters:

    .. math::
        \theta^{(s)}_0 = \text{init\_fn}(k^{(s)}_{init}), \qquad
        \text{tx}^{(h)} = \text{optimizer}(\lambda_h), \qquad
        \text{state}^{(s,h)} \leftarrow \text{chunk}_{\lambda_h}(\text{state}^{(s,h)},
        D_{train}, D_{val}),

    with ``k_init, k_run = jax.random.split(jax.random.key(s))`` (``k_run`` is the
    ``TrainState.key``), so a member reproduces the separate run
    ``fit(loss_fn, init_fn(k_init), optimizer(lambda_h), ..., key=k_run)``. The compiled
    program is ``jit(vmap_s(vmap_h(chunk)))``; the member axis is split over ``devices``
    (padded to a multiple of their count), and ``run``'s ``members_per_chunk`` trains a
    population too large for memory a slice of configurations at a time, with the same
    results.

    The run is described with `fit`'s names (`jdl.run.RunSpec`), and checked as `fit` checks
    it: the data sets, and ``loss_fn`` and ``eval_fn`` of the first configuration on them,
    abstractly, before anything compiles.

    Args:
      init_fn: ``init_fn(key) -> params``, the initial parameters of a seed; for a model with
        state (BatchNorm), ``init_fn(key) -> Variables(params, model_state)`` (the second
        result of `jdl.models.stateful`): every member then carries its own model state, and
        ``loss_fn``/``eval_fn`` follow the stateful contract.
      optimizer: ``optimizer(hparams) -> optax.GradientTransformation``; it receives traced
        scalars, e.g. ``lambda hp: jdl.optim.adam(hp["learning_rate"])``.
      loss_fn: the loss ``loss_fn(params, batch, key) -> (loss, aux)``, or
      make_loss_fn: ``make_loss_fn(hparams) -> loss_fn`` when the loss has hyper-parameters
        (a regularizer's weight); give exactly one of the two.
      eval_fn: ``eval_fn(params, data) -> dict`` of scalars with ``"loss"`` (monitored by early
        stopping) and, for the reports, ``"accuracy"``.
      make_eval_fn: ``make_eval_fn(hparams) -> eval_fn`` for the validation set when it depends
        on the member (a cross-validation's fold, `jdl.search.kfold`); ``eval_fn`` then
        evaluates the test set.
      batch_size: mini-batch size.
      eval_every: steps between two evaluations (one compiled chunk).
      early_stopping: the rule of every member (`jdl.train.early_stopping`), or
        ``early_stopping(hparams) -> rule`` when its patience (or patience increase, min_delta,
        thresholds) varies over the population, e.g.
        ``lambda hp: early_stopping(hp["patience"], patience_increase=hp["increase"])``; None
        keeps the best parameters and stops a member only on a non-finite loss.
      devices: None (all devices), a count, or a list of devices.
      init_member: ``init_member(params, hparams) -> params``, a member's initial parameters
        from its seed's, when they depend on its hyper-parameters: with the hidden widths as
        hyper-parameters (width by masking), ``lambda p, hp: restrict_width(p, (hp["width"],))``
        (`jdl.models.restrict_width`); None: the seed's parameters. Members reset by a
        scheduler start from it too.

    Example::

      >>> search = Search(init_fn, lambda hp: jdl.optim.adam(hp["learning_rate"]),
      ...                 loss_fn=loss_fn, eval_fn=eval_fn, batch_size=128, eval_every=50,
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
        make_eval_fn: Callable[[HParams], EvalFn] | None = None,
        batch_size: int,
        eval_every: int,
        early_stopping: EarlyStopping | Callable[[HParams], EarlyStopping] | None = None,
        devices: int | Sequence[jax.Device] | None = None,
        init_member: Callable[[Params, HParams], Params] | None = None,
    ):
        checked = {"init_fn": init_fn, "optimizer": optimizer}
        if init_member is not None:
            checked["init_member"] = init_member
        for name, f in checked.items():
            if not callable(f):
                raise TypeError(f"{name} must be callable, got {type(f).__name__}")
        spec = RunSpec(
            optimizer,
            eval_fn,
            batch_size,
            eval_every,
            early_stopping,
            loss_fn=loss_fn,
            make_loss_fn=make_loss_fn,
            make_eval_fn=make_eval_fn,
        )
        super().__init__(init_fn, spec, devices, init_member)

    def run(
        self,
        pop: Population,
        train: Dataset,
        val: Dataset,
        *,
        steps: int,
        test: Dataset | None = None,
        members_per_chunk: int | Literal["auto"] | None = None,
        memory_budget: int | None = None,
        progress: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        scheduler: Scheduler | None = None,
        tensorboard: str | os.PathLike | None = None,
    ) -> SearchResult:
        """Trains the whole population for at most ``steps`` steps and collects the results.

        The run driver calls the compiled chunk ``ceil(steps / eval_every)`` times and stops
        as soon as every member has stopped; with ``members_per_chunk`` it does this for each
        slice of configurations (all of the same padded size: one compile).

        Args:
          pop: the population (`population`).
          train: training set.
          val: validation set (monitored by early stopping).
          steps: the step budget of every member, >= 1.
          test: evaluated with each member's best parameters when given.
          members_per_chunk: train at most this many configurations (times the S seeds) at
            once, for a population too large for memory; None: all at once; ``"auto"``: the
            most that fit the devices' memory, or ``memory_budget``, read from the compiled
            chunk (`Search.members_that_fit`).
          memory_budget: with ``members_per_chunk="auto"``, the bytes the population may use
            on all devices together (default: 90% of an accelerator's memory; half the host's
            memory for CPU devices).
          progress: show a tqdm progress bar between chunks (steps, members training /
            stopped / diverged, the best validation loss so far and its hyper-parameters), on
            process 0 of several.
          checkpoint_dir: where to save the whole population (every member's state, the
            history, the scheduler's log) every ``checkpoint_every`` chunks, at the end and on
            Ctrl-C; the same call again resumes from it and ends with the uninterrupted
            search's results. A checkpoint of a search of another configuration (another
            population, model, optimizer, data or budget) is refused with a ValueError.
          checkpoint_every: chunks between two checkpoints.
          scheduler: a rule that rewrites the population between chunks (`jdl.run.Scheduler`;
            successive halving, ASHA and population-based training are built on it), not with
            ``members_per_chunk``. One whose ``own_steps`` attribute is true (ASHA, which
            restarts members) has each member run at its own step count.
          tensorboard: a folder to write every member's curves to between chunks, one
            TensorBoard run per member (named by its hyper-parameters and seed), and their
            hyper-parameters with the final metrics for the HParams dashboard (needs the extra
            ``jdl[tensorboard]``).

        Returns:
          A `SearchResult`, padding dropped.

        A KeyboardInterrupt (Ctrl-C) once a chunk has run stops the loop when the chunk in
        flight is done and returns what was trained so far, evaluated as usual, with
        ``interrupted=True``; with ``members_per_chunk``, the configurations of slices that
        had not run a chunk are left out. A KeyboardInterrupt before the first chunk, or a
        second one, propagates.
        """
        steps = check_count("steps", steps)
        check_count("checkpoint_every", checkpoint_every)
        if members_per_chunk is not None:
            if members_per_chunk != "auto":
                check_count("members_per_chunk", members_per_chunk)
            if scheduler is not None:
                raise ValueError("a scheduler acts on the whole population: no members_per_chunk")
        if memory_budget is not None:
            check_count("memory_budget", memory_budget)
            if members_per_chunk != "auto":
                raise ValueError('memory_budget needs members_per_chunk="auto"')
        compile_before = self.compile_seconds
        start = time.perf_counter()
        self.check(pop, train, val)
        if test is not None:
            self.place(test)
        num_chunks = -(-steps // self.eval_every)
        last_steps = None if steps % self.eval_every == 0 else steps
        num_configs = pop.num_configs
        # A scheduler that restarts members (ASHA) runs each at its own step count.
        own = bool(getattr(scheduler, "own_steps", False))
        if members_per_chunk == "auto":
            members_per_chunk = self.members_that_fit(pop, train, val, last_steps, memory_budget)
        part = num_configs if members_per_chunk is None else members_per_chunk
        part = padded_size(min(part, num_configs), self.num_devices)
        slices = range(0, num_configs, part)
        pieces, interrupted, best = [], False, (float("inf"), "")
        bar = None
        with contextlib.ExitStack() as stack:
            for lo in slices:
                sub = Population({k: v[lo : lo + part] for k, v in pop.hparams.items()}, pop.seeds)
                folder = None
                if checkpoint_dir is not None:
                    many = len(slices) > 1
                    folder = os.path.join(checkpoint_dir, f"slice-{lo}") if many else checkpoint_dir
                kept = min(part, num_configs - lo)
                try:
                    state = self.init(sub, train, val, size=part, ahead=(last_steps, own))
                    run = PopulationRun(self, train, val, last_steps, kept, best, own)
                    board = None if tensorboard is None else slice_board(tensorboard, sub, part)
                    checkpoints = slice_checkpoints(
                        self, folder, sub, state, train, val, steps, scheduler, own
                    )
                    if bar is None:  # after a checkpoint's checks: their errors come first
                        total = len(slices) * steps
                        bar = stack.enter_context(
                            tqdm(
                                total=total,
                                disable=not progress or jax.process_index() > 0,
                                unit="step",
                            )
                        )
                    with checkpoints as ckpt:
                        outcome = drive(
                            run,
                            state,
                            chunks=num_chunks,
                            total_steps=steps,
                            scheduler=scheduler,
                            checkpoints=ckpt,
                            checkpoint_every=checkpoint_every,
                            progress=bar,
                            callback=board,
                        )
                except KeyboardInterrupt:
                    # Before the slice's first chunk: keep the slices before it, if any.
                    if not pieces:
                        raise
                    interrupted = True
                    break
                best = run.best
                pieces.append(self.fetch(outcome.state, outcome.history, test, kept))
                if board is not None:
                    board.finish(final_metrics(pieces[-1], part))
                if outcome.interrupted:
                    interrupted = True
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
            self.eval_every,
            steps,
            compile_s,
            run_s,
            interrupted=interrupted,
        )
