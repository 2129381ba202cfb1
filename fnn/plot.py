"""Small matplotlib helpers for the figures of the lecture: learning curves, image grids, and
accuracy against training-set size.

Contract: every function builds a standalone ``matplotlib.figure.Figure`` rendered by the Agg
canvas, so it works headless (CI, servers, notebooks) and never touches ``pyplot``'s global state or
switches the user's backend. Each returns the figure; with ``path`` it also writes the image
(the format from the suffix, PNG by default), creating missing parent folders. Images are NHWC
floats in ``[0, 1]`` as ``fnn.data`` produces them (values outside are clipped for display).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["history", "image_grid", "accuracy_vs_size"]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, dpi: int):
    if path is not None:
        path = os.fspath(path)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


def history(
    history,
    path=None,
    *,
    metrics: Sequence[str] | None = None,
    validation_freq=1,
    title=None,
    dpi=100,
):
    """Learning curves: one panel per metric, training and validation per epoch.

    The slides' "iterate, validate" loop is judged from these curves: validation loss rising
    while training loss falls is overfitting (time for early stopping, augmentation or
    regularisation). Keras names the validation curve of ``m`` ``val_m`` and so does fnn's
    ``History``; that pairing is how the two lines of a panel are found.

    Args:
      history: ``History.history`` (a dict ``metric -> per-epoch list``) or any object with a
        ``.history`` dict (Keras' and fnn's ``History``).
      path: optional file to write (``"outputs/curves.png"``).
      metrics: the panels to draw, e.g. ``["loss", "accuracy"]``; default: every key without the
        ``val_`` prefix, except the learning rate and gradient/parameter norms (``lr``,
        ``learning_rate``, ``*_norm``) when a loss or accuracy is present.
      validation_freq: the ``fit`` argument of the same name, to place the validation points:
        an int ``f`` (validated after epochs ``f, 2f, ...``, Keras' rule) or the list of
        validated epochs (1-based).
      title: optional figure title.
      dpi: resolution of the saved image.

    Returns:
      the ``matplotlib.figure.Figure`` (panels in ``fig.axes``, in ``metrics`` order; epochs on
      the x axis numbered from 1, as Keras' progress bar counts them).

    Raises:
      ValueError: an empty history, a requested metric that is absent (listing those present),
        or a validation list of a different length than its training list.

    Examples:
      >>> fig = history({"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.7, 0.8],
      ...                "accuracy": [0.6, 0.8, 0.9], "val_accuracy": [0.5, 0.7, 0.7]})
      >>> [ax.get_title() for ax in fig.axes]
      ['loss', 'accuracy']
    """
    hist = getattr(history, "history", history)
    if not isinstance(hist, Mapping) or not hist:
        raise ValueError(
            "history must be a non-empty dict of per-epoch lists (History.history), got "
            f"{hist!r:.80}"
        )
    present = [k for k in hist if not str(k).startswith("val_")]
    if metrics is None:
        diagnostics = {"lr", "learning_rate"}
        main = [k for k in present if k not in diagnostics and not str(k).endswith("_norm")]
        metrics = main or present
    else:
        metrics = list(metrics)
        missing = [m for m in metrics if m not in hist]
        if missing:
            raise ValueError(f"metrics {missing} are not in the history; it has {sorted(hist)}")
    if not metrics:
        raise ValueError(f"history has only validation keys {sorted(hist)}; nothing to plot")
    from matplotlib.ticker import MaxNLocator

    fig = _figure(4.0 * len(metrics), 3.2)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, name in zip(axes, metrics):
        train = np.asarray(hist[name], dtype=float)
        epochs = np.arange(1, len(train) + 1)
        ax.plot(epochs, train, marker="o", markersize=3, label="training")
        if f"val_{name}" in hist:
            val = np.asarray(hist[f"val_{name}"], dtype=float)
            if isinstance(validation_freq, int):
                val_epochs = epochs[epochs % validation_freq == 0]
            else:
                val_epochs = np.asarray([e for e in validation_freq if e <= len(train)])
            if len(val) != len(val_epochs):
                raise ValueError(
                    f"val_{name} has {len(val)} values but {name} has {len(train)} epochs, "
                    f"which with validation_freq={validation_freq!r} means {len(val_epochs)} "
                    "validations; pass the validation_freq used in fit"
                )
            ax.plot(val_epochs, val, marker="o", markersize=3, label="validation")
        ax.set_title(str(name))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


def image_grid(images, titles=None, path=None, *, ncols: int | None = None, cmap="gray", dpi=100):
    """Show a batch of images in a grid, optionally titled (labels, predictions).

    Args:
      images: ``[N, H, W, C]`` with ``C`` in ``{1, 3, 4}``, or ``[N, H, W]``; floats in ``[0, 1]``
        (clipped) or ``uint8``. NumPy or JAX.
      titles: optional ``N`` strings (e.g. ``class_names[label]``, or ``"7 (pred 1)"``).
      path: optional file to write.
      ncols: columns; default ``ceil(sqrt(N))``.
      cmap: colour map for one-channel images.
      dpi: resolution of the saved image.

    Returns:
      the ``Figure``; ``fig.axes[i]`` shows image ``i``.

    Raises:
      ValueError: a wrong image shape, an empty batch, or ``len(titles) != N``.

    Examples:
      >>> import numpy as np
      >>> fig = image_grid(np.zeros((5, 8, 8, 1)), titles=list("abcde"), ncols=5)
      >>> len(fig.axes), fig.axes[4].get_title()
      (5, 'e')
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4) or images.shape[0] == 0:
        raise ValueError(
            "images must have shape [N, H, W, C] with N >= 1 and C in (1, 3, 4), or [N, H, W]; "
            f"got {np.shape(images)}"
        )
    n = images.shape[0]
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles has {len(titles)} entries but there are {n} images")
    ncols = int(ncols or math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    fig = _figure(1.6 * ncols, 1.6 * nrows + (0.25 * nrows if titles is not None else 0))
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(grid.ravel()):
        if i >= n:
            fig.delaxes(ax)
            continue
        image = images[i]
        if image.dtype != np.uint8:
            image = np.clip(image.astype(np.float32), 0.0, 1.0)
        if image.shape[-1] == 1:
            vmax = 255 if image.dtype == np.uint8 else 1.0
            ax.imshow(image[..., 0], cmap=cmap, vmin=0, vmax=vmax)
        else:
            ax.imshow(image)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    return _save(fig, path, dpi)


def accuracy_vs_size(
    sizes,
    accuracies: Mapping[str, Sequence[float]],
    path=None,
    *,
    xlabel: str = "training images per class",
    ylabel: str = "test accuracy",
    logx: bool = True,
    title=None,
    dpi=100,
):
    """Accuracy against training-set size, one line per method (the transfer-learning figure).

    The lecture's case for transfer learning: with few labelled images a pretrained network
    (feature extraction, then fine-tuning) beats the same network trained from scratch, and the
    gap closes as data grows. ``accuracies["from scratch"][i]`` is measured with ``sizes[i]``
    images per class.

    Args:
      sizes: ``[K]`` increasing training-set sizes (e.g. images per class: 5, 10, 20, 50).
      accuracies: method name → ``[K]`` accuracies in ``[0, 1]``, or ``[K, R]`` for ``R`` repeats
        (the mean is drawn, with the min–max range shaded).
      path: optional file to write.
      xlabel, ylabel, title: axis labels and title.
      logx: logarithmic size axis (sizes usually double).
      dpi: resolution of the saved image.

    Returns:
      the ``Figure`` (one ``Axes``; one line per method, in the given order).

    Raises:
      ValueError: no methods, or a method whose accuracies do not have ``len(sizes)`` rows.

    Examples:
      >>> fig = accuracy_vs_size([5, 10, 20], {"from scratch": [0.5, 0.6, 0.8],
      ...                                      "fine-tuned": [0.8, 0.9, 0.95]})
      >>> [line.get_label() for line in fig.axes[0].get_lines()]
      ['from scratch', 'fine-tuned']
    """
    sizes = np.asarray(sizes, dtype=float)
    if sizes.ndim != 1 or sizes.size == 0:
        raise ValueError(f"sizes must be a non-empty 1-D sequence, got shape {sizes.shape}")
    if not accuracies:
        raise ValueError("accuracies must map at least one method name to its accuracies")
    fig = _figure(5.0, 3.6)
    ax = fig.subplots()
    for name, values in accuracies.items():
        values = np.asarray(values, dtype=float)
        if values.ndim not in (1, 2) or values.shape[0] != sizes.size:
            raise ValueError(
                f"accuracies[{name!r}] has shape {values.shape}; expected ({sizes.size},) or "
                f"({sizes.size}, repeats) to match sizes"
            )
        mean = values if values.ndim == 1 else values.mean(axis=1)
        (line,) = ax.plot(sizes, mean, marker="o", label=str(name))
        if values.ndim == 2:
            ax.fill_between(
                sizes, values.min(axis=1), values.max(axis=1), color=line.get_color(), alpha=0.2
            )
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi)
