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
