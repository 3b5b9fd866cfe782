"""The search space: which candidates a fit-to-device search builds, and in what order.

A candidate is one point of the grid ``widths x resolutions x prune_ratios x patch_modes``.
Candidates share work: every candidate of one (width, resolution) fine-tunes from one
*parent* trained at that width and resolution, and every patch mode of one pruned variant
patches the same quantized model. :func:`plan` groups the grid that way, so the fan-out
trains each parent and prunes each variant once.

Every unit of work has a fingerprint (its specs, its parent's fingerprint, the data and the
code version), the key under which its result is stored: a unit already done is reused,
which is what lets an interrupted search resume.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import pydantic
from pydantic import Field, PositiveInt

from components import models
from components.prune import PruneSpec
from components.spec import component_spec
from components.stage_cache import fingerprint
from components.train import TrainSpec

PatchMode = Literal["off", "custom", "stream", "builtin"]
Ratio = Annotated[float, Field(ge=0, lt=1)]


@component_spec
class SearchSpec:
    """The grid, the training each candidate gets, the budget and where it runs.

    Empty ``widths`` / ``resolutions`` keep the config's own (``train.model``'s width option,
    the image size). ``epochs`` is the parents' brief training (default: ``train.epochs``),
    ``fine_tune_epochs`` the pruned variants' (default: ``prune.fine_tune_epochs``).
    ``max_candidates`` keeps the first candidates in grid order (widths, then resolutions,
    prune ratios and patch modes, each in the order given); ``max_wall_seconds`` stops
    starting new work once that long has passed. ``runner`` is a Beam runner;
    ``num_workers`` is the DirectRunner's number of worker processes.
    """

    widths: tuple[Annotated[float, Field(gt=0)], ...] = ()
    resolutions: tuple[Annotated[int, Field(ge=8, le=1024)], ...] = ()
    prune_ratios: tuple[Ratio, ...] = (0.0,)
    patch_modes: tuple[PatchMode, ...] = ("off", "custom")
    epochs: PositiveInt | None = None
    fine_tune_epochs: Annotated[int, Field(ge=0)] | None = None
    max_candidates: PositiveInt | None = None
    max_wall_seconds: Annotated[float, Field(gt=0)] | None = None
    runner: str = "DirectRunner"
    num_workers: PositiveInt = 2

    @pydantic.field_validator("patch_modes", mode="before")
    @classmethod
    def _yaml_off(cls, modes: object) -> object:
        """YAML reads a bare ``off`` as false: take it as the mode it was written as."""
        if isinstance(modes, list | tuple):
            return tuple("off" if m is False else m for m in modes)
        return modes

    @pydantic.model_validator(mode="after")
    def _distinct(self) -> SearchSpec:
        for name in ("widths", "resolutions", "prune_ratios", "patch_modes"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} {list(values)} repeats a value")
        if not self.prune_ratios or not self.patch_modes:
            raise ValueError("prune_ratios and patch_modes need at least one value each")
        return self


@dataclass(frozen=True, order=True)
class Candidate:
    """One point of the grid. ``width`` is the value of the architecture's width option
    (``alpha``, ``filters``); ``resolution`` the square image side (None: not an image
    model, or the config's own)."""

    width: float
    resolution: int | None
    prune_ratio: float
    patch_mode: PatchMode

    @property
    def name(self) -> str:
        res = f"-r{self.resolution}" if self.resolution else ""
        return f"w{self.width:g}{res}-p{self.prune_ratio:g}-{self.patch_mode}"

    @property
    def parent_key(self) -> tuple[float, int | None]:
        return self.width, self.resolution

    @property
    def variant_key(self) -> tuple[float, int | None, float]:
        return self.width, self.resolution, self.prune_ratio

    def record(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ParentJob:
    """Train one parent; ``variants`` are the pruned variants that start from it."""

    key: str  # fingerprint
    width: float
    resolution: int | None
    train: TrainSpec
    variants: tuple[VariantJob, ...]


@dataclass(frozen=True)
class VariantJob:
    """Prune (unless the ratio is 0), fine-tune and quantize one parent."""

    key: str
    prune_ratio: float
    prune: PruneSpec
    candidates: tuple[CandidateJob, ...]


@dataclass(frozen=True)
class CandidateJob:
    """Patch (unless the mode is ``off``) and measure one variant on TFLM."""

    key: str
    candidate: Candidate


def grid(spec: SearchSpec, train: TrainSpec, default_resolution: int | None) -> list[Candidate]:
    """Every candidate in grid order, cut to ``max_candidates``."""
    widths = spec.widths or (_width_of(train),)
    resolutions = spec.resolutions or (default_resolution,)
    points = itertools.product(widths, resolutions, spec.prune_ratios, spec.patch_modes)
    candidates = [Candidate(float(w), r, float(p), m) for w, r, p, m in points]
    return candidates[: spec.max_candidates]


def plan(
    spec: SearchSpec,
    candidates: Sequence[Candidate],
    *,
    train: TrainSpec,
    prune: PruneSpec,
    data_keys: dict[int | None, str],
    measure_key: str,
) -> list[ParentJob]:
    """Group ``candidates`` into parents and variants, each with its fingerprint.

    ``data_keys`` fingerprints the example set of each resolution; ``measure_key`` the
    quantize, patch and evaluate sections and the devices, which every candidate shares.
    """
    parents = []
    for (width, resolution), in_parent in _groups(candidates, lambda c: c.parent_key):
        parent_train = _parent_train(spec, train, width)
        parent_key = fingerprint("parent", parent_train, data_keys[resolution])
        variants = []
        for (*_, ratio), in_variant in _groups(in_parent, lambda c: c.variant_key):
            variant_prune = _variant_prune(spec, prune, ratio)
            variant_key = fingerprint("variant", parent_key, variant_prune, measure_key)
            jobs = tuple(
                CandidateJob(fingerprint("candidate", variant_key, c.patch_mode, measure_key), c)
                for c in in_variant
            )
            variants.append(VariantJob(variant_key, ratio, variant_prune, jobs))
        parents.append(ParentJob(parent_key, width, resolution, parent_train, tuple(variants)))
    return parents


def _groups(items, key):
    """Consecutive groups by ``key``, in first-seen order (``items`` is in grid order)."""
    return [(k, list(group)) for k, group in itertools.groupby(items, key=key)]


def _width_of(train: TrainSpec) -> float:
    return float(train.model[models.width_option(train.architecture)])


def _parent_train(spec: SearchSpec, train: TrainSpec, width: float) -> TrainSpec:
    option = models.width_option(train.architecture)
    value = int(width) if isinstance(train.model[option], int) else width
    if isinstance(value, int) and value != width:
        raise ValueError(f"width {width:g}: {train.architecture}'s {option} is a whole number")
    return dataclasses.replace(
        train, model={**train.model, option: value}, epochs=spec.epochs or train.epochs
    )


def _variant_prune(spec: SearchSpec, prune: PruneSpec, ratio: float) -> PruneSpec:
    epochs = prune.fine_tune_epochs if spec.fine_tune_epochs is None else spec.fine_tune_epochs
    targets = dict.fromkeys(("channel_ratio", "macs_ratio", "max_flash_bytes", "max_arena_bytes"))
    return dataclasses.replace(
        prune, enabled=ratio > 0, **{**targets, "channel_ratio": ratio or None},
        fine_tune_epochs=epochs,
    )  # fmt: skip
