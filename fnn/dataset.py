"""The in-memory dataset type, `Dataset`, and the input checks every data source shares.

Its own module so that data sources (`fnn.data`'s loaders, `fnn.shapes`' generator) can build a
`Dataset` without importing one another, and `fit` can check arrays without importing Grain;
`fnn.data` re-exports everything here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["Dataset", "check_same_length", "check_finite"]


class Dataset(dict):
    """An in-memory dataset: a dict of per-example arrays plus metadata attributes.

    It behaves exactly like the plain dict ``{"image": [N, H, W, C], "label": [N]}`` of the
    data contract (``ds["image"]``, ``**ds``, ``ds.items()``), and adds:

    * ``class_names``: tuple of strings, ``class_names[k]`` is the name of label ``k`` (or None);
    * ``name``: where the data came from (``"digits"``, ``"tfds:mnist:train"``, a folder, ...);
    * ``num_examples``: the shared leading length ``N``;
    * ``take(indices)``: the examples at ``indices`` as a new ``Dataset`` with the same metadata.

    A ``Dataset`` is registered as a JAX pytree (its arrays are the leaves, the metadata is static),
    so ``jax.device_put(ds)`` or ``jax.tree.map(jnp.asarray, ds)`` return a ``Dataset``.

    Examples:
      >>> import numpy as np
      >>> ds = Dataset(image=np.zeros((4, 2, 2, 1), np.float32), label=np.arange(4) % 2,
      ...              class_names=("cat", "dog"))
      >>> ds.num_examples, ds.class_names[ds["label"][1]]
      (4, 'dog')
      >>> ds.take([0, 2])["label"].tolist()
      [0, 0]
    """

    def __init__(self, arrays=(), /, *, class_names=None, name=None, **items):
        super().__init__(arrays, **items)
        self.class_names = None if class_names is None else tuple(str(c) for c in class_names)
        self.name = name

    @property
    def num_examples(self) -> int:
        """The number of examples ``N`` (the leading axis of every array)."""
        return _num_examples(self, "data")

    def take(self, indices) -> Dataset:
        """Return the examples at ``indices`` (an integer array or a slice) as a new ``Dataset``."""
        if not isinstance(indices, slice):
            indices = np.asarray(indices)
        return self.replace({k: v[indices] for k, v in self.items()})

    def replace(self, arrays: Mapping[str, Any]) -> Dataset:
        """A new ``Dataset`` with these arrays and this dataset's metadata."""
        return Dataset(arrays, class_names=self.class_names, name=self.name)

    def __repr__(self) -> str:
        fields = [f"name={self.name!r}"] if self.name is not None else []
        for k, v in self.items():
            if hasattr(v, "shape") and hasattr(v, "dtype"):
                fields.append(f"{k}={v.dtype}{list(v.shape)}")
            else:
                fields.append(f"{k}={v!r}")
        if self.class_names is not None:
            fields.append(f"class_names={self.class_names!r}")
        return f"Dataset({', '.join(fields)})"


def _dataset_flatten_with_keys(ds):
    keys = tuple(sorted(ds))
    children = [(jax.tree_util.DictKey(k), ds[k]) for k in keys]
    return children, (keys, ds.class_names, ds.name)


def _dataset_flatten(ds):
    keys = tuple(sorted(ds))
    return [ds[k] for k in keys], (keys, ds.class_names, ds.name)


def _dataset_unflatten(aux, children):
    keys, class_names, name = aux
    return Dataset(zip(keys, children), class_names=class_names, name=name)


jax.tree_util.register_pytree_with_keys(
    Dataset, _dataset_flatten_with_keys, _dataset_unflatten, _dataset_flatten
)


def _num_examples(data, what: str) -> int:
    """The shared leading length of the arrays in a mapping / sequence (checked)."""
    items = _named_arrays(data, what)
    if not items:
        raise ValueError(f"{what} holds no arrays; expected e.g. {{'image': ..., 'label': ...}}")
    check_same_length(**dict(items))
    return int(np.shape(items[0][1])[0])


def _named_arrays(data, what: str) -> list[tuple[str, Any]]:
    if isinstance(data, Mapping):
        return [(str(k), v) for k, v in data.items() if v is not None]
    if isinstance(data, (tuple, list)):
        return [(f"{what}[{i}]", v) for i, v in enumerate(data) if v is not None]
    if hasattr(data, "shape"):
        return [(what, data)]
    raise TypeError(
        f"{what} must be a dict of arrays (e.g. fnn.data.load(...)), a tuple of arrays or an "
        f"array, got {type(data).__name__}"
    )


def check_same_length(**arrays) -> int:
    """Check that every array has the same leading length ``N`` and return ``N``.

    The common bad input "``x`` has 100 images but ``y`` has 99 labels" fails here with both names
    and both lengths, instead of as a shape error deep inside a compiled step. ``None`` values are
    skipped (an absent ``sample_weight``). Keras raises a similar "Data cardinality is ambiguous"
    error; PyTorch's ``TensorDataset`` raises "Size mismatch between tensors".

    Args:
      **arrays: name → array with a leading example axis (``x=[N, ...]``, ``y=[N]``, ...).

    Returns:
      ``N``, the shared leading length.

    Raises:
      ValueError: when an array is a scalar or two leading lengths differ.

    Examples:
      >>> import numpy as np
      >>> check_same_length(x=np.zeros((3, 8, 8, 1)), y=np.zeros(3), sample_weight=None)
      3
    """
    lengths = {}
    for name, value in arrays.items():
        if value is None:
            continue
        shape = np.shape(value)
        if len(shape) == 0:
            raise ValueError(f"{name} must have a leading example axis, got a scalar")
        lengths[name] = int(shape[0])
    if not lengths:
        raise ValueError("check_same_length needs at least one array")
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ValueError(
            f"The arrays must have the same number of examples (leading axis), but {desc}. "
            "Pass one label per image."
        )
    return next(iter(lengths.values()))


def check_finite(x, name: str = "x") -> None:
    """Raise a ValueError when ``x`` holds NaN or ±inf, naming the argument and the first index.

    Integer and boolean arrays are always finite and return at once. For a ``jax.Array`` the test
    runs on its device and only one boolean comes back to the host; the location is computed
    only when the check fails.

    Args:
      x: an array, e.g. images ``[N, H, W, C]``.
      name: the argument name used in the message (``"x"``, ``"validation_data[0]"``, ...).

    Raises:
      ValueError: ``"x contains 3 non-finite values (NaN or inf); the first is nan at index
      (0, 4, 2, 0) ..."``.

    Examples:
      >>> import numpy as np
      >>> check_finite(np.ones((2, 3)), "x")
      >>> check_finite(np.array([1.0, np.nan]), "x")
      Traceback (most recent call last):
      ...
      ValueError: x contains 1 non-finite value (NaN or inf); the first is nan at index (1,). Clean or impute the data before training.
    """
    dtype = np.dtype(getattr(x, "dtype", np.asarray(x).dtype))
    if not np.issubdtype(dtype, np.inexact):
        return
    if isinstance(x, jax.Array):
        if bool(jax.numpy.isfinite(x).all()):
            return
    x = np.asarray(x)
    bad = ~np.isfinite(x)
    if not bad.any():
        return
    count = int(bad.sum())
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    plural = "s" if count > 1 else ""
    raise ValueError(
        f"{name} contains {count} non-finite value{plural} (NaN or inf); the first is "
        f"{x[first]} at index {first}. Clean or impute the data before training."
    )
