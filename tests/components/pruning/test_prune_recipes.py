"""Pruning's fine-tuning recipes: distillation from the unpruned model, iterative cuts, the
cosine schedule, and the spec's refusals (the accuracy they buy is benchmarks/pruning.py's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components import example_records, prune
from components.pruning import distill
from components.search import space
from pipelines import config
from pipelines.errors import PipelineError

REPO = Path(__file__).resolve().parents[3]
FAST = {"enabled": True, "calibration_examples": 16, "search_step": 0.1}


@pytest.fixture
def pruned_with(trained, feature_set, tmp_path):
    """(spec, result) of pruning the tiny trained model with ``FAST`` and ``fields``."""

    def run(name: str = "run", **fields):
        spec = prune.PruneSpec(**{**FAST, **fields})
        return spec, prune.run(spec, trained, feature_set, tmp_path / name, progress=False)

    return run


def test_teacher_probabilities_ride_in_the_targets(trained, feature_set):
    import keras

    teacher = keras.models.load_model(trained.path)
    batch = example_records.dataset(feature_set, "validation", 8)
    x, y = next(iter(batch))
    packed_x, packed = next(iter(distill.with_teacher(batch, teacher)))
    np.testing.assert_array_equal(packed_x, x)
    np.testing.assert_array_equal(packed[:, 0], y)
    np.testing.assert_allclose(packed[:, 1:], teacher.predict(x, verbose=0), atol=1e-6)


def test_distillation_loss_weighs_labels_against_the_teacher():
    import keras

    student = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    teacher = np.array([[0.2, 0.7, 0.1], [0.3, 0.3, 0.4]], dtype=np.float32)

    def loss(alpha, labels, teacher=teacher):
        y_true = np.concatenate([np.array(labels, np.float32)[:, None], teacher], axis=1)
        return np.asarray(distill.loss(4.0, alpha)(y_true, student))

    labels_only = keras.losses.sparse_categorical_crossentropy(np.array([0, 2]), student)
    np.testing.assert_allclose(loss(0.0, [0, 2]), labels_only, rtol=1e-5)
    np.testing.assert_allclose(loss(1.0, [0, 2]), loss(1.0, [1, 1]))  # labels unused
    assert not np.allclose(loss(1.0, [0, 2]), loss(1.0, [0, 2], teacher=student))
    # The soft term vanishes where the student already agrees with the teacher.
    np.testing.assert_allclose(loss(1.0, [0, 2], teacher=student), 0.0, atol=1e-5)
    assert np.all(loss(1.0, [0, 2]) > 0.01)


def test_alpha_changes_what_fine_tuning_learns(pruned_with):
    import keras

    weights = []
    for alpha in (0.0, 1.0):
        _, result = pruned_with(str(alpha), channel_ratio=0.5, fine_tune_epochs=1,
                                distill={"alpha": alpha})  # fmt: skip
        model = keras.models.load_model(result.trained.path)  # loads: a standard loss
        assert model.loss == "sparse_categorical_crossentropy"
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(result.trained.history)
        weights.append(model.get_weights())
    assert any(not np.allclose(a, b) for a, b in zip(*weights, strict=True))


def test_iterative_steps_reach_the_macs_budget(pruned_with):
    spec, result = pruned_with(macs_ratio=0.5, steps=3, fine_tune_epochs=3)
    assert result.after.macs <= 0.5 * result.before.macs
    assert "in 3 steps" in result.reason
    assert len(result.trained.history["loss"]) == sum(spec.step_epochs) == 3


def test_iterative_channel_ratio_compounds_to_the_target(pruned_with):
    _, once = pruned_with("once", channel_ratio=0.5, fine_tune_epochs=0)
    _, twice = pruned_with("twice", channel_ratio=0.5, steps=2, fine_tune_epochs=2)
    assert twice.channel_ratio == pytest.approx(0.5, abs=0.05)
    assert twice.after.params == pytest.approx(once.after.params, rel=0.1)


def test_steps_share_the_epochs_the_last_taking_the_rest():
    assert prune.PruneSpec(fine_tune_epochs=15, steps=3).step_epochs == (5, 5, 5)
    assert prune.PruneSpec(fine_tune_epochs=7, steps=3).step_epochs == (2, 2, 3)
    assert prune.PruneSpec(fine_tune_epochs=0).step_epochs == (0,)


def test_spec_refuses_bad_recipes_naming_the_key():
    with pytest.raises(ValueError, match="steps 4 needs at least one fine-tuning epoch"):
        prune.PruneSpec(enabled=True, macs_ratio=0.5, steps=4, fine_tune_epochs=3)
    with pytest.raises(ValueError, match="alpha"):
        prune.PruneSpec(distill={"alpha": 1.5})
    with pytest.raises(ValueError, match="temperature"):
        prune.PruneSpec(distill={"temperature": 0})
    with pytest.raises(ValueError, match="fine_tune_schedule"):
        prune.PruneSpec(fine_tune_schedule="linear")
    with pytest.raises(PipelineError, match=r"kws.yaml: key 'prune.distill.alpha'"):
        config.load(REPO / "configs" / "kws.yaml", ["prune.distill.alpha=2"])


def test_the_search_fine_tunes_with_the_configs_recipe():
    recipe = prune.PruneSpec(steps=2, fine_tune_epochs=6, distill={"alpha": 0.9})
    variant = space._variant_prune(space.SearchSpec(), recipe, 0.5)
    assert variant.channel_ratio == 0.5 and variant.enabled
    assert (variant.steps, variant.distill, variant.fine_tune_schedule) == (
        2, recipe.distill, "cosine")  # fmt: skip


def test_fine_tuning_schedules():
    from components import train

    assert train.rate_schedule("constant", 1e-3, 10, 5) == 1e-3
    cosine = train.rate_schedule("cosine", 1e-3, 10, 5)
    assert float(cosine(0)) == pytest.approx(1e-3)
    assert float(cosine(25)) < 1e-3 and float(cosine(50)) == pytest.approx(5e-5)


@pytest.mark.parametrize("distill_spec", [None, {"alpha": 0.7}], ids=["labels", "distilled"])
def test_fine_tuning_on_the_fused_batch_norm_learns_what_keras_batch_norm_does(
    pruned_with, distill_spec
):
    import keras

    weights = []
    for fused in (False, True):
        _, result = pruned_with(f"{fused}", channel_ratio=0.5, fine_tune_epochs=1,
                                distill=distill_spec, fused_batch_norm=fused)  # fmt: skip
        model = keras.models.load_model(result.trained.path)
        weights.append(model.get_weights())
    assert any(w.ndim == 1 for w in weights[0])  # batch-norm parameters and statistics
    # Another kernel rounds otherwise: equal to the last bit would mean it never ran.
    assert any(not np.array_equal(a, b) for a, b in zip(*weights, strict=True))
    for plain, fused in zip(*weights, strict=True):
        np.testing.assert_allclose(fused, plain, rtol=1e-3, atol=1e-4)
