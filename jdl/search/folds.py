r"""k-fold cross-validation as one more axis of a population.

The examples are split once into k stratified folds of one size; fold f's validation set is
fold f and its training set the other k - 1. The k training sets are stacked along a second
axis, :math:`X_{train}[i, f]` = the i-th training example of fold f (likewise the validation
sets), and replicated like any data set; a member's hyper-parameter ``fold`` selects its column
inside the compiled program. Members of one seed share the data order, so at step t every fold
draws the same positions i, and member (fold f) sees exactly the batch that a separate run on
fold f's split with that seed would draw. A search over configurations x seeds x folds is one
program; `fold_summary` reports each configuration's mean and standard deviation over folds,
and the choice is made on the mean.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jdl.data import Dataset
from jdl.search.results import SearchResult
from jdl.types import EvalFn, HParams, LossFn, Params

__all__ = ["Folds", "fold_summary", "kfold"]


def _column(data: Dataset, fold: jax.Array) -> Dataset:
    """Column ``fold`` of a stacked data set (leaves (n, k, ...)): leaves (n, ...)."""
    f = jnp.asarray(fold).astype(jnp.int32)
    return jax.tree.map(lambda a: jnp.take(a, f, axis=1), data)


class Folds(NamedTuple):
    """k folds of one data set, stacked for a population (see `kfold`).

    Attributes:
      train: the k training sets, leaves (n_train, k, ...): column f is fold f's.
      val: the k validation sets, leaves (n_val, k, ...).
      train_index, val_index: shape (k, n_train) and (k, n_val): the rows of the original data
        in each fold's training and validation set, in their stacked order.
      data: the original data set.
    """

    train: Dataset
    val: Dataset
    train_index: np.ndarray
    val_index: np.ndarray
    data: Dataset

    @property
    def k(self) -> int:
        """The number of folds."""
        return self.train_index.shape[0]

    def split(self, fold: int) -> tuple[Dataset, Dataset]:
        """Fold ``fold``'s training and validation sets, as a separate run would take them."""
        if not 0 <= fold < self.k:
            raise IndexError(f"fold must be in [0, {self.k}), got {fold}")
        return tuple(
            jax.tree.map(lambda a, idx=idx: np.asarray(a)[idx[fold]], self.data)
            for idx in (self.train_index, self.val_index)
        )

    def loss(self, loss_fn: LossFn, name: str = "fold") -> Any:
        """``make_loss_fn(hp)``: ``loss_fn`` on the column ``hp[name]`` of a stacked batch."""

        def make(hp: HParams) -> LossFn:
            def fold_loss(params: Params, batch: Dataset, key: jax.Array) -> Any:
                return loss_fn(params, _column(batch, hp[name]), key)

            return fold_loss

        return make

    def evaluation(self, eval_fn: EvalFn, name: str = "fold") -> Any:
        """``make_eval_fn(hp)``: ``eval_fn`` on the column ``hp[name]`` of the stacked
        validation sets."""

        def make(hp: HParams) -> EvalFn:
            def fold_eval(params: Params, data: Dataset) -> dict[str, jax.Array]:
                return eval_fn(params, _column(data, hp[name]))

            return fold_eval

        return make


def kfold(data: Dataset, k: int, *, seed: int = 0) -> Folds:
    r"""Stratified k-fold cross-validation folds of one size, built once.

    The examples are shuffled (``seed``), sorted by class (stably) and dealt round-robin to the
    k folds, so each fold holds :math:`\lfloor n_c / k \rfloor` or one more of every class c;
    the last :math:`n \bmod k` examples of that order are left out, so that every fold has
    :math:`m = \lfloor n / k \rfloor` examples and every training set :math:`(k-1) m`: the
    fixed shapes of one compiled program. Fold f's training set is the other folds, in order.

    Args:
      data: a data set with integer class labels ``y`` of shape (n,) (or any labels:
        stratification then follows their distinct values).
      k: the number of folds, 2 <= k <= n.
      seed: the seed of the shuffle.

    Returns:
      `Folds`: the stacked training and validation sets and the indices of each fold.

    Raises:
      ValueError: k out of range or labels that are not one value per example.

    Example::

      >>> folds = kfold(train, 5)
      >>> search = Search(init_fn, optimizer, make_loss_fn=folds.loss(loss_fn),
      ...                 eval_fn=eval_fn, make_eval_fn=folds.evaluation(eval_fn), ...)
      >>> result = search.run(population(product(width=[8, 32], fold=range(5)), seeds=2),
      ...                     folds.train, folds.val, steps=1000)
      >>> fold_summary(result)

    References:
      R. Kohavi, "A Study of Cross-Validation and Bootstrap for Accuracy Estimation and Model
      Selection", IJCAI 1995 (stratified k-fold); scikit-learn ``StratifiedKFold``.
    """
    y = np.asarray(data.y)
    n = y.shape[0]
    if y.ndim != 1:
        raise ValueError(f"kfold needs one label per example, y of shape (n,), got {y.shape}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 2 <= k <= n:
        raise ValueError(f"k must be an int in [2, {n}] (the examples), got {k!r}")
    order = np.random.default_rng(seed).permutation(n)
    order = order[np.argsort(y[order], kind="stable")]
    m = n // k
    folds = [order[f::k][:m] for f in range(k)]
    val_index = np.stack(folds)
    train_index = np.stack([np.concatenate(folds[:f] + folds[f + 1 :]) for f in range(k)])

    def stacked(index: np.ndarray) -> Dataset:  # leaves (len, k, ...)
        return jax.tree.map(lambda a: np.swapaxes(np.asarray(a)[index], 0, 1), data)

    return Folds(stacked(train_index), stacked(val_index), train_index, val_index, data)


def fold_summary(
    result: SearchResult, metric: str = "best_val_loss", name: str = "fold"
) -> list[dict[str, Any]]:
    r"""Each configuration's mean and standard deviation over its folds (and seeds).

    The members whose hyper-parameters differ only in ``name`` are one configuration; with F
    folds and S seeds its values :math:`v_{s,f}` give
    :math:`\bar v = \frac{1}{SF} \sum_{s,f} v_{s,f}` and
    :math:`\sigma = \sqrt{\frac{1}{F-1} \sum_f (\bar v_f - \bar v)^2}` over the fold means
    :math:`\bar v_f` (the spread between folds). Choose on :math:`\bar v`.

    Args:
      result: a search over a population that has the hyper-parameter ``name``.
      metric: ``best_val_loss``; ``final_<k>`` for ``result.final[k]`` (``final_val_loss``:
        the last evaluation); or a key of ``result.best`` (``val_accuracy``, ...).
      name: the fold's hyper-parameter.

    Returns:
      One dict per configuration, in the population's order: its other hyper-parameters,
      ``folds``, ``<metric>_mean``, ``<metric>_std``, ``<metric>_per_fold`` (fold means).

    Raises:
      ValueError: ``name`` not a hyper-parameter of the population.
    """
    hp = result.population.hparams
    if name not in hp:
        raise ValueError(f"the population has no hyper-parameter {name!r}: {sorted(hp)}")
    if metric == "best_val_loss":
        values = result.best_val_loss
    elif metric.startswith("final_") and metric[6:] in result.final:
        values = result.final[metric[6:]]
    elif metric in result.best:
        values = result.best[metric]
    else:
        raise ValueError(
            f"unknown metric {metric!r}: best_val_loss, final_<k> for k in "
            f"{sorted(result.final)}, or one of {sorted(result.best)}"
        )
    others = [k for k in hp if k != name]
    groups: dict[tuple, list[int]] = {}
    for h in range(result.population.num_configs):
        groups.setdefault(tuple(float(hp[k][h]) for k in others), []).append(h)
    rows = []
    for key, members in groups.items():
        per_fold = np.asarray(values[:, members], np.float64).mean(axis=0)
        row: dict[str, Any] = dict(zip(others, key, strict=True))
        row["folds"] = len(members)
        row[f"{metric}_mean"] = float(per_fold.mean())
        row[f"{metric}_std"] = float(per_fold.std(ddof=1)) if len(members) > 1 else 0.0
        row[f"{metric}_per_fold"] = per_fold.tolist()
        rows.append(row)
    return rows
