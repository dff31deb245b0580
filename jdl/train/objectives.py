"""Objectives: the ``(loss_fn, eval_fn)`` pair of a model's ``apply_fn`` for a supervised task."""

from __future__ import annotations

from collections.abc import Callable

import jax

from jdl.data import Dataset, check_labels
from jdl.losses import accuracy, softmax_cross_entropy
from jdl.types import (
    Aux,
    EvalFn,
    LossFn,
    ModelState,
    Params,
    StatefulEvalFn,
    StatefulLossFn,
    Variables,
)

ApplyFn = Callable[..., jax.Array]
"""``apply_fn(params, x, *, key=None) -> logits`` (key given: training mode, dropout on)."""


def classification(
    apply_fn: ApplyFn, num_classes: int | None = None, *, stateful: bool = False
) -> tuple[LossFn, EvalFn]:
    r"""Softmax cross-entropy training loss and the evaluation metrics of a classifier.

    With logits :math:`a = f(x; \theta, k)` of the model ``apply_fn``:

    .. math::
        E(\theta) = -\frac{1}{n} \sum_{i=1}^{n} \log \operatorname{softmax}(a_i)_{y_i},
        \qquad
        \text{accuracy}(\theta) = \frac{1}{n} \sum_{i=1}^{n} [\arg\max_c a_{ic} = y_i].

    ``loss_fn`` passes its key to ``apply_fn`` (training mode: dropout draws its masks from
    it); ``eval_fn`` calls ``apply_fn`` without a key (evaluation mode, deterministic).

    With ``stateful=True`` the model has state beyond its parameters (`jdl.models.stateful`:
    BatchNorm's running statistics :math:`\phi`) and the pair follows the stateful contract:
    ``loss_fn(params, model_state, batch, key) -> (E, ({}, model_state'))`` returns the state
    that training mode updated (batch statistics), and ``eval_fn(params, model_state, data)``
    evaluates with the running statistics.

    Labels must lie in [0, n_classes): ``loss_fn.check_labels(params, data, name)`` (also on
    ``eval_fn``) raises a ValueError naming the first label out of range, and `jdl.run.fit`
    calls it on the training and validation sets before compiling. Out of range, a label of -1
    would train as the last class and one of n_classes or more would give a NaN loss.

    Args:
      apply_fn: ``apply_fn(params, x, *, key=None) -> logits`` of shape (n, n_classes), e.g.
        the first result of `jdl.models.functional`; with ``stateful``,
        ``apply_fn(params, model_state, x, *, key=None) -> (logits, model_state')``, the
        first result of `jdl.models.stateful`.
      num_classes: n_classes; None: the size of the logits' last axis.
      stateful: build the stateful pair (a Python bool: it fixes the functions' signatures).

    Returns:
      ``(loss_fn, eval_fn)``: ``loss_fn(params, batch, key) -> (E, {})``, a `LossFn` for
      `jdl.run.fit`, `jdl.train.make_chunk` and `jdl.search.Search`, and
      ``eval_fn(params, data) -> {"loss": E, "accuracy": accuracy}`` on the whole of ``data``.

    Example::

      >>> apply_fn, params = functional(MLP((64, 32, 10), rngs=nnx.Rngs(0)))
      >>> loss_fn, eval_fn = classification(apply_fn)
      >>> sorted(eval_fn(params, splits.val))
      ['accuracy', 'loss']

    References:
      Goodfellow, Bengio & Courville, Deep Learning, 2016, sections 6.2.2.3 (softmax units and
      cross-entropy) and 7.12 (dropout at training time only).
    """
    if num_classes is not None and (isinstance(num_classes, bool) or num_classes < 1):
        raise ValueError(f"num_classes must be an int >= 1 or None, got {num_classes!r}")
    if not callable(apply_fn):
        raise TypeError(
            f"classification expects apply_fn(params, x, *, key=None), got {type(apply_fn)}"
        )
    if not isinstance(stateful, bool):
        raise TypeError(f"stateful must be a bool, got {type(stateful).__name__}")
    if stateful:
        return _stateful_classification(apply_fn, num_classes)

    def loss_fn(params: Params, batch: Dataset, key: jax.Array) -> tuple[jax.Array, Aux]:
        return softmax_cross_entropy(apply_fn(params, batch.x, key=key), batch.y), {}

    def eval_fn(params: Params, data: Dataset) -> dict[str, jax.Array]:
        logits = apply_fn(params, data.x)
        return {"loss": softmax_cross_entropy(logits, data.y), "accuracy": accuracy(logits, data.y)}

    def check(params: Params, data: Dataset, name: str = "labels") -> None:
        n = num_classes
        if n is None:
            n = int(jax.eval_shape(lambda p, x: apply_fn(p, x), params, data.x).shape[-1])
        check_labels(data.y, n, name=name)

    loss_fn.check_labels = check  # type: ignore[attr-defined]
    eval_fn.check_labels = check  # type: ignore[attr-defined]
    return loss_fn, eval_fn


def _stateful_classification(
    apply_fn: Callable[..., tuple[jax.Array, ModelState]], num_classes: int | None
) -> tuple[StatefulLossFn, StatefulEvalFn]:
    """`classification`'s pair for ``apply_fn(params, model_state, x, *, key=None) ->
    (logits, model_state')``; ``check_labels`` takes ``Variables(params, model_state)``."""

    def loss_fn(
        params: Params, model_state: ModelState, batch: Dataset, key: jax.Array
    ) -> tuple[jax.Array, tuple[Aux, ModelState]]:
        logits, model_state = apply_fn(params, model_state, batch.x, key=key)
        return softmax_cross_entropy(logits, batch.y), ({}, model_state)

    def eval_fn(params: Params, model_state: ModelState, data: Dataset) -> dict[str, jax.Array]:
        logits, _ = apply_fn(params, model_state, data.x)
        return {"loss": softmax_cross_entropy(logits, data.y), "accuracy": accuracy(logits, data.y)}

    def check(variables: Variables, data: Dataset, name: str = "labels") -> None:
        n = num_classes
        if n is None:
            logits, _ = jax.eval_shape(lambda p, s, x: apply_fn(p, s, x), *variables, data.x)
            n = int(logits.shape[-1])
        check_labels(data.y, n, name=name)

    loss_fn.check_labels = check  # type: ignore[attr-defined]
    eval_fn.check_labels = check  # type: ignore[attr-defined]
    return loss_fn, eval_fn
