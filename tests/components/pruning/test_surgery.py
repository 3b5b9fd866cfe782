"""Ranking and surgery: a pruned model is genuinely smaller and computes what zeroing the
removed channels computes; removing nothing changes nothing; every registry model prunes."""

from __future__ import annotations

import numpy as np
import pytest

from components import models
from components.pruning import budgets, dependency, ranking, surgery
from tests.components.pruning import helpers

BUILDERS = {
    "residual": helpers.residual_model,
    "depthwise": helpers.depthwise_model,
    "concat": helpers.concat_model,
}
REGISTRY = {
    "ds_cnn": (49, 10, 1),
    "mobilenet_v1": (32, 32, 3),
    "mobilenet_v2": (32, 32, 3),
    "mcunet": (32, 32, 3),
    "plain_cnn": (32, 32, 3),
}


def _inputs(model, count: int = 4) -> np.ndarray:
    shape = (count, *model.input_shape[1:])
    return np.random.default_rng(1).normal(0, 1, shape).astype(np.float32)


def _check_equivalent(model, ratio: float, **options):
    helpers.randomize_batch_norm(model)
    pruned, analysis, removed = helpers.prune(model, ratio, **options)
    assert removed
    x = _inputs(model)
    expected = helpers.zeroed(model, analysis, removed).predict(x, verbose=0)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
    return pruned


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_pruned_graph_computes_what_zeroed_channels_compute(name):
    model = BUILDERS[name]()
    pruned = _check_equivalent(model, 0.5)
    assert pruned.count_params() < model.count_params()
    assert budgets.keras_macs(pruned) < budgets.keras_macs(model)
    assert [type(layer) for layer in pruned.layers] == [type(layer) for layer in model.layers]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_models_prune(name):
    model = models.build(name, REGISTRY[name], 3)
    pruned = _check_equivalent(model, 0.5, scope="global" if name == "mcunet" else "uniform")
    assert pruned.output_shape == model.output_shape
    assert pruned.count_params() < 0.6 * model.count_params()


def test_pruning_leaves_a_fixed_low_pass_whole():
    """The plain CNN's untrained blur filters the image's own channels: none is removed."""
    model = models.build("plain_cnn", (32, 32, 3), 3, {"blur_sigma": 0.8})
    pruned = _check_equivalent(model, 0.5)
    kept, original = pruned.get_layer("low_pass"), model.get_layer("low_pass")
    assert not kept.trainable
    np.testing.assert_array_equal(kept.get_weights()[0], original.get_weights()[0])


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_removing_nothing_changes_nothing(name):
    model = BUILDERS[name]()
    helpers.randomize_batch_norm(model)
    same, _, removed = helpers.prune(model, 0.0)
    assert removed == frozenset()
    x = _inputs(model)
    np.testing.assert_array_equal(same.predict(x, verbose=0), model.predict(x, verbose=0))


def test_uniform_ratio_halves_every_group_and_respects_alignment():
    model = models.build("ds_cnn", (49, 10, 1), 3, {"filters": 16, "blocks": 2})
    analysis = dependency.analyse(model)
    scores = ranking.unit_scores(model, analysis)
    half = ranking.select(analysis, scores, 0.5)
    prunable = [g for g in analysis.groups if g.units]
    assert len(prunable) == 3 and len(half) == 24  # 8 of 16 from each
    aligned = ranking.select(analysis, scores, 0.7, channel_multiple=8)
    assert len(aligned) == 24  # 16 * 0.3 = 4.8 kept, rounded up to 8
    floor = ranking.select(analysis, scores, 0.99, min_channels=4)
    assert len(floor) == 3 * 12


def test_l1_removes_the_weakest_filters_first():
    model = helpers.depthwise_model()
    layer = model.get_layer("a")
    kernel, bias = layer.get_weights()
    kernel[..., [1, 4]] *= 1e-3
    layer.set_weights([kernel, bias])
    analysis = dependency.analyse(model)
    removed = ranking.select(analysis, ranking.unit_scores(model, analysis), 0.34)
    filters = analysis.unit_of[analysis.producers["a"]]
    assert set(filters[[1, 4]]) <= removed


def test_batch_norm_scale_criterion_removes_small_gammas():
    model = helpers.depthwise_model()
    bn = model.get_layer("bn")
    gamma, *rest = bn.get_weights()
    gamma[:] = [1.0, 0.01, 1.0, 1.0, 0.02, 1.0]
    bn.set_weights([gamma, *rest])
    analysis = dependency.analyse(model)
    scores = ranking.unit_scores(model, analysis, "bn_gamma")
    removed = ranking.select(analysis, scores, 0.34)
    assert set(analysis.unit_of[analysis.producers["a"]][[1, 4]]) <= removed


def test_global_scope_takes_more_from_weaker_groups():
    model = models.build("ds_cnn", (49, 10, 1), 3, {"filters": 16, "blocks": 2})
    analysis = dependency.analyse(model)
    weak = model.get_layer(analysis.groups[1].producers[0])
    kernel = weak.get_weights()[0]
    kernel[..., :12] *= 1e-3
    weak.set_weights([kernel])
    removed = ranking.select(analysis, ranking.unit_scores(model, analysis), 0.25,
                             scope="global")  # fmt: skip
    assert len(removed) == 12 and removed <= set(analysis.groups[1].units)


def test_keras_macs_match_the_int8_graph():
    import tflm_ext

    model = models.build("ds_cnn", (49, 10, 1), 3, {"filters": 8, "blocks": 1})
    pruned, analysis, _ = helpers.prune(model, 0.5)
    for m in (model, pruned):
        int8 = budgets.int8_bytes(m, _inputs(m, 4))
        assert tflm_ext.graph_stats(int8).total_macs == budgets.keras_macs(m)
    assert surgery.shrink(model, analysis, frozenset()).count_params() == model.count_params()
