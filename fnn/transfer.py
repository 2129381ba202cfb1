"""Transfer learning: load pretrained weights, freeze with an optimizer mask, extract features.

The slides' recipe: take a CNN base trained on ImageNet, add a new classifier for your data, and
(1) *feature extraction*: train only the new head on the frozen base's features, then
(2) *fine-tuning*: unfreeze all or the top blocks of the base and train on with a very small
learning rate. BatchNorm layers of a frozen base stay in inference mode (their running statistics
are used, never updated): `fnn.models.EfficientNetLite` has ``freeze_batchnorm=True`` for that,
independent of which parameters the optimizer updates.

Data contract: parameter trees are Flax NNX states (``nnx.state(model, nnx.Param)``) or nested
dicts of arrays; a leaf's *path* is its keys joined by ``/`` (``"blocks/3/expand/conv/kernel"``),
and regular expressions are matched against whole paths with `re.fullmatch`, as big_vision does.
PyTorch arrays arrive in PyTorch layouts (convolution ``[out, in, kh, kw]``, dense ``[out, in]``)
and leave in Flax layouts (``[kh, kw, in, out]``, ``[in, out]``).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = [
    "TopOfBase",
    "base_frozen_regex",
    "extract_features",
    "freeze",
    "frozen_mask",
    "load_torch_state_dict",
    "merge_params",
    "parameter_overview",
    "path_str",
    "torch_conv_kernel",
    "torch_dense_kernel",
]

log = logging.getLogger("fnn.transfer")


# ---------------------------------------------------------------------------------------------
# Paths


def path_str(path) -> str:
    """``"a/0/kernel"`` for a `jax.tree_util` key path (drops NNX's trailing ``.value``)."""
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, jax.tree_util.FlattenedIndexKey):
            parts.append(str(key.key))
        else:
            parts.append(str(key))
    if len(path) > 1 and isinstance(path[-1], jax.tree_util.GetAttrKey) and parts[-1] == "value":
        parts.pop()
    return "/".join(parts)


def _flatten(tree) -> dict[str, object]:
    if isinstance(tree, nnx.State):
        tree = nnx.to_pure_dict(tree)
    if isinstance(tree, Mapping) and all(isinstance(k, str) and "/" in k for k in tree):
        return dict(tree)  # already flat
    return {path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _unflatten_into(template, flat: Mapping[str, object]):
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(treedef, [flat[path_str(p)] for p, _ in paths])


# ---------------------------------------------------------------------------------------------
# Layouts


def torch_conv_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch ``Conv2d.weight`` ``[O, I/groups, kH, kW]`` (OIHW) -> Flax ``[kH, kW, I/groups, O]``.

    Depthwise kernels (``groups = channels``, PyTorch ``[C, 1, k, k]``) need no special case: the
    same transpose gives ``[k, k, 1, C]``, which is what `flax.nnx.Conv` with
    ``feature_group_count=C`` holds. Both frameworks compute a cross-correlation, so the kernel is
    not flipped. (TensorFlow's ``DepthwiseConv2D`` stores ``[k, k, C, 1]`` instead.)

    Args:
      weight: ``[O, I, kH, kW]``.

    Returns:
      ``[kH, kW, I, O]``.

    Examples:
      >>> torch_conv_kernel(np.zeros((32, 3, 5, 7))).shape
      (5, 7, 3, 32)
    """
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"weight must be a [O, I, kH, kW] kernel, got shape {weight.shape}")
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def torch_dense_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch ``Linear.weight`` ``[out, in]`` (``y = x Wᵀ + b``) -> Flax ``[in, out]`` (``y = x W + b``).

    Examples:
      >>> torch_dense_kernel(np.zeros((1000, 1280))).shape
      (1280, 1000)
    """
    weight = np.asarray(weight)
    if weight.ndim != 2:
        raise ValueError(f"weight must be a [out, in] matrix, got shape {weight.shape}")
    return np.ascontiguousarray(weight.T)


_LAYOUTS = {"conv": torch_conv_kernel, "dense": torch_dense_kernel, "vector": np.asarray}


def load_torch_state_dict(
    state_dict: Mapping[str, np.ndarray],
    names: Mapping[tuple, tuple[str, str]],
    inited,
    *,
    ignore: Sequence[str] = (r".*num_batches_tracked",),
    what: str = "model",
) -> dict[str, np.ndarray]:
    """Converts a PyTorch state dict to flat Flax paths, checking every name and shape.

    Args:
      state_dict: ``{torch key: array}`` as `fnn.weights.load` returns it.
      names: ``{flax path tuple: (torch key, kind)}``, kind ``"conv"``, ``"dense"`` or
        ``"vector"`` (e.g. `fnn.models.EfficientNetLite.torch_names`).
      inited: the freshly initialised parameter tree whose shapes the result must match.
      ignore: regexes of torch keys that are not parameters (BatchNorm's step counter).
      what: the model's name, for error messages.

    Returns:
      ``{"a/b/kernel": array}`` in Flax layout, one entry per name.

    Raises:
      ValueError: a key the model needs is missing, the file has keys the model does not know
        (typically a different variant), or a shape differs (the message names the Flax path,
        the torch key and both shapes).
    """
    wanted = {"/".join(map(str, path)): spec for path, spec in names.items()}
    torch_keys = {key for key, _ in wanted.values()}
    extra = [
        k for k in state_dict if k not in torch_keys and not any(re.fullmatch(p, k) for p in ignore)
    ]
    missing = [key for key, _ in wanted.values() if key not in state_dict]
    if missing or extra:
        raise ValueError(
            f"state dict does not match {what}: {len(missing)} missing keys {missing[:4]}, "
            f"{len(extra)} unexpected keys {extra[:4]} (is it another variant's checkpoint?)"
        )
    target = _flatten(inited)
    out = {}
    for path, (key, kind) in wanted.items():
        value = _LAYOUTS[kind](state_dict[key])
        expected = tuple(np.shape(target[path]))
        if value.shape != expected:
            raise ValueError(
                f"shape mismatch for {path} (torch {key!r} {tuple(state_dict[key].shape)}): "
                f"expected {expected}, got {value.shape} after the {kind} layout change "
                f"(is it another variant's checkpoint?)"
            )
        out[path] = value
    return out


# ---------------------------------------------------------------------------------------------
# Merging


def merge_params(loaded, inited, *, dont_load: Sequence[str] | str = ()):
    """Merges loaded weights into freshly initialised ones, logging everything not loaded.

    For every leaf of ``inited``: if its path matches a ``dont_load`` regex (``re.fullmatch``), the
    fresh value is kept and one line ``not loaded: <path>`` is logged to the ``fnn.transfer``
    logger; otherwise the loaded value is used (cast to the fresh dtype). Loaded leaves that
    match ``dont_load`` (e.g. the old 1000-class head) are dropped with a log line too. This is
    big_vision's ``merge_params``; Keras' equivalent is ``load_weights(..., skip_mismatch=True)``,
    which skips silently, and PyTorch's ``load_state_dict(strict=False)`` only returns the lists.

    Args:
      loaded: tree or flat ``{"a/b": array}`` dict of pretrained values.
      inited: the fresh tree (``nnx.state(model)`` or a nested dict); its structure is returned.
      dont_load: regexes of paths to keep fresh (e.g. ``"classifier/.*"``).

    Returns:
      A tree shaped like ``inited`` (an `nnx.State` in, a pure nested dict out).

    Raises:
      ValueError: a path is in one tree but not the other without matching ``dont_load``, or a
        shape differs; the message names the path and both shapes.

    Examples:
      >>> fresh = {"base": {"w": np.zeros(2)}, "head": {"w": np.zeros(3)}}
      >>> merged = merge_params({"base/w": np.ones(2)}, fresh, dont_load=["head/.*"])
      >>> merged["base"]["w"], merged["head"]["w"]
      (array([1., 1.]), array([0., 0., 0.]))
    """
    patterns = [dont_load] if isinstance(dont_load, str) else list(dont_load)
    compiled = [re.compile(p) for p in patterns]

    def skipped(path):
        return any(p.fullmatch(path) for p in compiled)

    if isinstance(inited, nnx.State):
        inited = nnx.to_pure_dict(inited)
    flat_loaded = _flatten(loaded)
    flat_inited = _flatten(inited)
    merged, missing = {}, []
    for path, fresh in flat_inited.items():
        if skipped(path):
            log.info("not loaded: %s (kept its initial value, matches dont_load)", path)
            merged[path] = fresh
        elif path not in flat_loaded:
            missing.append(path)
        else:
            value = flat_loaded[path]
            if tuple(np.shape(value)) != tuple(np.shape(fresh)):
                raise ValueError(
                    f"shape mismatch for {path}: the model expects {tuple(np.shape(fresh))}, "
                    f"the loaded weights have {tuple(np.shape(value))}"
                )
            if isinstance(fresh, np.ndarray | np.generic):  # NumPy trees stay NumPy
                merged[path] = np.asarray(value, dtype=fresh.dtype)
            else:  # jax arrays, or abstract ones (jax.ShapeDtypeStruct) from nnx.eval_shape
                merged[path] = jnp.asarray(value, dtype=fresh.dtype)
    unused = [p for p in flat_loaded if p not in flat_inited and not skipped(p)]
    for path in flat_loaded:
        if path not in flat_inited and skipped(path):
            log.info("not loaded: %s (in the checkpoint, matches dont_load)", path)
    if missing or unused:
        raise ValueError(
            f"loaded weights do not fit: {len(missing)} parameters missing from them "
            f"{missing[:5]}, {len(unused)} not in the model {unused[:5]}; add regexes to "
            f"dont_load= to keep fresh values"
        )
    return _unflatten_into(inited, merged)


# ---------------------------------------------------------------------------------------------
# Freezing


def frozen_mask(params, frozen) -> object:
    """A tree of bools shaped like ``params``: True where ``frozen`` says the leaf is frozen.

    Args:
      params: parameter tree.
      frozen: a regex or list of regexes (``re.fullmatch`` on ``"a/b/kernel"`` paths), a bool,
        a tree of bools shaped like ``params``, or a callable ``params -> tree of bools``.
    """
    if callable(frozen) and not isinstance(frozen, str):
        return frozen(params)
    if isinstance(frozen, bool):
        return jax.tree.map(lambda _: frozen, params)
    if isinstance(frozen, str) or (
        isinstance(frozen, list | tuple) and all(isinstance(p, str) for p in frozen)
    ):
        patterns = [frozen] if isinstance(frozen, str) else list(frozen)
        compiled = [re.compile(p) for p in patterns]
        return jax.tree_util.tree_map_with_path(
            lambda path, _: any(p.fullmatch(path_str(path)) for p in compiled), params
        )
    return frozen  # a mask tree; optax checks its structure against params


def freeze(tx: optax.GradientTransformation, *, frozen) -> optax.GradientTransformation:
    """Wraps an optimizer so that frozen parameters never change.

    Frozen leaves get update 0 (``optax.set_to_zero``) and no optimizer state; the others go
    through ``tx`` untouched, so the rule ``θ ← θ − η·update(∇θ)`` applies to trainable leaves
    only and frozen ones stay bit-identical. Works with any `optax.GradientTransformation`
    (fnn's or Optax's, with schedules, clipping, weight decay). Built on `optax.partition`;
    `optax.freeze(mask)` is the mask-only variant that still keeps the inner state for every
    leaf. Keras sets ``layer.trainable = False``; PyTorch sets ``requires_grad_(False)``.

    Freezing decides which *parameters* move. BatchNorm's running statistics are not parameters:
    keep them fixed with ``EfficientNetLite(freeze_batchnorm=True)`` (inference-mode BatchNorm).

    Args:
      tx: the optimizer for trainable leaves.
      frozen: see `frozen_mask`: regex(es) over ``"a/b/kernel"`` paths, a bool, a mask tree
        (True = frozen) or a callable.

    Returns:
      An `optax.GradientTransformation`.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> params = {"base": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2)}}
      >>> tx = freeze(optax.sgd(0.1), frozen="base/.*")
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"base": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2)}},
      ...                            state, params)
      >>> optax.apply_updates(params, updates)["base"]["w"]
      Array([1., 1.], dtype=float32)
    """
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")

    def labels(params):
        mask = frozen_mask(params, frozen)
        return jax.tree.map(lambda m: "frozen" if m else "trainable", mask)

    return optax.partition({"trainable": tx, "frozen": optax.set_to_zero()}, labels)


def base_frozen_regex(model, *, trainable_blocks: int = 0, prefix: str = "") -> str:
    """Regex freezing an EfficientNet's base except its top ``trainable_blocks`` MBConv blocks.

    ``trainable_blocks=0`` freezes stem, all blocks and the head convolution (feature
    extraction: only ``classifier`` trains); ``k > 0`` also trains the last ``k`` blocks and the
    head convolution (fine-tuning the top of the base). Pair it with the model's
    ``stop_gradient_blocks = len(blocks) - k`` (``len(blocks) + 1`` for ``k = 0``) so that
    autodiff does not compute the gradients the mask throws away.

    Args:
      model: an `fnn.models.EfficientNetLite`.
      trainable_blocks: how many of the last blocks train.
      prefix: the base's path inside a bigger model, e.g. ``"base/"``.

    Examples:
      >>> from flax import nnx
      >>> from fnn.models import EfficientNetLite
      >>> m = nnx.eval_shape(lambda: EfficientNetLite("lite0", rngs=nnx.Rngs(0)))
      >>> base_frozen_regex(m, trainable_blocks=2)
      '(stem|blocks/(0|1|2|3|4|5|6|7|8|9|10|11|12|13))/.*'
    """
    n = len(model.blocks)
    if not 0 <= trainable_blocks <= n:
        raise ValueError(f"trainable_blocks must be in [0, {n}], got {trainable_blocks}")
    frozen = "|".join(str(i) for i in range(n - trainable_blocks))
    if trainable_blocks == 0:
        return f"{prefix}(stem|head|blocks/({frozen}))/.*"
    return f"{prefix}(stem|blocks/({frozen}))/.*" if frozen else f"{prefix}stem/.*"


# ---------------------------------------------------------------------------------------------
# Overview


def parameter_overview(tree, *, max_rows: int | None = None) -> str:
    """A table of every leaf: path, shape, size, mean, std, plus the total (like CLU's).

    Args:
      tree: an `nnx.Module` (its `nnx.Param` leaves), an `nnx.State` or a nested dict.
      max_rows: show only the first rows (the total always counts every leaf).

    Returns:
      The table as a string (print or log it).

    Examples:
      >>> print(parameter_overview({"dense": {"kernel": np.ones((2, 3))}}))  # doctest: +NORMALIZE_WHITESPACE
      | path         | shape  | size | mean  | std   |
      |--------------|--------|------|-------|-------|
      | dense/kernel | (2, 3) | 6    | 1     | 0     |
      total: 6 parameters in 1 arrays
    """
    if isinstance(tree, nnx.Module):
        tree = nnx.state(tree, nnx.Param)
    flat = _flatten(tree)
    rows = [("path", "shape", "size", "mean", "std")]
    total = 0
    for i, (path, value) in enumerate(flat.items()):
        abstract = isinstance(value, jax.ShapeDtypeStruct)  # from nnx.eval_shape: no values
        value = value if abstract else np.asarray(value)
        size = int(np.prod(value.shape))
        total += size
        if max_rows is None or i < max_rows:
            if abstract or not size:
                mean = std = "-"
            else:
                mean, std = f"{float(value.mean()):.3g}", f"{float(value.std()):.3g}"
            rows.append((path, str(tuple(value.shape)), str(size), mean, std))
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    widths[3] = widths[4] = max(widths[3], widths[4], 5)
    lines = ["| " + " | ".join(r[c].ljust(widths[c]) for c in range(5)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    if max_rows is not None and len(flat) > max_rows:
        lines.append(f"... {len(flat) - max_rows} more")
    lines.append(f"total: {total:,} parameters in {len(flat)} arrays")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Feature extraction


class TopOfBase(nnx.Module):
    """The top of a pretrained base plus a new head, trained on cached intermediate activations.

    ``TopOfBase(base, head, start=k)(h) = head(base.features_from(h, k))`` with
    ``h = base.intermediate(x, k)`` precomputed by `extract_features` (``block=k``): fine-tuning
    blocks ``k..`` and the head convolution costs a forward and backward pass through those blocks
    only, and the frozen bottom runs once per (augmented) image instead of once per step. The
    module holds the whole ``base`` (paths ``base/...``, ``head/...``), so freeze the bottom with
    ``freeze(tx, frozen=base_frozen_regex(base, trainable_blocks=len(base.blocks) - k,
    prefix="base/"))``; its parameters get no gradient anyway. Training updates ``base`` in place.

    Args:
      base: an `fnn.models.EfficientNetLite` (usually ``freeze_batchnorm=True``).
      head: a module ``[N, 1280] -> outputs``.
      start: the first block that trains.
    """

    def __init__(self, base, head, *, start: int):
        if not 0 <= start <= len(base.blocks):
            raise ValueError(f"start must be in [0, {len(base.blocks)}], got {start}")
        self.base = base
        self.head = head
        self.start = start

    def __call__(self, h):
        return self.head(self.base.features_from(h, self.start))


@functools.lru_cache(maxsize=16)
def _feature_runner(graphdef, preprocess, augment, block):
    """One jitted extractor per (model graph, preprocess, augment, block): reused across calls."""

    @jax.jit
    def run(state, x, key):
        m = nnx.merge(graphdef, state)
        m.eval()
        if augment is not None:
            x = augment(key, x)
        if preprocess is not None:
            x = preprocess(x)
        if block is not None:
            f = m.intermediate(x, block)
        else:
            f = m.features(x) if hasattr(m, "features") else m(x)
        return f.astype(jnp.float32)

    return run


def extract_features(
    model,
    images: np.ndarray,
    *,
    preprocess: Callable[[jax.Array], jax.Array] | None = None,
    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    copies: int = 1,
    key: jax.Array | None = None,
    block: int | None = None,
    batch_size: int = 64,
    verbose: bool = False,
) -> np.ndarray:
    """Runs a frozen base once over a dataset and returns its features (the fast path).

    Feature extraction trains only the new head, so the base's output for an image never
    changes: compute it once, then train the head on the cached ``[N, F]`` features (thousands
    of times cheaper per epoch than running the base every step). Augmentation still works: pass
    ``augment`` and ``copies=k`` to cache the features of ``k`` independently augmented views of
    every image (the Keras guide calls running the base inside the training loop "feature
    extraction with data augmentation"; this is the cached version of it).

    The base runs in inference mode (``model.eval()`` on a copy, BatchNorm running statistics,
    no dropout) in one compiled function per batch shape; the last batch is padded, so there is
    one compilation.

    Args:
      model: a module with ``features(x) -> [B, F]`` (`fnn.models.EfficientNetLite`), or any
        callable module (its output is used as the features).
      images: ``[N, H, W, C]`` array, as ``preprocess`` expects it.
      preprocess: ``x -> x`` applied inside the compiled function after augmentation (e.g.
        resizing and normalising for the pretrained network).
      augment: ``(key, x) -> x`` on a batch ``[B, H, W, C]`` (e.g. `fnn.augment` ops vmapped).
      copies: number of augmented views (``1`` without ``augment``).
      key: PRNG key for the augmentation (default ``PRNGKey(0)``).
      block: return ``model.intermediate(x, block)`` (the feature maps entering that block)
        instead of the pooled features, to fine-tune the blocks above on the cache
        (`TopOfBase`).
      batch_size: images per compiled call.
      verbose: print the time taken.

    Returns:
      ``[copies * N, F]`` (or ``[copies * N, h, w, c]`` with ``block``) float32 NumPy
      features, copy-major (copy ``c`` of image ``i`` is row
      ``c * N + i``); labels for them are ``np.tile(labels, copies)``.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    if copies < 1 or (copies > 1 and augment is None):
        raise ValueError(f"copies must be 1 without augment and >= 1 with it, got {copies}")
    key = jax.random.PRNGKey(0) if key is None else key
    graphdef, state = nnx.split(model)
    run = _feature_runner(graphdef, preprocess, augment, block)
    start = time.perf_counter()
    n = len(images)
    out = []
    for c in range(copies):
        for i in range(0, n, batch_size):
            batch = images[i : i + batch_size]
            pad = batch_size - len(batch)
            if pad:
                batch = np.concatenate([batch, np.repeat(batch[-1:], pad, axis=0)])
            step_key = jax.random.fold_in(key, c * n + i)
            out.append(np.asarray(run(state, jnp.asarray(batch), step_key))[: batch_size - pad])
    if verbose:
        print(f"extracted {copies * n} feature vectors in {time.perf_counter() - start:.1f} s")
    return np.concatenate(out)
