"""Tests for components.plots: figures carry the axes, series and cells the run record needs."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure

from components import plots

HISTORY = {
    "loss": (1.2, 0.8, 0.5),
    "val_loss": (1.3, 0.9, 0.7),
    "accuracy": (0.4, 0.6, 0.8),
    "val_accuracy": (0.35, 0.55, 0.7),
}


def _png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def test_training_curves_one_panel_per_metric_with_validation_twin():
    fig = plots.training_curves(HISTORY)
    axes = fig.get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["loss", "accuracy"]
    assert all(ax.get_xlabel() == "epoch" for ax in axes)
    loss_ax = axes[0]
    labels = [line.get_label() for line in loss_ax.get_lines()]
    assert labels == ["loss", "val_loss"]
    x, y = loss_ax.get_lines()[1].get_data()
    np.testing.assert_array_equal(x, [1, 2, 3])
    np.testing.assert_allclose(y, HISTORY["val_loss"])
    assert _png_bytes(fig).startswith(b"\x89PNG")


def test_training_curves_without_validation_or_history():
    fig = plots.training_curves({"loss": (0.5, 0.4)})
    (ax,) = fig.get_axes()
    assert [line.get_label() for line in ax.get_lines()] == ["loss"]
    empty = plots.training_curves({})
    assert [ax.get_xlabel() for ax in empty.get_axes()] == ["epoch"]
    assert _png_bytes(empty).startswith(b"\x89PNG")


def test_confusion_matrix_labels_and_counts():
    labels = ("yes", "no", "_unknown_")
    confusion = ((5, 1, 0), (2, 7, 0), (0, 0, 9))
    fig = plots.confusion_matrix(confusion, labels)
    ax = fig.get_axes()[0]
    assert ax.get_xlabel() == "predicted label"
    assert ax.get_ylabel() == "true label"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(labels)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(labels)
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), np.array(confusion))
    cell_texts = sorted(t.get_text() for t in ax.texts)
    assert cell_texts == sorted(str(v) for row in confusion for v in row)
    assert _png_bytes(fig).startswith(b"\x89PNG")
