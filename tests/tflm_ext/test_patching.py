"""The patching driver: plan, rewrite, verify and keep only a measured gain, in both modes."""

from __future__ import annotations

import shutil

import pytest

from tflm_ext.errors import NothingPatchableError
from tflm_ext.patching import patch_model

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the custom op needs g++")


def test_custom_mode_patches_verified_and_smaller(inverted_residual_int8_model):
    outcome = patch_model(inverted_residual_int8_model, mode="custom", inputs=3)
    assert outcome.applied and outcome.plan.stages
    assert outcome.report.identical and outcome.report.examples == 3
    assert outcome.report.arena_after.bisected_min < outcome.report.arena_before.bisected_min


def test_builtin_mode_keeps_the_model_when_its_extra_ops_cost_more(inverted_residual_int8_model):
    """On a model this small the builtin split's per-operator arena outweighs the lower
    head, even on the coarse retry: the original is kept and the reason says so."""
    outcome = patch_model(inverted_residual_int8_model, mode="builtin", inputs=3)
    assert not outcome.applied and outcome.model_bytes is None
    assert not outcome.plan.stages and outcome.plan.reason


def test_unpatchable_model_is_refused(prepare_bound_int8_model):
    with pytest.raises(NothingPatchableError):
        patch_model(prepare_bound_int8_model)
