"""A tiny classification problem shared by the search tests: an MLP 64-16-10 on 240 digits."""

import functools

import jax
import pytest
from flax import nnx

import jdl.optim
from jdl.data import Dataset, digits
from jdl.hyperparams import is_traced
from jdl.losses import accuracy, softmax_cross_entropy
from jdl.models import MLP, functional
from jdl.search import Search
from jdl.train import early_stopping

FEATURES = (64, 16, 10)
APPLY, _ = functional(MLP(FEATURES, rngs=nnx.Rngs(0)))


def init_fn(key: jax.Array):
    return functional(MLP(FEATURES, rngs=nnx.Rngs(key)))[1]


def loss_fn(params, batch: Dataset, key: jax.Array):
    return softmax_cross_entropy(APPLY(params, batch.x), batch.y), {}


def eval_fn(params, data: Dataset):
    logits = APPLY(params, data.x)
    return {"loss": softmax_cross_entropy(logits, data.y), "accuracy": accuracy(logits, data.y)}


@functools.cache
def data_sets():
    """240 training, 100 validation and 100 test digits."""
    s = digits()
    return (
        Dataset(s.train.x[:240], s.train.y[:240]),
        Dataset(s.val.x[:100], s.val.y[:100]),
        Dataset(s.test.x[:100], s.test.y[:100]),
    )


@pytest.fixture(scope="session")
def data():
    return data_sets()


TRACES = {"optimizer": 0}


def sgd_factory(hp):
    if is_traced(hp["learning_rate"]):
        TRACES["optimizer"] += 1
    return jdl.optim.sgd(hp["learning_rate"])


ES = early_stopping(8, divergence_threshold=10.0)
CHUNK, STEPS = 4, 12  # 3 chunks


def make_search():
    """The search of the tests: SGD on the tiny MLP, chunks of CHUNK steps."""
    return Search(
        init_fn,
        sgd_factory,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=32,
        eval_every=CHUNK,
        early_stopping=ES,
    )


@pytest.fixture(scope="session")
def search():
    """One compiled search reused by the tests (same shapes: no recompilation)."""
    return make_search()
