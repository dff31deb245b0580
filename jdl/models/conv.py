r"""Convolutional networks, the course's weight sharing: one kernel shared over all positions.

A dense layer from L positions of C channels to L' positions of C' channels has its own weight
for every pair of positions, L C L' C' of them. A convolution ties them: output position i sees
only the K positions of its window, through the same kernel W wherever the window is,

.. math::
    y_{i,c'} = b_{c'} + \sum_{k=0}^{K-1} \sum_{c=1}^{C} W_{k,c,c'}\, \tilde x_{s i + k,\, c},

with stride s and the zero-padded input :math:`\tilde x`, so the layer has K C C' + C'
parameters whatever L is, and a pattern learnt at one position is recognised at every other
(translation equivariance: shifting x by s shifts y by one).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jdl.hyperparams import check_interval


def _per_layer(name: str, value: int | Sequence[int], n: int) -> tuple[int, ...]:
    """One positive int per layer: an int is repeated, a sequence must have one per layer."""
    values = (value,) * n if isinstance(value, int) else tuple(value)
    if len(values) != n or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise ValueError(f"{name} must be a positive int or {n} positive ints, got {value!r}")
    return values


def _pads(padding: int | str, size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Zeros added before and after one spatial axis of ``size`` positions."""
    if padding == "VALID":
        return 0, 0
    if padding == "SAME":  # ceil(size / stride) outputs, the extra zero after, as in XLA
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2
    return padding, padding


class Conv(nnx.Module):
    r"""A convolution over d spatial axes, written as its weight-sharing sum over kernel taps.

    For inputs x of shape (..., L_1, ..., L_d, C), kernel size K = (K_1, ..., K_d) and stride
    s (the same on every axis):

    .. math::
        y_{i,c'} = b_{c'} + \sum_{k \in [0,K_1) \times \cdots \times [0,K_d)}
        \sum_{c=1}^{C} W_{k,c,c'}\, \tilde x_{s i + k,\, c},

    the cross-correlation of every deep-learning library (``lax.conv_general_dilated``,
    ``torch.nn.Conv1d``), :math:`\tilde x` the input zero-padded by ``padding``. Output
    length per axis: :math:`\lfloor (L + p_{lo} + p_{hi} - K) / s \rfloor + 1`.

    The sum is computed literally, one strided slice of :math:`\tilde x` times
    :math:`W_k` per tap k. Under ``jax.vmap`` over parameters (a search, each member its own
    kernel) every tap becomes a batched matrix product; a vmapped ``lax.conv_general_dilated``
    instead becomes a grouped convolution (``feature_group_count`` = members), which XLA's CPU
    backend ran 1.75-1.99x slower in an Adam step of 32 members of the MNIST-1D CNN of
    `ConvNet` (``python -m benchmarks.vmapped_conv``).

    Args:
      in_features: input channels C.
      out_features: output channels C'.
      kernel_size: K_j on every spatial axis; the number of axes d is that of the input.
      strides: s >= 1.
      padding: ``"SAME"`` (ceil(L / s) outputs), ``"VALID"`` (no padding) or an int p >= 0 of
        zeros on both sides of every axis.
      rngs: ``params`` stream of the initialisation: W LeCun normal with fan-in
        prod(K) C (variance 1 / fan-in), b = 0.

    Example::

      >>> conv = Conv(1, 8, 5, strides=2, padding=1, rngs=nnx.Rngs(0))
      >>> conv(jnp.zeros((3, 40, 1))).shape
      (3, 19, 8)

    References:
      Y. LeCun et al., "Backpropagation Applied to Handwritten Zip Code Recognition", Neural
      Computation 1 (1989); Goodfellow, Bengio & Courville, Deep Learning, 2016, section 9.2
      (parameter sharing).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        *,
        strides: int = 1,
        padding: int | str = "SAME",
        spatial_dims: int = 1,
        rngs: nnx.Rngs,
    ):
        for name, v in (
            ("in_features", in_features),
            ("out_features", out_features),
            ("kernel_size", kernel_size),
            ("strides", strides),
            ("spatial_dims", spatial_dims),
        ):
            _per_layer(name, v, 1)
        if padding not in ("SAME", "VALID") and not (
            isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0
        ):
            raise ValueError(f'padding must be "SAME", "VALID" or an int >= 0, got {padding!r}')
        self.kernel_size, self.strides, self.padding = kernel_size, strides, padding
        shape = (kernel_size,) * spatial_dims + (in_features, out_features)
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((out_features,)))

    def output_shape(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """The output's spatial shape for an input of spatial shape ``spatial``."""
        k, s = self.kernel_size, self.strides
        return tuple((n + sum(_pads(self.padding, n, k, s)) - k) // s + 1 for n in spatial)

    def __call__(self, x: jax.Array) -> jax.Array:
        """y of shape (..., L'_1, ..., L'_d, C') for x of shape (..., L_1, ..., L_d, C)."""
        kernel = self.kernel[...]
        d = kernel.ndim - 2
        if x.ndim < d + 1 or x.shape[-1] != kernel.shape[-2]:
            raise ValueError(
                f"Conv expects inputs of shape (..., {d} spatial axes, {kernel.shape[-2]}), "
                f"got {tuple(x.shape)}"
            )
        spatial = x.shape[-d - 1 : -1]
        out = self.output_shape(spatial)
        if min(out) < 1:
            raise ValueError(f"Conv: input positions {spatial} are fewer than the kernel's")
        k, s = self.kernel_size, self.strides
        pads = [(0, 0)] * (x.ndim - d - 1)
        pads += [_pads(self.padding, n, k, s) for n in spatial] + [(0, 0)]
        x = jnp.pad(x, pads)
        batch = (slice(None),) * (x.ndim - d - 1)
        taps = itertools.product(*(range(n) for n in kernel.shape[:d]))
        y = sum(
            x[(*batch, *(slice(t, t + s * (n - 1) + 1, s) for t, n in zip(tap, out, strict=True)))]
            @ kernel[tap]
            for tap in taps
        )
        return y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,))


class ConvNet(nnx.Module):
    r"""Convolution blocks, then a dense head: a small CNN for 1-D signals or 2-D images.

    With ``input_shape = (L_1, ..., L_d, C_0)`` and ``channels = (C_1, ..., C_n)``:

    .. math::
        h_0 = x, \qquad h_l = \text{drop}(\text{pool}(s(\text{norm}(\text{Conv}_l(h_{l-1}))))),
        \qquad y = \text{MLP}(\text{flatten}(h_n)),

    each :math:`\text{Conv}_l` a `Conv` (one kernel shared over positions); ``pool`` a max or
    mean over non-overlapping windows of ``pool_size`` positions per axis (trailing positions
    that fill no window are dropped; 1: none); ``norm`` an optional BatchNorm; the head affine
    layers of sizes ``(*hidden, num_outputs)`` with s and dropout between them, a linear output.
    Flat inputs of shape (N, L_1 ... L_d C_0), as `jdl.data.digits` and `jdl.data.mnist1d` give
    them, are reshaped to (N, L_1, ..., L_d, C_0).

    Parameters: :math:`\sum_l (K_l^d C_{l-1} C_l + C_l)` in the convolutions (independent of
    the input's length), plus the head's. The MNIST-1D reference CNN,
    ``ConvNet((40, 1), (25, 25, 25), 10, kernel_size=(5, 3, 3), strides=2, padding=1)``, has
    150 + 1900 + 1900 + (125 * 10 + 10) = 5210.

    BatchNorm (``batch_norm=True``, off by default) gives the model state beyond its
    parameters (running statistics): split it with `jdl.models.stateful` (which carries them),
    not `jdl.models.functional` (which refuses ``nnx.BatchStat`` variables). Each convolution
    keeps its bias, which BatchNorm's mean subtraction cancels: its gradient is rounding noise,
    which Adam's normalisation turns into steps of the learning rate's size.

    Args:
      input_shape: (L_1, ..., L_d, C_0): d >= 1 spatial axes and the input channels.
      channels: output channels of each convolution, at least one.
      num_outputs: size of the linear output (classes for logits).
      kernel_size: K_l, one int for all layers or one per layer.
      strides: s_l, one int for all layers or one per layer.
      padding: `Conv`'s padding of every layer.
      pool_size: the pooling window per axis after every block (1: no pooling).
      pool: ``"max"`` or ``"avg"``.
      hidden: the head's hidden layer sizes.
      activation: s.
      dropout_rate: p in [0, 1) after each block and each hidden layer (0: none).
      batch_norm: BatchNorm between each convolution and s (see above).
      rngs: ``params`` for the initialisation, ``dropout`` for the masks when called without
        an ``rngs`` argument.

    Example::

      >>> cnn = ConvNet((8, 8, 1), (8, 16), 10, pool_size=2, rngs=nnx.Rngs(0))
      >>> cnn(jnp.zeros((5, 64))).shape
      (5, 10)

    References:
      Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-Based Learning Applied to Document
      Recognition", Proc. IEEE 86 (1998); S. Ioffe, C. Szegedy, "Batch Normalization", ICML
      2015; S. Greydanus, D. Kobak, "Scaling Down Deep Learning with MNIST-1D", ICML 2024.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int],
        num_outputs: int,
        *,
        kernel_size: int | Sequence[int] = 3,
        strides: int | Sequence[int] = 1,
        padding: int | str = "SAME",
        pool_size: int = 1,
        pool: str = "max",
        hidden: Sequence[int] = (),
        activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
        dropout_rate: float = 0.0,
        batch_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        self.input_shape = tuple(input_shape)
        if len(self.input_shape) < 2:
            raise ValueError(
                "input_shape must be (spatial axes..., channels), e.g. (40, 1) or (8, 8, 1), "
                f"got {input_shape!r}"
            )
        _per_layer("input_shape", self.input_shape, len(self.input_shape))
        channels = tuple(channels)
        if not channels:
            raise ValueError("channels must list at least one convolution's output channels")
        _per_layer("channels", channels, len(channels))
        _per_layer("num_outputs", num_outputs, 1)
        hidden = tuple(hidden)
        if hidden:
            _per_layer("hidden", hidden, len(hidden))
        kernels = _per_layer("kernel_size", kernel_size, len(channels))
        steps = _per_layer("strides", strides, len(channels))
        _per_layer("pool_size", pool_size, 1)
        if pool not in ("max", "avg"):
            raise ValueError(f'pool must be "max" or "avg", got {pool!r}')
        if not callable(activation):
            raise TypeError(f"activation must be callable, got {activation!r}")
        check_interval("dropout_rate", dropout_rate, 0.0, 1.0)
        d = len(self.input_shape) - 1
        self.activation, self.pool_size, self.pool = activation, pool_size, pool
        convs, norms, spatial = [], [], self.input_shape[:-1]
        for c_in, c_out, k, s in zip(
            (self.input_shape[-1], *channels[:-1]), channels, kernels, steps, strict=True
        ):
            conv = Conv(c_in, c_out, k, strides=s, padding=padding, spatial_dims=d, rngs=rngs)
            spatial = tuple(n // pool_size for n in conv.output_shape(spatial))
            if min(spatial) < 1:
                raise ValueError(
                    f"ConvNet: input_shape {self.input_shape} is too small for the layers "
                    f"(kernel_size, strides, pool_size): a layer has no output positions"
                )
            convs.append(conv)
            if batch_norm:
                norms.append(nnx.BatchNorm(c_out, rngs=rngs))
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms) if batch_norm else None
        sizes = (math.prod(spatial) * channels[-1], *hidden, num_outputs)
        self.head = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs) if dropout_rate > 0 else None

    def _pool(self, h: jax.Array) -> jax.Array:
        if self.pool_size == 1:
            return h
        window = (self.pool_size,) * (len(self.input_shape) - 1)
        pool = nnx.max_pool if self.pool == "max" else nnx.avg_pool
        return pool(h, window, strides=window)

    def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        """The outputs (N, num_outputs) for x of shape (N, *input_shape) or flat (N, size);
        ``rngs`` overrides the dropout stream."""
        size = math.prod(self.input_shape)
        if x.ndim == 2 and x.shape[1] == size:
            x = x.reshape(x.shape[0], *self.input_shape)
        if x.shape[1:] != self.input_shape:
            raise ValueError(
                f"ConvNet expects inputs of shape (N, {', '.join(map(str, self.input_shape))}) "
                f"or (N, {size}), got {tuple(x.shape)}"
            )
        h = x
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if self.norms is not None:
                h = self.norms[i](h)
            h = self._pool(self.activation(h))
            if self.dropout is not None:
                h = self.dropout(h, rngs=rngs)
        h = h.reshape(h.shape[0], -1)
        for layer in self.head[:-1]:
            h = self.activation(layer(h))
            if self.dropout is not None:
                h = self.dropout(h, rngs=rngs)
        return self.head[-1](h)
