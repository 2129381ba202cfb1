"""VGG16 and VGG19 in Flax NNX, laid out to load torchvision's weights (``vgg16``, ``vgg19``).

Data contract: float NHWC images ``[N, H, W, 3]`` (H, W >= 32) normalised with ImageNet's mean
and std (torchvision's evaluation transform, `fnn.preprocessing`); logits ``[N, num_classes]``.

Architecture (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", 2014, configurations D and E, as torchvision's ``vgg16``/``vgg19`` without BN): five
blocks of 3x3 convolutions (padding 1, bias, ReLU) with 64, 128, 256, 512, 512 channels (2-2-3-3-3
convs for VGG16, 2-2-4-4-4 for VGG19), each followed by a 2x2 stride-2 max pool; adaptive average
pooling to 7x7 (PyTorch's ``adaptive_avg_pool2d``; the identity at 224x224); flatten; dense 4096,
ReLU, dropout 0.5, dense 4096, ReLU, dropout 0.5, dense ``num_classes``. torchvision flattens NCHW
(channel-major) and fnn NHWC, so the first dense kernel's rows are permuted on import. Keras'
``VGG16`` has the same layers but caffe preprocessing (BGR, mean subtraction, no std) and flattens
without the adaptive pool (224x224 only with the top).
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from fnn import pool as pooling
from fnn.conv import Conv  # nnx.Conv's parameters, a faster kernel gradient on CPU
from fnn.models import _zoo_common as common
from fnn.models.zoo_spec import LAYOUTS, ModelSpec, convert_named, torchvision_preprocess

__all__ = ["SPECS", "VGG"]

CONFIGS = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
CHANNELS = (64, 128, 256, 512, 512)
POOLED = (7, 7)
FEATURE_REDUCTIONS = (2, 4, 8, 16, 32)


class VGG(nnx.Module):
    """VGG16 / VGG19 (torchvision layout, no BatchNorm), NHWC; the top as ``keras.applications``.

    ``y = softmax?(W3 · drop(ReLU(W2 · drop(ReLU(W1 · flatten(pool7x7(blocks(x))))))))``.

    Args:
      depth: 16 or 19.
      num_classes: classifier outputs, used with ``include_top``.
      include_top: the 7x7 pooling + three dense layers; False returns the last ``[N, h, w,
        512]`` map (after the fifth max pool), or ``[N, 512]`` with ``pooling``.
      pooling: None, ``"avg"`` or ``"max"`` for ``include_top=False``.
      classifier_activation: None (logits) or ``"softmax"``.
      features: return the maps after each of the five max pools (strides 2, 4, 8, 16, 32;
        channels 64, 128, 256, 512, 512); no classifier. timm's VGG reports the maps before
        each pool instead (strides 1 .. 16).
      dropout_rate: in the classifier (torchvision: 0.5).
      rngs: `flax.nnx.Rngs` (torchvision's initialisers).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = nnx.eval_shape(lambda: VGG(16, include_top=False, pooling="avg", rngs=nnx.Rngs(0)))
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((1, 32, 32, 3))).shape
      (1, 512)
    """

    feature_channels = CHANNELS
    feature_reductions = FEATURE_REDUCTIONS
    min_input_size = 32

    def __init__(
        self,
        depth: int = 16,
        *,
        num_classes: int | None = 1000,
        include_top: bool = True,
        pooling: str | None = None,
        classifier_activation=None,
        features: bool = False,
        dropout_rate: float = 0.5,
        rngs: nnx.Rngs,
    ):
        if depth not in CONFIGS:
            raise ValueError(f"VGG depth must be one of {sorted(CONFIGS)}, got {depth!r}")
        common.check_options(
            f"VGG{depth}",
            num_classes=num_classes,
            include_top=include_top,
            pooling=pooling,
            classifier_activation=classifier_activation,
            features=features,
        )
        self.depth = depth
        self.include_top = include_top and not features
        self.pooling, self.classifier_activation = pooling, classifier_activation
        self.features_only = features
        convs, cin = [], 3
        for cout, repeats in zip(CHANNELS, CONFIGS[depth]):
            for _ in range(repeats):
                convs.append(
                    Conv(
                        cin,
                        cout,
                        (3, 3),
                        padding=((1, 1), (1, 1)),
                        kernel_init=common.torch_conv_init,
                        rngs=rngs,
                    )
                )
                cin = cout
        self.convs = nnx.List(convs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        dense = common.torch_dense_init
        self.classifier = (
            nnx.List(
                [
                    nnx.Linear(cin * POOLED[0] * POOLED[1], 4096, kernel_init=dense, rngs=rngs),
                    nnx.Linear(4096, 4096, kernel_init=dense, rngs=rngs),
                    nnx.Linear(4096, num_classes, kernel_init=dense, rngs=rngs),
                ]
            )
            if self.include_top
            else None
        )

    def feature_maps(self, x: jax.Array) -> list[jax.Array]:
        """The map after each max pool (strides 2, 4, 8, 16, 32)."""
        common.check_images(x, name=f"VGG{self.depth}", min_size=self.min_input_size)
        maps, i = [], 0
        for repeats in CONFIGS[self.depth]:
            for _ in range(repeats):
                x = jax.nn.relu(self.convs[i](x))
                i += 1
            x = pooling.max_pool(x, (2, 2), strides=(2, 2))
            maps.append(x)
        return maps

    def __call__(self, x: jax.Array):
        """Logits (or probabilities, the pooled or last map, or the feature list) for ``x``."""
        maps = self.feature_maps(x)
        if self.features_only:
            return maps
        x = maps[-1]
        if not self.include_top:
            return common.pool(x, self.pooling)
        x = common.adaptive_avg_pool(x, POOLED).reshape(x.shape[0], -1)  # (h, w, c) order
        fc1, fc2, fc3 = self.classifier
        x = self.dropout(jax.nn.relu(fc1(x)))
        x = self.dropout(jax.nn.relu(fc2(x)))
        return common.activate(fc3(x), self.classifier_activation)

    def features(self, x: jax.Array) -> jax.Array:
        """Globally average-pooled last map ``[N, 512]``."""
        return common.pool(self.feature_maps(x)[-1], "avg")

    def torch_names(self) -> dict[str, tuple[str, str]]:
        """``{Flax path: (torchvision key, kind)}``: ``convs/i`` <- ``features.j`` (j skips the
        ReLU and pool modules), ``classifier/0,1,2`` <- ``classifier.0,3,6``."""
        names, j = {}, 0
        i = 0
        for repeats in CONFIGS[self.depth]:
            for _ in range(repeats):
                names[f"convs/{i}/kernel"] = (f"features.{j}.weight", "conv")
                names[f"convs/{i}/bias"] = (f"features.{j}.bias", "vector")
                i, j = i + 1, j + 2  # conv, ReLU
            j += 1  # the max pool
        if self.classifier is not None:
            for k, index in enumerate((0, 3, 6)):
                kind = "vgg_flatten_dense" if k == 0 else "dense"
                names[f"classifier/{k}/kernel"] = (f"classifier.{index}.weight", kind)
                names[f"classifier/{k}/bias"] = (f"classifier.{index}.bias", "vector")
        return names


def _flatten_dense(w: np.ndarray) -> np.ndarray:
    """torchvision's first dense ``[4096, C·7·7]`` (C, H, W order) -> Flax ``[7·7·C, 4096]``."""
    out, n = w.shape
    c = n // (POOLED[0] * POOLED[1])
    if c * POOLED[0] * POOLED[1] != n:
        return w.T  # a wrong shape: let the shape check report it
    return w.reshape(out, c, *POOLED).transpose(2, 3, 1, 0).reshape(n, out)


def convert(model: VGG, weights, *, skip=()):
    """torchvision ``vgg16``/``vgg19`` state dict -> ``{Flax path: array}`` (see `ModelSpec`)."""
    return convert_named(
        weights,
        model.torch_names(),
        model,
        tolerate=[r"classifier\..*"],
        skip=skip,
        what=f"vgg{model.depth}",
        layouts={**LAYOUTS, "vgg_flatten_dense": _flatten_dense},
    )


def _spec(depth: int, top1: float) -> ModelSpec:
    return ModelSpec(
        name=f"vgg{depth}",
        build=lambda **options: VGG(depth, **options),
        input_size=(224, 224),
        layout="torchvision",
        convert=convert,
        preprocess=torchvision_preprocess(224, 256),
        published_top1=top1,  # torchvision VGG*_Weights.IMAGENET1K_V1
        weights_source=None,
        feature_channels=CHANNELS,
        feature_reductions=FEATURE_REDUCTIONS,
        head=r"classifier/2/.*",  # a new head replaces the last dense layer only
        reference=f"torchvision.models.vgg{depth}",
    )


SPECS = {f"vgg{d}": _spec(d, t) for d, t in ((16, 71.592), (19, 72.376))}
