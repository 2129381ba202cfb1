"""Matplotlib figures for the lecture: learning curves, image grids, accuracy against training-set
size, activations with their derivatives, optimizer trajectories, confusion matrices, and loss
landscapes (`fnn.landscape`: 1-D curves, 2-D contours, 3-D surfaces).

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

__all__ = [
    "history",
    "image_grid",
    "accuracy_vs_size",
    "activations",
    "trajectories",
    "confusion_matrix",
    "landscape_1d",
    "landscape_contour",
    "landscape_3d",
]


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
        ax.set_ylabel(str(name))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


def image_grid(
    images,
    titles=None,
    path=None,
    *,
    ncols: int | None = None,
    cmap="gray",
    title="Images",
    dpi=100,
):
    """Show a batch of images in a grid, optionally titled (labels, predictions).

    The cells take the images' aspect ratio, so non-square images (e.g. 32×64) tile the figure
    without white gaps (only a band for the titles is added above each row).

    Args:
      images: ``[N, H, W, C]`` with ``C`` in ``{1, 3, 4}``, or ``[N, H, W]``; floats in ``[0, 1]``
        (clipped) or ``uint8``. NumPy or JAX.
      titles: optional ``N`` strings (e.g. ``class_names[label]``, or ``"7 (pred 1)"``).
      path: optional file to write.
      ncols: columns; default ``ceil(sqrt(N))``.
      cmap: colour map for one-channel images.
      title: figure title (the image size, ``H×W px``, is appended; ``None`` for none).
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
    n, h, w = images.shape[:3]
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles has {len(titles)} entries but there are {n} images")
    ncols = int(ncols or math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    # Cells of the images' aspect ratio (the longer side 1.6 inches), a title band per row and
    # one for the figure title: axes placed by hand tile the figure exactly.
    scale = 1.6 / max(h, w)
    cell_w, cell_h = w * scale, h * scale
    band = 0.25 if titles is not None else 0.0
    head = 0.35 if title else 0.0
    width, height = ncols * cell_w, nrows * (cell_h + band) + head
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    for i in range(n):
        row, col = divmod(i, ncols)
        bottom = height - head - (row + 1) * (cell_h + band)
        ax = fig.add_axes((col * cell_w / width, bottom / height, cell_w / width, cell_h / height))
        image = images[i]
        if image.dtype != np.uint8:
            image = np.clip(image.astype(np.float32), 0.0, 1.0)
        if image.shape[-1] == 1:
            vmax = 255 if image.dtype == np.uint8 else 1.0
            ax.imshow(image[..., 0], cmap=cmap, vmin=0, vmax=vmax, aspect="auto")
        else:
            ax.imshow(image, aspect="auto")
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9, pad=2)
    if title:
        fig.suptitle(f"{title} ({h}×{w} px)", y=1 - 0.05 / height, va="top")
    return _save(fig, path, dpi)


def accuracy_vs_size(
    sizes,
    accuracies: Mapping[str, Sequence[float]],
    path=None,
    *,
    xlabel: str = "training images per class",
    ylabel: str = "test accuracy",
    logx: bool = True,
    title="Accuracy against training-set size",
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


def _named(items, what: str) -> dict:
    # One item or a dict name -> item, as an ordered dict.
    if isinstance(items, Mapping):
        if not items:
            raise ValueError(f"{what} must map at least one name to its values")
        return dict(items)
    return {"": items}


def activations(
    functions: Mapping,
    path=None,
    *,
    x=None,
    ncols: int = 5,
    ylim=(-2.0, 3.0),
    title="Activation functions and their derivatives",
    dpi=100,
):
    """Each activation ``f`` with its derivative ``f'`` (from ``jax.grad``), one panel each.

    The slides read the derivative: where it is near 0 (sigmoid and tanh tails, ReLU for
    ``x < 0``) gradients vanish; where it is 1 they pass unchanged. The derivative is computed by
    automatic differentiation of the given function, elementwise (``vmap(grad(f))``), so it is the
    gradient training actually uses (e.g. ReLU's ``f'(0) = 0``, JAX's convention; PyTorch agrees).

    Args:
      functions: name → elementwise function of a scalar array (``fnn.activations.relu``, or a
        ``functools.partial`` with options).
      path: optional file to write.
      x: ``[K]`` inputs; default ``linspace(-5, 5, 1001)``.
      ncols: panels per row.
      ylim: common y range (``None`` for each panel's own).
      title: figure title.
      dpi: resolution of the saved image.

    Returns:
      the ``Figure``: one ``Axes`` per function, two lines each (``f(x)`` then ``f'(x)``).

    Raises:
      ValueError: no functions, or ``x`` not a non-empty 1-D array.

    Examples:
      >>> from fnn import activations as A
      >>> fig = activations({"ReLU": A.relu, "tanh": A.tanh}, x=[-1.0, 0.5, 2.0])
      >>> fig.axes[0].get_lines()[1].get_ydata().tolist()  # ReLU'(x)
      [0.0, 1.0, 1.0]
    """
    import jax
    import jax.numpy as jnp

    if not functions:
        raise ValueError("functions must map at least one name to an activation function")
    x = np.linspace(-5.0, 5.0, 1001) if x is None else np.asarray(x, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x must be a non-empty 1-D array, got shape {x.shape}")
    xj = jnp.asarray(x, jnp.float32)
    ncols = max(1, min(int(ncols), len(functions)))
    nrows = math.ceil(len(functions) / ncols)
    fig = _figure(3.2 * ncols, 2.8 * nrows + 0.4)
    grid = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    for i, ax in enumerate(grid.ravel()):
        if i >= len(functions):
            fig.delaxes(ax)
            continue
        name, f = list(functions.items())[i]
        value = np.asarray(f(xj), dtype=float)
        slope = np.asarray(jax.vmap(jax.grad(lambda t, f=f: f(t)))(xj), dtype=float)
        ax.plot(x, value, color="C0", lw=2, label="f(x)")
        ax.plot(x, slope, color="C3", lw=1.5, ls="--", label="f′(x)")
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_title(str(name))
        ax.set_xlabel("input x (pre-activation)")
        ax.set_ylabel("f(x), f′(x)")
        ax.grid(True, alpha=0.3)
        if i == 0:
            ax.legend(loc="upper left")
    fig.suptitle(title)
    return _save(fig, path, dpi)


def trajectories(
    f,
    paths: Mapping,
    path=None,
    *,
    xlim=None,
    ylim=None,
    levels: int = 25,
    title="Optimizer trajectories",
    xlabel="θ₁ (parameter 1)",
    ylabel="θ₂ (parameter 2)",
    colors: Mapping | None = None,
    ax=None,
    dpi=100,
):
    """Optimizer paths on the contours of a 2-D function ``f(θ₁, θ₂)``.

    Each path gets its own colour (``tab10``, ``tab20`` beyond 10 paths), its start marked with a
    circle and its end with a cross in that colour; the legend names the optimizer. Contour levels
    are quantiles of ``f`` on the window (dense where the function is flat, so valleys show).

    Args:
      f: the loss, a function of a ``[2]`` array returning a scalar (JAX or NumPy; evaluated under
        ``jax.vmap``).
      paths: optimizer name → ``[T, 2]`` positions, the start first.
      path: optional file to write.
      xlim, ylim: the window; default: the paths' range plus a margin.
      levels: number of contour levels.
      title, xlabel, ylabel: figure title and axis labels.
      colors: optional optimizer name → matplotlib colour (the same colours across panels).
      ax: draw into this ``Axes`` instead of a new figure (for panels of several problems).
      dpi: resolution of the saved image.

    Returns:
      the ``Figure``.

    Raises:
      ValueError: no paths, or a path not shaped ``[T, 2]``.

    Examples:
      >>> import numpy as np
      >>> f = lambda p: p[0] ** 2 + 3 * p[1] ** 2
      >>> fig = trajectories(f, {"sgd": np.array([[1.0, 1.0], [0.8, 0.4], [0.6, 0.2]])})
      >>> fig.axes[0].get_legend().get_texts()[0].get_text()
      'sgd'
    """
    import jax
    import jax.numpy as jnp

    if not paths:
        raise ValueError("paths must map at least one optimizer name to its [T, 2] positions")
    arrays = {}
    for name, p in paths.items():
        p = np.asarray(p, dtype=float)
        if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] == 0:
            raise ValueError(f"paths[{name!r}] must have shape [T, 2], got {p.shape}")
        arrays[name] = p
    every = np.concatenate(list(arrays.values()))
    finite = every[np.all(np.isfinite(every), axis=1)]
    if finite.size == 0 and (xlim is None or ylim is None):
        raise ValueError("every position in paths is NaN or infinite; pass xlim and ylim")

    def window(lim, column):
        if lim is not None:
            return tuple(float(v) for v in lim)
        lo, hi = finite[:, column].min(), finite[:, column].max()
        margin = 0.1 * (hi - lo) or 1.0
        return lo - margin, hi + margin

    (x0, x1), (y0, y1) = window(xlim, 0), window(ylim, 1)
    xs, ys = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
    pts = jnp.asarray(np.stack([xs.ravel(), ys.ravel()], -1), jnp.float32)
    zs = np.asarray(jax.vmap(lambda q: jnp.asarray(f(q)))(pts), dtype=float).reshape(xs.shape)
    if ax is None:
        fig = _figure(6.0, 4.8)
        ax = fig.subplots()
    else:
        fig = ax.figure
    lv = np.unique(np.quantile(zs[np.isfinite(zs)], np.linspace(0.0, 0.95, levels)))
    ax.contour(xs, ys, zs, levels=lv, cmap="Greys", linewidths=0.6, alpha=0.8)
    cmap = _qualitative(len(arrays))
    for i, (name, p) in enumerate(arrays.items()):
        color = cmap[i] if colors is None or name not in colors else colors[name]
        ax.plot(p[:, 0], p[:, 1], "-", color=color, lw=1.6, label=str(name))
        ax.plot(*p[0], "o", color=color, ms=6, mec="k", mew=0.6)
        ax.plot(*p[-1], "X", color=color, ms=8, mec="k", mew=0.6)
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], ls="", marker="o", color="gray", mec="k", label="start"),
        Line2D([], [], ls="", marker="X", color="gray", mec="k", ms=8, label="end"),
    ]
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.85)
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel=xlabel, ylabel=ylabel, title=title)
    return _save(fig, path, dpi)


def _qualitative(n: int):
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    return [colormaps["tab20"](i % 20) for i in range(n)]


def confusion_matrix(
    matrix=None,
    path=None,
    *,
    y_true=None,
    y_pred=None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    normalize: str | None = "both",
    title="Confusion matrix",
    dpi=100,
):
    """A confusion matrix as a heat map: counts, row-normalised (recall per class), or both.

    Rows are the true classes and columns the predicted ones, as in scikit-learn and Keras
    (``tf.math.confusion_matrix``); cell ``(i, j)`` counts examples of class ``i`` predicted as
    ``j``. Row normalisation (scikit-learn's ``normalize="true"``) divides each row by its total,
    so the diagonal is each class's recall; a class with no examples gets a row of zeros.

    Args:
      matrix: ``[C, C]`` counts; or give ``y_true`` and ``y_pred`` (integer labels ``[N]``).
      path: optional file to write.
      y_true, y_pred: integer labels to count (with ``num_classes``, default ``max + 1``).
      num_classes: number of classes when counting labels.
      class_names: ``C`` tick labels (default ``0 … C-1``).
      normalize: ``None`` (counts), ``"true"`` (rows sum to 1) or ``"both"`` (two panels).
      title: figure title.
      dpi: resolution of the saved image.

    Returns:
      the ``Figure`` (one ``Axes`` per panel, then the colour bars).

    Raises:
      ValueError: neither or both of ``matrix`` and the labels, a non-square matrix, labels of
        different lengths or outside ``[0, num_classes)``, a wrong number of class names, or an
        unknown ``normalize``.

    Examples:
      >>> fig = confusion_matrix(y_true=[0, 1, 1, 2], y_pred=[0, 1, 2, 2], normalize=None)
      >>> fig.axes[0].get_images()[0].get_array().tolist()
      [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    """
    if (matrix is None) == (y_true is None or y_pred is None):
        raise ValueError("pass either matrix=[C, C] counts or both y_true= and y_pred= labels")
    if matrix is None:
        t, p = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
        if t.shape != p.shape:
            raise ValueError(f"y_true has shape {t.shape} but y_pred has {p.shape}")
        c = int(num_classes if num_classes is not None else max(t.max(), p.max()) + 1)
        if t.min() < 0 or p.min() < 0 or t.max() >= c or p.max() >= c:
            raise ValueError(f"labels must be integers in [0, {c}); got values outside")
        matrix = np.zeros((c, c), np.int64)
        np.add.at(matrix, (t.astype(np.int64), p.astype(np.int64)), 1)
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"matrix must be square [C, C], got shape {matrix.shape}")
    c = matrix.shape[0]
    names = [str(i) for i in range(c)] if class_names is None else [str(n) for n in class_names]
    if len(names) != c:
        raise ValueError(f"class_names has {len(names)} names but the matrix has {c} classes")
    if normalize not in (None, "true", "both"):
        raise ValueError(f"normalize must be None, 'true' or 'both', got {normalize!r}")
    totals = matrix.sum(axis=1, keepdims=True)
    rates = np.divide(matrix, totals, out=np.zeros(matrix.shape, float), where=totals > 0)
    panels = {None: [("counts", matrix)], "true": [("normalised by true class", rates)]}
    panels["both"] = panels[None] + panels["true"]
    chosen = panels[normalize]
    size = 1.2 + 0.45 * c
    fig = _figure(size * len(chosen) + 1.0 * len(chosen), size + 0.6)
    axes = fig.subplots(1, len(chosen), squeeze=False)[0]
    for ax, (label, values) in zip(axes, chosen):
        is_rate = values is rates
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if is_rate else None)
        bar = fig.colorbar(image, ax=ax, shrink=0.8)
        bar.set_label("fraction of the true class" if is_rate else "examples (count)")
        peak = float(values.max()) or 1.0
        if c <= 20:
            for i in range(c):
                for j in range(c):
                    v = values[i, j]
                    text = f"{v:.2f}" if is_rate else f"{int(v)}"
                    colour = "white" if v > 0.6 * peak else "black"
                    ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
        ax.set_xticks(range(c), names, rotation=45 if max(map(len, names)) > 2 else 0)
        ax.set_yticks(range(c), names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(label)
    fig.suptitle(title)
    return _save(fig, path, dpi)


def _curves(curves) -> dict:
    named = _named(curves, "curves")
    for name, c in named.items():
        for field in ("alphas", "loss", "accuracy"):
            if not hasattr(c, field):
                raise ValueError(
                    f"curves[{name!r}] must be a fnn.landscape.Curve (alphas, loss, accuracy), "
                    f"got {type(c).__name__}"
                )
    return named


def landscape_1d(
    curves,
    path=None,
    *,
    title="Loss along a direction",
    xlabel="α (step along the filter-normalised direction)",
    log_loss: bool = False,
    dpi=100,
):
    """1-D loss landscape: loss (left axis, solid) and accuracy (right axis, dashed) against α.

    Li et al.'s Figure 2 style: for a `fnn.landscape.line` ``α`` is in filter-normalised units
    (``α = 1`` moves every filter by its own norm); for `fnn.landscape.interpolate` ``α = 0`` and
    ``1`` are the two solutions (pass ``xlabel="interpolation α (0: a, 1: b)"``).

    Args:
      curves: a `fnn.landscape.Curve`, or name → ``Curve`` for several (one colour each).
      path: optional file to write.
      title, xlabel: title and x label.
      log_loss: logarithmic loss axis.
      dpi: resolution of the saved image.

    Returns:
      the ``Figure``: ``fig.axes[0]`` holds the losses, ``fig.axes[1]`` (its twin) the accuracies.

    Raises:
      ValueError: an empty dict or something that is not a ``Curve``.

    Examples:
      >>> from fnn.landscape import Curve
      >>> fig = landscape_1d(Curve([-1, 0, 1], [2.0, 0.5, 1.5], [0.4, 0.9, 0.6]))
      >>> fig.axes[0].get_ylabel(), fig.axes[1].get_ylabel()
      ('loss (cross-entropy, nats)', 'accuracy (fraction correct)')
    """
    named = _curves(curves)
    fig = _figure(6.4, 4.0)
    ax = fig.subplots()
    twin = ax.twinx()
    colours = _qualitative(len(named))
    for colour, (name, c) in zip(colours, named.items()):
        suffix = f" ({name})" if name else ""
        ax.plot(c.alphas, c.loss, "-", color=colour, lw=2, label=f"loss{suffix}")
        twin.plot(c.alphas, c.accuracy, "--", color=colour, lw=1.5, label=f"accuracy{suffix}")
    if log_loss:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss (cross-entropy, nats)")
    twin.set_ylabel("accuracy (fraction correct)")
    twin.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    # Below the axes: the curves fill the plot, a legend inside would hide them.
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncol=2)
    ax.set_title(title)
    return _save(fig, path, dpi)


def _surfaces(surfaces) -> dict:
    named = _named(surfaces, "surfaces")
    for name, s in named.items():
        loss = np.asarray(getattr(s, "loss", None))
        if not all(hasattr(s, f) for f in ("x", "y", "loss")) or loss.shape != (
            len(s.y),
            len(s.x),
        ):
            raise ValueError(
                f"surfaces[{name!r}] must be a fnn.landscape.Surface with loss shaped "
                f"[len(y), len(x)]; got {type(s).__name__}"
            )
        if np.nanmin(loss) <= 0:
            raise ValueError(
                f"surfaces[{name!r}] has a loss <= 0 ({np.nanmin(loss):g}); log-spaced levels "
                "need positive losses"
            )
    return named


def _log_levels(loss, levels: int, vmax: float | None):
    lo = float(np.nanmin(loss))
    hi = float(np.nanmax(loss)) if vmax is None else float(vmax)
    if hi <= lo:
        hi = lo * 1.01
    return np.geomspace(lo, hi, levels)


def landscape_contour(
    surfaces,
    path=None,
    *,
    levels: int = 30,
    vmax: float | None = None,
    title="Loss landscape",
    xlabel="α (direction δ, filter-normalised)",
    ylabel="β (direction η, filter-normalised)",
    dpi=100,
):
    """2-D loss contours with logarithmically spaced levels (Li et al.'s contour plots).

    Log-spaced levels between the grid's smallest loss and ``vmax`` (default: its largest) show
    the basin near the minimum and the steep walls far from it in one picture; linear levels put
    nearly all lines on the walls. The trained model, ``(0, 0)``, is marked with a star.

    Args:
      surfaces: a `fnn.landscape.Surface`, or name → ``Surface`` for side-by-side panels.
      path: optional file to write.
      levels: number of contour levels.
      vmax: upper end of the levels (clip high losses to compare panels on one scale).
      title, xlabel, ylabel: figure title (each panel is titled with its name) and axis labels.
      dpi: resolution of the saved image.

    Returns:
      the ``Figure`` (one ``Axes`` per surface, then the colour bars).

    Raises:
      ValueError: not a ``Surface``, or a loss ``<= 0`` (no logarithm).

    Examples:
      >>> import numpy as np
      >>> from fnn.landscape import Surface
      >>> g = np.linspace(-1, 1, 5)
      >>> s = Surface(g, g, 0.1 + g[None] ** 2 + g[:, None] ** 2, np.ones((5, 5)))
      >>> landscape_contour(s).axes[0].get_xlabel()
      'α (direction δ, filter-normalised)'
    """
    from matplotlib.colors import LogNorm

    named = _surfaces(surfaces)
    fig = _figure(4.6 * len(named) + 0.8, 4.2)
    axes = fig.subplots(1, len(named), squeeze=False)[0]
    for ax, (name, s) in zip(axes, named.items()):
        loss = np.asarray(s.loss, float)
        lv = _log_levels(loss, levels, vmax)
        shown = np.minimum(loss, lv[-1])
        norm = LogNorm(lv[0], lv[-1])
        filled = ax.contourf(s.x, s.y, shown, levels=lv, cmap="viridis", norm=norm)
        ax.contour(s.x, s.y, shown, levels=lv, colors="k", linewidths=0.4, alpha=0.5)
        ax.plot(0, 0, "*", color="crimson", ms=13, mec="white", mew=0.8, label="trained model")
        ax.set(xlabel=xlabel, ylabel=ylabel, aspect="equal")
        ax.set_title(str(name) if name else title)
        ticks = np.geomspace(lv[0], lv[-1], 6)
        bar = fig.colorbar(filled, ax=ax, shrink=0.85, ticks=ticks, format="%.3g")
        bar.minorticks_off()
        bar.set_label("loss (nats, log scale)")
        ax.legend(fontsize=8, loc="lower right", framealpha=0.7)
    if len(named) > 1 or next(iter(named)):
        fig.suptitle(title)
    return _save(fig, path, dpi)


def landscape_3d(
    surfaces,
    path=None,
    *,
    vmax: float | None = None,
    log: bool = False,
    title="Loss surface",
    xlabel="α (δ)",
    ylabel="β (η)",
    dpi=100,
):
    """3-D surface of the loss over the 2-D grid (Li et al.'s surface plots).

    Args:
      surfaces: a `fnn.landscape.Surface`, or name → ``Surface`` for side-by-side panels.
      path: optional file to write.
      vmax: clip the loss at this value (the walls otherwise dwarf the basin).
      log: draw ``log10(loss)`` on the vertical axis.
      title, xlabel, ylabel: figure title and axis labels (the z label names the loss).
      dpi: resolution of the saved image.

    Returns:
      the ``Figure`` (one 3-D ``Axes`` per surface).

    Raises:
      ValueError: not a ``Surface``, or a loss ``<= 0``.

    Examples:
      >>> import numpy as np
      >>> from fnn.landscape import Surface
      >>> g = np.linspace(-1, 1, 5)
      >>> s = Surface(g, g, 0.1 + g[None] ** 2 + g[:, None] ** 2, np.ones((5, 5)))
      >>> landscape_3d(s).axes[0].get_zlabel()
      'loss (nats)'
    """
    from matplotlib.ticker import MaxNLocator

    named = _surfaces(surfaces)
    fig = _figure(4.8 * len(named), 4.4)
    for k, (name, s) in enumerate(named.items()):
        ax = fig.add_subplot(1, len(named), k + 1, projection="3d")
        loss = np.asarray(s.loss, float)
        if vmax is not None:
            loss = np.minimum(loss, vmax)
        z = np.log10(loss) if log else loss
        xs, ys = np.meshgrid(s.x, s.y)
        ax.plot_surface(xs, ys, z, cmap="viridis", linewidth=0, antialiased=True, alpha=0.95)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_zlabel("log10 loss (nats)" if log else "loss (nats)")
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.set_title(str(name) if name else title)
    if len(named) > 1 or next(iter(named)):
        fig.suptitle(title)
    return _save(fig, path, dpi)
