"""The MLP module on its own (NNX style) and its argument checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jdl.models import MLP


def test_shapes_activation_and_nnx_modes():
    mlp = MLP((5, 7, 6, 2), activation=jnp.tanh, dropout_rate=0.3, rngs=nnx.Rngs(0))
    x = jnp.ones((4, 5))
    assert [layer.kernel[...].shape for layer in mlp.layers] == [(5, 7), (7, 6), (6, 2)]
    ev = nnx.view(mlp, deterministic=True)(x)
    h = x
    for layer in mlp.layers[:-1]:
        h = jnp.tanh(h @ layer.kernel[...] + layer.bias[None])
    np.testing.assert_allclose(
        ev, h @ mlp.layers[-1].kernel[...] + mlp.layers[-1].bias[None], rtol=1e-6
    )
    # Training mode draws masks from the module's stream, or from an explicit rngs argument.
    assert not np.allclose(mlp(x), ev)
    np.testing.assert_array_equal(mlp(x, rngs=nnx.Rngs(1)), mlp(x, rngs=nnx.Rngs(1)))
    no_dropout = MLP((5, 2), rngs=nnx.Rngs(0))
    assert no_dropout.dropout is None and no_dropout(x).shape == (4, 2)
    assert jax.tree.leaves(nnx.state(no_dropout, nnx.RngState)) == []  # no stream kept


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"features": (5,)}, ValueError, "features"),
        ({"features": (5, 0)}, ValueError, "features"),
        ({"features": (5, 2.0)}, ValueError, "features"),
        ({"features": (5, 2), "dropout_rate": 1.0}, ValueError, "dropout_rate"),
        ({"features": (5, 2), "activation": "relu"}, TypeError, "activation"),
    ],
)
def test_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        MLP(**kwargs, rngs=nnx.Rngs(0))


def test_inputs_of_the_wrong_width_get_a_clear_error():
    mlp = MLP((5, 2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"inputs of shape \(\.\.\., 5\), got \(4, 3\)"):
        mlp(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match=r"got \(4, 3\)"):
        jax.jit(lambda x: mlp(x))(jnp.ones((4, 3)))  # shapes are static: caught under jit too
