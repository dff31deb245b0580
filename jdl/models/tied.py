"""A dense layer that shares its kernel, transposed, with another dense layer."""

import jax
import jax.numpy as jnp
from flax import nnx


class TiedDense(nnx.Module):
    """Dense layer whose kernel is another layer's kernel transposed: y = W^T x + c.

    Weight sharing as the course's autoencoders use it: the encoder computes W x + b, the
    decoder reuses its matrix, W2 = W1^T, and keeps its own bias c (``nnx.Linear`` stores W
    transposed, as its kernel, so this layer computes ``x @ kernel.T + c``). The layer holds
    a reference to the very same ``nnx.Param`` as ``tied_to``, so ``nnx.split`` stores the
    kernel once and the gradient of a loss with respect to it is the sum of the contributions
    of both uses, dL/dW = dL/dW_enc + (dL/dW_dec)^T.

    Args:
      tied_to: the ``nnx.Linear`` layer mapping n -> m whose kernel (shape (n, m)) is shared;
        this layer maps m -> n.
      use_bias: whether to add the layer's own bias c (shape (n,), initialised to zero).
      rngs: accepted for a uniform constructor signature; the layer draws no random numbers.

    Example:
      >>> enc = nnx.Linear(64, 16, rngs=nnx.Rngs(0))
      >>> dec = TiedDense(enc, rngs=nnx.Rngs(0))
      >>> dec(jnp.zeros((5, 16))).shape
      (5, 64)

    References:
      Vincent et al., "Stacked denoising autoencoders", JMLR 11 (2010), sec. 4.2 (tied weights);
      Goodfellow, Bengio, Courville, "Deep Learning" (2016), sec. 7.9 (parameter sharing).
    """

    def __init__(self, tied_to: nnx.Linear, *, use_bias: bool = True, rngs: nnx.Rngs):
        if not isinstance(tied_to, nnx.Linear):
            raise TypeError(f"tied_to must be an nnx.Linear layer, got {type(tied_to).__name__}")
        del rngs
        self.kernel = tied_to.kernel
        self.in_features = tied_to.out_features
        self.out_features = tied_to.in_features
        self.use_bias = use_bias
        self.bias = (
            nnx.Param(jnp.zeros((self.out_features,), tied_to.kernel[...].dtype))
            if use_bias
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Return x W^T + c for x of shape (..., m)."""
        y = x @ self.kernel[...].T
        if self.bias is not None:
            y = y + jnp.reshape(self.bias[...], (1,) * (y.ndim - 1) + (-1,))
        return y
