"""Flax NNX layers from the lecture: `Maxout` and `BatchNorm` here, and the augmentation layers
(`RandomFlip`, `RandomRotation`, ...) re-exported from `fnn.augment`.

Data contract: layers take batched arrays whose last axis holds the features (``[N, D]``, or
``[N, H, W, C]`` for images, NHWC) and are Flax NNX modules (``rngs=nnx.Rngs(seed)`` at
construction).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import normalization as _flax_normalization

from fnn.activations import maxout

__all__ = ["BatchNorm", "Maxout"]


class Maxout(nnx.Module):
    r"""The slide's Maxout unit, :math:`\max(w_1^\top x + b_1, w_2^\top x + b_2)`, generalised to
    :math:`k` pieces: output :math:`j` is :math:`\max_{i < k} (w_{jk+i}^\top x + b_{jk+i})`.

    One `flax.nnx.Linear` maps ``in_features`` to ``out_features * pieces`` pre-activations, then
    `fnn.activations.maxout` keeps the max of each contiguous group of ``pieces``. With
    :math:`k = 2` and :math:`w_1 = 0, b_1 = 0` it is a ReLU; with :math:`w_1 = 0.1 w_2` a Leaky
    ReLU: it generalises both and never saturates or dies, at :math:`k` times the parameters
    (the slide's trade-off). Keras 3 and PyTorch have no Maxout layer; TensorFlow Addons'
    ``Maxout(num_units)`` is the activation only (no Dense), with the same contiguous grouping.

    Args:
        in_features: input feature size :math:`D`.
        out_features: number of maxout units :math:`M`.
        pieces: linear pieces per unit :math:`k \ge 1` (2 on the slide).
        use_bias: learn the biases :math:`b`.
        rngs: `flax.nnx.Rngs` for the initialisers.
        **linear_kwargs: passed on to `flax.nnx.Linear` (``kernel_init``, ``dtype``, ...).

    Attributes:
        linear: the `flax.nnx.Linear` with kernel ``[D, M * k]``; columns ``j*k .. j*k+k-1``
            belong to unit ``j``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> layer = Maxout(3, 4, pieces=2, rngs=nnx.Rngs(0))
        >>> layer(jnp.ones((5, 3))).shape
        (5, 4)

    References:
        Goodfellow et al., `Maxout Networks <https://arxiv.org/abs/1302.4389>`_, ICML 2013
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        pieces: int = 2,
        *,
        use_bias: bool = True,
        rngs: nnx.Rngs,
        **linear_kwargs,
    ):
        for name, value in (
            ("in_features", in_features),
            ("out_features", out_features),
            ("pieces", pieces),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Maxout: {name} must be an integer >= 1, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.pieces = pieces
        self.linear = nnx.Linear(
            in_features, out_features * pieces, use_bias=use_bias, rngs=rngs, **linear_kwargs
        )

    def __call__(self, x: jax.typing.ArrayLike) -> jax.Array:
        """Apply the layer.

        Args:
            x: ``[..., in_features]``.

        Returns:
            ``[..., out_features]``.
        """
        x = jnp.asarray(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Maxout: x must have a last axis of in_features={self.in_features}, got shape "
                f"{x.shape}"
            )
        return maxout(self.linear(x), self.pieces, axis=-1)


class BatchNorm(nnx.BatchNorm):
    r"""`flax.nnx.BatchNorm` (same arguments, parameters, statistics and numbers) whose running
    statistics update does not make tracing quadratic in the network's depth.

    The slide's batch normalisation: :math:`\hat x = (x - \mu_B) / \sqrt{\sigma_B^2 + \epsilon}`,
    :math:`y = \gamma \hat x + \beta`, with :math:`\mu_B, \sigma_B^2` over every axis but the
    features in training and the running averages
    :math:`\mu \leftarrow m \mu + (1 - m) \mu_B` (same for :math:`\sigma^2`) in inference.
    ``momentum`` :math:`m` is the kept fraction, as in Keras and Flax (0.99 by default); PyTorch's
    ``momentum`` is :math:`1 - m` (0.1), and PyTorch keeps the *unbiased* batch variance in its
    running average where Keras and Flax keep the biased one (fnn too).

    Why not `flax.nnx.BatchNorm` itself: it writes its statistics with ``variable[...] = value``;
    under `jax.jit` that asks the traced value for its ``sharding``, and JAX answers with an
    error whose message walks the whole trace so far (``find_progenitors``): two walks per layer,
    so tracing a network costs time quadratic in its depth (Flax 0.12.8 with jax 0.10; 0.12.12
    has the same code). This layer stores the new statistics with
    `flax.nnx.Variable.set_value`, which replaces the value without that check; everything else
    is Flax's (``_compute_stats``, ``_normalize``), so values, gradients, the state tree and
    checkpoints are those of `flax.nnx.BatchNorm` (`isinstance` of it holds). Train-step trace,
    CPU seconds: DenseNet121 12.8–14.9 → 6.0–7.3, EfficientNet-Lite0 4.1 → 3.3 (BENCHMARKS.md).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> bn = BatchNorm(3, rngs=nnx.Rngs(0))
        >>> x = jnp.arange(12.0).reshape(4, 3)
        >>> y = bn(x)  # training mode: normalised with the batch's statistics
        >>> bool(jnp.abs(y.mean(axis=0)).max() < 1e-6), bool(jnp.abs(y.std(axis=0) - 1).max() < 1e-3)
        (True, True)
        >>> [round(float(v), 4) for v in bn.mean[...]]  # 0.99 * 0 + 0.01 * the batch mean
        [0.045, 0.055, 0.065]
    """

    def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
        """Normalise ``x`` (features on ``axis``, the last by default); in training also update
        the running statistics. ``use_running_average`` overrides the constructor's (or
        `flax.nnx.Module.eval`'s) setting, as in `flax.nnx.BatchNorm`."""
        if use_running_average is None:
            use_running_average = self.use_running_average
        if use_running_average is None:
            raise ValueError(
                "BatchNorm: use_running_average must be True or False (pass it to the "
                "constructor or the call, or use model.eval() / model.train()), got None"
            )
        norm = _flax_normalization
        feature_axes = norm._canonicalize_axes(x.ndim, self.axis)
        reduction_axes = tuple(i for i in range(x.ndim) if i not in feature_axes)
        scale = self.scale[...] if self.scale is not None else None
        bias = self.bias[...] if self.bias is not None else None
        x, mean, var, scale, bias = self.promote_dtype(
            (x, self.mean[...], self.var[...], scale, bias), dtype=self.dtype
        )
        if not use_running_average:
            mean, var = norm._compute_stats(
                x,
                reduction_axes,
                dtype=self.dtype,
                axis_name=self.axis_name,
                axis_index_groups=self.axis_index_groups,
                use_fast_variance=self.use_fast_variance,
                mask=mask,
            )
            keep = self.mean._can_update or self.var._can_update  # Flax's array refs
            stop = jax.lax.stop_gradient if keep else (lambda v: v)
            m = self.momentum
            self.mean.set_value(stop(m * self.mean[...] + (1 - m) * mean))
            self.var.set_value(stop(m * self.var[...] + (1 - m) * var))
        return norm._normalize(
            x,
            mean,
            var,
            scale,
            bias,
            reduction_axes,
            feature_axes,
            self.dtype,
            self.epsilon,
        )


from fnn.augment import (  # noqa: E402  (re-export; the augmentation layers live in fnn.augment)
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)

__all__ += [
    "RandomBrightness", "RandomContrast", "RandomCrop", "RandomFlip", "RandomRotation",
    "RandomTranslation", "RandomZoom",
]  # fmt: skip
