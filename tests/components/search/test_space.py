"""The search grid: its order, the budget cut, how candidates share parents and variants,
and which changes move which fingerprints."""

from __future__ import annotations

import dataclasses

import pytest

from components.prune import PruneSpec
from components.search import space
from components.search.space import SearchSpec
from components.train import TrainSpec

TRAIN = TrainSpec(architecture="mobilenet_v1", epochs=7)


def _plan(spec: SearchSpec, train: TrainSpec = TRAIN, measure_key: str = "m"):
    candidates = space.grid(spec, train, 96)
    data = {r: f"data-{r}" for r in {c.resolution for c in candidates}}
    return candidates, space.plan(
        spec, candidates, train=train, prune=PruneSpec(), data_keys=data, measure_key=measure_key
    )


def test_grid_is_the_product_in_order_and_the_budget_keeps_the_first():
    spec = SearchSpec(widths=(0.25, 0.5), resolutions=(64, 96), prune_ratios=(0.0, 0.5),
                      patch_modes=("off", "custom", "builtin"))  # fmt: skip
    candidates = space.grid(spec, TRAIN, 96)
    assert len(candidates) == 2 * 2 * 2 * 3
    assert candidates[0] == space.Candidate(0.25, 64, 0.0, "off")
    assert candidates[-1] == space.Candidate(0.5, 96, 0.5, "builtin")
    cut = space.grid(dataclasses.replace(spec, max_candidates=5), TRAIN, 96)
    assert cut == candidates[:5]


def test_empty_axes_keep_the_config_width_and_resolution():
    (only,) = space.grid(SearchSpec(patch_modes=("off",)), TRAIN, 96)
    assert (only.width, only.resolution) == (0.25, 96)  # MobileNetV1's default alpha


def test_candidates_share_one_parent_per_width_and_one_variant_per_ratio():
    spec = SearchSpec(widths=(0.25, 0.5), prune_ratios=(0.0, 0.5), patch_modes=("off", "custom"))
    _, parents = _plan(spec)
    assert len(parents) == 2
    assert all(len(p.variants) == 2 for p in parents)
    assert all(len(v.candidates) == 2 for p in parents for v in p.variants)
    keys = [k for p in parents for v in p.variants for k in (v.key, *(c.key for c in v.candidates))]
    assert len(set(keys)) == len(keys) == 12
    parent = parents[1]
    assert parent.train.model["alpha"] == 0.5 and parent.train.epochs == 7
    unpruned, pruned = parent.variants
    assert not unpruned.prune.enabled and unpruned.prune.channel_ratio is None
    assert pruned.prune.enabled and pruned.prune.channel_ratio == 0.5


def test_search_epochs_and_fine_tuning_override_the_config():
    spec = SearchSpec(prune_ratios=(0.3,), patch_modes=("off",), epochs=2, fine_tune_epochs=1)
    _, (parent,) = _plan(spec)
    assert parent.train.epochs == 2
    assert parent.variants[0].prune.fine_tune_epochs == 1


def test_fingerprints_move_only_below_what_changed():
    spec = SearchSpec(prune_ratios=(0.5,), patch_modes=("custom",))
    _, (a,) = _plan(spec)
    _, (b,) = _plan(spec, measure_key="other evaluation")
    assert a.key == b.key  # the parent is trained the same
    assert a.variants[0].key != b.variants[0].key
    _, (c,) = _plan(spec, train=dataclasses.replace(TRAIN, learning_rate=0.01))
    assert c.key != a.key and c.variants[0].candidates[0].key != a.variants[0].candidates[0].key
    _, (again,) = _plan(spec)
    assert again == a  # same inputs, same keys


def test_a_whole_number_width_option_refuses_a_fraction():
    train = TrainSpec(architecture="ds_cnn")
    with pytest.raises(ValueError, match="filters is a whole number"):
        _plan(SearchSpec(widths=(32.5,), patch_modes=("off",)), train=train)
    _, (parent,) = _plan(SearchSpec(widths=(32,), patch_modes=("off",)), train=train)
    assert parent.train.model["filters"] == 32


def test_spec_refuses_repeats_and_reads_yaml_off():
    with pytest.raises(ValueError, match="repeats"):
        SearchSpec(prune_ratios=(0.5, 0.5))
    assert SearchSpec(patch_modes=(False, "custom")).patch_modes == ("off", "custom")
    with pytest.raises(ValueError):
        SearchSpec(patch_modes=("tiles",))
