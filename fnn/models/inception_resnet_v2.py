"""Inception-ResNet-v2 in Flax NNX, laid out to load Keras' weights
(``keras.applications.InceptionResNetV2``).

Data contract: float NHWC images ``[N, H, W, 3]`` scaled as Keras' ``preprocess_input`` mode
``"tf"`` does, ``p / 127.5 - 1``; returns logits ``[N, num_classes]`` (or what
``include_top``/``pooling``/``features`` ask for). Native size 299x299; H, W >= 75.

Architecture (Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and the Impact
of Residual Connections on Learning", AAAI 2017, https://arxiv.org/abs/1602.07261): the stem
(3x3 convolutions 32 s2, 32, 64; max pool; 1x1 80; 3x3 192; max pool), the mixed 5b block to 320
channels, 10 Inception-ResNet-A blocks (scale 0.17), reduction 6a to 1088, 20 Inception-ResNet-B
blocks (scale 0.1), reduction 7a to 2080, 10 Inception-ResNet-C blocks (scale 0.2; the last
without its ReLU), a 1x1 convolution to 1536, global average pooling and ``Dense(1000)``. A
residual block computes ``relu(x + scale · Conv1x1(concat(branches)))``, the 1x1 "up"
convolution with a bias and no BatchNorm; every other convolution is bias-free with BatchNorm
(no scale, ``scale=False``, eps 1e-3) and ReLU.

Layout: Keras' layer names. Most layers are unnamed in Keras (``conv2d_<n>``,
``batch_normalization_<n>``); legacy ``.h5`` files (Keras' published weights) are matched by the
creation order of those names, Keras 3 ``.weights.h5`` files by `KerasGraph`'s replay of Keras'
layer order. Keras pads "SAME" (the odd pixel after) where it asks for it, and its branch average
pool excludes padding. timm's ``inception_resnet_v2`` is the same network ported from these
weights (PyTorch padding on the stride-1 layers only, BN eps 1e-3) under its own names;
torchvision has none.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fnn.models import zoo_spec
from fnn.models._zoo_layers import (
    BatchNorm,
    Conv,
    Head,
    KerasGraph,
    avg_pool,
    check_images,
    make_convert,
    max_pool,
)

__all__ = ["InceptionResNetV2", "SPECS"]

EPS = 1e-3


class Unit(nnx.Module):
    """Keras' ``conv2d_bn``: convolution, BatchNorm without scale (or a bias instead), ReLU."""

    def __init__(
        self,
        graph,
        parent,
        cin,
        cout,
        kernel,
        stride=1,
        *,
        padding="same",
        name=None,
        act=True,
        bias=False,
        rngs,
    ):
        node = graph.add("conv2d", name, (parent,))
        self.conv = Conv(
            cin, cout, kernel, stride, padding=padding, bias=bias, ref=graph.ref(node), rngs=rngs
        )
        bn = None
        if not bias:
            node = graph.add("batch_normalization", name and f"{name}_bn", (node,))
            bn = BatchNorm(cout, eps=EPS, scale=False, ref=graph.ref(node), rngs=rngs)
        self.bn = bn
        if act:
            node = graph.add("activation", name and f"{name}_ac", (node,))
        self.act = act
        self.node = node

    def __call__(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return jax.nn.relu(x) if self.act else x


def _chain(graph, parent, cin, specs, rngs):
    """Units one after the other: ``specs`` = ``[(cout, kernel, stride, padding), ...]``."""
    units = []
    for cout, kernel, stride, padding in specs:
        unit = Unit(graph, parent, cin, cout, kernel, stride, padding=padding, rngs=rngs)
        units.append(unit)
        parent, cin = unit.node, cout
    return nnx.List(units)


def _run(units, x):
    for unit in units:
        x = unit(x)
    return x


class Mixed5b(nnx.Module):
    def __init__(self, graph, parent, rngs):
        self.b0 = _chain(graph, parent, 192, [(96, 1, 1, "same")], rngs)
        self.b1 = _chain(graph, parent, 192, [(48, 1, 1, "same"), (64, 5, 1, "same")], rngs)
        self.b2 = _chain(
            graph, parent, 192, [(64, 1, 1, "same"), (96, 3, 1, "same"), (96, 3, 1, "same")], rngs
        )
        pool = graph.add("average_pooling2d", None, (parent,))
        self.bp = _chain(graph, pool, 192, [(64, 1, 1, "same")], rngs)
        ends = (self.b0[-1].node, self.b1[-1].node, self.b2[-1].node, self.bp[-1].node)
        self.node = graph.add("concatenate", "mixed_5b", ends)

    def __call__(self, x):
        pool = avg_pool(x, 3, 1, "same", count_include_pad=False)
        return jnp.concatenate(
            [_run(self.b0, x), _run(self.b1, x), _run(self.b2, x), _run(self.bp, pool)], -1
        )


# block type -> (input channels, branches as lists of (cout, kernel) chains)
BRANCHES = {
    "block35": (320, [[(32, 1)], [(32, 1), (32, 3)], [(32, 1), (48, 3), (64, 3)]]),
    "block17": (1088, [[(192, 1)], [(128, 1), (160, (1, 7)), (192, (7, 1))]]),
    "block8": (2080, [[(192, 1)], [(192, 1), (224, (1, 3)), (256, (3, 1))]]),
}


class ResidualBlock(nnx.Module):
    """``act(x + scale · Conv1x1_bias(concat(branches)))`` (Keras' ``inception_resnet_block``)."""

    def __init__(self, graph, parent, block_type, idx, scale, *, act=True, rngs):
        cin, branches = BRANCHES[block_type]
        self.branches = nnx.List(
            [
                _chain(graph, parent, cin, [(c, k, 1, "same") for c, k in chain], rngs)
                for chain in branches
            ]
        )
        name = f"{block_type}_{idx}"
        mixed = graph.add("concatenate", f"{name}_mixed", [b[-1].node for b in self.branches])
        mid = sum(chain[-1][0] for chain in branches)
        self.up = Unit(
            graph, mixed, mid, cin, 1, name=f"{name}_conv", act=False, bias=True, rngs=rngs
        )
        node = graph.add("custom_scale_layer", None, (parent, self.up.node))
        if act:
            node = graph.add("activation", f"{name}_ac", (node,))
        self.node = node
        self.scale = scale
        self.act = act

    def __call__(self, x):
        mixed = jnp.concatenate([_run(b, x) for b in self.branches], axis=-1)
        x = x + self.scale * self.up(mixed)
        return jax.nn.relu(x) if self.act else x


class Reduction(nnx.Module):
    """Mixed 6a / 7a: strided convolution branches and a 3x3 s2 max pool, concatenated."""

    def __init__(self, graph, parent, cin, chains, name, rngs):
        self.branches = nnx.List(
            [
                _chain(
                    graph,
                    parent,
                    cin,
                    [
                        (
                            c,
                            k,
                            2 if i == len(chain) - 1 else 1,
                            "valid" if i == len(chain) - 1 else "same",
                        )
                        for i, (c, k) in enumerate(chain)
                    ],
                    rngs,
                )
                for chain in chains
            ]
        )
        pool = graph.add("max_pooling2d", None, (parent,))
        self.node = graph.add("concatenate", name, [*(b[-1].node for b in self.branches), pool])

    def __call__(self, x):
        return jnp.concatenate([*(_run(b, x) for b in self.branches), max_pool(x, 3, 2)], -1)


class InceptionResNetV2(nnx.Module):
    """Inception-ResNet-v2 (Keras layout), NHWC.

    Args:
      num_classes, include_top, pooling, classifier_activation: as Keras applications.
      features: return the maps at strides 2, 4, 8, 16, 32 (64, 192, 320, 1088, 1536 channels:
        the third stem convolution, the 192-channel stem convolution, after the A, B blocks,
        and the final 1x1 convolution).
      repeats: numbers of A, B, C blocks (10, 20, 10; fewer for small test networks).
      rngs: `flax.nnx.Rngs`.

    Examples:
      >>> import jax
      >>> from flax import nnx
      >>> model = nnx.eval_shape(  # shapes only; repeats=(1, 1, 1): small, same shapes
      ...     lambda: InceptionResNetV2(num_classes=10, repeats=(1, 1, 1), rngs=nnx.Rngs(0))
      ... )
      >>> x = jax.ShapeDtypeStruct((1, 299, 299, 3), "float32")
      >>> nnx.eval_shape(lambda m, x: m(x), model, x).shape
      (1, 10)
    """

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        include_top: bool = True,
        pooling: str | None = None,
        classifier_activation=None,
        features: bool = False,
        repeats: tuple[int, int, int] = (10, 20, 10),
        rngs: nnx.Rngs,
    ):
        g = KerasGraph()
        node = g.add("input_layer", "input")
        self.stem1 = _chain(
            g, node, 3, [(32, 3, 2, "valid"), (32, 3, 1, "valid"), (64, 3, 1, "same")], rngs
        )
        node = g.add("max_pooling2d", None, (self.stem1[-1].node,))
        self.stem2 = _chain(g, node, 64, [(80, 1, 1, "valid"), (192, 3, 1, "valid")], rngs)
        node = g.add("max_pooling2d", None, (self.stem2[-1].node,))
        self.mixed_5b = Mixed5b(g, node, rngs)
        node = self.mixed_5b.node
        blocks_a = []
        for i in range(1, repeats[0] + 1):
            blocks_a.append(ResidualBlock(g, node, "block35", i, 0.17, rngs=rngs))
            node = blocks_a[-1].node
        self.blocks_a = nnx.List(blocks_a)
        self.mixed_6a = Reduction(
            g, node, 320, [[(384, 3)], [(256, 1), (256, 3), (384, 3)]], "mixed_6a", rngs
        )
        node = self.mixed_6a.node
        blocks_b = []
        for i in range(1, repeats[1] + 1):
            blocks_b.append(ResidualBlock(g, node, "block17", i, 0.1, rngs=rngs))
            node = blocks_b[-1].node
        self.blocks_b = nnx.List(blocks_b)
        self.mixed_7a = Reduction(
            g,
            node,
            1088,
            [[(256, 1), (384, 3)], [(256, 1), (288, 3)], [(256, 1), (288, 3), (320, 3)]],
            "mixed_7a",
            rngs,
        )
        node = self.mixed_7a.node
        blocks_c = []
        for i in range(1, repeats[2] + 1):
            last = i == repeats[2]
            blocks_c.append(
                ResidualBlock(g, node, "block8", i, 1.0 if last else 0.2, act=not last, rngs=rngs)
            )
            node = blocks_c[-1].node
        self.blocks_c = nnx.List(blocks_c)
        self.conv_7b = Unit(g, node, 2080, 1536, 1, name="conv_7b", rngs=rngs)
        node = self.conv_7b.node
        self.features_only = features
        head = None
        if not features:
            if include_top:
                node = g.add("global_average_pooling2d", "avg_pool", (node,))
                node = g.add("dense", "predictions", (node,))
            head = Head(
                1536,
                num_classes=num_classes,
                include_top=include_top,
                pooling=pooling,
                classifier_activation=classifier_activation,
                ref=g.ref(node) if include_top else "",
                rngs=rngs,
            )
        self.head = head
        g.resolve(self, node)

    def __call__(self, x: jax.Array):
        """Logits ``[N, num_classes]`` (or what ``features``/``include_top`` ask for)."""
        check_images(x, name="InceptionResNetV2", min_size=75)
        x = _run(self.stem1, x)
        maps = [x]
        x = _run(self.stem2, max_pool(x, 3, 2))
        maps.append(x)
        x = self.mixed_5b(max_pool(x, 3, 2))
        for block in self.blocks_a:
            x = block(x)
        maps.append(x)
        x = self.mixed_6a(x)
        for block in self.blocks_b:
            x = block(x)
        maps.append(x)
        x = self.mixed_7a(x)
        for block in self.blocks_c:
            x = block(x)
        x = self.conv_7b(x)
        maps.append(x)
        if self.features_only:
            return maps
        return self.head(x)


SPECS = {
    "inception_resnet_v2": zoo_spec.ModelSpec(
        name="inception_resnet_v2",
        build=lambda *, rngs, **options: InceptionResNetV2(rngs=rngs, **options),
        input_size=(299, 299),
        layout="keras",
        convert=make_convert(
            "keras", what="inception_resnet_v2", tolerate=(r"predictions/.*", r"dense/.*")
        ),
        preprocess=zoo_spec.keras_preprocess("tf", 299),
        published_top1=80.3,  # Keras applications table
        weights_source=None,
        feature_channels=(64, 192, 320, 1088, 1536),
        feature_reductions=(2, 4, 8, 16, 32),
        min_input_size=75,
        head=r"head/.*",
        reference="keras.applications.InceptionResNetV2",
    )
}
