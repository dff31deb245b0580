"""MLP autoencoder: encoder h = f(x), decoder r = g(h), optionally with tied weights."""

import itertools
from collections.abc import Callable, Sequence

import jax
from flax import nnx

from jdl.models.tied import TiedDense

Activation = Callable[[jax.Array], jax.Array]


def _check_activation(name: str, value: object, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if not callable(value):
        allowed = "a callable or None (linear)" if allow_none else "a callable"
        raise TypeError(f"{name} must be {allowed}, got {value!r}")


def _apply(act: Activation | None, a: jax.Array) -> jax.Array:
    return a if act is None else act(a)


class Autoencoder(nnx.Module):
    """MLP autoencoder: h = f(x), r = g(h), trained to make r close to x.

    With ``features = (d, n_1, ..., n_k)`` the encoder is
        h_0 = x,  h_l = s(W_l h_{l-1} + b_l)  (l < k),  h = h_k = s_code(W_k h_{k-1} + b_k),
    and the decoder mirrors it,
        r_k = h,  r_{l-1} = s(V_l r_l + c_l)  (l > 1),  x_hat = r_0 = s_out(V_1 r_1 + c_1),
    with V_l = W_l^T when ``tied`` (each decoder layer keeps its own bias c_l); W_l (n_l x
    n_{l-1}) is stored transposed, as the (n_{l-1}, n_l) kernel of ``nnx.Linear``. One hidden
    layer, ``(64, 16)``, is the simplest (undercomplete) autoencoder; ``(64, 32, 16)`` is a
    deep one; ``(64, 128)`` is overcomplete and needs a constraint (sparsity, noise,
    contraction) to learn something other than the identity.

    The encoder layers are ``f`` and the decoder layers ``g`` (the course's h = f(x),
    r = g(h)); in that order ``nnx.split`` meets the encoder first, so a tied kernel is stored
    once, at ``f[l].kernel``.

    Args:
      features: layer sizes from the input to the code, at least two positive integers.
      activation: s, the non-linearity of the hidden layers other than the code (both sides).
      code_activation: s_code, the code's non-linearity; ``None`` for a linear code.
      output_activation: s_out, the reconstruction's non-linearity (``jax.nn.sigmoid`` for
        inputs in [0, 1]); ``None`` for a linear output.
      tied: share W_l between encoder and decoder (decoder uses W_l^T, see ``TiedDense``).
      rngs: the PRNG streams for the initialisation (LeCun normal kernels, zero biases).

    Example:
      >>> ae = Autoencoder((64, 16), rngs=nnx.Rngs(0))
      >>> x = jnp.zeros((8, 64))
      >>> ae.encode(x).shape, ae(x).shape
      ((8, 16), (8, 64))

    References:
      Goodfellow, Bengio, Courville, "Deep Learning" (2016), ch. 14;
      Hinton & Salakhutdinov, "Reducing the dimensionality of data with neural networks",
      Science 313 (2006) (deep autoencoders).
    """

    def __init__(
        self,
        features: Sequence[int],
        *,
        activation: Activation = jax.nn.sigmoid,
        code_activation: Activation | None = jax.nn.sigmoid,
        output_activation: Activation | None = jax.nn.sigmoid,
        tied: bool = False,
        rngs: nnx.Rngs,
    ):
        features = tuple(features)
        if len(features) < 2 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in features
        ):
            raise ValueError(
                "features must be at least two positive integers (input size, ..., code size), "
                f"got {features!r}"
            )
        _check_activation("activation", activation, allow_none=False)
        _check_activation("code_activation", code_activation, allow_none=True)
        _check_activation("output_activation", output_activation, allow_none=True)
        if not isinstance(tied, bool):
            raise TypeError(f"tied must be a bool, got {tied!r}")
        self.features = features
        self.activation = activation
        self.code_activation = code_activation
        self.output_activation = output_activation
        self.tied = tied
        pairs = list(itertools.pairwise(features))
        self.f = nnx.List([nnx.Linear(n_in, n_out, rngs=rngs) for n_in, n_out in pairs])
        if tied:
            self.g = nnx.List([TiedDense(layer, rngs=rngs) for layer in reversed(self.f)])
        else:
            self.g = nnx.List(
                [nnx.Linear(n_out, n_in, rngs=rngs) for n_in, n_out in reversed(pairs)]
            )

    @property
    def code_size(self) -> int:
        """The size of the code h."""
        return self.features[-1]

    def encode(self, x: jax.Array) -> jax.Array:
        """The code h = f(x) for x of shape (..., d); returns shape (..., n_k)."""
        h = x
        last = len(self.f) - 1
        for i, layer in enumerate(self.f):
            h = _apply(self.code_activation if i == last else self.activation, layer(h))
        return h

    def decode_preactivation(self, h: jax.Array) -> jax.Array:
        """The output pre-activation a = V_1 r_1 + c_1 (logits when s_out is the sigmoid)."""
        r = h
        last = len(self.g) - 1
        for i, layer in enumerate(self.g):
            r = layer(r)
            if i < last:
                r = self.activation(r)
        return r

    def decode(self, h: jax.Array) -> jax.Array:
        """The reconstruction x_hat = g(h) = s_out(V_1 r_1 + c_1)."""
        return _apply(self.output_activation, self.decode_preactivation(h))

    def __call__(self, x: jax.Array) -> jax.Array:
        """The reconstruction r = g(f(x))."""
        return self.decode(self.encode(x))
