"""The search's Beam transforms: one element per unit of work, parents -> variants ->
candidates, with a reshuffle before each level so the runner spreads the units over its
workers instead of fusing a parent with all of its descendants on one.

Elements are the jobs of :mod:`components.search.space` with the results they depend on;
each function runs one unit (:mod:`components.search.units`) and emits the jobs it unblocks.
A unit that failed or was not started (budget spent) emits nothing below it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from components.search import units
from components.search.space import ParentJob


def build(pipeline, parents: Sequence[ParentJob], ctx: units.SearchContext) -> None:
    """Add the search to ``pipeline``; results go to the store, nothing is returned."""
    import apache_beam as beam

    _ = (
        pipeline
        | "Parents" >> beam.Create(list(parents))
        | "SpreadParents" >> beam.Reshuffle()
        | "TrainParents" >> beam.FlatMap(_train, ctx)
        | "SpreadVariants" >> beam.Reshuffle()
        | "PruneAndQuantize" >> beam.FlatMap(_vary, ctx)
        | "SpreadCandidates" >> beam.Reshuffle()
        | "PatchAndMeasure" >> beam.Map(_measure, ctx)
    )


def _train(job: ParentJob, ctx: units.SearchContext) -> Iterator[tuple]:
    parent = units.train_parent(job, ctx)
    if parent is None or isinstance(parent, units.UnitFailure):
        return
    for variant in job.variants:
        yield variant, parent, job.resolution


def _vary(element: tuple, ctx: units.SearchContext) -> Iterator[tuple]:
    job, parent, resolution = element
    variant = units.make_variant(job, parent, resolution, ctx)
    if variant is None or isinstance(variant, units.UnitFailure):
        return
    for candidate in job.candidates:
        yield candidate, variant, resolution


def _measure(element: tuple, ctx: units.SearchContext) -> str:
    job, variant, resolution = element
    units.measure_candidate(job, variant, resolution, ctx)
    return job.key
