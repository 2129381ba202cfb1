"""The slides' convolutional classifier and the reference benchmark CNN, as Flax NNX modules.

Data contract: inputs are float32 images ``[N, H, W, C]`` (NHWC, Keras' and Flax's layout; PyTorch
uses NCHW); outputs are ``[N, units]`` after the last-layer activation of the task table
(`fnn.losses.for_task`): softmax for multiclass, sigmoid for binary/multilabel, none (logits or
raw values) when ``output_activation=None``. Convolutions are `fnn.conv.Conv` (the same
parameters as `flax.nnx.Conv`, with a backward pass that stays fast inside `jax.lax.scan` on
CPU), so ``steps_per_execution`` is fast; pools are `fnn.pool.max_pool` (Flax's numbers, a
backward pass without XLA:CPU's slow select-and-scatter).

A convolution layer computes, per output position and channel ``o``::

    y[i, j, o] = b[o] + Σ_{u, v, c} W[u, v, c, o] · x[i + u, j + v, c]

(``W`` is the ``kernel`` ``[kh, kw, C, O]`` and ``b`` the ``bias``, "same" zero padding); a
pooling layer keeps the max (or mean) of each 2×2 window, halving H and W; a dense layer is
``y = W x + b``. Mode: ``model.train()`` turns Dropout on and lets BatchNorm update its running
statistics; ``model.eval()`` turns both to inference (`fnn.train` does this per step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
from flax import nnx

from fnn import pool as pooling
from fnn.conv import Conv  # nnx.Conv's parameters, a backward pass fast inside compiled loops
from fnn.layers import BatchNorm  # nnx.BatchNorm's numbers, traced in linear time

__all__ = ["SimpleCNN", "ReferenceCNN"]


def _output_activation(output_activation, task: str) -> Callable:
    from fnn import activations, losses

    if output_activation == "auto":
        output_activation = losses.for_task(task).activation
    return activations.get(output_activation)


def _units(num_classes: int, task: str) -> int:
    from fnn import losses

    task = losses.for_task(task).task
    if task == "binary":
        if num_classes not in (1, 2):
            raise ValueError(
                f"task='binary' has one sigmoid output unit; num_classes must be 1 or 2, got "
                f"{num_classes}"
            )
        return 1
    return num_classes


def _check_shape(input_shape) -> tuple[int, int, int]:
    if len(tuple(input_shape)) != 3 or any(int(d) < 1 for d in input_shape):
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    return tuple(int(d) for d in input_shape)


class SimpleCNN(nnx.Module):
    """The slides' CNN: [conv → (BatchNorm) → activation → pool] × n → flatten → dense → output.

    Each block ``b`` has ``filters[b]`` 3×3 "same" convolutions (``convs_per_block`` of them), then
    a 2×2 max (or average) pool; the flattened features go through the ``dense`` hidden layers
    (with Dropout before each dense layer when ``dropout > 0``) and a last dense layer of
    ``num_classes`` units (1 for ``task="binary"``) with the task's activation. Keras equivalent:
    ``Sequential([Conv2D(32, 3, padding="same", activation="relu"), MaxPooling2D(), ...,
    Flatten(), Dense(128, "relu"), Dense(10, "softmax")])``.

    Args:
      num_classes: number of classes (output units).
      input_shape: ``(H, W, C)`` of one image (needed to size the first dense layer).
      filters: output channels of each block's convolutions.
      dense: widths of the hidden dense layers.
      kernel_size: convolution window.
      convs_per_block: convolutions before each pool.
      pool: ``"max"`` or ``"avg"``.
      batch_norm: BatchNorm after every convolution (before the activation).
      dropout: Dropout rate before every dense layer (0 disables).
      activation: hidden activation, a name for `fnn.activations.get` or a callable.
      task: a row of the slides' last-layer table (`fnn.losses.for_task`): ``"multiclass"``,
        ``"binary"``, ``"multilabel"``, ``"regression"``, ``"regression_0_1"``.
      output_activation: ``"auto"`` (the task's), ``None`` for logits (pair with
        ``from_logits=True``), or a name/callable.
      rngs: `flax.nnx.Rngs` for the initial weights and Dropout.

    Shapes: ``[N, H, W, C]`` → ``[N, units]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = SimpleCNN(10, input_shape=(8, 8, 1), filters=(8, 16), dense=(32,), rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((2, 8, 8, 1))).shape
      (2, 10)
    """

    def __init__(
        self,
        num_classes: int,
        *,
        input_shape: Sequence[int],
        filters: Sequence[int] = (32, 64),
        dense: Sequence[int] = (128,),
        kernel_size: int = 3,
        convs_per_block: int = 1,
        pool: str = "max",
        batch_norm: bool = False,
        dropout: float = 0.0,
        activation: str | Callable = "relu",
        task: str = "multiclass",
        output_activation="auto",
        rngs: nnx.Rngs,
    ):
        from fnn import activations

        h, w, c = _check_shape(input_shape)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a rate in [0, 1), got {dropout}")
        if convs_per_block < 1:
            raise ValueError(f"convs_per_block must be >= 1, got {convs_per_block}")
        if h >> len(filters) < 1 or w >> len(filters) < 1:
            raise ValueError(
                f"input_shape {input_shape} is too small for {len(filters)} 2x2 pools (each halves "
                f"H and W); use fewer blocks in filters"
            )
        self.activation = activations.get(activation)
        self.output_activation = _output_activation(output_activation, task)
        self.pool = pool
        convs, norms = [], []
        cin = c
        for f in filters:
            for _ in range(convs_per_block):
                convs.append(
                    Conv(cin, int(f), (kernel_size, kernel_size), padding="SAME", rngs=rngs)
                )
                norms.append(BatchNorm(int(f), rngs=rngs) if batch_norm else None)
                cin = int(f)
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        self.convs_per_block = convs_per_block
        flat = (h >> len(filters)) * (w >> len(filters)) * cin
        widths = [flat, *[int(d) for d in dense], _units(num_classes, task)]
        self.denses = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])]
        )
        self.dropouts = nnx.List(
            [nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None for _ in widths[1:]]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        pool = pooling.max_pool if self.pool == "max" else pooling.avg_pool
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = conv(x)
            if norm is not None:
                x = norm(x)
            x = self.activation(x)
            if (i + 1) % self.convs_per_block == 0:
                x = pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for j, (layer, drop) in enumerate(zip(self.denses, self.dropouts)):
            if drop is not None:
                x = drop(x)
            x = layer(x)
            if j < len(self.denses) - 1:
                x = self.activation(x)
        return self.output_activation(x)


class ReferenceCNN(nnx.Module):
    """DESIGN.md's benchmark workload: Conv32-Conv32-Pool-Conv64-Conv64-Pool-Dense256-Dense10.

    3×3 "same" convolutions with ReLU, 2×2 max pools, on ``[N, 32, 32, 3]`` inputs; about 51
    MFLOP per image forward (153 MFLOP per train step). Returns logits by default (train with
    ``sparse_categorical_crossentropy`` and ``from_logits=True``, as the softmax cross-entropy of
    Optax and PyTorch's ``CrossEntropyLoss`` expect); ``output_activation="softmax"`` gives Keras'
    ``Dense(10, activation="softmax")``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = nnx.eval_shape(lambda: ReferenceCNN(rngs=nnx.Rngs(0)))  # shapes only
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((1, 32, 32, 3))).shape
      (1, 10)
    """

    def __init__(
        self,
        num_classes: int = 10,
        *,
        input_shape: Sequence[int] = (32, 32, 3),
        output_activation=None,
        rngs: nnx.Rngs,
    ):
        from fnn import activations

        h, w, c = _check_shape(input_shape)
        if h % 4 or w % 4:
            raise ValueError(
                f"input_shape height and width must be multiples of 4, got {input_shape}"
            )
        self.conv1 = Conv(c, 32, (3, 3), padding="SAME", rngs=rngs)
        self.conv2 = Conv(32, 32, (3, 3), padding="SAME", rngs=rngs)
        self.conv3 = Conv(32, 64, (3, 3), padding="SAME", rngs=rngs)
        self.conv4 = Conv(64, 64, (3, 3), padding="SAME", rngs=rngs)
        self.dense1 = nnx.Linear((h // 4) * (w // 4) * 64, 256, rngs=rngs)
        self.dense2 = nnx.Linear(256, num_classes, rngs=rngs)
        self.output_activation = activations.get(output_activation)

    def __call__(self, x: jax.Array) -> jax.Array:
        relu = jax.nn.relu
        x = relu(self.conv2(relu(self.conv1(x))))
        x = pooling.max_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = relu(self.conv4(relu(self.conv3(x))))
        x = pooling.max_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = relu(self.dense1(x.reshape(x.shape[0], -1)))
        return self.output_activation(self.dense2(x))
