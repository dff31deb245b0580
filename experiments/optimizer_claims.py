"""Three of the course's claims about optimizers, measured for `experiments.optimizer_paths`.

* At one shared learning rate where SGD zig-zags across the ravine (eta > 1/L), momentum and
  Nesterov are said to damp the oscillation: we count the sign changes of the steep coordinate
  theta_2 and the steps until |theta_2| stays below 1 % of its start. On a quadratic the steep
  coordinate of SGD shrinks by |1 - eta L| per step, heavy-ball momentum's by sqrt(gamma) when
  its roots are complex (Polyak 1964): fewer crossings per step, but a longer oscillation.
* Adagrad's effective per-coordinate step eta / (sqrt(G_t) + eps), G_t = sum_s g_s^2, shrinks
  over time, faster along the steep coordinate.
* On sparse features (a few common features, many rare informative ones) Adagrad beats SGD,
  because a rare feature's accumulated G stays small and its step stays large.

Reference: Duchi, Hazan, Singer, "Adaptive Subgradient Methods for Online Learning and
Stochastic Optimization", JMLR 2011 (sparse features); Polyak 1964 and Sutskever et al., ICML
2013 (momentum, Nesterov).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import jdl.optim

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SHARED = ("sgd", "momentum", "nesterov")
AMPLITUDE = 0.01  # oscillation counted as damped once |theta_2| stays below 1 % of the start
SPARSE = {"examples": 2000, "common": 10, "rare": 40, "p_common": 0.5, "p_rare": 0.005}


def damped_after(steep: np.ndarray, fraction: float = AMPLITUDE) -> int | None:
    """First step after which |theta_2| stays below ``fraction`` |theta_2(0)|; None if never."""
    above = np.flatnonzero(~(np.abs(steep) < fraction * abs(steep[0])))
    return None if above[-1] == steep.size - 1 else int(above[-1]) + 1


def sign_changes(steep: np.ndarray, fraction: float = AMPLITUDE) -> int:
    """Crossings of the ravine's floor, theta_2(t) theta_2(t+1) < 0, while the oscillation is
    visible (before `damped_after`): later ones are float32 round-off around 0."""
    end = damped_after(steep, fraction)
    visible = steep[: steep.size if end is None else end + 1]
    return int(np.sum(visible[1:] * visible[:-1] < 0))


def shared_rate(
    path: Callable[..., jax.Array], loss, start, lr: float, steps: int
) -> dict[str, dict[str, Any]]:
    """SGD, momentum (gamma 0.9) and Nesterov (gamma 0.9) at one learning rate on the ravine."""
    out = {}
    for name in SHARED:
        thetas = np.asarray(path(getattr(jdl.optim, name)(lr), loss, start, steps))
        steep = thetas[:, 1].astype(np.float64)
        final = float(loss(thetas[-1].astype(np.float64)))
        out[name] = {
            "sign_changes": sign_changes(steep),
            "steps_until_amplitude_below_1pct": damped_after(steep),
            "final_loss": final if np.isfinite(final) else None,
            "path": thetas,
        }
    return out


def adagrad_steps(thetas: np.ndarray, curvature: tuple[float, float], lr: float) -> np.ndarray:
    """Adagrad's effective step eta / (sqrt(G_t) + eps) per coordinate along its own path.

    G_t = sum_{s <= t} g_s^2 with g = grad of 0.5 (a x^2 + b y^2) = (a x, b y); shape (steps, 2).
    """
    grads = np.asarray(thetas[:-1], np.float64) * np.asarray(curvature)
    return lr / (np.sqrt(np.cumsum(grads**2, axis=0)) + 1e-10)


def sparse_problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binary features, ``common`` on half the examples and ``rare`` on 0.5 %, all informative:
    y = x . w* + 0.1 noise, w* ~ N(0, 1). Returns x (n, d), y (n,), w* (d,)."""
    rng = np.random.default_rng(seed)
    n, c, r = SPARSE["examples"], SPARSE["common"], SPARSE["rare"]
    p = np.r_[np.full(c, SPARSE["p_common"]), np.full(r, SPARSE["p_rare"])]
    x = (rng.random((n, c + r)) < p).astype(np.float32)
    w = rng.normal(size=c + r).astype(np.float32)
    y = x @ w + 0.1 * rng.normal(size=n).astype(np.float32)
    return x, y, w


def sparse_sweep(name: str, lrs: np.ndarray, steps: int, batch: int = 32) -> np.ndarray:
    """Full-data mean squared error after ``steps`` minibatch steps of ``name``, per learning
    rate (one compiled ``vmap``); the same minibatch order for every rate and optimizer."""
    x, y, _ = (jnp.asarray(a) for a in sparse_problem())
    idx = jax.random.randint(jax.random.key(0), (steps, batch), 0, x.shape[0])

    def mse(w: jax.Array, i: jax.Array | slice = slice(None)) -> jax.Array:
        return 0.5 * jnp.mean((x[i] @ w - y[i]) ** 2)

    def one(lr: jax.Array) -> jax.Array:
        tx = getattr(jdl.optim, name)(lr)
        w0 = jnp.zeros(x.shape[1])

        def step(carry, i):
            w, state = carry
            updates, state = tx.update(jax.grad(mse)(w, i), state, w)
            return (optax.apply_updates(w, updates), state), None

        (w, _), _ = jax.lax.scan(step, (w0, tx.init(w0)), idx)
        return mse(w)

    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(lrs, jnp.float32)), np.float64)


def sparse_comparison(lrs: np.ndarray, steps: int) -> dict[str, Any]:
    """SGD and Adagrad on the sparse problem, each at its best learning rate of ``lrs``."""
    out: dict[str, Any] = {"problem": dict(SPARSE), "steps": steps, "batch_size": 32}
    for name in ("sgd", "adagrad"):
        losses = sparse_sweep(name, lrs, steps)
        finite = np.where(np.isfinite(losses), losses, np.inf)
        best = int(np.argmin(finite))
        out[name] = {
            "learning_rate": float(lrs[best]),
            "final_mse": float(losses[best]),
            "best_at_grid_edge": best in (0, lrs.size - 1),
            "final_mse_per_lr": [float(v) if np.isfinite(v) else None for v in losses],
        }
    return out


def plot(shared: dict, lr: float, ada: np.ndarray, ada_lr: float, sparse: dict, file: Path) -> None:
    """Three panels: the shared-rate paths, Adagrad's effective steps, the sparse problem."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    ax = axes[0]
    for i, (name, r) in enumerate(shared.items()):
        shown = r["path"][:40]
        label = f"{name}: {r['sign_changes']} sign changes"
        ax.plot(*shown.T, ".-", ms=2, lw=0.8, color=f"C{i}", label=label)
    ax.set(
        xlabel="θ₁",
        ylabel="θ₂ (steep)",
        title=f"one shared η = {lr:g} on the ravine (first 40 steps)",
        xlim=(-5, 1),
    )
    ax.legend(fontsize=8)
    ax = axes[1]
    t = np.arange(1, ada.shape[0] + 1)
    ax.loglog(t, ada[:, 0], label="θ₁ (flat, curvature 1)")
    ax.loglog(t, ada[:, 1], label="θ₂ (steep, curvature 25)")
    ax.set(
        xlabel="step t",
        ylabel="η / (√G_t + ε)",
        title=f"Adagrad's effective step shrinks (η = {ada_lr:g})",
    )
    ax.legend(fontsize=8)
    ax = axes[2]
    for name in ("sgd", "adagrad"):
        per_lr = np.array([np.nan if v is None else v for v in sparse[name]["final_mse_per_lr"]])
        ax.loglog(sparse["learning_rates"], per_lr, "o-", ms=3, label=name)
    ax.set(
        xlabel="learning rate",
        ylabel=f"MSE after {sparse['steps']} steps",
        title="sparse features: 10 common (50 %), 40 rare (0.5 %)",
    )
    ax.legend(fontsize=8)
    fig.savefig(file, dpi=90)
    plt.close(fig)
