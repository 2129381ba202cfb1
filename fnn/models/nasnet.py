"""NASNet-A (Mobile and Large) in Flax NNX, laid out to load Keras' weights
(``keras.applications.NASNetMobile`` / ``NASNetLarge``).

Data contract: float NHWC images ``[N, H, W, 3]`` scaled as Keras' ``nasnet.preprocess_input``
does (mode ``"tf"``: ``p / 127.5 - 1`` in [-1, 1]); returns logits ``[N, num_classes]`` (or what
``include_top``/``pooling``/``features`` ask for). Native sizes 224x224 (Mobile) and 331x331
(Large), the sizes the ImageNet weights were trained at; fnn takes any H, W >= 32 with or without
the top (global average pooling makes the classifier size-free), where Keras insists on the
native size whenever ``include_top=True`` with ImageNet weights.

Architecture (Zoph, Vasudevan, Shlens, Le, "Learning Transferable Architectures for Scalable Image
Recognition", CVPR 2018, https://arxiv.org/abs/1707.07012), "NASNet-A (N @ P)": ``N`` normal
cells per stage, ``P`` penultimate filters, ``F = P / 24`` filters in the first stage:

- stem: 3x3 s2 unpadded convolution (32 Mobile, 96 Large channels) + BN, then two reduction cells
  with ``F/4`` and ``F/2`` filters;
- three stages of ``N`` normal cells with ``F``, ``2F``, ``4F`` filters, a reduction cell with
  ``2F`` and ``4F`` filters between them; ReLU, global average pooling, ``Dense(1000)``.
  Mobile: N=4, P=1056 (F=44); Large: N=6, P=4032 (F=168).

Each cell takes the last two outputs ``x`` (ReLU, 1x1 convolution + BN -> ``h``) and ``p``, the
cell input before (the "adjust" block brings ``p`` to ``h``'s grid and width: on a grid twice as
fine, ReLU then two 1x1 convolutions of ``F/2`` on the even pixels and on the pixels shifted by
one, concatenated + BN; with another width, ReLU, 1x1 convolution + BN). A separable block is
``ReLU-SepConv(k)-BN-ReLU-SepConv(k)-BN``. Normal cell: ``concat(p, sep5(h) + sep3(p), sep5(p) +
sep3(p), avg3(h) + p, 2·avg3(p), sep3(h) + h)`` (6 widths). Reduction cell, all stride 2:
``x1 = sep5(h) + sep7(p)``, ``x2 = max3(h) + sep7(p)``, ``x3 = avg3(h) + sep5(p)``,
``x4 = avg3_s1(x1) + x2``, ``x5 = sep3_s1(x1) + max3(h)``, ``concat(x2, x3, x4, x5)`` (4
widths). After the later reductions the Large network (Keras' ``skip_reduction=True``) keeps the
old ``p``; Mobile passes the reduction cell's input on.

Keras numerics: BatchNorm eps 1e-3 (momentum 0.9997 for training); every convolution bias-free
(only the classifier has a bias). Stride-1 separable convolutions pad "SAME"; the strided ones
and the reduction cells' strided pools run unpadded after an explicit zero padding (Keras'
``correct_pad``: ``k//2`` after, ``k//2`` before, one less on an even side), so the pools see
those zeros (a max pool may pick 0, an average pool counts it); the stride-1 3x3 average pools
pad "SAME" and exclude the padding from the mean.

Layout: Keras' layer names (``stem_conv1``, ``separable_conv_1_normal_left1_0``,
``adjust_conv_projection_1``, ``predictions``): legacy ``.h5`` files (Keras' published weights)
name every weighted layer explicitly; Keras 3 ``.weights.h5`` files rank layers by class in
Keras' graph order, replayed by `KerasGraph`. timm's ``nasnetalarge`` (ported from TF-slim,
PyTorch names such as ``cell_stem_0``) and TF-slim's checkpoints are the same Large network under
other names; Keras' NASNetMobile is unavailable on its PyTorch backend; torchvision has none.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from fnn.models import zoo_spec
from fnn.models._zoo_layers import (
    BatchNorm,
    Conv,
    Head,
    KerasGraph,
    SeparableConv,
    avg_pool,
    check_images,
    make_convert,
    max_pool,
)

__all__ = ["NASNet", "SPECS", "VARIANTS"]

EPS = 1e-3
MOMENTUM = 0.9997  # Keras' BatchNormalization momentum here (moving = m·moving + (1-m)·batch)
FILTER_MULTIPLIER = 2  # width factor between stages (Keras' filter_multiplier)
MIN_SIZE = 32  # Keras' minimum; every reduction still halves the grid down to 1x1

# variant -> Keras' NASNet arguments and the native input size
VARIANTS = {
    "mobile": dict(
        penultimate_filters=1056, num_blocks=4, stem_filters=32, skip_reduction=False, size=224
    ),
    "large": dict(
        penultimate_filters=4032, num_blocks=6, stem_filters=96, skip_reduction=True, size=331
    ),
}


class _Tensor(NamedTuple):
    """A Keras tensor while building: its graph node, channels and grid level (strides of 2)."""

    node: int
    channels: int
    level: int


def _bn(graph, parent, channels, name, rngs):
    node = graph.add("batch_normalization", name, (parent,))
    return BatchNorm(channels, eps=EPS, momentum=MOMENTUM, ref=graph.ref(node), rngs=rngs), node


def correct_pad(x: jax.Array, kernel: int) -> jax.Array:
    """Keras' ``correct_pad`` zero padding before a stride-2 ``kernel``: ``(k//2 - 1, k//2)`` on
    an even side, ``(k//2, k//2)`` on an odd one, so an unpadded stride-2 window gives
    ``ceil(n / 2)`` outputs, as TensorFlow's "SAME" would; unlike "SAME" for pooling, the padding
    is real zeros (PyTorch pads ``k//2`` on both sides instead).

    Examples:
      >>> import jax.numpy as jnp
      >>> correct_pad(jnp.ones((1, 4, 5, 1)), 3).shape  # 4: (0, 1); 5: (1, 1)
      (1, 5, 7, 1)
    """
    pads = [(kernel // 2 - (1 - n % 2), kernel // 2) for n in x.shape[1:3]]
    return jnp.pad(x, ((0, 0), *pads, (0, 0)))


class SepBlock(nnx.Module):
    """Keras' ``_separable_conv_block``: ``ReLU-SepConv(k, stride)-BN-ReLU-SepConv(k)-BN``."""

    def __init__(self, graph, parent: _Tensor, filters, kernel, stride, block_id, *, rngs):
        node = graph.add("activation", None, (parent.node,))
        if stride == 2:
            node = graph.add("zero_padding2d", f"separable_conv_1_pad_{block_id}", (node,))
        node = graph.add("separable_conv2d", f"separable_conv_1_{block_id}", (node,))
        self.sep1 = SeparableConv(
            parent.channels,
            filters,
            kernel,
            stride,
            padding="valid" if stride == 2 else "same",
            ref=graph.ref(node),
            rngs=rngs,
        )
        self.bn1, node = _bn(graph, node, filters, f"separable_conv_1_bn_{block_id}", rngs)
        node = graph.add("activation", None, (node,))
        node = graph.add("separable_conv2d", f"separable_conv_2_{block_id}", (node,))
        self.sep2 = SeparableConv(filters, filters, kernel, ref=graph.ref(node), rngs=rngs)
        self.bn2, node = _bn(graph, node, filters, f"separable_conv_2_bn_{block_id}", rngs)
        self.out = _Tensor(node, filters, parent.level + (stride == 2))
        self.window, self.stride = kernel, stride

    def __call__(self, x):
        x = jax.nn.relu(x)
        if self.stride == 2:
            x = correct_pad(x, self.window)
        x = jax.nn.relu(self.bn1(self.sep1(x)))
        return self.bn2(self.sep2(x))


class Adjust(nnx.Module):
    """Keras' ``_adjust_block``: ``p`` (the cell input before) brought to ``ip``'s grid and width.

    ``mode`` is fixed when the network is built, from the grid levels and widths Keras compares at
    the native size: ``"same"`` (``p`` is ``ip``: the first cell), ``"reduce"`` (``p`` on a grid
    twice as fine: ReLU, then 1x1 convolutions of ``filters // 2`` on ``p[::2, ::2]`` and on
    ``p[1::2, 1::2]`` zero-padded at the end, concatenated, BN), ``"project"`` (another width:
    ReLU, 1x1 convolution, BN) or ``"none"`` (``p`` fits already).
    """

    def __init__(self, graph, p: _Tensor | None, ip: _Tensor, filters, block_id, *, rngs):
        conv1 = conv2 = bn = None
        if p is None:
            self.mode, self.out = "same", ip
        elif p.level != ip.level:
            self.mode = "reduce"
            relu = graph.add("activation", f"adjust_relu_1_{block_id}", (p.node,))
            pool1 = graph.add("average_pooling2d", f"adjust_avg_pool_1_{block_id}", (relu,))
            c1 = graph.add("conv2d", f"adjust_conv_1_{block_id}", (pool1,))
            conv1 = Conv(p.channels, filters // 2, 1, ref=graph.ref(c1), rngs=rngs)
            pad = graph.add("zero_padding2d", None, (relu,))
            crop = graph.add("cropping2d", None, (pad,))
            pool2 = graph.add("average_pooling2d", f"adjust_avg_pool_2_{block_id}", (crop,))
            c2 = graph.add("conv2d", f"adjust_conv_2_{block_id}", (pool2,))
            conv2 = Conv(p.channels, filters // 2, 1, ref=graph.ref(c2), rngs=rngs)
            cat = graph.add("concatenate", None, (c1, c2))
            width = 2 * (filters // 2)
            bn, node = _bn(graph, cat, width, f"adjust_bn_{block_id}", rngs)
            self.out = _Tensor(node, width, ip.level)
        elif p.channels != filters:
            self.mode = "project"
            relu = graph.add("activation", None, (p.node,))
            c1 = graph.add("conv2d", f"adjust_conv_projection_{block_id}", (relu,))
            conv1 = Conv(p.channels, filters, 1, ref=graph.ref(c1), rngs=rngs)
            bn, node = _bn(graph, c1, filters, f"adjust_bn_{block_id}", rngs)
            self.out = _Tensor(node, filters, ip.level)
        else:
            self.mode, self.out = "none", p
        self.conv1, self.conv2, self.bn = nnx.data(conv1), nnx.data(conv2), nnx.data(bn)

    def __call__(self, p, ip):
        if self.mode == "same":
            return ip
        if self.mode == "none":
            return p
        p = jax.nn.relu(p)
        if self.mode == "project":
            return self.bn(self.conv1(p))
        even = p[:, ::2, ::2]  # AveragePooling2D((1, 1), strides=2)
        shifted = jnp.pad(p[:, 1:, 1:], ((0, 0), (0, 1), (0, 1), (0, 0)))[:, ::2, ::2]
        return self.bn(jnp.concatenate([self.conv1(even), self.conv2(shifted)], axis=-1))


class _Cell(nnx.Module):
    """What both cells start with: the adjusted ``p`` and ``h = BN(Conv1x1(ReLU(x)))``."""

    def _start(self, graph, ip, p, filters, block_id, kind, rngs):
        self.adjust = Adjust(graph, p, ip, filters, block_id, rngs=rngs)
        node = graph.add("activation", None, (ip.node,))
        node = graph.add("conv2d", f"{kind}_conv_1_{block_id}", (node,))
        self.conv = Conv(ip.channels, filters, 1, ref=graph.ref(node), rngs=rngs)
        self.bn, node = _bn(graph, node, filters, f"{kind}_bn_1_{block_id}", rngs)
        return self.adjust.out, _Tensor(node, filters, ip.level)

    def _inputs(self, x, p):
        return self.adjust(p, x), self.bn(self.conv(jax.nn.relu(x)))


class NormalCell(_Cell):
    """NASNet-A normal cell (paper Fig. 4, left): ``6 · filters`` channels, same grid."""

    def __init__(self, graph, ip: _Tensor, p: _Tensor | None, filters, block_id, *, rngs):
        p, h = self._start(graph, ip, p, filters, block_id, "normal", rngs)

        def sep(src, k, name):
            return SepBlock(graph, src, filters, k, 1, f"normal_{name}_{block_id}", rngs=rngs)

        def add(a, b, name=None):
            return graph.add("add", name and f"normal_{name}_{block_id}", (a, b))

        self.left1, self.right1 = sep(h, 5, "left1"), sep(p, 3, "right1")
        x1 = add(self.left1.out.node, self.right1.out.node, "add_1")
        self.left2, self.right2 = sep(p, 5, "left2"), sep(p, 3, "right2")
        x2 = add(self.left2.out.node, self.right2.out.node, "add_2")
        x3 = add(graph.add("average_pooling2d", None, (h.node,)), p.node, "add_3")
        x4 = add(
            graph.add("average_pooling2d", None, (p.node,)),
            graph.add("average_pooling2d", None, (p.node,)),
            "add_4",
        )
        self.left5 = sep(h, 3, "left5")
        x5 = add(self.left5.out.node, h.node, "add_5")
        node = graph.add("concatenate", f"normal_concat_{block_id}", (p.node, x1, x2, x3, x4, x5))
        self.out = _Tensor(node, 6 * filters, ip.level)

    def __call__(self, x, p):
        p, h = self._inputs(x, p)
        avg_p = _avg3(p)
        return jnp.concatenate(
            [
                p,
                self.left1(h) + self.right1(p),
                self.left2(p) + self.right2(p),
                _avg3(h) + p,
                avg_p + avg_p,
                self.left5(h) + h,
            ],
            axis=-1,
        )


class ReductionCell(_Cell):
    """NASNet-A reduction cell (paper Fig. 4, right): ``4 · filters`` channels, half the grid."""

    def __init__(self, graph, ip: _Tensor, p: _Tensor | None, filters, block_id, *, rngs):
        p, h = self._start(graph, ip, p, filters, block_id, "reduction", rngs)
        h3 = graph.add("zero_padding2d", f"reduction_pad_1_{block_id}", (h.node,))

        def sep(src, k, stride, name):
            return SepBlock(
                graph, src, filters, k, stride, f"reduction_{name}_{block_id}", rngs=rngs
            )

        def add(a, b, name=None):
            return graph.add("add", name and f"reduction_{name}_{block_id}", (a, b))

        self.left1, self.right1 = sep(h, 5, 2, "left1"), sep(p, 7, 2, "right1")
        x1 = add(self.left1.out.node, self.right1.out.node, "add_1")
        self.right2 = sep(p, 7, 2, "right2")
        x2 = add(graph.add("max_pooling2d", None, (h3,)), self.right2.out.node, "add_2")
        self.right3 = sep(p, 5, 2, "right3")
        x3 = add(graph.add("average_pooling2d", None, (h3,)), self.right3.out.node, "add3")
        x4 = add(x2, graph.add("average_pooling2d", None, (x1,)))
        self.left4 = sep(_Tensor(x1, filters, ip.level + 1), 3, 1, "left4")
        x5 = add(self.left4.out.node, graph.add("max_pooling2d", None, (h3,)), "add4")
        node = graph.add("concatenate", f"reduction_concat_{block_id}", (x2, x3, x4, x5))
        self.out = _Tensor(node, 4 * filters, ip.level + 1)

    def __call__(self, x, p):
        p, h = self._inputs(x, p)
        h3 = correct_pad(h, 3)
        max_h = max_pool(h3, 3, 2)  # the zero padding takes part: Keras pads with zeros first
        x1 = self.left1(h) + self.right1(p)
        x2 = max_h + self.right2(p)
        x3 = avg_pool(h3, 3, 2) + self.right3(p)
        x4 = x2 + _avg3(x1)
        x5 = self.left4(x1) + max_h
        return jnp.concatenate([x2, x3, x4, x5], axis=-1)


def _avg3(x):
    """3x3 stride-1 "SAME" average pool, the padding excluded from the mean (Keras, TF)."""
    return avg_pool(x, 3, 1, "same", count_include_pad=False)


class NASNet(nnx.Module):
    """NASNet-A Mobile or Large (Keras layout), NHWC.

    Args:
      variant: ``"mobile"`` (4 @ 1056, 224x224) or ``"large"`` (6 @ 4032, 331x331).
      num_classes, include_top, pooling, classifier_activation: as Keras applications.
      features: return the maps at strides 2, 4, 8, 16, 32, each after the ReLU that every
        consumer applies first (Mobile 32, 44, 264, 528, 1056 channels; Large 96, 168, 1008,
        2016, 4032): the stem, the first stem reduction cell, the last normal cell of each
        stage, and the final ReLU.
      num_blocks, penultimate_filters: override the variant's N and P (small test networks; P a
        multiple of 96).
      rngs: `flax.nnx.Rngs`.

    Examples:
      >>> import jax
      >>> from flax import nnx
      >>> model = nnx.eval_shape(  # a small NASNet-A (1 @ 96), shapes only
      ...     lambda: NASNet(num_classes=3, num_blocks=1, penultimate_filters=96, rngs=nnx.Rngs(0))
      ... )
      >>> model.eval()
      >>> x = jax.ShapeDtypeStruct((1, 224, 224, 3), "float32")
      >>> nnx.eval_shape(lambda m, x: m(x), model, x).shape
      (1, 3)
    """

    def __init__(
        self,
        variant: str = "mobile",
        *,
        num_classes: int = 1000,
        include_top: bool = True,
        pooling: str | None = None,
        classifier_activation=None,
        features: bool = False,
        num_blocks: int | None = None,
        penultimate_filters: int | None = None,
        rngs: nnx.Rngs,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        config = VARIANTS[variant]
        n = config["num_blocks"] if num_blocks is None else num_blocks
        penultimate = (
            config["penultimate_filters"] if penultimate_filters is None else penultimate_filters
        )
        step = 24 * FILTER_MULTIPLIER**2
        if not isinstance(penultimate, int) or penultimate < step or penultimate % step:
            raise ValueError(
                f"penultimate_filters must be a positive multiple of 24 * filter_multiplier**2 = "
                f"{step}, got {penultimate!r}"
            )
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"num_blocks must be an int >= 1, got {n!r}")
        filters = penultimate // 24
        stem = config["stem_filters"]
        g = KerasGraph()
        node = g.add("input_layer", "input")
        node = g.add("conv2d", "stem_conv1", (node,))
        self.stem_conv = Conv(3, stem, 3, 2, padding="valid", ref=g.ref(node), rngs=rngs)
        self.stem_bn, node = _bn(g, node, stem, "stem_bn1", rngs)

        x, p = _Tensor(node, stem, 1), None
        cells, keeps = [], []

        def cell(kind, width, block_id, keep_p=False):
            nonlocal x, p
            cells.append(kind(g, x, p, width, block_id, rngs=rngs))
            keeps.append(keep_p)
            x, p = cells[-1].out, (p if keep_p else x)

        m = FILTER_MULTIPLIER
        cell(ReductionCell, filters // m**2, "stem_1")
        cell(ReductionCell, filters // m, "stem_2")
        for i in range(n):
            cell(NormalCell, filters, f"{i}")
        skip = config["skip_reduction"]
        cell(ReductionCell, filters * m, f"reduce_{n}", keep_p=skip)
        for i in range(n):
            cell(NormalCell, filters * m, f"{n + i + 1}")
        cell(ReductionCell, filters * m**2, f"reduce_{2 * n}", keep_p=skip)
        for i in range(n):
            cell(NormalCell, filters * m**2, f"{2 * n + i + 1}")
        self.cells = nnx.List(cells)
        self.keeps_p = tuple(keeps)
        self.feature_cells = (0, 1 + n, 2 + 2 * n)  # stem_1, the last normal cells of stages 1, 2
        self.feature_channels = (stem, *(cells[i].out.channels for i in self.feature_cells))
        self.feature_channels += (x.channels,)
        node = g.add("activation", None, (x.node,))
        self.features_only = features
        head = None
        if not features:
            if include_top:
                node = g.add("global_average_pooling2d", None, (node,))
                node = g.add("dense", "predictions", (node,))
            head = Head(
                x.channels,
                num_classes=num_classes,
                include_top=include_top,
                pooling=pooling,
                classifier_activation=classifier_activation,
                ref=g.ref(node) if include_top else "",
                rngs=rngs,
            )
        self.head = head
        self.label = f"NASNet{variant.capitalize()}"
        g.resolve(self, node)

    def __call__(self, x: jax.Array):
        """Logits ``[N, num_classes]`` (or what ``features``/``include_top`` ask for)."""
        check_images(x, name=self.label, min_size=MIN_SIZE)
        x = self.stem_bn(self.stem_conv(x))
        maps = [jax.nn.relu(x)]
        p = None
        for i, (cell, keep_p) in enumerate(zip(self.cells, self.keeps_p, strict=True)):
            x, p = cell(x, p), (p if keep_p else x)
            if i in self.feature_cells:
                maps.append(jax.nn.relu(x))
        x = jax.nn.relu(x)
        maps.append(x)
        if self.features_only:
            return maps
        return self.head(x)


def _spec(name: str, variant: str, top1: float, channels: tuple[int, ...]) -> zoo_spec.ModelSpec:
    size = VARIANTS[variant]["size"]
    keras_name = f"NASNet{variant.capitalize()}"
    return zoo_spec.ModelSpec(
        name=name,
        build=lambda *, rngs, **options: NASNet(variant, rngs=rngs, **options),
        input_size=(size, size),
        layout="keras",
        convert=make_convert("keras", what=name, tolerate=(r"predictions/.*", r"dense/.*")),
        preprocess=zoo_spec.keras_preprocess("tf", size),  # nasnet.preprocess_input: [-1, 1]
        published_top1=top1,  # Keras applications table
        weights_source=None,
        feature_channels=channels,
        feature_reductions=(2, 4, 8, 16, 32),
        min_input_size=MIN_SIZE,
        head=r"head/.*",
        reference=f"keras.applications.{keras_name}",
    )


SPECS = {
    "nasnet_mobile": _spec("nasnet_mobile", "mobile", 74.4, (32, 44, 264, 528, 1056)),
    "nasnet_large": _spec("nasnet_large", "large", 82.5, (96, 168, 1008, 2016, 4032)),
}
