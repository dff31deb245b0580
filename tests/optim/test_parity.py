"""Parity with the PyTorch references: 100-step float64 trajectories to rtol 1e-9.

The golden trajectories come from tests/golden/make_golden.py (torch 2.13.0, torch-optimizer
0.3.0); these tests need neither. The objective mirrors make_golden.objective.
"""

import inspect
import json
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jdl.optim

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden"
META = json.loads((GOLDEN / "optim_cases.json").read_text())
TRAJECTORIES = np.load(GOLDEN / "optim_trajectories.npz")
RTOL = 1e-9


def objective(params: dict[str, jax.Array]) -> jax.Array:
    """Soft Rosenbrock chain plus log-sum-exp over z = (a.ravel(), b)."""
    z = jnp.concatenate([params["a"].reshape(-1), params["b"]])
    chain = jnp.sum((1 - z[:-1]) ** 2 + 2 * (z[1:] - z[:-1] ** 2) ** 2)
    return chain + jax.nn.logsumexp(z)


def build(spec: dict):
    """(numeric hyper-parameters the reference used, the optimizer's other arguments)."""
    numeric = dict(spec["reference_hyperparameters"])
    other = {}
    learning_rate = spec["kwargs"].get("learning_rate")
    if isinstance(learning_rate, dict):
        del numeric["learning_rate"]
        other["learning_rate"] = jdl.optim.time_constant_decay(
            **learning_rate["time_constant_decay"]
        )
    if "mask" in spec["kwargs"]:
        other["mask"] = spec["kwargs"]["mask"]
    return {k: np.asarray(v) for k, v in numeric.items()}, other


def run(tx: optax.GradientTransformation, params: dict, steps: int) -> dict:
    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(objective)(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    _, path = jax.lax.scan(step, (params, tx.init(params)), length=steps)
    return jax.tree.map(lambda p0, rest: jnp.concatenate([p0[None], rest]), params, path)


# One compiled program per optimizer and non-numeric arguments: cases that differ only in the
# values of their hyper-parameters (passed traced) reuse it.
_PROGRAMS: dict[str, Callable] = {}


def program(name: str, other: dict) -> Callable:
    key = f"{name}/{sorted(other)}/{json.dumps(other.get('mask'))}"
    if key not in _PROGRAMS:
        make = getattr(jdl.optim, name)
        _PROGRAMS[key] = jax.jit(
            lambda numeric, params: run(make(**numeric, **other), params, META["steps"])
        )
    return _PROGRAMS[key]


def test_every_optimizer_has_a_golden_case():
    names = {case["optimizer"] for case in META["cases"].values()}
    aliases = {
        "sgd", "momentum", "nesterov", "adagrad", "adadelta", "adam", "adamax", "nadam",
        "amsgrad", "adamw", "qhm", "qhadam", "aggmo",
    }  # fmt: skip
    assert names == aliases
    assert META["steps"] == 100


def test_defaults_are_the_reference_hyperparameters():
    """The parity runs pass every value explicitly; the defaults equal what the reference used."""
    for case, spec in META["cases"].items():
        signature = inspect.signature(getattr(jdl.optim, spec["optimizer"]))
        for name, used in spec["reference_hyperparameters"].items():
            given = spec["kwargs"].get(name)
            if given is None:
                default = signature.parameters[name].default
                assert np.array_equal(default, used), (case, name)
            elif not isinstance(given, dict):
                assert np.array_equal(given, used), (case, name)


@pytest.mark.parametrize("case", sorted(META["cases"]))
def test_trajectory_matches_reference(case, x64):
    spec = META["cases"][case]
    expected = {k: TRAJECTORIES[f"{case}/{k}"] for k in ("a", "b")}
    params = {k: jnp.asarray(v[0]) for k, v in expected.items()}
    assert params["a"].dtype == jnp.float64
    numeric, other = build(spec)
    path = program(spec["optimizer"], other)(numeric, params)
    for k, v in expected.items():
        np.testing.assert_allclose(np.asarray(path[k]), v, rtol=RTOL, atol=0, err_msg=case)
