"""Layers that know their name in a reference checkpoint, and the converter that uses the names.

Data contract: every layer here is NHWC and carries ``ref``, its name in the layout the weights
come from: a torchvision state-dict prefix (``"features.conv0"``) or a Keras layer name
(``"block1_conv1"``). `weight_names` walks a model and lists, for every Flax parameter and
BatchNorm statistic, the flat key that holds it and how its axes differ; `make_convert` turns that
list into a `fnn.models.zoo_spec.ModelSpec` ``convert`` (through `zoo_spec.convert_named`, which
checks every name and shape).

Flat keys: torchvision's state-dict keys as they are (``"features.conv0.weight"``); Keras weights
as ``"<layer>/<index>"``, the index counting the layer's weights in Keras' order (Conv2D: kernel,
bias; BatchNormalization: gamma, beta, moving_mean, moving_variance, without the ones the layer
does not use; DepthwiseConv2D: depthwise kernel, bias; SeparableConv2D: depthwise kernel,
pointwise kernel, bias; Dense: kernel, bias), as `read_keras_h5` returns them. ``<layer>`` is
the layer's name in legacy Keras 2 ``.h5`` files (Keras' published ImageNet weights), and in
Keras 3 ``.weights.h5`` files the key Keras 3 writes, ``<class>[_<k>]`` (``conv2d_3``): the
k-th layer of that class in ``model.layers`` order, whatever the layer's name. Each Keras-layout
layer here knows both (`KerasNamer`, `KerasGraph`); ``convert`` picks the scheme the file uses.

Layouts: PyTorch convolution weights are ``[O, I/G, kh, kw]`` and become Flax's
``[kh, kw, I/G, O]``; dense weights ``[out, in]`` become ``[in, out]``. Keras kernels are already
``[kh, kw, I, O]`` and ``[in, out]``, except depthwise kernels ``[kh, kw, C, 1]``, which become
``[kh, kw, 1, C]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fnn import conv as fconv
from fnn import layers  # BatchNorm: nnx.BatchNorm's numbers, traced in linear time
from fnn import pool as pooling
from fnn.models._zoo_common import check_images, depthwise_conv, pool
from fnn.models.zoo_spec import convert_named

__all__ = [
    "ACTIVATIONS",
    "BatchNorm",
    "Conv",
    "ConvBN",
    "Dense",
    "Head",
    "SeparableConv",
    "SqueezeExcite",
    "assign",
    "check_images",
    "make_convert",
    "read_keras_h5",
    "weight_names",
]

LAYOUTS = ("torchvision", "keras")


def _hard_sigmoid(x):
    """PyTorch's ``Hardsigmoid``: ``relu6(x + 3) / 6`` (Keras 3's ``hard_sigmoid`` is the same)."""
    return jax.nn.relu6(x + 3.0) / 6.0


def _hard_swish(x):
    """PyTorch's ``Hardswish``: ``x · relu6(x + 3) / 6``."""
    return x * _hard_sigmoid(x)


ACTIVATIONS: dict[str, Callable | None] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "swish": jax.nn.silu,
    "silu": jax.nn.silu,
    "hard_swish": _hard_swish,
    "hard_sigmoid": _hard_sigmoid,
    "sigmoid": jax.nn.sigmoid,
    "softmax": jax.nn.softmax,
    "linear": None,
}


def activation(name: str | Callable | None) -> Callable | None:
    """``None``, a callable, or one of `ACTIVATIONS`' names -> a callable (or ``None``)."""
    if name is None or callable(name):
        return name
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class KerasNamer:
    """Names Keras layers in the two ways Keras files key them, in creation order.

    Legacy Keras 2 ``.h5`` files key a layer by its name: the given one (``"block1_conv1"``), or
    for a layer created without a name, Keras' automatic ``<class>_<n>`` whose counter depends
    on what the session built before; such names become ``"<class>#<rank>"`` (rank among the
    unnamed layers of that class, which `convert` recovers by sorting the file's suffixes). Keras 3
    ``.weights.h5`` files key every layer ``<class>[_<k>]`` by its rank among all layers of its
    class in ``model.layers`` order, whatever its name. Build the Flax layers in the order Keras'
    source creates them and ask this namer for each: ``namer("conv2d", "block1_conv1")``.
    """

    def __init__(self):
        self.every: dict[str, int] = {}
        self.unnamed: dict[str, int] = {}

    def __call__(self, cls: str, name: str | None = None) -> tuple[str, str]:
        k = self.every.get(cls, 0)
        self.every[cls] = k + 1
        if name is None:
            j = self.unnamed.get(cls, 0)
            self.unnamed[cls] = j + 1
            name = f"{cls}#{j}"
        return (name, cls if k == 0 else f"{cls}_{k}")


class KerasGraph:
    """Keras' layer graph, recorded while a Flax model is built, to name layers as Keras 3 does.

    Keras 3 ``.weights.h5`` files rank each class's layers in ``model.layers`` order, and a
    functional model orders its layers by depth (the longest path to the output, deepest
    first), ties broken by the order a depth-first search from the output first meets them,
    visiting each layer's inputs in order (``keras.src.ops.function.map_graph``). For branchy
    networks (InceptionResNetV2, NASNet) that order is neither creation nor execution order, so
    the model records every Keras layer it mirrors, weighted or not: ``node = graph.add(cls,
    name, parents)`` in Keras' creation order (which fixes the legacy automatic names), and
    ``graph.ref(node)`` as the layer's reference name; `resolve` fills the names in at the end.
    """

    def __init__(self):
        self.nodes: list[tuple[str, str | None, tuple[int, ...]]] = []

    def add(self, cls: str, name: str | None = None, parents=()) -> int:
        self.nodes.append((cls, name, tuple(parents)))
        return len(self.nodes) - 1

    @staticmethod
    def ref(node: int) -> tuple[str, int]:
        return ("#pending", node)

    def names(self, output: int) -> dict[int, tuple[str, str]]:
        """``{node: (legacy name, Keras 3 key)}`` for every node on a path to ``output``."""
        index: dict[int, int] = {}
        post: list[int] = []
        done: set[int] = set()
        stack = [(output, False)]
        while stack:  # iterative DFS: pre-order indices, post-order list
            node, expanded = stack.pop()
            if expanded:
                post.append(node)
                done.add(node)
                continue
            if node in done:
                continue
            index.setdefault(node, len(index))
            stack.append((node, True))
            for parent in reversed(self.nodes[node][2]):
                if parent not in done:
                    stack.append((parent, False))
        depth: dict[int, int] = {}
        for node in reversed(post):
            d = depth.setdefault(node, 0)
            for parent in self.nodes[node][2]:
                depth[parent] = max(depth.get(parent, 0), d + 1)
        order = sorted(depth, key=lambda n: (-depth[n], index[n]))
        every: dict[str, int] = {}
        keras3 = {}
        for node in order:
            cls = self.nodes[node][0]
            k = every.get(cls, 0)
            every[cls] = k + 1
            keras3[node] = cls if k == 0 else f"{cls}_{k}"
        unnamed: dict[str, int] = {}
        out = {}
        for node, (cls, name, _) in enumerate(self.nodes):
            if name is None:
                j = unnamed.get(cls, 0)
                unnamed[cls] = j + 1
                name = f"{cls}#{j}"
            if node in keras3:
                out[node] = (name, keras3[node])
        return out

    def resolve(self, model: nnx.Module, output: int) -> None:
        """Replaces every pending reference name in ``model`` by its two Keras names."""
        names = self.names(output)
        for _, module in nnx.iter_modules(model):
            ref = getattr(module, "ref", None)
            if isinstance(ref, tuple) and ref[0] == "#pending":
                module.ref = names[ref[1]]


def keras_key(ref, layout: str) -> str:
    """The layer's key: ``layout`` ``"keras"`` (legacy names) or ``"keras3"`` (class ranks)."""
    if isinstance(ref, str):
        return ref
    return ref[0] if layout == "keras" else ref[1]


def _padding(padding):
    """``int`` -> symmetric explicit padding (PyTorch); ``"same"``/``"valid"`` -> TensorFlow's."""
    if isinstance(padding, str):
        return padding.upper()
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


_he_normal = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


class Conv(nnx.Module):
    """2-D convolution with a reference name: `flax.nnx.Conv`'s ``kernel [kh, kw, I/G, O]``.

    ``padding`` is an ``int`` (symmetric, as PyTorch's ``nn.Conv2d``), a pair of ints per axis,
    or ``"same"``/``"valid"`` (TensorFlow's; ``"same"`` puts the odd pixel after).
    ``depthwise=True`` marks a Keras ``DepthwiseConv2D`` (its kernel is stored ``[k, k, C, 1]``).

    On CPU the convolution is `fnn.conv.Conv`'s (1×1 as matrix products, the kernel gradient as a
    forward convolution) and a depthwise one (``groups == cin == cout``) is
    `fnn.models._zoo_common.depthwise_conv`'s shifted sums; GPUs and TPUs get XLA's convolutions.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel,
        stride=1,
        *,
        padding=0,
        groups: int = 1,
        bias: bool = False,
        dilation: int = 1,
        ref: str,
        depthwise: bool = False,
        rngs: nnx.Rngs,
    ):
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        self.conv = fconv.Conv(
            cin,
            cout,
            kernel,
            strides=stride,
            padding=_padding(padding),
            feature_group_count=groups,
            kernel_dilation=dilation,
            use_bias=bias,
            kernel_init=_he_normal,
            rngs=rngs,
        )
        self.ref = ref
        self.depthwise = depthwise
        strides = {stride} if isinstance(stride, int) else set(stride)
        self.shifted = groups > 1 and groups == cin == cout and dilation == 1 and len(strides) == 1
        self.stride = strides.pop()

    def __call__(self, x):
        if not self.shifted:
            return self.conv(x)
        kernel = self.conv.kernel[...]
        padding = self.conv.padding
        if isinstance(padding, str):
            padding = jax.lax.padtype_to_pads(
                x.shape[1:3], kernel.shape[:2], (self.stride, self.stride), padding
            )
        y = depthwise_conv(x, kernel, self.stride, tuple(tuple(p) for p in padding))
        return y + self.conv.bias[...].astype(y.dtype) if self.conv.bias is not None else y

    def names(self, layout: str, start: int = 0) -> dict[tuple, tuple[str, str]]:
        if layout == "torchvision":
            out = {("conv", "kernel"): (f"{self.ref}.weight", "conv")}
            if self.conv.bias is not None:
                out[("conv", "bias")] = (f"{self.ref}.bias", "vector")
            return out
        kind = "keras_depthwise" if self.depthwise else "keras_conv"
        name = keras_key(self.ref, layout)
        out = {("conv", "kernel"): (f"{name}/{start}", kind)}
        if self.conv.bias is not None:
            out[("conv", "bias")] = (f"{name}/{start + 1}", "vector")
        return out


class BatchNorm(nnx.Module):
    """`flax.nnx.BatchNorm` with a reference name; ``scale``/``center`` as Keras' options."""

    def __init__(
        self,
        channels: int,
        *,
        eps: float,
        momentum: float = 0.99,
        scale: bool = True,
        center: bool = True,
        ref: str,
        rngs: nnx.Rngs,
    ):
        self.bn = layers.BatchNorm(
            channels, epsilon=eps, momentum=momentum, use_scale=scale, use_bias=center, rngs=rngs
        )
        self.ref = ref

    def __call__(self, x, use_running_average=None):
        return self.bn(x, use_running_average=use_running_average)

    def names(self, layout: str) -> dict[tuple, tuple[str, str]]:
        roles = [("scale", "weight"), ("bias", "bias"), ("mean", "running_mean")]
        roles.append(("var", "running_var"))
        if self.bn.scale is None:
            roles = [r for r in roles if r[0] != "scale"]
        if self.bn.bias is None:
            roles = [r for r in roles if r[0] != "bias"]
        if layout == "torchvision":
            return {("bn", f): (f"{self.ref}.{t}", "vector") for f, t in roles}
        name = keras_key(self.ref, layout)
        return {("bn", f): (f"{name}/{i}", "vector") for i, (f, _) in enumerate(roles)}


class Dense(nnx.Module):
    """`flax.nnx.Linear` (``kernel [in, out]``) with a reference name."""

    def __init__(self, cin: int, cout: int, *, ref: str, rngs: nnx.Rngs):
        self.linear = nnx.Linear(cin, cout, rngs=rngs)
        self.ref = ref

    def __call__(self, x):
        return self.linear(x)

    def names(self, layout: str) -> dict[tuple, tuple[str, str]]:
        if layout == "torchvision":
            return {
                ("linear", "kernel"): (f"{self.ref}.weight", "dense"),
                ("linear", "bias"): (f"{self.ref}.bias", "vector"),
            }
        name = keras_key(self.ref, layout)
        return {
            ("linear", "kernel"): (f"{name}/0", "keras_dense"),
            ("linear", "bias"): (f"{name}/1", "vector"),
        }


class SeparableConv(nnx.Module):
    """Keras' ``SeparableConv2D``: depthwise ``k × k`` then pointwise ``1 × 1``, one layer name."""

    def __init__(self, cin, cout, kernel, stride=1, *, padding="same", bias=False, ref, rngs):
        self.depthwise = Conv(
            cin,
            cin,
            kernel,
            stride,
            padding=padding,
            groups=cin,
            ref=ref,
            depthwise=True,
            rngs=rngs,
        )
        self.pointwise = Conv(cin, cout, 1, bias=bias, ref=ref, rngs=rngs)
        self.ref = ref

    def __call__(self, x):
        return self.pointwise(self.depthwise(x))

    def names(self, layout: str) -> dict[tuple, tuple[str, str]]:
        if not layout.startswith("keras"):
            raise ValueError("SeparableConv exists in the Keras layout only")
        out = {("depthwise", *k): v for k, v in self.depthwise.names(layout, 0).items()}
        out.update({("pointwise", *k): v for k, v in self.pointwise.names(layout, 1).items()})
        return out


class ConvBN(nnx.Module):
    """Convolution, BatchNorm, activation: the unit every family here is made of.

    ``conv_ref``/``bn_ref`` are the two layers' reference names; ``act`` a name from
    `ACTIVATIONS`, a callable, or ``None``.
    """

    def __init__(
        self,
        cin,
        cout,
        kernel,
        stride=1,
        *,
        padding=0,
        groups=1,
        eps,
        act="relu",
        conv_ref,
        bn_ref,
        bias=False,
        bn_scale=True,
        depthwise=False,
        momentum=0.99,
        rngs,
    ):
        self.conv = Conv(
            cin,
            cout,
            kernel,
            stride,
            padding=padding,
            groups=groups,
            bias=bias,
            ref=conv_ref,
            depthwise=depthwise,
            rngs=rngs,
        )
        self.bn = BatchNorm(cout, eps=eps, momentum=momentum, scale=bn_scale, ref=bn_ref, rngs=rngs)
        self.act = activation(act)

    def __call__(self, x):
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class SqueezeExcite(nnx.Module):
    """Squeeze-and-excitation (Hu et al., 2018): ``x · σ(W₂ δ(W₁ GAP(x) + b₁) + b₂)``.

    ``W₁``, ``W₂`` are 1x1 convolutions with bias (torchvision's ``fc1``/``fc2``, or
    ``conv_reduce``/``conv_expand``); ``δ`` is ``act``, ``σ`` is ``gate`` (MobileNetV3: ReLU and
    hard sigmoid; EfficientNet: SiLU and sigmoid).
    """

    def __init__(self, channels, squeeze, *, act, gate, refs: tuple[str, str], rngs):
        self.fc1 = Conv(channels, squeeze, 1, bias=True, ref=refs[0], rngs=rngs)
        self.fc2 = Conv(squeeze, channels, 1, bias=True, ref=refs[1], rngs=rngs)
        self.act, self.gate = activation(act), activation(gate)

    def __call__(self, x):
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class Head(nnx.Module):
    """The top of a Keras application: pooling, optional dropout, classifier, activation.

    ``include_top=True``: global average pooling, (MobileNetV3: a ``hidden`` dense layer and
    its activation), dropout, ``Dense(num_classes)``,
    ``classifier_activation`` (``None`` gives logits). ``include_top=False``: ``pooling`` ``None``
    returns the last feature map ``[N, h, w, C]``, ``"avg"``/``"max"`` the pooled ``[N, C]``.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_classes: int,
        include_top: bool,
        pooling: str | None,
        classifier_activation,
        dropout: float = 0.0,
        ref: str,
        hidden: int | None = None,
        hidden_ref: str | None = None,
        hidden_act="hard_swish",
        rngs: nnx.Rngs,
    ):
        if pooling not in (None, "avg", "max"):
            raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
        if include_top and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.include_top = include_top
        self.pooling = "avg" if include_top else pooling
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if include_top and dropout else None
        self.hidden = (
            Dense(channels, hidden, ref=hidden_ref, rngs=rngs) if include_top and hidden else None
        )
        self.hidden_act = activation(hidden_act)
        fc_in = hidden if hidden else channels
        self.fc = Dense(fc_in, num_classes, ref=ref, rngs=rngs) if include_top else None
        self.act = activation(classifier_activation) if include_top else None

    def __call__(self, x):
        x = pool(x, self.pooling)
        if self.fc is None:
            return x
        if self.hidden is not None:
            x = self.hidden_act(self.hidden(x))
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.fc(x)
        return self.act(x) if self.act is not None else x


def max_pool(x, k: int, stride: int, padding="valid"):
    """Max pooling; ``padding`` as `Conv`'s (padded cells never win: they are -inf).

    `fnn.pool.max_pool`: fast backward passes on CPU, XLA's ``reduce_window`` elsewhere."""
    return pooling.max_pool(x, (k, k), strides=(stride, stride), padding=_padding(padding))


def avg_pool(x, k: int, stride: int, padding="valid", *, count_include_pad: bool = True):
    """Average pooling. PyTorch counts padded zeros (``count_include_pad=True``), Keras does not."""
    return nnx.avg_pool(
        x,
        (k, k),
        strides=(stride, stride),
        padding=_padding(padding),
        count_include_pad=count_include_pad,
    )


# ---------------------------------------------------------------------------------------------
# Names and conversion


_NAMED = (Conv, BatchNorm, Dense, SeparableConv)


def weight_names(model: nnx.Module, layout: str) -> dict[str, tuple[str, str]]:
    """``{"a/b/kernel": (flat key, kind)}`` for every parameter and BatchNorm statistic.

    Kinds are `fnn.models.zoo_spec.LAYOUTS`' keys: ``"conv"`` (PyTorch ``[O, I/G, kh, kw]`` ->
    ``[kh, kw, I/G, O]``), ``"dense"`` (transpose), ``"keras_conv"``, ``"keras_dense"`` (as
    they are), ``"keras_depthwise"`` (``[kh, kw, C, 1]`` -> ``[kh, kw, 1, C]``), ``"vector"``.
    """
    if layout not in (*LAYOUTS, "keras3"):
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    names: dict[str, tuple[str, str]] = {}
    inside: list[tuple] = []
    for path, module in nnx.iter_modules(model):
        if not isinstance(module, _NAMED):
            continue
        if any(path[: len(p)] == p for p in inside):
            continue  # the Conv layers inside a SeparableConv
        inside.append(tuple(path))
        for sub, spec in module.names(layout).items():
            names["/".join(map(str, (*path, *sub)))] = spec
    return names


def make_convert(layout: str, *, what: str, tolerate: Sequence[str] = ()):
    """A `ModelSpec.convert` for ``layout``: ``convert(model, weights, *, skip=())``.

    ``tolerate``: regexes of source keys a headless model may leave unused (the classifier).
    Torchvision's Inception v3 auxiliary classifier (``AuxLogits.*``) is always tolerated: it
    only trains.
    """

    def convert(model, weights, *, skip=()):
        scheme = layout
        if layout == "keras":
            weights, scheme = _keras_scheme(model, weights)
        return convert_named(
            weights,
            weight_names(model, scheme),
            model,
            tolerate=(*tolerate, r"AuxLogits\..*"),
            skip=skip,
            what=what,
        )

    convert.__doc__ = (
        f"{what}: a flat {layout} weight dict -> ``{{flax path: array}}`` (names, shapes checked)."
    )
    return convert


def _keras_scheme(model, weights):
    """Which key scheme a Keras file uses (legacy names or Keras 3 class ranks), and the file's
    keys with the legacy automatic names ``conv2d_7`` turned into ranks ``conv2d#0``."""
    k3 = {key for key, _ in weight_names(model, "keras3").values()}
    if k3 <= set(weights):
        return weights, "keras3"
    legacy = _rank_auto_names(weights)
    wanted = {key for key, _ in weight_names(model, "keras").values()}
    if wanted <= set(legacy) or len(wanted & set(legacy)) >= len(k3 & set(weights)):
        return legacy, "keras"
    return weights, "keras3"


_AUTO_CLASSES = ("conv2d", "batch_normalization", "dense", "separable_conv2d", "depthwise_conv2d")


def _rank_auto_names(weights):
    auto = re.compile(r"(" + "|".join(_AUTO_CLASSES) + r")(?:_(\d+))?")
    layers: dict[str, list[tuple[int, str]]] = {}
    for key in weights:
        layer = key.split("/")[0]
        m = auto.fullmatch(layer)
        if m:
            layers.setdefault(m.group(1), []).append((int(m.group(2) or 0), layer))
    rename = {}
    for cls, found in layers.items():
        for rank, (_, layer) in enumerate(sorted(set(found))):
            rename[layer] = f"{cls}#{rank}"
    out = {}
    for key, value in weights.items():
        layer, _, rest = key.partition("/")
        out[f"{rename.get(layer, layer)}/{rest}"] = value
    return out


def assign(model: nnx.Module, arrays: Mapping[str, np.ndarray]) -> nnx.Module:
    """Writes ``{"a/b/kernel": array}`` (a ``convert`` result) into ``model`` in place."""
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    flat = {"/".join(map(str, p)): v for p, v in nnx.to_flat_state(state)}
    for path, value in arrays.items():
        flat[path].set_value(jnp.asarray(value, flat[path].get_value().dtype))
    return model


def read_keras_h5(path) -> dict[str, np.ndarray]:
    """Reads Keras weights (Keras 3 ``.weights.h5`` or legacy Keras 2 ``.h5``) into a flat dict.

    Keys are ``"<layer name>/<index>"`` (see the module docstring). Keras 3 files keep each
    layer's weights under ``layers/<name>/vars/<index>``; legacy files keep them under
    ``[model_weights/]<name>/`` with the attribute ``weight_names`` giving their order. Needs
    ``h5py`` (the ``examples`` extra); no Keras, no code from the file runs.
    """
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading Keras .h5 weights needs h5py: pip install h5py") from err
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        if "layers" in f and "layer_names" not in f.attrs:  # Keras 3 .weights.h5
            _read_keras3(f["layers"], out)
        else:
            root = f["model_weights"] if "model_weights" in f else f
            for raw in root.attrs["layer_names"]:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                group = root[name]
                for i, wraw in enumerate(group.attrs.get("weight_names", [])):
                    wname = wraw.decode() if isinstance(wraw, bytes) else str(wraw)
                    out[f"{name}/{i}"] = np.asarray(group[wname])
    if not out:
        raise ValueError(f"{path}: no Keras layer weights found")
    return out


def _read_keras3(layers, out):
    for name, group in layers.items():
        if "vars" in group:
            for i in sorted(group["vars"], key=int):
                out[f"{name}/{i}"] = np.asarray(group["vars"][i])
        for sub in ("layers",):
            if sub in group:  # nested models: their layers by their own names
                _read_keras3(group[sub], out)
