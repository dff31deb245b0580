"""jdl.optim composes with optax: chain, clip_by_global_norm, schedules, masks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jdl.optim

PARAMS = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.1, -0.3])}
GRADS = [
    {"w": jnp.array([[3.0, -4.0], [0.0, 1.0]]), "b": jnp.array([2.0, 0.5])},
    {"w": jnp.array([[-1.0, 0.5], [2.0, 0.0]]), "b": jnp.array([0.1, -0.2])},
    {"w": jnp.array([[0.2, 0.3], [-0.4, 0.5]]), "b": jnp.array([-1.0, 1.0])},
]


def updates_of(tx: optax.GradientTransformation) -> list:
    """The updates of three steps on GRADS, in one compiled program."""

    def steps():
        state, params, out = tx.init(PARAMS), PARAMS, []
        for grads in GRADS:
            updates, state = tx.update(grads, state, params)
            params = optax.apply_updates(params, updates)
            out.append(updates)
        return out

    return jax.jit(steps)()


def assert_trees_close(actual, expected) -> None:
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)


def test_chain_with_clip_by_global_norm_clips_before_momentum():
    """Momentum over clipped gradients: v_t = gamma v_{t-1} + clip(g_t), update -eta v_t."""
    updates = updates_of(
        optax.chain(optax.clip_by_global_norm(1.0), jdl.optim.momentum(0.1, momentum=0.5))
    )
    trace = {k: np.zeros(v.shape) for k, v in PARAMS.items()}
    for grads, actual in zip(GRADS, updates, strict=True):
        norm = np.sqrt(sum(np.sum(np.asarray(g) ** 2) for g in grads.values()))
        trace = {k: 0.5 * trace[k] + np.asarray(g) * min(1.0, 1.0 / norm) for k, g in grads.items()}
        assert_trees_close(actual, {k: -0.1 * t for k, t in trace.items()})
    assert np.sqrt(sum(np.sum(np.asarray(g) ** 2) for g in GRADS[0].values())) > 1.0  # clips


def test_optax_schedule_scales_each_step():
    """Adam's direction does not depend on eta, so the update under a schedule is eta_t d_t."""
    schedule = optax.linear_schedule(0.3, 0.1, transition_steps=2)
    scheduled = updates_of(jdl.optim.adam(schedule))
    unit = updates_of(jdl.optim.adam(1.0))
    for t, (actual, direction) in enumerate(zip(scheduled, unit, strict=True)):
        assert_trees_close(actual, jax.tree.map(lambda d, t=t: schedule(t) * d, direction))


def test_adamw_mask_and_decay():
    """AdamW adds eta lambda theta to Adam's step where the mask is true, nothing elsewhere."""
    mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # noqa: E731
    decayed = jdl.optim.adamw(0.1, weight_decay=0.5, mask=mask)
    updates, adam_updates = updates_of(decayed)[0], updates_of(jdl.optim.adam(0.1))[0]
    np.testing.assert_allclose(updates["b"], adam_updates["b"], rtol=1e-6)
    np.testing.assert_allclose(updates["w"], adam_updates["w"] - 0.1 * 0.5 * PARAMS["w"], rtol=1e-6)


def test_inject_hyperparams_changes_the_rate_without_rebuilding():
    tx = optax.inject_hyperparams(jdl.optim.momentum)(learning_rate=0.1, momentum=0.9)
    state = tx.init(PARAMS)
    state.hyperparams["learning_rate"] = jnp.asarray(0.0)
    updates, _ = tx.update(GRADS[0], state, PARAMS)
    assert all(np.all(u == 0) for u in jax.tree.leaves(updates))
