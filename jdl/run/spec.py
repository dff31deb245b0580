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
      early_stopping: the rule (`jdl.train.early_stopping`), or ``early_stopping(hp) -> rule``
        when its patience, patience increase or thresholds are hyper-parameters of a member
        (called with traced values); None keeps the best parameters and stops only on a
        non-finite loss.
      loss_fn: ``loss_fn(params, batch, key) -> (loss, aux)`` (for a model with state,
        ``loss_fn(params, model_state, batch, key) -> (loss, (aux, model_state))``), or
      make_loss_fn: ``make_loss_fn(hp) -> loss_fn`` when the loss has hyper-parameters (a
        regularizer's weight); give exactly one of the two.
      make_eval_fn: ``make_eval_fn(hp) -> eval_fn`` for the validation set during training, when
        it depends on the member (the fold of a cross-validation, `jdl.search.kfold`); None:
        ``eval_fn``. ``eval_fn`` still evaluates test data.

    Raises:
      TypeError / ValueError: a field of the wrong kind or range, at construction.
    """

    optimizer: optax.GradientTransformation | OptimizerFactory
    eval_fn: EvalFn
    batch_size: int
    eval_every: int
    early_stopping: EarlyStopping | Callable[[HParams], EarlyStopping] | None = None
    loss_fn: LossFn | None = None
    make_loss_fn: Callable[[HParams], LossFn] | None = None
    make_eval_fn: Callable[[HParams], EvalFn] | None = None

    def __post_init__(self) -> None:
        if (self.loss_fn is None) == (self.make_loss_fn is None):
            raise TypeError("give exactly one of loss_fn and make_loss_fn")
        for name in ("loss_fn", "make_loss_fn", "eval_fn", "make_eval_fn", "optimizer"):
            f = getattr(self, name)
            if f is not None and not callable(f) and not _is_transformation(f):
                raise TypeError(f"{name} must be callable, got {type(f).__name__}")
        check_count("batch_size", self.batch_size)
        check_count("eval_every", self.eval_every)
        es = self.early_stopping
        if es is not None and not isinstance(es, EarlyStopping) and not callable(es):
            raise TypeError(
                "early_stopping must be built by jdl.train.early_stopping (or be a function of "
                f"the hyper-parameters returning one), got {type(es).__name__}"
            )

    def loss(self, hp: HParams) -> LossFn:
        """The loss function of hyper-parameters ``hp``."""
        return self.loss_fn if self.make_loss_fn is None else self.make_loss_fn(hp)

    def evaluation(self, hp: HParams) -> EvalFn:
        """The validation set's evaluation function of hyper-parameters ``hp``."""
        return self.eval_fn if self.make_eval_fn is None else self.make_eval_fn(hp)

    def transformation(self, hp: HParams) -> optax.GradientTransformation:
        """The optimizer of hyper-parameters ``hp``."""
        if _is_transformation(self.optimizer):
            return self.optimizer
        return self.optimizer(hp)

    def rule(self, hp: HParams | None = None) -> EarlyStopping:
        """The early-stopping rule of hyper-parameters ``hp``; without one, a rule that keeps
        the best parameters and stops only on a non-finite loss (its patience, 2**30 steps,
        outlasts any run)."""
        es = self.early_stopping
        if es is None:
            return early_stopping(2**30)
        if isinstance(es, EarlyStopping):
            return es
        rule = es({} if hp is None else hp)
        if not isinstance(rule, EarlyStopping):
            raise TypeError(
                "early_stopping(hp) must return a rule built by jdl.train.early_stopping, got "
                f"{type(rule).__name__}"
            )
        return rule

    def chunk(self, hp: HParams, steps: int | None) -> ChunkFn:
        """`jdl.train.make_chunk` of hyper-parameters ``hp``; steps at t >= ``steps`` are
        no-ops (None: every step runs)."""
        return make_chunk(
            self.loss(hp),
            self.transformation(hp),
            batch_size=self.batch_size,
            eval_every=self.eval_every,
            eval_fn=self.evaluation(hp),
            early_stopping=self.rule(hp),
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
            self.loss(hp),
            self.evaluation(hp),
            params,
            key,
            train,
            val,
            self.batch_size,
            model_state,
        )


def _is_transformation(f: object) -> bool:
    return isinstance(f, optax.GradientTransformation)
