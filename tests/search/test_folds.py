"""k-fold cross-validation as a population axis: stratified folds of one size, and each fold
member of a search equal to a separate `fit` on that fold's split."""

import chex
import jax
import numpy as np
import pytest

import jdl.optim
from jdl.data import Dataset
from jdl.run import fit
from jdl.search import Search, fold_summary, kfold, population, product
from tests.search.conftest import ES, eval_fn, init_fn, loss_fn

K, STEPS, EVERY, BATCH, SEED = 3, 12, 4, 32, 5


def test_folds_are_stratified_disjoint_and_of_one_size(data):
    train, _, _ = data
    folds = kfold(train, K, seed=1)
    y = np.asarray(train.y)
    m = len(y) // K
    assert folds.val_index.shape == (K, m) and folds.train_index.shape == (K, (K - 1) * m)
    every = np.concatenate(list(folds.val_index))
    assert len(np.unique(every)) == K * m  # disjoint validation folds
    for f in range(K):
        assert not set(folds.train_index[f]) & set(folds.val_index[f])
        # Stratified: each class's count in a fold is within one of n_c / K.
        counts = np.bincount(y[folds.val_index[f]], minlength=10)
        assert np.all(np.abs(counts - np.bincount(y, minlength=10) / K) <= 1)
        tr, va = folds.split(f)
        np.testing.assert_array_equal(folds.train.x[:, f], tr.x)
        np.testing.assert_array_equal(folds.val.y[:, f], va.y)
    with pytest.raises(ValueError, match="k must be an int in"):
        kfold(train, 1)


def test_fold_members_equal_a_fit_on_each_split_and_the_summary_is_over_folds(data):
    train, _, _ = data
    folds = kfold(train, K, seed=1)
    search = Search(
        init_fn,
        lambda hp: jdl.optim.sgd(hp["learning_rate"]),
        make_loss_fn=folds.loss(loss_fn),
        eval_fn=eval_fn,
        make_eval_fn=folds.evaluation(eval_fn),
        batch_size=BATCH,
        eval_every=EVERY,
        early_stopping=ES,
        devices=1,
    )
    pop = population(product(learning_rate=[0.05, 0.2], fold=range(K)), seeds=[SEED])
    result = search.run(pop, folds.train, folds.val, steps=STEPS, progress=False)
    for h in range(K, 2 * K):  # the folds of learning rate 0.2 (one fit each: a compile)
        config = pop.config(h)
        k_init, k_run = jax.random.split(jax.random.key(SEED))  # fit donates its key
        tr, va = folds.split(int(config["fold"]))
        single = fit(
            loss_fn,
            init_fn(k_init),
            jdl.optim.sgd(config["learning_rate"]),
            Dataset(*tr),
            Dataset(*va),
            eval_fn=eval_fn,
            steps=STEPS,
            batch_size=BATCH,
            eval_every=EVERY,
            early_stopping=ES,
            key=k_run,
            progress=False,
        )
        member = result.member(h)
        chex.assert_trees_all_close(member.params, single.state.params, rtol=1e-5, atol=1e-6)
        assert member.best_val_loss == pytest.approx(float(single.state.stop.best_metric), 1e-5)
    rows = fold_summary(result)
    assert [r["learning_rate"] for r in rows] == pytest.approx([0.05, 0.2])
    for r, lr in zip(rows, (0.05, 0.2), strict=True):
        members = [h for h in range(pop.num_configs) if pop.config(h)["learning_rate"] == lr]
        losses = result.best_val_loss[0, members]
        assert r["folds"] == K and r["best_val_loss_per_fold"] == pytest.approx(losses)
        assert r["best_val_loss_mean"] == pytest.approx(losses.mean())
        assert r["best_val_loss_std"] == pytest.approx(losses.std(ddof=1))
