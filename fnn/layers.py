"""Flax NNX layers from the lecture: `Maxout` here, and the augmentation layers (`RandomFlip`,
`RandomRotation`, ...) re-exported from `fnn.augment`.

Data contract: layers take batched arrays whose last axis holds the features (``[N, D]``, or
``[N, H, W, C]`` for images, NHWC) and are Flax NNX modules (``rngs=nnx.Rngs(seed)`` at
construction).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fnn.activations import maxout

__all__ = ["Maxout"]


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
