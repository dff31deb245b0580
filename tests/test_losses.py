"""Tests of jdl.losses: hand-computed values, gradients, jit/vmap and argument checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jdl import losses

LOG2 = math.log(2.0)


@jax.jit
def hand_values() -> dict[str, jax.Array]:
    """Every hand-checked value, computed in one compiled program (one compile for the file)."""
    bce = losses.binary_cross_entropy_with_logits
    a_star = jnp.array([math.log(0.3 / 0.7)])
    p = jnp.array([[1.0, 0.5, 0.0]])
    g = jnp.array([[1.0, 1.0, 0.0]])
    batch_p = jnp.array([[1.0, 0.5, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    batch_g = jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    rare = jnp.zeros((1, 100), jnp.int32).at[0, 7].set(1)
    all_background = jax.nn.one_hot(jnp.zeros((1, 100), jnp.int32), 2)
    return {
        "mse": losses.mse(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])),
        "mse_2d": losses.mse(jnp.ones((2, 2)), jnp.array([[1.0, 3.0], [1.0, 1.0]])),
        "bce": bce(jnp.array([0.0, 100.0, -100.0]), jnp.array([1.0, 0.0, 0.0])),
        "bce_half": bce(jnp.zeros((2, 2)), jnp.full((2, 2), 0.5)),
        "bce_soft_min": bce(a_star, jnp.array([0.3])),
        "bce_soft_grad": jax.grad(bce)(a_star, jnp.array([0.3]))[0],
        "ce": losses.softmax_cross_entropy(
            jnp.array([[1.0, 2.0, 3.0], [1000.0, 0.0, 0.0]]), jnp.array([2, 1])
        ),
        "acc": losses.accuracy(
            jnp.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]]), jnp.array([0, 0, 0])
        ),
        "acc_grid": losses.accuracy(
            jnp.zeros((2, 2, 3)).at[..., 1].set(5.0), jnp.array([[1, 1], [0, 1]])
        ),
        "dice_s0": losses.dice_loss(p, g, smooth=0.0, squared=True),
        "dice_s1": losses.dice_loss(p, g, smooth=1.0, squared=True),
        "soft_dice_s0": losses.dice_loss(p, g, smooth=0.0, squared=False),
        "dice_batch": losses.dice_loss(batch_p, batch_g, smooth=1.0, squared=True),
        "dice_default": losses.dice_loss(p, g),
        "dice_default_batch": losses.dice_loss(batch_p, batch_g),
        "dice_tiny_on_empty": losses.dice_loss(jnp.array([[1e-30, 0.0]]), jnp.zeros((1, 2))),
        "dice_empty_grad": jax.grad(losses.dice_loss)(jnp.zeros((1, 3)), jnp.zeros((1, 3))),
        "rare_sq": losses.multiclass_dice_loss(all_background, rare, smooth=0.0, squared=True),
        "rare_lin": losses.multiclass_dice_loss(all_background, rare, smooth=0.0, squared=False),
        "perfect": losses.multiclass_dice_loss(jax.nn.one_hot(rare, 2), rare),
    }


def test_hand_computed_values():
    v = {k: float(a) for k, a in hand_values().items() if a.ndim == 0}
    assert v["mse"] == 2.5 and v["mse_2d"] == 1.0
    # BCE: log 2 at a = 0 for any label; large logits stay finite (no log(0)).
    np.testing.assert_allclose(v["bce"], (LOG2 + 100.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(v["bce_half"], LOG2, rtol=1e-6)
    # Soft targets: the minimum over the logit is the entropy of y, reached at sigmoid(a) = y.
    entropy = -(0.3 * math.log(0.3) + 0.7 * math.log(0.7))
    np.testing.assert_allclose(v["bce_soft_min"], entropy, rtol=1e-6)
    assert abs(v["bce_soft_grad"]) < 1e-6
    # Softmax cross-entropy: -log(e^3 / (e + e^2 + e^3)) = log(1 + e^-1 + e^-2); 1000 stays exact.
    expected = (math.log(1 + math.exp(-1) + math.exp(-2)) + 1000.0) / 2
    np.testing.assert_allclose(v["ce"], expected, rtol=1e-6)
    assert hand_values()["acc"].dtype == jnp.float32
    assert abs(v["acc"] - 2 / 3) < 1e-7 and v["acc_grid"] == 0.75


def test_dice_hand_computed_values():
    values = hand_values()
    np.testing.assert_array_equal(values.pop("dice_empty_grad"), np.zeros((1, 3)))  # finite
    v = {k: float(a) for k, a in values.items()}
    # p = (1, .5, 0), g = (1, 1, 0): I = 1.5, sum p^2 = 1.25, sum g^2 = 2, sum p = 1.5, sum g = 2.
    np.testing.assert_allclose(v["dice_s0"], 1 - 3 / 3.25, rtol=1e-6)
    np.testing.assert_allclose(v["dice_s1"], 1 - 4 / 4.25, rtol=1e-6)
    np.testing.assert_allclose(v["soft_dice_s0"], 1 - 3 / 3.5, rtol=1e-6)
    # Mean over examples: add a perfect example and an empty-on-empty one (D = 1 with s > 0).
    np.testing.assert_allclose(v["dice_batch"], (1 - 4 / 4.25) / 3, rtol=1e-6)
    # The default is the course's D = 2 sum p g / (sum p + sum g), no smoothing: 3 / 3.5; the
    # empty-on-empty example is D = 1 (not NaN), a tiny prediction of an empty target D = 0.
    np.testing.assert_allclose(v["dice_default"], 1 - 3 / 3.5, rtol=1e-6)
    np.testing.assert_allclose(v["dice_default_batch"], (1 - 3 / 3.5) / 3, rtol=1e-5)
    assert v["dice_tiny_on_empty"] == 1.0
    # Multi-class: class 1 has 1 pixel of 100 and is never predicted. Pixel accuracy is 0.99 but
    # per-class averaging makes the miss cost half the loss: D_0 = 2*99/(100 + 99), D_1 = 0.
    np.testing.assert_allclose(v["rare_sq"], 1 - (198 / 199) / 2, rtol=1e-6)
    np.testing.assert_allclose(v["rare_lin"], 1 - (198 / 199) / 2, rtol=1e-6)
    assert v["perfect"] == 0.0


def test_multiclass_soft_dice_matches_optax():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 4, 4)).astype(np.int32)

    @jax.jit
    def both(logits, labels):
        ours = losses.multiclass_dice_loss(
            jax.nn.softmax(logits), labels, smooth=1.0, squared=False
        )
        # optax writes D = (I + s) / ((P + T) / 2 + s): its s is half of ours.
        reference = optax.losses.dice_loss(logits, jax.nn.one_hot(labels, 3), smooth=0.5)
        return ours, jnp.mean(reference)

    ours, reference = both(logits, labels)
    np.testing.assert_allclose(float(ours), float(reference), rtol=1e-5)


def test_dice_gradient_matches_closed_form():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, size=(1, 6)).astype(np.float32)
    g = np.array([[1.0, 0.0, 1.0, 1.0, 0.0, 0.0]], np.float32)
    configs = [(squared, s) for squared in (True, False) for s in (0.0, 0.7)]

    @jax.jit
    def grads(p):
        return [jax.grad(losses.dice_loss)(p, g, smooth=s, squared=sq) for sq, s in configs]

    p_np, g_np = np.asarray(p, np.float64)[0], np.asarray(g, np.float64)[0]
    intersection = np.sum(p_np * g_np)
    for (squared, s), grad in zip(configs, grads(p), strict=True):
        union = np.sum(p_np**2) + np.sum(g_np**2) if squared else np.sum(p_np) + np.sum(g_np)
        d_union = 2 * p_np if squared else np.ones_like(p_np)
        dd_dp = (2 * g_np * (union + s) - (2 * intersection + s) * d_union) / (union + s) ** 2
        np.testing.assert_allclose(-np.asarray(grad)[0], dd_dp, rtol=1e-4, atol=1e-6)
        if squared and s == 0.0:  # V-Net's own form: 2 [g_j U - 2 p_j I] / U^2.
            vnet = 2 * (g_np * union - 2 * p_np * intersection) / union**2
            np.testing.assert_allclose(-np.asarray(grad)[0], vnet, rtol=1e-4, atol=1e-6)


def test_check_grads_of_every_loss():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    target = rng.uniform(size=(3, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=3).astype(np.int32)
    probs = rng.uniform(0.1, 0.9, size=(3, 4)).astype(np.float32)
    seg = rng.integers(0, 3, size=(2, 5)).astype(np.int32)
    seg_probs = rng.dirichlet(np.ones(3), size=(2, 5)).astype(np.float32)

    @jax.jit
    def every_loss(x, target, probs, seg_probs, smooth):
        # One output per loss: check_grads draws a random cotangent over the outputs, so a wrong
        # gradient in any one of them shows.
        return jnp.stack(
            [
                losses.mse(x, target),
                losses.binary_cross_entropy_with_logits(x, target),
                losses.softmax_cross_entropy(x, labels),
                losses.dice_loss(probs, target, smooth=smooth, squared=True),
                losses.dice_loss(probs, target, smooth=smooth),
                losses.multiclass_dice_loss(seg_probs, seg, smooth=smooth, squared=True),
                losses.multiclass_dice_loss(seg_probs, seg, smooth=smooth),
            ]
        )

    args = (x, target, probs, seg_probs, np.float32(0.5))
    check_grads(every_loss, args, order=1, modes=("rev",), atol=2e-2, rtol=2e-2, eps=1e-2)


def test_jit_and_vmap_over_a_population():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 4, 3)).astype(np.float32)  # 3 members, each a batch of 4
    labels = rng.integers(0, 3, size=4).astype(np.int32)
    mask = (rng.uniform(size=(4, 3)) < 0.5).astype(np.float32)
    smooths = np.array([0.0, 1.0, 10.0], np.float32)

    def all_losses(x, smooth):
        return jnp.stack(
            [
                losses.mse(x, mask),
                losses.binary_cross_entropy_with_logits(x, mask),
                losses.softmax_cross_entropy(x, labels),
                losses.accuracy(x, labels),
                losses.dice_loss(jax.nn.sigmoid(x), mask, smooth=smooth),
                losses.multiclass_dice_loss(jax.nn.softmax(x), labels, smooth=smooth),
            ]
        )

    single = jax.jit(all_losses)
    batched = jax.jit(jax.vmap(all_losses))(x, smooths)
    assert batched.shape == (3, 6) and np.all(np.isfinite(np.asarray(batched)))
    for i, s in enumerate((0.0, 1.0, 10.0)):  # a Python float and a traced array agree
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(single(x[i], s)), rtol=1e-5)
    assert len({float(d) for d in batched[:, 4]}) == 3  # smooth matters


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: losses.mse(np.zeros((3, 1)), np.zeros(3)), ValueError, r"\(3, 1\) and target"),
        (lambda: losses.mse(np.zeros(3, np.int32), np.zeros(3)), TypeError, "floating"),
        (
            lambda: losses.binary_cross_entropy_with_logits(np.zeros((2, 3)), np.zeros((3, 2))),
            ValueError,
            "same shape",
        ),
        (
            lambda: losses.softmax_cross_entropy(np.zeros((3, 4)), np.zeros(3)),
            TypeError,
            "integer class indices",
        ),
        (
            lambda: losses.softmax_cross_entropy(np.zeros((3, 4)), np.zeros(4, np.int32)),
            ValueError,
            r"labels.shape \+ \(n_classes,\)",
        ),
        (
            lambda: losses.accuracy(np.zeros(3), np.zeros(3, np.int32)),
            ValueError,
            "labels.shape",
        ),
        (
            lambda: losses.dice_loss(np.zeros((2, 3)), np.zeros((2, 4))),
            ValueError,
            "probs and targets must have the same shape",
        ),
        (lambda: losses.dice_loss(np.zeros(3), np.zeros(3)), ValueError, r"shape \(n, \.\.\.\)"),
        (
            lambda: losses.dice_loss(np.zeros((2, 3)), np.zeros((2, 3)), smooth=-1.0),
            ValueError,
            "smooth must be a finite number >= 0",
        ),
        (
            lambda: losses.dice_loss(np.zeros((2, 3)), np.zeros((2, 3)), smooth=math.inf),
            ValueError,
            "smooth",
        ),
        (
            lambda: losses.multiclass_dice_loss(np.zeros((2, 3, 4)), np.zeros((2, 4), np.int32)),
            ValueError,
            "probs must have shape labels.shape",
        ),
        (
            lambda: losses.multiclass_dice_loss(np.zeros((2, 1)), np.zeros(2, np.int32)),
            ValueError,
            "C >= 2",
        ),
        (
            lambda: losses.multiclass_dice_loss(np.zeros((2, 3)), np.zeros(2)),
            TypeError,
            "integer",
        ),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()
