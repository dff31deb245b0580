"""One run spec, one vocabulary: what `fit` and a search are told about the run they train."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import optax

from jdl.data import Dataset
from jdl.hyperparams import check_count
from jdl.run.boundary import check_data, check_functions
from jdl.train.chunk import ChunkFn, make_chunk
from jdl.train.early_stopping import EarlyStopping, early_stopping
from jdl.types import EvalFn, HParams, LossFn, ModelState, Params

__all__ = ["RunSpec"]

OptimizerFactory = Callable[[HParams], optax.GradientTransformation]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """A run's loss, optimizer, evaluation, batch size, evaluation period and early stopping.

    A single run (`jdl.run.fit`) and a population (`jdl.search.Search`) take the same fields
    under the same names; a population's fields may depend on the hyper-parameters ``hp`` of a
    member (``optimizer`` and ``make_loss_fn`` as factories, called with traced values).

    Attributes:
      optimizer: an ``optax.GradientTransformation``, or ``optimizer(hp) -> transformation``.
      eval_fn: ``eval_fn(params, data) -> dict`` of scalars containing ``"loss"``, the monitored
        value (``eval_fn(params, model_state, data)`` for a model with state).
      batch_size: the mini-batch size B.
      eval_every: the steps between two evaluations (one compiled chunk).
      early_stopping: the rule (`jdl.train.early_stopping`); None keeps the best parameters
        and stops only on a non-finite loss.
      loss_fn: ``loss_fn(params, batch, key) -> (loss, aux)`` (for a model with state,
        ``loss_fn(params, model_state, batch, key) -> (loss, (aux, model_state))``), or
      make_loss_fn: ``make_loss_fn(hp) -> loss_fn`` when the loss has hyper-parameters (a
        regularizer's weight); give exactly one of the two.

    Raises:
      TypeError / ValueError: a field of the wrong kind or range, at construction.
    """

    optimizer: optax.GradientTransformation | OptimizerFactory
    eval_fn: EvalFn
    batch_size: int
    eval_every: int
    early_stopping: EarlyStopping | None = None
    loss_fn: LossFn | None = None
    make_loss_fn: Callable[[HParams], LossFn] | None = None

    def __post_init__(self) -> None:
        if (self.loss_fn is None) == (self.make_loss_fn is None):
            raise TypeError("give exactly one of loss_fn and make_loss_fn")
        for name in ("loss_fn", "make_loss_fn", "eval_fn", "optimizer"):
            f = getattr(self, name)
            if f is not None and not callable(f) and not _is_transformation(f):
                raise TypeError(f"{name} must be callable, got {type(f).__name__}")
        check_count("batch_size", self.batch_size)
        check_count("eval_every", self.eval_every)
        if self.early_stopping is not None and not isinstance(self.early_stopping, EarlyStopping):
            raise TypeError(
                "early_stopping must be built by jdl.train.early_stopping, got "
                f"{type(self.early_stopping).__name__}"
            )

    def loss(self, hp: HParams) -> LossFn:
        """The loss function of hyper-parameters ``hp``."""
        return self.loss_fn if self.make_loss_fn is None else self.make_loss_fn(hp)

    def transformation(self, hp: HParams) -> optax.GradientTransformation:
        """The optimizer of hyper-parameters ``hp``."""
        if _is_transformation(self.optimizer):
            return self.optimizer
        return self.optimizer(hp)

    def rule(self) -> EarlyStopping:
        """The early-stopping rule; without one, a rule that keeps the best parameters and
        stops only on a non-finite loss (its patience, 2**30 steps, outlasts any run)."""
        return early_stopping(2**30) if self.early_stopping is None else self.early_stopping

    def chunk(self, hp: HParams, steps: int | None) -> ChunkFn:
        """`jdl.train.make_chunk` of hyper-parameters ``hp``; steps at t >= ``steps`` are
        no-ops (None: every step runs)."""
        return make_chunk(
            self.loss(hp),
            self.transformation(hp),
            batch_size=self.batch_size,
            eval_every=self.eval_every,
            eval_fn=self.eval_fn,
            early_stopping=self.rule(),
            steps=steps,
        )

    def check(
        self,
        hp: HParams,
        params: Params,
        key: object,
        train: Dataset,
        val: Dataset,
        model_state: ModelState = None,
    ) -> None:
        """The boundary's checks, before anything compiles: the data sets (`check_data`) and
        the functions of ``hp`` on them (`check_functions`, abstractly; against the stateful
        contract when ``model_state`` is not None)."""
        for name, data in (("train", train), ("val", val)):
            if not isinstance(data, Dataset):
                raise TypeError(f"{name} must be a jdl.data.Dataset, got {type(data).__name__}")
        check_data(train, val, self.batch_size)
        check_functions(
            self.loss(hp), self.eval_fn, params, key, train, val, self.batch_size, model_state
        )


def _is_transformation(f: object) -> bool:
    return isinstance(f, optax.GradientTransformation)
