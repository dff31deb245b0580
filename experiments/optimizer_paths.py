"""Optimizers at work on two 2-D landscapes: a ravine and the Rosenbrock valley.

    python -m experiments.optimizer_paths [--optimizers sgd,momentum,...] [--ravine-steps 300]
        [--rosenbrock-steps 3000] [--num-lrs 13] [--lr-min 1e-4] [--lr-max 3.0] [--tol 1e-3]
        [--regimes 0.004,0.07,0.085] [--shared-lr 0.05] [--sparse-steps 300]
        [--out runs/optimizer_paths]

For every optimizer of jdl.optim, a log grid of learning rates runs on both landscapes as one
compiled program (``jit(vmap(scan))``: one compile per optimizer); the learning rate whose
loss falls below the tolerance, and stays there, in the fewest steps (then: the lowest final
loss) is kept. Writes into ``--out``:

* ``paths.png``: the kept trajectories over the contours of the ravine (where plain SGD zig-zags
  across the steep walls) and of Rosenbrock;
* ``lr_regimes.png``: SGD on the ravine for a learning rate that is too small (crawls), about
  right (zig-zags across the ravine but converges), and too large (above 2/L = 0.08: the
  zig-zag grows and SGD diverges), as loss curves and as paths;
* ``claims.png`` and ``results.json["claims"]`` (see `experiments.optimizer_claims`): SGD,
  momentum and Nesterov at one shared learning rate where SGD zig-zags (1/L < eta), with the
  sign changes of the steep coordinate; Adagrad's effective per-coordinate step against time;
  SGD against Adagrad on sparse features, each at its best rate of the grid;
* ``results.json``: per landscape and optimizer, the kept learning rate, the final loss and the
  number of steps after which the loss stays below ``--tol`` (null if it ends above), and the
  same for the three SGD regimes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments import cli, estimates
from experiments.cli import OPTIMIZER_NAMES, Parser, joined

OPTIMIZERS = OPTIMIZER_NAMES
SHOWN_STEPS = 12  # of the diverging SGD run in the regimes' path panel
RAVINE_CURVATURE = (1.0, 25.0)  # Hessian eigenvalues: condition number 25, L = 25


@dataclasses.dataclass(frozen=True)
class Config:
    """Which optimizers, how long, the learning-rate grid and the SGD regimes."""

    optimizers: tuple[str, ...] = OPTIMIZERS
    ravine_steps: int = 300
    rosenbrock_steps: int = 3000
    num_lrs: int = 13
    lr_min: float = 1e-4
    lr_max: float = 3.0
    tol: float = 1e-3
    regimes: tuple[float, float, float] = (0.004, 0.07, 0.085)
    shared_lr: float = 0.05  # SGD zig-zags above 1/L = 0.04; Nesterov is stable below 0.054
    sparse_steps: int = 300
    out: str = "runs/optimizer_paths"
    overwrite: bool = False
    format: str = "png"  # of the figures


def _names(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in OPTIMIZERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated names from {', '.join(OPTIMIZERS)}, got {text!r}"
        )
    return names


def _regimes(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers, got {text!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected three numbers > 0, got {text!r}")
    if not values[0] < values[1] < values[2]:
        raise argparse.ArgumentTypeError(f"expected small < right < large, got {text!r}")
    return values  # type: ignore[return-value]


def parse_args(argv: list[str] | None = None) -> Config:
    """The `Config` from command-line arguments; bad input exits with status 2 and one line."""
    d = Config()
    p = Parser(prog="python -m experiments.optimizer_paths", doc=__doc__)
    p.add_argument(
        "--optimizers", type=_names, default=", ".join(d.optimizers), help="comma-separated names"
    )
    p.add_argument("--ravine-steps", type=int, default=d.ravine_steps, help="steps on the ravine")
    p.add_argument(
        "--rosenbrock-steps", type=int, default=d.rosenbrock_steps, help="steps on Rosenbrock"
    )
    p.add_argument("--num-lrs", type=int, default=d.num_lrs, help="size of the log grid")
    p.add_argument("--lr-min", type=float, default=d.lr_min, help="smallest learning rate")
    p.add_argument("--lr-max", type=float, default=d.lr_max, help="largest learning rate")
    p.add_argument("--tol", type=float, default=d.tol, help="loss counted as reached")
    p.add_argument(
        "--regimes", type=_regimes, default=joined(d.regimes), help="SGD rates: small,right,large"
    )
    p.add_argument(
        "--shared-lr", type=float, default=d.shared_lr, help="one rate for SGD/momentum/Nesterov"
    )
    p.add_argument(
        "--sparse-steps", type=int, default=d.sparse_steps, help="steps on the sparse problem"
    )
    p.add_output_arguments(d.out)
    a = p.parse_args(argv)
    p.require_positive_ints(a, "ravine_steps", "rosenbrock_steps", "num_lrs", "sparse_steps")
    p.require_positive_numbers(a, "lr_min", "lr_max", "tol", "regimes", "shared_lr")
    p.require_ordered(a, "lr_min", "lr_max")
    points = a.num_lrs * (a.ravine_steps + a.rosenbrock_steps + 2)  # an optimizer's paths
    # 16 B a point (2 float32 coordinates, a float64 loss), 128 B a sparse step's batch indices
    held = estimates.Cost(memory=max(16 * points, 128 * a.sparse_steps))
    p.require_feasible(a, held, "num_lrs", "ravine_steps", "rosenbrock_steps", "sparse_steps")
    p.require_output(a)
    return Config(**vars(a))


if __name__ == "__main__":
    cli.parsed(parse_args)  # --help and bad flags answer before JAX is imported below

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import jdl.optim
from experiments import optimizer_claims, output

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def ravine(theta: jax.Array) -> jax.Array:
    """An elongated quadratic 0.5 (x^2 + 25 y^2): a ravine along x. theta: (..., 2)."""
    x, y = theta[..., 0], theta[..., 1]
    return 0.5 * (RAVINE_CURVATURE[0] * x**2 + RAVINE_CURVATURE[1] * y**2)


def rosenbrock(theta: jax.Array) -> jax.Array:
    """(1 - x)^2 + 100 (y - x^2)^2: a curved, flat valley with minimum 0 at (1, 1)."""
    x, y = theta[..., 0], theta[..., 1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


LANDSCAPES: dict[str, tuple[Callable[[jax.Array], jax.Array], tuple[float, float]]] = {
    "ravine": (ravine, (-4.5, 1.5)),
    "rosenbrock": (rosenbrock, (-1.2, 1.0)),
}


def path(
    tx: optax.GradientTransformation, loss: Callable[[jax.Array], jax.Array], start, steps: int
) -> jax.Array:
    """theta_0 .. theta_steps of ``tx`` on ``loss``, shape (steps + 1, 2), by ``lax.scan``."""

    def step(carry, _):
        theta, state = carry
        updates, state = tx.update(jax.grad(loss)(theta), state, theta)
        theta = optax.apply_updates(theta, updates)
        return (theta, state), theta

    theta0 = jnp.asarray(start, jnp.float32)
    _, thetas = jax.lax.scan(step, (theta0, tx.init(theta0)), length=steps)
    return jnp.concatenate([theta0[None], thetas])


def sweep(name: str, cfg: Config, lrs: np.ndarray) -> dict[str, np.ndarray]:
    """Paths of one optimizer for every learning rate on both landscapes: one compile."""
    make = getattr(jdl.optim, name)
    steps = {"ravine": cfg.ravine_steps, "rosenbrock": cfg.rosenbrock_steps}

    def one(lr: jax.Array) -> dict[str, jax.Array]:
        return {
            key: path(make(lr), loss, start, steps[key])
            for key, (loss, start) in LANDSCAPES.items()
        }

    out = jax.jit(jax.vmap(one))(jnp.asarray(lrs, jnp.float32))
    return {key: np.asarray(v) for key, v in out.items()}


def losses_along(key: str, points: np.ndarray) -> np.ndarray:
    """Loss at every point of an array of shape (..., 2), in NumPy float64."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(LANDSCAPES[key][0](np.asarray(points, np.float64)))


def steps_to(losses: np.ndarray, tol: float) -> int | None:
    """The first step t after which the loss stays below ``tol``; None if it ends above."""
    above = np.flatnonzero(~(losses < tol))
    if above.size and above[-1] == losses.size - 1:
        return None
    return int(above[-1]) + 1 if above.size else 0


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def select(losses: np.ndarray, tol: float) -> int:
    """Index of the learning rate that settles below ``tol`` first, else the lowest final loss."""

    def key(i: int) -> tuple[float, float]:
        reached = steps_to(losses[i], tol)
        final = losses[i, -1]
        return (
            math.inf if reached is None else reached,
            float(final) if np.isfinite(final) else math.inf,
        )

    return min(range(losses.shape[0]), key=key)


WINDOWS = {"ravine": ((-5.0, 5.0), (-2.5, 2.5)), "rosenbrock": ((-2.0, 2.0), (-1.0, 3.0))}
MINIMA = {"ravine": (0.0, 0.0), "rosenbrock": (1.0, 1.0)}


def _contours(ax: plt.Axes, key: str) -> None:
    """The landscape's contour lines (log-spaced for Rosenbrock), start and minimum."""
    (x0, x1), (y0, y1) = WINDOWS[key]
    xs, ys = np.meshgrid(np.linspace(x0, x1, 150), np.linspace(y0, y1, 150))
    zs = losses_along(key, np.stack([xs, ys], axis=-1))
    levels = np.logspace(-2, np.log10(zs.max()), 15) if key == "rosenbrock" else 15
    ax.contour(xs, ys, zs, levels=levels, colors="0.8", linewidths=0.6)
    ax.plot(*LANDSCAPES[key][1], "ko", ms=4)
    ax.plot(*MINIMA[key], "k*", ms=9)
    ax.set(xlim=(x0, x1), ylim=(y0, y1))


def plot_paths(
    kept: dict[str, dict[str, np.ndarray]], results: dict, tol: float, file: Path
) -> None:
    """One panel per landscape and optimizer: its kept trajectory over the contours, the
    learning rate and whether (and when) the loss settled below ``tol``."""
    names = list(kept["ravine"])
    cols = min(5, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(
        2 * rows, cols, figsize=(3.4 * cols, 3.1 * 2 * rows), squeeze=False, layout="constrained"
    )
    for block, key in enumerate(LANDSCAPES):
        for i in range(rows * cols):
            ax = axes[block * rows + i // cols, i % cols]
            if i >= len(names):
                ax.axis("off")
                continue
            name, r = names[i], results[key][names[i]]
            _contours(ax, key)
            reached = r["steps_to_tol"] is not None
            color = "C2" if reached else "C3"
            ax.plot(*kept[key][name].T, ".-", ms=2, lw=0.8, color=color)
            verdict = f"below tol at step {r['steps_to_tol']}" if reached else "tol not reached"
            ax.set_title(f"{key}: {name}, η={r['learning_rate']:.2g}\n{verdict}", fontsize=9)
            ax.set_xlabel("θ₁", fontsize=8, labelpad=1)
            ax.set_ylabel("θ₂", fontsize=8, labelpad=1)
            ax.tick_params(labelsize=7)
    fig.suptitle(
        f"Each optimizer's best learning rate on the ravine (top) and Rosenbrock (bottom); "
        f"green: the loss settles below tol = {tol:g}, red: it does not; ● start, ★ minimum"
    )
    fig.savefig(file, dpi=90)
    plt.close(fig)


def plot_regimes(curves: dict[str, np.ndarray], paths: np.ndarray, lrs, file: Path) -> None:
    """SGD on the ravine for three learning rates: loss against step, and the paths."""
    fig, (ax_loss, ax_path) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    limit = 2 / RAVINE_CURVATURE[1]
    for i, ((label, losses), lr) in enumerate(zip(curves.items(), lrs, strict=True)):
        ax_loss.semilogy(np.arange(losses.size), losses, color=f"C{i}", label=f"{label}, η={lr:g}")
        # The diverging run's later steps would cover the others: its first steps only, below.
        shown = paths[i][:SHOWN_STEPS] if label == "too large" else paths[i]
        ax_path.plot(*shown.T, ".-", ms=3, lw=0.8, color=f"C{i}", label=f"{label}, η={lr:g}")
    start = max(float(c[0]) for c in curves.values())
    # A diverging run would stretch the axis over tens of decades: clip it, and say so.
    ax_loss.set_ylim(top=100 * start)
    ax_loss.set(
        xlabel="SGD step",
        ylabel="loss 0.5 (θ₁² + 25 θ₂²) (log scale, clipped at 100× the start)",
        title=f"SGD on the ravine: stable for η < 2/L = {limit:g}",
    )
    ax_loss.legend(loc="lower left")
    _contours(ax_path, "ravine")
    ax_path.set(
        xlabel="θ₁",
        ylabel="θ₂",
        title=f"the same runs (too large: its first {SHOWN_STEPS} steps) over the contours",
    )
    ax_path.legend(loc="lower right", fontsize=8)
    fig.savefig(file, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the experiment; return (and write) the results dict."""
    cfg = parse_args(argv)
    lrs = np.geomspace(cfg.lr_min, cfg.lr_max, cfg.num_lrs)

    config = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(cfg).items()}
    results: dict[str, Any] = {"config": config, "learning_rates": lrs.tolist()}
    kept: dict[str, dict[str, np.ndarray]] = {key: {} for key in LANDSCAPES}
    for key in LANDSCAPES:
        results[key] = {}
    for name in cfg.optimizers:
        paths = sweep(name, cfg, lrs)
        for key, batch in paths.items():
            losses = losses_along(key, batch)
            best = select(losses, cfg.tol)
            kept[key][name] = batch[best]
            results[key][name] = {
                "learning_rate": float(lrs[best]),
                "final_loss": _finite_or_none(losses[best, -1]),
                "steps_to_tol": steps_to(losses[best], cfg.tol),
                "final_loss_per_lr": [_finite_or_none(v) for v in losses[:, -1]],
            }

    regime_paths = jax.jit(
        jax.vmap(lambda lr: path(jdl.optim.sgd(lr), ravine, LANDSCAPES["ravine"][1], 100))
    )(jnp.asarray(cfg.regimes, jnp.float32))
    regime_losses = losses_along("ravine", np.asarray(regime_paths))
    curves = dict(zip(("too small", "about right", "too large"), regime_losses, strict=True))
    results["lr_regimes"] = {
        label: {
            "learning_rate": lr,
            "final_loss": _finite_or_none(losses[-1]),
            "steps_to_tol": steps_to(losses, cfg.tol),
        }
        for (label, losses), lr in zip(curves.items(), cfg.regimes, strict=True)
    }

    start, steps = LANDSCAPES["ravine"][1], cfg.ravine_steps
    shared = optimizer_claims.shared_rate(path, ravine, start, cfg.shared_lr, steps)
    ada_lr = 0.5
    ada = optimizer_claims.adagrad_steps(
        np.asarray(path(jdl.optim.adagrad(ada_lr), ravine, start, steps)), RAVINE_CURVATURE, ada_lr
    )
    sparse = optimizer_claims.sparse_comparison(lrs, cfg.sparse_steps)
    sparse["learning_rates"] = lrs.tolist()
    at = [t for t in (1, 10, 100, 1000) if t <= steps]
    results["claims"] = {
        "shared_rate": {
            "learning_rate": cfg.shared_lr,
            **{n: {k: v for k, v in r.items() if k != "path"} for n, r in shared.items()},
        },
        "adagrad_effective_step": {
            "learning_rate": ada_lr,
            "at_step": at,
            "flat": [float(ada[t - 1, 0]) for t in at],
            "steep": [float(ada[t - 1, 1]) for t in at],
        },
        "sparse_features": {k: v for k, v in sparse.items() if k != "learning_rates"},
    }

    with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
        claims = folder / f"claims.{cfg.format}"
        optimizer_claims.plot(shared, cfg.shared_lr, ada, ada_lr, sparse, claims)
        plot_paths(kept, results, cfg.tol, folder / f"paths.{cfg.format}")
        regimes = folder / f"lr_regimes.{cfg.format}"
        plot_regimes(curves, np.asarray(regime_paths), cfg.regimes, regimes)
        (folder / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    out = Path(cfg.out)
    for key in LANDSCAPES:
        print(f"{key}: optimizer, learning rate, steps to {cfg.tol:g}, final loss")
        for name, r in results[key].items():
            final = "diverged" if r["final_loss"] is None else f"{r['final_loss']:.3g}"
            print(f"  {name:9s} {r['learning_rate']:9.3g} {r['steps_to_tol']!s:>6} {final}")
    c = results["claims"]
    print(
        f"shared eta = {cfg.shared_lr:g} on the ravine: sign changes of theta_2 while |theta_2| >"
    )
    print("1 % of its start, steps until it stays below, final loss")
    for name in optimizer_claims.SHARED:
        r = c["shared_rate"][name]
        final = "diverged" if r["final_loss"] is None else f"{r['final_loss']:.3g}"
        damped = r["steps_until_amplitude_below_1pct"]
        print(f"  {name:9s} {r['sign_changes']:4d} {damped!s:>6} {final}")
    e = c["adagrad_effective_step"]
    print(f"adagrad (eta {ada_lr:g}) effective step at steps {e['at_step']}:")
    print("  flat  " + " ".join(f"{v:.3g}" for v in e["flat"]))
    print("  steep " + " ".join(f"{v:.3g}" for v in e["steep"]))
    sp = c["sparse_features"]
    print(f"sparse features, MSE after {cfg.sparse_steps} steps at each one's best rate:")
    for name in ("sgd", "adagrad"):
        edge = " (at the grid's edge)" if sp[name]["best_at_grid_edge"] else ""
        print(
            f"  {name:8s} {sp[name]['final_mse']:.4g} at eta {sp[name]['learning_rate']:.3g}{edge}"
        )
    figures = ", ".join(f"{n}.{cfg.format}" for n in ("paths", "lr_regimes", "claims"))
    print(f"wrote {out}/{figures}, results.json")
    return results


if __name__ == "__main__":
    cli.run(main)
