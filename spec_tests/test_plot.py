"""Spec tests for fnn.plot: the figures hold exactly the data given, files are written, bad input
is refused with a clear message."""

import matplotlib
import numpy as np
import pytest

from fnn import plot

HIST = {
    "loss": [1.0, 0.6, 0.5, 0.45],
    "accuracy": [0.5, 0.7, 0.8, 0.85],
    "val_loss": [1.1, 0.8, 0.7, 0.75],
    "val_accuracy": [0.4, 0.6, 0.7, 0.7],
    "learning_rate": [1e-3] * 4,
}


def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_history_curves_hold_the_data(tmp_path):
    backend = matplotlib.get_backend()
    fig = plot.history(HIST, tmp_path / "sub" / "curves.png")
    assert _png(tmp_path / "sub" / "curves.png")
    assert matplotlib.get_backend() == backend  # the user's backend is left alone
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]  # lr hidden by default
    train, val = fig.axes[0].get_lines()
    assert train.get_xdata().tolist() == [1, 2, 3, 4]
    assert (
        train.get_ydata().tolist() == HIST["loss"] and val.get_ydata().tolist() == HIST["val_loss"]
    )
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == [
        "training",
        "validation",
    ]


def test_history_object_metrics_and_validation_freq():
    class History:  # Keras / fnn History shape
        history = {"loss": [3.0, 2.0, 1.0, 0.5], "val_loss": [2.5, 0.9]}

    fig = plot.history(History(), metrics=["loss"], validation_freq=2)
    assert fig.axes[0].get_lines()[1].get_xdata().tolist() == [2, 4]
    fig = plot.history(History(), validation_freq=[1, 4])
    assert fig.axes[0].get_lines()[1].get_xdata().tolist() == [1, 4]
    only_lr = plot.history({"learning_rate": [0.1, 0.05]})
    assert [ax.get_title() for ax in only_lr.axes] == ["learning_rate"]


def test_image_grid(tmp_path):
    images = np.linspace(0, 1, 5 * 4 * 4).reshape(5, 4, 4, 1)
    fig = plot.image_grid(images, ["a", "b", "c", "d", "e"], tmp_path / "grid.png", ncols=3)
    assert _png(tmp_path / "grid.png")
    assert len(fig.axes) == 5 and fig.axes[3].get_title() == "d"
    np.testing.assert_allclose(fig.axes[2].get_images()[0].get_array(), images[2, ..., 0])
    rgb = plot.image_grid(np.full((2, 3, 3, 3), 2.0))  # clipped to [0, 1] for display
    assert np.asarray(rgb.axes[0].get_images()[0].get_array()).max() == 1.0


def test_accuracy_vs_size(tmp_path):
    fig = plot.accuracy_vs_size(
        [5, 10, 20],
        {"from scratch": [0.4, 0.5, 0.7], "fine-tuned": [[0.8, 0.9], [0.85, 0.95], [0.9, 1.0]]},
        tmp_path / "acc.png",
    )
    assert _png(tmp_path / "acc.png")
    scratch, tuned = fig.axes[0].get_lines()
    assert scratch.get_label() == "from scratch" and scratch.get_ydata().tolist() == [0.4, 0.5, 0.7]
    np.testing.assert_allclose(tuned.get_ydata(), [0.85, 0.9, 0.95])  # mean over repeats
    assert fig.axes[0].get_xscale() == "log"


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"non-empty dict"):
        plot.history({})
    with pytest.raises(ValueError, match=r"metrics \['acc'\] are not in the history; it has"):
        plot.history(HIST, metrics=["acc"])
    with pytest.raises(
        ValueError, match=r"val_loss has 2 values but loss has 4 epochs.*validation_freq=1"
    ):
        plot.history({"loss": [1, 2, 3, 4], "val_loss": [1, 2]})
    with pytest.raises(ValueError, match=r"images must have shape \[N, H, W, C\].*got \(4, 4\)"):
        plot.image_grid(np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"titles has 1 entries but there are 2 images"):
        plot.image_grid(np.zeros((2, 4, 4, 1)), ["a"])
    with pytest.raises(ValueError, match=r"accuracies\['x'\] has shape \(2,\); expected \(3,\)"):
        plot.accuracy_vs_size([1, 2, 3], {"x": [0.1, 0.2]})
    with pytest.raises(ValueError, match=r"at least one method"):
        plot.accuracy_vs_size([1, 2, 3], {})


# ---------------------------------------------------------------------------------------------
# The lecture's figures that used to be notebook code, and the loss-landscape pictures.


def _labelled(ax):
    return bool(ax.get_title()) and bool(ax.get_xlabel()) and bool(ax.get_ylabel())


def test_activations_draw_each_function_and_its_derivative(tmp_path):
    from fnn import activations as A

    x = np.array([-2.0, -0.5, 0.5, 2.0])
    fig = plot.activations({"ReLU": A.relu, "tanh": A.tanh}, tmp_path / "a.png", x=x)
    assert _png(tmp_path / "a.png") and fig.get_suptitle()
    relu, tanh = fig.axes
    assert relu.get_title() == "ReLU" and _labelled(relu) and _labelled(tanh)
    value, slope = tanh.get_lines()[:2]
    np.testing.assert_allclose(value.get_ydata(), np.tanh(x), rtol=1e-6)
    np.testing.assert_allclose(slope.get_ydata(), 1 - np.tanh(x) ** 2, rtol=1e-5)  # oracle f'
    np.testing.assert_array_equal(relu.get_lines()[1].get_ydata(), [0, 0, 1, 1])


def test_trajectories_one_colour_per_path_start_and_end_marked(tmp_path):
    paths = {
        "sgd": np.array([[1.0, 1.0], [0.5, 0.7], [0.2, 0.3]]),
        "adam": np.array([[1.0, 1.0], [0.6, 0.4], [0.0, 0.1]]),
    }
    fig = plot.trajectories(
        lambda p: p[0] ** 2 + 2 * p[1] ** 2, paths, tmp_path / "t.png", title="bowl"
    )
    assert _png(tmp_path / "t.png")
    (ax,) = fig.axes
    assert ax.get_title() == "bowl" and _labelled(ax)
    lines = ax.get_lines()
    sgd = [ln for ln in lines if ln.get_label() == "sgd"][0]
    adam = [ln for ln in lines if ln.get_label() == "adam"][0]
    assert sgd.get_color() != adam.get_color()
    np.testing.assert_array_equal(sgd.get_xydata(), paths["sgd"])
    # The start (circle) and end (cross) of each path, drawn in the path's colour.
    markers = {(ln.get_marker(), tuple(ln.get_xydata()[0])) for ln in lines if ln.get_marker()}
    assert ("o", (1.0, 1.0)) in markers and ("X", (0.2, 0.3)) in markers
    assert ("X", (0.0, 0.1)) in markers
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["sgd", "adam", "start", "end"]
    assert len(ax.collections) > 0  # the contours


def test_confusion_matrix_counts_and_normalised(tmp_path):
    y_true, y_pred = [0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 2, 2]
    fig = plot.confusion_matrix(
        y_true=y_true, y_pred=y_pred, num_classes=4, path=tmp_path / "cm.png"
    )
    assert _png(tmp_path / "cm.png") and fig.get_suptitle()
    counts, rates = fig.axes[0], fig.axes[1]
    want = np.zeros((4, 4), int)
    for t, p in zip(y_true, y_pred):
        want[t, p] += 1
    np.testing.assert_array_equal(counts.get_images()[0].get_array(), want)
    totals = want.sum(1, keepdims=True)
    want_rates = np.where(totals > 0, want / np.maximum(totals, 1), 0.0)  # empty class: zeros
    np.testing.assert_allclose(rates.get_images()[0].get_array(), want_rates)
    assert _labelled(counts) and _labelled(rates)
    assert counts.get_xlabel() == "predicted class" and counts.get_ylabel() == "true class"
    only = plot.confusion_matrix(want, normalize="true", class_names=list("abcd"))
    assert [t.get_text() for t in only.axes[0].get_xticklabels()] == list("abcd")


def test_image_grid_tiles_non_square_images_without_gaps():
    images = np.random.default_rng(0).uniform(size=(5, 16, 48, 3))
    fig = plot.image_grid(images, ncols=3, title=None)
    width, height = fig.get_size_inches()
    assert np.isclose(width / height, (3 * 48) / (2 * 16))  # the figure has the grid's ratio
    boxes = [ax.get_position() for ax in fig.axes]
    # Each row of cells spans the figure's width edge to edge, rows touch each other.
    assert np.isclose(boxes[0].x0, 0) and np.isclose(boxes[2].x1, 1)
    assert np.isclose(boxes[0].x1, boxes[1].x0) and np.isclose(boxes[3].y1, boxes[0].y0)
    assert np.isclose(boxes[0].y1, 1) and np.isclose(boxes[3].y0, 0)
    titled = plot.image_grid(images, list("abcde"), ncols=3)
    assert "16×48 px" in titled.get_suptitle()


def _curve():
    from fnn.landscape import Curve

    a = np.linspace(-1, 1, 5)
    return Curve(a, 0.1 + a**2, 1 - 0.3 * a**2)


def _surface(scale=1.0):
    from fnn.landscape import Surface

    x, y = np.linspace(-1, 1, 7), np.linspace(-1, 1, 5)
    loss = 0.05 + scale * (x[None] ** 2 + 2 * y[:, None] ** 2)
    return Surface(x, y, loss, np.ones_like(loss))


def test_landscape_1d_twin_axes(tmp_path):
    c = _curve()
    fig = plot.landscape_1d(
        {"small batch": c, "large batch": c._replace(loss=4 * c.loss)}, tmp_path / "l.png"
    )
    assert _png(tmp_path / "l.png")
    loss_ax, acc_ax = fig.axes
    assert _labelled(loss_ax) and acc_ax.get_ylabel() == "accuracy (fraction correct)"
    assert "nats" in loss_ax.get_ylabel()
    np.testing.assert_array_equal(loss_ax.get_lines()[1].get_ydata(), 4 * c.loss)
    np.testing.assert_array_equal(acc_ax.get_lines()[0].get_ydata(), c.accuracy)
    assert [ln.get_label() for ln in loss_ax.get_lines()] == [
        "loss (small batch)",
        "loss (large batch)",
    ]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [
        "loss (small batch)",
        "loss (large batch)",
        "accuracy (small batch)",
        "accuracy (large batch)",
    ]


def test_landscape_contour_log_levels_and_3d(tmp_path):
    s = _surface()
    fig = plot.landscape_contour({"skip": s, "no skip": _surface(5.0)}, tmp_path / "c.png")
    assert _png(tmp_path / "c.png") and fig.get_suptitle()
    ax = fig.axes[0]
    assert ax.get_title() == "skip" and _labelled(ax)
    filled = ax.collections[0]
    levels = np.asarray(filled.levels)
    ratios = levels[1:] / levels[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)  # log-spaced
    np.testing.assert_allclose([levels[0], levels[-1]], [s.loss.min(), s.loss.max()])
    single = plot.landscape_contour(s, levels=10, vmax=1.0)
    np.testing.assert_allclose(single.axes[0].collections[0].levels[-1], 1.0)
    fig3 = plot.landscape_3d(s, tmp_path / "s.png")
    assert _png(tmp_path / "s.png")
    ax3 = fig3.axes[0]
    assert ax3.get_title() and _labelled(ax3) and ax3.get_zlabel() == "loss (nats)"


def test_new_figures_bad_inputs():
    from fnn.landscape import Surface

    with pytest.raises(ValueError, match=r"functions must map at least one name"):
        plot.activations({})
    with pytest.raises(ValueError, match=r"x must be a non-empty 1-D array, got shape \(2, 2\)"):
        plot.activations({"r": np.tanh}, x=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"paths\['sgd'\] must have shape \[T, 2\], got \(3, 3\)"):
        plot.trajectories(lambda p: p[0], {"sgd": np.zeros((3, 3))})
    with pytest.raises(ValueError, match=r"paths must map at least one optimizer"):
        plot.trajectories(lambda p: p[0], {})
    with pytest.raises(ValueError, match=r"either matrix=\[C, C\] counts or both"):
        plot.confusion_matrix(np.eye(2), y_true=[0], y_pred=[0])
    with pytest.raises(ValueError, match=r"matrix must be square \[C, C\], got shape \(2, 3\)"):
        plot.confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"y_true has shape \(3,\) but y_pred has \(2,\)"):
        plot.confusion_matrix(y_true=[0, 1, 1], y_pred=[0, 1])
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 2\)"):
        plot.confusion_matrix(y_true=[0, 2], y_pred=[0, 1], num_classes=2)
    with pytest.raises(ValueError, match=r"class_names has 1 names but the matrix has 2 classes"):
        plot.confusion_matrix(np.eye(2), class_names=["a"])
    with pytest.raises(ValueError, match=r"normalize must be None, 'true' or 'both', got 'all'"):
        plot.confusion_matrix(np.eye(2), normalize="all")
    with pytest.raises(ValueError, match=r"curves\[''\] must be a fnn.landscape.Curve"):
        plot.landscape_1d(np.zeros(3))
    with pytest.raises(ValueError, match=r"curves must map at least one name"):
        plot.landscape_1d({})
    bad = Surface(np.zeros(3), np.zeros(2), np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"loss shaped \[len\(y\), len\(x\)\]"):
        plot.landscape_contour(bad)
    s = _surface()
    with pytest.raises(ValueError, match=r"has a loss <= 0 \(-1\); log-spaced levels"):
        plot.landscape_3d(s._replace(loss=np.where(s.loss > 1, -1.0, s.loss)))
