"""The optimizer family as a categorical hyper-parameter: each member of one program (family x
learning rate) equals the plain optax run of its own family."""

import chex
import jax
import numpy as np
import optax

import jdl.optim
from jdl.search import Search, population, product
from tests.plain_loop import BATCH, STEPS, TRAIN, VAL, eval_fn, init_params, loss_fn, plain_loop

FAMILIES = (optax.sgd, lambda lr: optax.sgd(lr, momentum=0.9), optax.adam)


def test_each_member_equals_the_plain_loop_of_its_family():
    def optimizer(hp):
        lr = hp["learning_rate"]
        return jdl.optim.switch([make(lr) for make in FAMILIES], hp["family"])

    search = Search(
        init_params,
        optimizer,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        batch_size=BATCH,
        eval_every=STEPS,
        devices=1,
    )
    pop = population(product(family=[0, 1, 2], learning_rate=[0.01, 0.05]), seeds=[3])
    result = search.run(pop, TRAIN, VAL, steps=STEPS, progress=False)
    k_init, k_run = jax.random.split(jax.random.key(3))
    for h in range(pop.num_configs):
        config = pop.config(h)
        tx = FAMILIES[int(config["family"])](config["learning_rate"])
        ref = plain_loop(loss_fn, init_params(k_init), tx, k_run, STEPS)
        chex.assert_trees_all_close(result.member(h).params, ref.params, rtol=1e-5, atol=1e-6)
    finals = result.final["val_loss"][0]
    assert len(np.unique(np.round(finals, 6))) == pop.num_configs  # six different runs
