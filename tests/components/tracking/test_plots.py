"""Plots (components.tracking.plots): training curves, confusion matrix, memory per layer."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from matplotlib.figure import Figure

from components.tracking import plots
from tflm_ext.arena import ArenaMeasurement
from tflm_ext.memory_profile import MemoryProfile, OpMemory

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


def _profile() -> MemoryProfile:
    ops = tuple(
        OpMemory(i, name, size, (), 0, (1, 4, 4, 8))
        for i, (name, size) in enumerate(
            (("CONV_2D", 3000), ("DEPTHWISE_CONV_2D", 9000), ("CONV_2D", 4000), ("ADD", 500))
        )
    )
    arena = ArenaMeasurement(head=9216, tail=2000, total=11216, bisected_min=11216)
    return MemoryProfile(ops=ops, peak_bytes=9000, peak_op=1, arena=arena, planned_head=9216)


def test_memory_per_layer_bars_peak_and_budget_lines():
    fig = plots.memory_per_layer(_profile(), budget_bytes=8000)
    (ax,) = fig.get_axes()
    bars = ax.patches
    np.testing.assert_allclose([bar.get_height() for bar in bars], [3.0, 9.0, 4.0, 0.5])
    colors = [bar.get_facecolor() for bar in bars]
    assert colors[1] != colors[0] and colors[0] == colors[2] == colors[3]  # the peak stands out
    lines = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines()}
    assert lines == {"TFLM arena head (measured)": 9.216, "SRAM budget": 8.0}
    assert [t.get_text() for t in ax.get_xticklabels()][1] == "1 DEPTHWISE_CONV_2D"
    assert ax.get_ylabel() == "memory (kB)"
    assert "peak 9.0 kB at operator 1" in ax.get_title()
    assert _png_bytes(fig).startswith(b"\x89PNG")


def test_memory_per_layer_without_budget_or_measurement():
    fig = plots.memory_per_layer(dataclasses.replace(_profile(), arena=None))
    (ax,) = fig.get_axes()
    assert len(ax.get_lines()) == 0 and len(ax.patches) == 4
