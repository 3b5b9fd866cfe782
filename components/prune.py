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

Fine-tuning decides the accuracy a pruned model keeps (``benchmarks/pruning.py`` measures
the recipes: at half the MACs the DS-CNN lost 2.6 points after 5 epochs at a constant rate,
1.3 after the defaults). By default it runs 30 epochs, the rate decaying on a cosine, and
distils from the unpruned model (``distill``: soft targets at a temperature, see
``components.pruning.distill``). ``steps`` > 1 prunes iteratively: the target is reached
in that many equal cuts (geometric in the budget, so each cut removes the same share of
what is left), each followed by its share of the fine-tuning epochs; channels are ranked
afresh on the fine-tuned model before each cut, and the teacher stays the unpruned model
(at half the MACs it did worse than one cut with the same epochs).
"""

from __future__ import annotations

import logging
import math
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
class DistillSpec:
    """Soft targets from the unpruned model: ``alpha`` weighs them against the labels
    (0: labels only, 1: teacher only), ``temperature`` softens both distributions."""

    temperature: Annotated[float, Field(gt=0, le=20)] = 4.0
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.7


@component_spec
class PruneSpec:
    """Exactly one target (when enabled), the ranking, each group's floor, the budget
    search's resolution and ceiling, the number of cuts, fine-tuning (epochs in all, their
    rate and its schedule, distillation), and the calibration sample's size."""

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
    steps: Annotated[int, Field(ge=1, le=10)] = 1  # cuts to reach the target, each fine-tuned
    fine_tune_epochs: Annotated[int, Field(ge=0)] = 30  # in all, shared by the steps
    learning_rate: Annotated[float, Field(gt=0)] = 1e-3  # cosine: the starting rate
    fine_tune_schedule: Literal["constant", "cosine"] = "cosine"  # per step
    distill: DistillSpec | None = Field(default_factory=DistillSpec)  # None: labels only
    batch_size: PositiveInt = 50
    early_stopping_patience: PositiveInt = 8  # of a cosine's late epochs, each counts
    calibration_examples: PositiveInt = 64
    seed: int = 0
    pair_batches: bool = False  # twins in one batch; a config's train.pair_batches sets it
    fused_batch_norm: bool = False  # ``train.fit``'s; a config's train.fused_batch_norm sets it

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
        if self.steps > 1 and self.fine_tune_epochs < self.steps:
            raise ValueError(
                f"steps {self.steps} needs at least one fine-tuning epoch per step: "
                f"fine_tune_epochs is {self.fine_tune_epochs}"
            )
        return self

    @property
    def step_epochs(self) -> tuple[int, ...]:
        """Fine-tuning epochs after each cut: an equal share, the last cut taking the rest."""
        share = self.fine_tune_epochs // self.steps
        return (share,) * (self.steps - 1) + (self.fine_tune_epochs - share * (self.steps - 1),)

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
    teacher = keras.models.load_model(trained.path)
    calibration = _calibration(spec, examples)
    before = budgets.measure(teacher, calibration)
    accuracy_before = _accuracy(teacher, examples)
    targets = _step_targets(spec, before, budgets.keras_macs(teacher))
    if spec.steps > 1:  # an impossible budget is refused before any fine-tuning
        _choose(spec, teacher, targets[-1], before, calibration)
    model, after, kept, accuracy_pruned, history = teacher, before, 1.0, None, {}
    for target, epochs in zip(targets, spec.step_epochs, strict=True):
        chosen, after = _choose(spec, model, target, after, calibration)
        if chosen.removed:
            model, kept = chosen.model, kept * (1 - chosen.ratio)
            accuracy_pruned = _accuracy(model, examples)
            history = _joined(history, _fine_tune(spec, model, teacher, examples, epochs,
                                                  progress))  # fmt: skip
    if model is teacher:
        name, value = spec.target
        return PruneResult(
            trained=trained, reason=f"{name} {value} needs no pruning", before=before,
            after=before, accuracy_before=accuracy_before, accuracy_after=accuracy_before,
        )  # fmt: skip
    pruned = _save(model, trained, history, out_dir)
    steps = f" in {spec.steps} steps" if spec.steps > 1 else ""
    result = PruneResult(
        trained=pruned,
        reason=f"removed {1 - kept:.1%} of the prunable channels for {spec.target[0]}{steps}",
        channel_ratio=1 - kept,
        before=before,
        after=after,
        accuracy_before=accuracy_before,
        accuracy_pruned=accuracy_pruned,
        accuracy_after=_accuracy(model, examples),
    )
    log.info("pruned %s: %s; %s", trained.path, result.reason, _summary(result))
    return result


def _step_targets(spec: PruneSpec, before: Figures, macs: int) -> list[tuple[str, float]]:
    """The target of each cut, as (spec key, value): a channel ratio of the model the cut
    starts from (``1 - (1 - r) ** (1 / steps)`` each, compounding to ``r``), or an absolute
    limit (MACs for ``macs_ratio``) on the geometric path from the unpruned figure to the
    budget, the last cut's limit being the budget itself."""
    name, value = spec.target
    n = spec.steps
    if name == "channel_ratio":
        return [(name, 1 - (1 - value) ** (1 / n))] * n
    original, final = {
        "macs_ratio": (macs, value * macs),
        "max_flash_bytes": (before.flash_bytes, value),
        "max_arena_bytes": (before.arena_total, value),
    }[name]
    path = [int(original * (final / original) ** (i / n)) for i in range(1, n)]
    return [(name, limit) for limit in [*path, int(final)]]


def _choose(
    spec: PruneSpec, model, target: tuple[str, float], current: Figures, calibration
) -> tuple[_Candidate, Figures]:
    """The candidate of ``model`` (whose figures are ``current``) that meets ``target``,
    and its figures. These are measured before fine-tuning, which changes no shape: the
    quantize stage's flatbuffer differs only by the few bytes of tensor names that carry
    Keras' global tensor counter."""
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

    name, limit = target
    if name == "channel_ratio":
        chosen = candidate(limit)
        return chosen, figures(chosen) if chosen.removed else current
    figure, original = {
        "macs_ratio": (lambda c: budgets.keras_macs(c.model), budgets.keras_macs(model)),
        "max_flash_bytes": (lambda c: figures(c).flash_bytes, current.flash_bytes),
        "max_arena_bytes": (lambda c: figures(c).arena_total, current.arena_total),
    }[name]
    if original <= limit:
        return _Candidate(model, frozenset(), 0.0), current
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


def _fine_tune(
    spec: PruneSpec, model, teacher, examples: ExampleSet, epochs: int, progress: bool
) -> dict:
    """``epochs`` on the training split at the spec's rate and schedule, learning from
    ``teacher`` too when the spec distils; the best epoch kept."""
    if not epochs:
        return {}
    from components import example_records, train
    from components.pruning import distill

    train_set = example_records.dataset(examples, "train", spec.batch_size, shuffle=True,
                                        seed=spec.seed, pair_by_name=spec.pair_batches)  # fmt: skip
    has_val = bool(examples.counts.get("validation"))
    val = example_records.dataset(examples, "validation", spec.batch_size) if has_val else None
    per_epoch = math.ceil(examples.counts["train"] / spec.batch_size)
    rate = train.rate_schedule(spec.fine_tune_schedule, spec.learning_rate, epochs, per_epoch)
    if spec.distill is None:
        return train.fit(model, train_set, val, rate, epochs, spec.early_stopping_patience,
                         progress, fused_batch_norm=spec.fused_batch_norm)  # fmt: skip
    history = train.fit(
        model, distill.with_teacher(train_set, teacher),
        None if val is None else distill.with_teacher(val, teacher), rate, epochs,
        spec.early_stopping_patience, progress,
        loss=distill.loss(spec.distill.temperature, spec.distill.alpha),
        metrics=(distill.accuracy,), fused_batch_norm=spec.fused_batch_norm,
    )  # fmt: skip
    # The saved model names a loss that loads anywhere, not the closure above.
    model.compile(optimizer=model.optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])  # fmt: skip
    return history


def _joined(first: dict, then: dict) -> dict:
    """Two steps' per-epoch histories as one."""
    return {k: tuple(first.get(k, ())) + tuple(then.get(k, ())) for k in {*first, *then}}


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
