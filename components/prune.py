"""Prune component: remove whole channels from the trained float model, then fine-tune it.

Called by the model chain between ``train`` and ``quantize`` when ``prune.enabled``; the
fit-to-device search will call it per candidate. Pruning is structural, written here
(``components.pruning``): tensorflow-model-optimization does not support Keras 3, and its
pruning only zeroes weights, which TFLM's int8 kernels compute all the same. Here filters
leave the graph with everything tied to them (dependency groups through residual Adds,
concatenations, batch norm, depthwise convolutions), so the int8 model is smaller in flash,
arena and MACs. The model's input channels and its classes are never touched.

One target per run: ``channel_ratio`` (the fraction of removable channels removed, per group
or ranked globally: ``scope``), ``macs_ratio`` (MACs of the result over the original's),
``max_flash_bytes`` or ``max_arena_bytes`` (int8 flatbuffer size, TFLM's measured arena; the
ratio is searched in ``search_step`` steps until the budget holds, and a budget that cannot
be met is refused naming it and the best reached). Conversion for those figures calibrates
on a small seeded sample of the training split, never the test split. Accuracy before and
after is the float model's on the validation split (the test split when there is none), so
the test split stays the evaluate component's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import pydantic
from pydantic import Field

from components.artifacts import ExampleSet, TrainedModel
from components.errors import ComponentError
from components.spec import component_spec

if TYPE_CHECKING:
    from components.pruning.budgets import Figures

log = logging.getLogger(__name__)

PositiveInt = Annotated[int, Field(gt=0)]
TARGETS = ("channel_ratio", "macs_ratio", "max_flash_bytes", "max_arena_bytes")
FIGURES = ("macs", "params", "flash_bytes", "arena_total")


@component_spec
class PruneSpec:
    """Exactly one target (when enabled), the ranking, each group's floor, the budget
    search's resolution and ceiling, fine-tuning, and the calibration sample's size."""

    enabled: bool = False
    channel_ratio: Annotated[float, Field(ge=0, lt=1)] | None = None
    macs_ratio: Annotated[float, Field(gt=0, le=1)] | None = None
    max_flash_bytes: PositiveInt | None = None
    max_arena_bytes: PositiveInt | None = None
    criterion: Literal["l1", "bn_gamma"] = "l1"
    scope: Literal["uniform", "global"] = "uniform"
    min_channels: PositiveInt = 1  # each group keeps at least this many channels
    channel_multiple: PositiveInt = 1  # e.g. 8: kept widths rounded up to multiples of 8
    max_channel_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.9  # budget search ceiling
    search_step: Annotated[float, Field(gt=0, le=0.5)] = 0.05
    fine_tune_epochs: Annotated[int, Field(ge=0)] = 5
    learning_rate: Annotated[float, Field(gt=0)] = 1e-3
    batch_size: PositiveInt = 50
    early_stopping_patience: PositiveInt = 3
    calibration_examples: PositiveInt = 64
    seed: int = 0

    @pydantic.model_validator(mode="after")
    def _one_target(self) -> PruneSpec:
        """Several targets contradict each other; an enabled step without one does nothing."""
        chosen = [name for name in TARGETS if getattr(self, name) is not None]
        if len(chosen) > 1:
            raise ValueError(f"set exactly one prune target, not {len(chosen)}: {chosen}")
        if self.enabled and not chosen:
            raise ValueError(f"pruning is enabled but has no target: set one of {TARGETS}")
        if self.search_step > self.max_channel_ratio:
            raise ValueError(
                f"search_step {self.search_step} exceeds max_channel_ratio {self.max_channel_ratio}"
            )
        return self

    @property
    def target(self) -> tuple[str, float] | None:
        """The one target set, as (name, value), or None."""
        return next(((n, getattr(self, n)) for n in TARGETS if getattr(self, n) is not None), None)


@dataclass(frozen=True)
class PruneResult:
    """The model the chain continues with (the pruned, fine-tuned one, or the input when
    nothing was pruned), why, the fraction of removable channels removed, and the figures
    before and after (``accuracy_pruned``: after pruning, before fine-tuning)."""

    trained: TrainedModel
    reason: str
    channel_ratio: float = 0.0
    before: Figures | None = None
    after: Figures | None = None
    accuracy_before: float | None = None
    accuracy_pruned: float | None = None
    accuracy_after: float | None = None

    def metrics(self) -> dict[str, float]:
        """The figures as ``prune.<figure>_before`` / ``prune.<figure>_after`` metrics
        (none when pruning did not run)."""
        if self.before is None or self.after is None:
            return {}
        metrics = {"prune.channel_ratio": self.channel_ratio}
        for name in FIGURES:
            metrics[f"prune.{name}_before"] = float(getattr(self.before, name))
            metrics[f"prune.{name}_after"] = float(getattr(self.after, name))
        for name in ("accuracy_before", "accuracy_pruned", "accuracy_after"):
            if (value := getattr(self, name)) is not None:
                metrics[f"prune.{name}"] = value
        return metrics


@dataclass(frozen=True)
class _Candidate:
    model: object
    removed: frozenset[int]
    ratio: float


def run(
    spec: PruneSpec,
    trained: TrainedModel,
    examples: ExampleSet,
    out_dir: Path,
    progress: bool = True,
) -> PruneResult:
    """Prune ``trained`` to the spec's target, fine-tune, save ``model_pruned.keras``."""
    if not spec.enabled:
        return PruneResult(trained=trained, reason="pruning disabled in the config")
    import keras

    from components.pruning import budgets

    keras.utils.set_random_seed(spec.seed)
    model = keras.models.load_model(trained.path)
    calibration = _calibration(spec, examples)
    before = budgets.measure(model, calibration)
    accuracy_before = _accuracy(model, examples)
    chosen, after = _choose(spec, model, before, calibration)
    if not chosen.removed:
        name, value = spec.target
        return PruneResult(
            trained=trained, reason=f"{name} {value} needs no pruning", before=before,
            after=before, accuracy_before=accuracy_before, accuracy_after=accuracy_before,
        )  # fmt: skip
    accuracy_pruned = _accuracy(chosen.model, examples)
    history = _fine_tune(spec, chosen.model, examples, progress)
    pruned = _save(chosen.model, trained, history, out_dir)
    result = PruneResult(
        trained=pruned,
        reason=f"removed {chosen.ratio:.1%} of the prunable channels for {spec.target[0]}",
        channel_ratio=chosen.ratio,
        before=before,
        after=after,
        accuracy_before=accuracy_before,
        accuracy_pruned=accuracy_pruned,
        accuracy_after=_accuracy(chosen.model, examples),
    )
    log.info("pruned %s: %s; %s", trained.path, result.reason, _summary(result))
    return result


def _choose(spec: PruneSpec, model, before: Figures, calibration) -> tuple[_Candidate, Figures]:
    """The candidate that meets the target and its figures. These are measured before
    fine-tuning, which changes no shape: the quantize stage's flatbuffer differs only by the
    few bytes of tensor names that carry Keras' global tensor counter."""
    from components.pruning import budgets, dependency, ranking, surgery

    analysis = dependency.analyse(model)
    if not analysis.prunable_units:
        raise ComponentError(f"{model.name} has no prunable channels")
    scores = ranking.unit_scores(model, analysis, spec.criterion)

    def candidate(ratio: float) -> _Candidate:
        removed = ranking.select(analysis, scores, ratio, scope=spec.scope,
                                 min_channels=spec.min_channels,
                                 channel_multiple=spec.channel_multiple)  # fmt: skip
        smaller = surgery.shrink(model, analysis, removed) if removed else model
        return _Candidate(smaller, removed, len(removed) / analysis.prunable_units)

    measured: dict[int, Figures] = {}

    def figures(c: _Candidate) -> Figures:
        if id(c.model) not in measured:
            measured[id(c.model)] = budgets.measure(c.model, calibration)
        return measured[id(c.model)]

    name, value = spec.target
    if name == "channel_ratio":
        chosen = candidate(value)
        return chosen, figures(chosen) if chosen.removed else before
    macs = budgets.keras_macs(model) if name == "macs_ratio" else 0
    limit, figure, original = {
        "macs_ratio": (int(value * macs), lambda c: budgets.keras_macs(c.model), macs),
        "max_flash_bytes": (value, lambda c: figures(c).flash_bytes, before.flash_bytes),
        "max_arena_bytes": (value, lambda c: figures(c).arena_total, before.arena_total),
    }[name]
    if original <= limit:
        return _Candidate(model, frozenset(), 0.0), before
    found = budgets.search(candidate, figure, limit, name, step=spec.search_step,
                           ceiling=spec.max_channel_ratio)  # fmt: skip
    return found.candidate, figures(found.candidate)


def _calibration(spec: PruneSpec, examples: ExampleSet) -> np.ndarray:
    """A seeded sample of the training split, as the quantize component calibrates."""
    from components import example_records

    x, _ = example_records.load_split(examples, "train")
    if not len(x):
        raise ComponentError(f"no training examples in {examples.directory} to calibrate on")
    rng = np.random.default_rng(spec.seed)
    return x[rng.permutation(len(x))[: spec.calibration_examples]]


def _accuracy(model, examples: ExampleSet) -> float | None:
    """Float accuracy on the validation split (test when there is none; None without either)."""
    from components import example_records

    split = next((s for s in ("validation", "test") if examples.counts.get(s)), None)
    if split is None:
        return None
    x, y = example_records.load_split(examples, split)
    scores = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(scores.argmax(axis=1) == y))


def _fine_tune(spec: PruneSpec, model, examples: ExampleSet, progress: bool) -> dict:
    """A few epochs at a constant small rate on the training split, the best epoch kept."""
    if not spec.fine_tune_epochs:
        return {}
    from components import example_records, train

    train_set = example_records.dataset(examples, "train", spec.batch_size, shuffle=True,
                                        seed=spec.seed)  # fmt: skip
    has_val = bool(examples.counts.get("validation"))
    val = example_records.dataset(examples, "validation", spec.batch_size) if has_val else None
    return train.fit(
        model, train_set, val, spec.learning_rate, spec.fine_tune_epochs,
        spec.early_stopping_patience, progress,
    )  # fmt: skip


def _save(model, trained: TrainedModel, history: dict, out_dir: Path) -> TrainedModel:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model_pruned.keras"
    model.save(path)
    return TrainedModel(
        path=path,
        labels=trained.labels,
        input_shape=trained.input_shape,
        history=history,
        params=int(model.count_params()),
    )


def _summary(result: PruneResult) -> str:
    return ", ".join(
        f"{n} {getattr(result.before, n):,} -> {getattr(result.after, n):,}" for n in FIGURES
    )
