"""How a search unit is reused, rebuilt, stored as a failure or not started, on a real
stage cache (the unit's work writes a stand-in model file: the stages themselves run in
tests/pipelines/test_search.py)."""

from __future__ import annotations

import time
from pathlib import Path

from components.artifacts import TrainedModel
from components.errors import ComponentError
from components.evaluate import EvaluateSpec
from components.patch import PatchSpec
from components.quantize import QuantizeSpec
from components.search import units


def _ctx(store: Path, **kw) -> units.SearchContext:
    return units.SearchContext(store, {}, QuantizeSpec(), PatchSpec(), EvaluateSpec(), (), **{
        "deadline": None, **kw})  # fmt: skip


def _counting(calls: list[int]):
    def build(out: Path) -> TrainedModel:
        calls.append(1)
        (out / "model.keras").write_bytes(b"x")
        return TrainedModel(out / "model.keras", ("a", "b"), (4, 1))

    return build


def test_a_stored_unit_is_reused_and_force_rebuilds_it(tmp_path):
    calls: list[int] = []
    first = units._unit(_ctx(tmp_path), "parent", "k1", _counting(calls))
    again = units._unit(_ctx(tmp_path), "parent", "k1", _counting(calls))
    assert len(calls) == 1 and again == first and first.path.read_bytes() == b"x"
    units._unit(_ctx(tmp_path, force=True), "parent", "k1", _counting(calls))
    assert len(calls) == 2


def test_a_failure_is_stored_and_not_retried(tmp_path):
    calls: list[int] = []

    def failing(out: Path):
        calls.append(1)
        raise ComponentError("prune ratio 0.9 leaves no channel")

    result = units._unit(_ctx(tmp_path), "variant", "k2", failing)
    assert isinstance(result, units.UnitFailure) and "no channel" in result.error
    assert units._unit(_ctx(tmp_path), "variant", "k2", failing) == result
    assert len(calls) == 1


def test_nothing_starts_once_the_budget_is_spent_but_stored_units_still_count(tmp_path):
    calls: list[int] = []
    units._unit(_ctx(tmp_path), "candidate", "done", _counting(calls))
    late = _ctx(tmp_path, deadline=time.time() - 1)
    assert units._unit(late, "candidate", "new", _counting(calls)) is None
    assert isinstance(units._unit(late, "candidate", "done", _counting(calls)), TrainedModel)
    assert len(calls) == 1
