"""jdl.search.sharding: 4 simulated CPU devices give the single-device results, padding dropped:
bit for bit against one device training one configuration at a time, to float tolerance against
one device training the whole population at once."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jdl.search import initialize_distributed
from jdl.search.sharding import pad_members, padded_size

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from tests.search.conftest import *
    from jdl.search import population
    assert len(jax.devices()) == 4
    s = digits()
    train, val = Dataset(s.train.x[:240], s.train.y[:240]), Dataset(s.val.x[:100], s.val.y[:100])
    pop = population({"learning_rate": [0.05, 0.3, 1e4]}, seeds=[0, 1])  # 3 pads to 4
    out = {}
    for d, name in ((4, "4"), (1, "1"), (1, "all")):
        search = Search(init_fn, sgd_factory, loss_fn=loss_fn, eval_fn=eval_fn, batch_size=32,
                        eval_every=CHUNK, early_stopping=ES, devices=d)
        state = search.init(pop, train, val)
        leaf = jax.tree.leaves(state.train.params)[0]
        out[f"shards{name}"] = len({sh.device for sh in leaf.addressable_shards})
        out[f"shard_shape{name}"] = leaf.addressable_shards[0].data.shape[:2]
        # "1": one device, a member slice at a time: the program each of the 4 devices runs;
        # "all": one device, the whole population at once.
        r = search.run(pop, train, val, steps=STEPS, test=val,
                       members_per_chunk=1 if name == "1" else None)
        for k, v in r.history.items():
            out[f"{k}{name}"] = v
        out[f"steps{name}"], out[f"diverged{name}"] = r.steps, r.diverged
        out[f"best_val_loss{name}"] = r.best_val_loss
        out[f"test_accuracy{name}"] = r.best["test_accuracy"]
        flat = [x.reshape(2, 3, -1) for x in jax.tree.leaves(r.params)]
        out[f"params{name}"] = np.concatenate(flat, 2)
    # ASHA refills 3 slots of a population padded to 4 devices as it does on one device.
    from jdl.search.asha import asha
    from jdl.search.samplers import Sampler, log_uniform
    for d in (4, 1):
        search = Search(init_fn, sgd_factory, loss_fn=loss_fn, eval_fn=eval_fn, batch_size=32,
                        eval_every=CHUNK, early_stopping=ES, devices=d)
        found = asha(search, Sampler({"learning_rate": log_uniform(1e-3, 1.0)}, seed=0), train,
                     val, num_slots=3, budget=2 * 3 * 6 * CHUNK, min_steps=CHUNK, eta=2,
                     seeds=[0, 1], progress=False)
        out[f"asha_steps{d}"] = [t["steps"] for t in found.trials]
        out[f"asha_scores{d}"] = [np.nan if t["score"] is None else t["score"]
                                  for t in found.trials]
    np.savez(OUT, **out)
    """
)


def test_four_devices_equal_one(tmp_path):
    out = tmp_path / "out.npz"
    # XLA's default options on every layout (jdl.search.compiled.compiler_options would give
    # the one device Eigen's products on a 2-core host, rounding differently from the four).
    env = dict(
        os.environ,
        XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        JDL_XLA_DEFAULTS="1",
    )
    code = f"OUT = {str(out)!r}\n" + SCRIPT
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = np.load(out)
    assert (r["shards4"], r["shards1"]) == (4, 1)
    assert tuple(r["shard_shape4"]) == (2, 1) and tuple(r["shard_shape1"]) == (2, 3)
    # Bit for bit: each device trains its members as one device trains a slice of them.
    assert r["val_loss4"].shape == (3, 2, 3)  # chunks, seeds, configurations: padding dropped
    assert r["diverged4"][:, 2].all() and not r["diverged4"][:, :2].any()
    for name in (
        "val_loss",
        "train_loss",
        "steps",
        "diverged",
        "best_val_loss",
        "test_accuracy",
        "params",
    ):
        np.testing.assert_array_equal(r[name + "4"], r[name + "1"], err_msg=name)
    # One device training the whole population at once batches the members' matrix products
    # differently: the same steps and flags, and the members that train (not the diverged one,
    # whose last steps amplify any rounding) equal to float tolerance.
    for name in ("steps", "diverged"):
        np.testing.assert_array_equal(r[name + "4"], r[name + "all"], err_msg=name)
    for name in ("val_loss", "train_loss", "best_val_loss", "params"):
        a, b = r[name + "4"][..., :2], r[name + "all"][..., :2]
        if name == "params":
            a, b = r["params4"][:, :2], r["paramsall"][:, :2]
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    print("largest difference:", np.max(np.abs(r["params4"][:, :2] - r["paramsall"][:, :2])))
    assert len(r["asha_steps4"]) > 3  # slots were refilled
    np.testing.assert_array_equal(r["asha_steps4"], r["asha_steps1"])
    np.testing.assert_allclose(r["asha_scores4"], r["asha_scores1"], rtol=1e-5)


def test_padding_and_distributed_arguments():
    assert [padded_size(n, 4) for n in (1, 4, 5, 8)] == [4, 4, 8, 8]
    padded = pad_members({"a": np.arange(6.0).reshape(2, 3)}, 4, axis=1)["a"]
    np.testing.assert_array_equal(padded, [[0, 1, 2, 2], [3, 4, 5, 5]])
    with pytest.raises(ValueError, match="together"):
        initialize_distributed("localhost:1234")
    with pytest.raises(ValueError, match="process_id must be in"):
        initialize_distributed("localhost:1234", num_processes=2, process_id=2)


def test_compiler_options_give_eigen_products_only_to_a_device_with_several_cores(monkeypatch):
    """One CPU device (this process's) on a host of 2 cores: Eigen's products, which round as
    XLA's default products do to float tolerance; 1 core, or JDL_XLA_DEFAULTS=1: defaults."""
    import jax
    import jax.numpy as jnp

    from jdl.search.compiled import compiler_options

    device = jax.devices()
    monkeypatch.delenv("JDL_XLA_DEFAULTS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    options = compiler_options(device)
    assert options == {"xla_cpu_experimental_ynn_fusion_type": ""}
    h = jax.random.normal(jax.random.key(0), (8, 32, 48))
    w = jax.random.normal(jax.random.key(1), (8, 48, 16))
    lowered = jax.jit(lambda a, b: jnp.einsum("mbi,mij->mbj", a, b)).lower(h, w)
    eigen = lowered.compile(compiler_options=options)
    assert "ynn" not in eigen.as_text()
    np.testing.assert_allclose(eigen(h, w), lowered.compile()(h, w), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert compiler_options(device) == {}
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setenv("JDL_XLA_DEFAULTS", "1")
    assert compiler_options(device) == {}
    assert compiler_options([]) == {}
    monkeypatch.setenv("JDL_XLA_DEFAULTS", "maybe")
    with pytest.raises(
        ValueError, match=r"\$JDL_XLA_DEFAULTS must be 1 or 0 \(or unset\), got 'maybe'"
    ):
        compiler_options(device)
