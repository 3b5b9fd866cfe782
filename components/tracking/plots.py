"""Figures for the run record: training curves, the confusion matrix, memory per layer,
a search's Pareto fronts.

Called by ``components.tracking.track``, which logs the returned figures with ``log_figure``. The
functions only draw; they never save or show, so a caller (or a notebook) decides where a
figure goes. The Agg backend is selected on the figure itself, so no display is needed and the
process-wide pyplot state is never touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from tflm_ext.memory_profile import MemoryProfile

_METRIC_TITLES = {"loss": "Loss", "accuracy": "Accuracy"}


def _new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    """A figure bound to an Agg canvas, without pyplot (no global figure registry to leak)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _curve_groups(history: Mapping[str, Sequence[float]]) -> list[str]:
    """Base metric names (``loss``, ``accuracy``...), each plotted with its ``val_`` twin."""
    bases = {key.removeprefix("val_") for key in history}
    return sorted(bases, key=lambda k: (k != "loss", k))


def training_curves(history: Mapping[str, Sequence[float]]) -> Figure:
    """One panel per metric, train and validation together, epochs on x (1-based as Keras
    prints them), so over-fitting is visible at a glance in the MLflow UI."""
    groups = _curve_groups(history) or ["loss"]
    fig, axes = _new_figure(4.5 * len(groups), 3.5, ncols=len(groups))
    for ax, base in zip(axes, groups, strict=True):
        for key, style in ((base, "-"), (f"val_{base}", "--")):
            values = history.get(key, ())
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(base)
        ax.set_title(_METRIC_TITLES.get(base, base))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    return fig


def confusion_matrix(confusion: Sequence[Sequence[int]], labels: Sequence[str]) -> Figure:
    """Counts with true labels on rows and predictions on columns, cells annotated, so the
    confusable keyword pairs of the int8 model can be read off directly."""
    matrix = np.asarray(confusion, dtype=np.int64).reshape(len(labels), len(labels))
    size = 1.5 + 0.5 * len(labels)
    fig, (ax,) = _new_figure(size + 1.0, size)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(labels))
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title("Confusion matrix (int8, TFLM)")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=color, fontsize=7)
    return fig


def memory_per_layer(profile: MemoryProfile, budget_bytes: int | None = None) -> Figure:
    """Activation memory alive at each operator as bars (kB), the peak in red, and the
    device's SRAM budget (and the measured TFLM arena head, when profiled) as lines, like
    MCUNetV2's Figure 1: it shows which layers break the budget and by how much."""
    live_kb = np.array([op.live_bytes for op in profile.ops], dtype=np.float64) / 1000.0
    fig, (ax,) = _new_figure(max(6.0, 0.16 * len(live_kb) + 2.0), 3.8)
    colors = ["tab:blue"] * len(live_kb)
    if 0 <= profile.peak_op < len(colors):
        colors[profile.peak_op] = "tab:red"
    ax.bar(np.arange(len(live_kb)), live_kb, color=colors, label="live activations")
    if profile.arena is not None:
        ax.axhline(
            profile.arena.head / 1000.0,
            color="tab:gray",
            linestyle=":",
            label="TFLM arena head (measured)",
        )
    if budget_bytes is not None:
        ax.axhline(budget_bytes / 1000.0, color="tab:orange", linestyle="--", label="SRAM budget")
    ax.set_xticks(
        np.arange(len(live_kb)),
        labels=[f"{op.index} {op.op}" for op in profile.ops],
        rotation=90,
        fontsize=6,
    )
    ax.set_xlabel("operator")
    ax.set_ylabel("memory (kB)")
    ax.set_title(
        f"Activation memory per operator (peak {profile.peak_bytes / 1000:.1f} kB "
        f"at operator {profile.peak_op})"
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def pareto_fronts(panels: Sequence[ParetoPanel]) -> Figure:
    """One panel per cost: every candidate, the Pareto front as a step line, and each
    device's limit as a vertical line, so the candidate that fits a board is read off at a
    glance."""
    fig, axes = _new_figure(6.0 * len(panels), 4.5, ncols=len(panels))
    for ax, panel in zip(axes, panels, strict=True):
        for x, y, name in panel.points:
            ax.scatter([x], [y], color="tab:blue", zorder=3)
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if panel.front:
            fx, fy = zip(*panel.front, strict=True)
            ax.step(fx, fy, where="post", color="tab:orange", label="Pareto front")
        for i, (name, x) in enumerate(sorted(panel.limits.items(), key=lambda kv: kv[1])):
            ax.axvline(x, color=f"C{(i + 2) % 10}", linestyle="--", label=name)
        ax.set_xscale("log")
        ax.set_xlabel(panel.cost)
        ax.set_ylabel("int8 accuracy (TFLM)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return fig


@dataclass(frozen=True)
class ParetoPanel:
    """One cost axis of :func:`pareto_fronts`: ``points`` are (cost, accuracy, name),
    ``front`` the (cost, accuracy) of the Pareto-optimal ones, ``limits`` a cost per name."""

    cost: str
    points: Sequence[tuple[float, float, str]]
    front: Sequence[tuple[float, float]]
    limits: Mapping[str, float]


def accuracy_curve(cost: str, points: Sequence[tuple[float, float, str]]) -> Figure:
    """int8 accuracy against ``cost`` as one labelled line (e.g. a pruning curve: MACs per
    prune ratio), so the knee where accuracy starts to fall is read off at a glance."""
    fig, (ax,) = _new_figure(6.0, 4.0)
    ax.plot([x for x, _, _ in points], [y for _, y, _ in points], marker="o")
    for x, y, name in points:
        ax.annotate(name, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(cost)
    ax.set_ylabel("int8 accuracy (TFLM)")
    ax.grid(True, alpha=0.3)
    return fig
