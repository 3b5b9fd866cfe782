"""The prune component: targets, budgets measured on TFLM, refusal, and the int8 model runs."""

from __future__ import annotations

import numpy as np
import pytest

import tflm_ext
from components import example_records, prune, quantize
from components.errors import ComponentError

FAST = {"enabled": True, "calibration_examples": 16, "search_step": 0.1, "fine_tune_epochs": 0}


@pytest.fixture(scope="module")
def halved(trained, feature_set, tmp_path_factory):
    spec = prune.PruneSpec(**{**FAST, "channel_ratio": 0.5, "fine_tune_epochs": 1})
    return prune.run(spec, trained, feature_set, tmp_path_factory.mktemp("halved"), progress=False)


def test_half_the_channels_make_every_figure_smaller(halved, trained):
    assert halved.channel_ratio == 0.5
    for name in prune.FIGURES:
        assert getattr(halved.after, name) < getattr(halved.before, name), name
    assert halved.trained.path.name == "model_pruned.keras" and halved.trained.path.is_file()
    assert halved.trained.params == halved.after.params < trained.params
    assert len(halved.trained.history["loss"]) == 1
    metrics = halved.metrics()
    assert {f"prune.{n}_{w}" for n in prune.FIGURES for w in ("before", "after")} <= set(metrics)
    assert 0 <= metrics["prune.accuracy_after"] <= 1 and "prune.accuracy_before" in metrics


def test_pruned_model_quantizes_and_runs_on_tflm(halved, feature_set, tmp_path):
    import keras

    int8 = quantize.run(quantize.QuantizeSpec(representative_examples=16), halved.trained,
                        feature_set, tmp_path)  # fmt: skip
    # Tensor names in the flatbuffer carry Keras' global tensor counter: a few bytes apart.
    assert abs(len(int8.read_bytes()) - halved.after.flash_bytes) <= 16
    assert tflm_ext.graph_stats(int8.read_bytes()).total_macs == halved.after.macs
    x, _ = example_records.load_split(feature_set, "test", limit=12)
    scores = tflm_ext.run_isolated(tflm_ext.run_batch, int8.read_bytes(), x).scores
    expected = keras.models.load_model(halved.trained.path).predict(x, verbose=0)
    assert np.mean(scores.argmax(1) == expected.argmax(1)) >= 0.8


def test_ratio_zero_keeps_the_trained_model(trained, feature_set, tmp_path):
    result = prune.run(prune.PruneSpec(**{**FAST, "channel_ratio": 0.0}), trained, feature_set,
                       tmp_path, progress=False)  # fmt: skip
    assert result.trained is trained and result.after == result.before
    assert "needs no pruning" in result.reason


def test_macs_budget(trained, feature_set, tmp_path):
    result = prune.run(prune.PruneSpec(**{**FAST, "macs_ratio": 0.5}), trained, feature_set,
                       tmp_path, progress=False)  # fmt: skip
    assert result.after.macs <= 0.5 * result.before.macs
    assert 0 < result.channel_ratio < 0.9


@pytest.mark.parametrize(
    ("budget", "figure"), [("max_flash_bytes", "flash_bytes"), ("max_arena_bytes", "arena_total")]
)
def test_device_budgets_hold_on_tflm(budget, figure, halved, trained, feature_set, tmp_path):
    limit = (getattr(halved.before, figure) + getattr(halved.after, figure)) // 2
    spec = prune.PruneSpec(**{**FAST, budget: limit})
    result = prune.run(spec, trained, feature_set, tmp_path, progress=False)
    assert getattr(result.after, figure) <= limit < getattr(result.before, figure)
    assert 0 < result.channel_ratio <= 0.5


def test_impossible_budget_is_refused_with_the_best_reached(trained, feature_set, tmp_path):
    spec = prune.PruneSpec(**{**FAST, "max_arena_bytes": 1_000})
    with pytest.raises(
        ComponentError,
        match=r"max_arena_bytes 1,000 cannot be met: the best "
        r"reached is [\d,]+ at channel ratio 0.900",
    ):
        prune.run(spec, trained, feature_set, tmp_path, progress=False)


def test_disabled_passes_the_model_through(trained, feature_set, tmp_path):
    result = prune.run(prune.PruneSpec(), trained, feature_set, tmp_path)
    assert result.trained is trained and result.metrics() == {}


def test_spec_wants_exactly_one_target():
    assert prune.PruneSpec().target is None
    assert prune.PruneSpec(enabled=True, max_flash_bytes=9000).target == ("max_flash_bytes", 9000)
    with pytest.raises(ValueError, match="no target"):
        prune.PruneSpec(enabled=True)
    with pytest.raises(ValueError, match="exactly one prune target"):
        prune.PruneSpec(channel_ratio=0.5, max_arena_bytes=10_000)
    with pytest.raises(ValueError, match="channel_ratio"):
        prune.PruneSpec(enabled=True, channel_ratio=1.0)
    with pytest.raises(ValueError, match="search_step"):
        prune.PruneSpec(enabled=True, macs_ratio=0.5, search_step=0.5, max_channel_ratio=0.4)
