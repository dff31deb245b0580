"""The regularization study's training: one loss per group of methods, the searches, the table.

Every coefficient of a method's grid, crossed with the seeds, trains in one vmapped
`jdl.search.Search`; the coefficient of best mean validation accuracy is chosen. A choice at
either end of its grid is flagged (``at_grid_edge``): the best value may lie outside the grid.
Weight sharing is `capacity.convnet`, a convolutional network on the 8x8 images, against an
MLP of about as many parameters (``mlp_same_size``). For L1 (and, to compare, no penalty and
L2) the fraction of kernel weights with
|w| < `NEAR_ZERO` is measured per coefficient: the course's claim that L1 drives useless weights
to zero (Tibshirani, "Regression shrinkage and selection via the lasso", 1996).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import capacity
from experiments.regularization_cli import GRID_FIELD, HYPERPARAMETER, METHODS, Config
from jdl.augment import adversarial_unconstrained, gaussian_noise, worst_of_k
from jdl.data import Dataset
from jdl.losses import softmax_cross_entropy
from jdl.regularizers import jacobian_penalty_estimate, l1_penalty, l2_penalty, output_penalty

# Methods trained together in one search: their loss terms are cheap enough to share.
PENALTY_GROUP = ("none", "l2", "l1", "gaussian_noise", "output_penalty")
ALONE = ("dropout", "worst_of_k", "unconstrained_noise", "jacobian", "weight_jacobian")
NEAR_ZERO = 1e-3  # |w| below this counts as driven to zero
WEIGHT_JACOBIAN_EXAMPLES = 10  # of each batch: ||dy/dw||^2 costs one backward pass per example


def weight_jacobian_estimate(
    apply_fn: Callable, params: Any, x: jax.Array, key: jax.Array, coefficient: jax.typing.ArrayLike
) -> jax.Array:
    """Unbiased one-probe estimate of lambda (1/N) sum_n ||d f_w(x_n) / d w||_F^2 (kernels).

    With v_n ~ N(0, I) over the outputs, E ||v_n^T J_n||^2 = tr(J_n^T J_n) = ||J_n||_F^2, and
    v_n^T J_n is one vector-Jacobian product (a backward pass) per example, where
    `jdl.regularizers.weight_jacobian_penalty` builds J_n with one pass per output.
    Reference: Hutchinson, "A stochastic estimator of the trace of the influence matrix", 1990.
    """
    probes = jax.random.normal(key, apply_fn(params, x).shape)

    def one(xi: jax.Array, vi: jax.Array) -> jax.Array:
        _, vjp = jax.vjp(lambda p: apply_fn(p, xi[None])[0], params)
        (grads,) = vjp(vi)
        kernels = [g for g in jax.tree.leaves(grads) if g.ndim >= 2]
        return sum(jnp.sum(jnp.square(g)) for g in kernels)

    return coefficient * jnp.mean(jax.vmap(one)(x, probes))


def make_loss_fn(apply_fn: Callable, methods: tuple[str, ...], *, k: int):
    """``make_loss_fn(hparams) -> loss_fn``: cross-entropy plus the terms of ``methods``, each
    weighted by ``hparams[method]`` (0 turns a term off); with ``"dropout"``, the MLP drops
    its hidden units at the rate ``hparams["dropout"]``."""

    def make(hp: dict[str, jax.Array]) -> Callable:
        def loss_fn(params: Any, batch: Dataset, key: jax.Array) -> tuple[jax.Array, dict]:
            noise_key, worst_key, probe_key, dropout_key, w_key = jax.random.split(key, 5)
            x = batch.x

            def per_example(z: jax.Array) -> jax.Array:
                logits = apply_fn(params, z)
                return optax.losses.softmax_cross_entropy_with_integer_labels(logits, batch.y)

            if "gaussian_noise" in methods:
                x = gaussian_noise(noise_key, x, hp["gaussian_noise"])
            if "unconstrained_noise" in methods:
                x = adversarial_unconstrained(
                    noise_key, x, per_example, hp["unconstrained_noise"], steps=1
                )
            if "worst_of_k" in methods:

                def perturb(kk: jax.Array, z: jax.Array) -> jax.Array:
                    return gaussian_noise(kk, z, hp["worst_of_k"])

                x = worst_of_k(worst_key, x, per_example, perturb, k)
            drop = (
                {"key": dropout_key, "dropout_rate": hp["dropout"]} if "dropout" in methods else {}
            )
            logits = apply_fn(params, x, **drop)
            loss = softmax_cross_entropy(logits, batch.y)
            if "l2" in methods:
                loss = loss + l2_penalty(params, hp["l2"])
            if "l1" in methods:
                loss = loss + l1_penalty(params, hp["l1"])
            if "output_penalty" in methods:
                loss = loss + output_penalty(logits, hp["output_penalty"])
            if "jacobian" in methods:
                loss = loss + jacobian_penalty_estimate(
                    lambda z: apply_fn(params, z), x, probe_key, hp["jacobian"]
                )
            if "weight_jacobian" in methods:
                loss = loss + weight_jacobian_estimate(
                    apply_fn, params, x[:WEIGHT_JACOBIAN_EXAMPLES], w_key, hp["weight_jacobian"]
                )
            return loss, {}

        return loss_fn

    return make


def near_zero_fraction(params: Any) -> np.ndarray:
    """Fraction of kernel entries with |w| < `NEAR_ZERO`, per member: shape (S, H).

    The search's parameters have leaves (S, H, ...); kernels are those with 2 dimensions of
    their own (as `jdl.regularizers.kernels_only`), biases have 1."""
    kernels = [np.asarray(p) for p in jax.tree.leaves(params) if np.ndim(p) >= 4]
    small = sum(np.sum(np.abs(w) < NEAR_ZERO, axis=(2, 3)) for w in kernels)
    return small / sum(w.shape[2] * w.shape[3] for w in kernels)


def methods_results(
    cfg: Config, splits: capacity.Splits
) -> tuple[dict[str, Any], dict[str, float]]:
    """Per method: the grid's validation/test accuracy and the chosen coefficient."""
    grids = {m: getattr(cfg, field) for m, field in GRID_FIELD.items()}
    per_method: dict[str, list[tuple[float, np.ndarray, np.ndarray]]] = {}
    sparsity: dict[str, list[dict[str, float]]] = {}
    timing: dict[str, float] = {}
    groups = [tuple(m for m in PENALTY_GROUP if m in cfg.methods)]
    groups += [(m,) for m in ALONE if m in cfg.methods]
    for group in groups:
        start = time.perf_counter()
        rows = [("none", 0.0)] if "none" in group else []
        rows += [(m, v) for m in group if m != "none" for v in grids[m]]
        names = [m for m in group if m != "none"] or ["none"]
        hparams = {n: [v if m == n else 0.0 for m, v in rows] for n in names}
        model = capacity.mlp(cfg.hidden)
        loss_maker = make_loss_fn(model[0], group, k=cfg.k)
        result, evaluate = capacity.train(cfg, model, hparams, splits, make_loss_fn=loss_maker)
        final = evaluate(result.params)
        zeros = near_zero_fraction(result.params)
        for h, (m, v) in enumerate(rows):
            per_method.setdefault(m, []).append(
                (v, final["val"]["accuracy"][:, h], final["test"]["accuracy"][:, h])
            )
            if m in ("none", "l1", "l2"):
                sparsity.setdefault(m, []).append({"value": v, **capacity.stats(zeros[:, h])})
        if "none" in group and "early_stopping" in cfg.methods:
            # the unregularized runs' parameters of lowest validation loss
            best_test = evaluate(result.best_params)["test"]["accuracy"]
            per_method["early_stopping"] = [
                (
                    float(np.mean(result.best_step[:, 0])),
                    np.asarray(result.best["val_accuracy"][:, 0]),
                    np.asarray(best_test[:, 0]),
                )
            ]
        timing[",".join(group)] = time.perf_counter() - start
    same_size = {}
    if "weight_sharing" in cfg.methods:
        start = time.perf_counter()
        for name, model in (("weight_sharing", capacity.convnet()), ("mlp", capacity.mlp(48))):
            result, evaluate = capacity.train(cfg, model, {"model": [0.0]}, splits)
            final = evaluate(result.params)
            size = sum(leaf[0, 0].size for leaf in jax.tree.leaves(result.params))
            va, te = final["val"]["accuracy"][:, 0], final["test"]["accuracy"][:, 0]
            if name == "mlp":
                same_size = {"model": "MLP 64-48-10", "parameters": size}
                same_size |= {
                    "val_accuracy": capacity.stats(va),
                    "test_accuracy": capacity.stats(te),
                }
            else:
                per_method[name] = [(float(size), va, te)]
        timing["weight_sharing"] = time.perf_counter() - start
    table = {}
    for m in METHODS:
        if m not in per_method:
            continue
        grid = [
            {"value": v, "val_accuracy": capacity.stats(va), "test_accuracy": capacity.stats(te)}
            for v, va, te in per_method[m]
        ]
        chosen = max(grid, key=lambda g: g["val_accuracy"]["mean"])
        table[m] = {
            "hyperparameter": HYPERPARAMETER[m],
            "chosen": chosen["value"] if m != "none" else None,
            "at_grid_edge": m in GRID_FIELD
            and chosen["value"] in (grid[0]["value"], grid[-1]["value"]),
            "val_accuracy": chosen["val_accuracy"],
            "test_accuracy": chosen["test_accuracy"],
            "grid": grid,
        }
        if m in sparsity:
            table[m]["near_zero_weights"] = sparsity[m]
        if m == "weight_sharing":
            table[m]["mlp_same_size"] = same_size
    return table, timing
