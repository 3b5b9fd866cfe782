"""Tests for the generated person-detection scenes, on tiny sets (8 images a split, 64 px)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pydantic
import pytest
from PIL import Image

from components.errors import ComponentError
from components.vision import backgrounds, faces, figures, rendering, scene_plan, scenes, textures
from components.vision.scenes import SceneSpec
from tests.shared_data import require

TINY = SceneSpec(image_size=64, train=8, validation=8, test=8)
LABELS = ("person", "non_person")
SPLITS = ("train", "validation", "test")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return scenes.run(TINY, tmp_path_factory.mktemp("tiny") / "set", progress=False)


def test_writes_split_and_label_folders_with_the_requested_counts(tiny):
    assert sorted(p.name for p in tiny.iterdir()) == sorted([*SPLITS, scenes.INFO_FILE])
    for split in SPLITS:
        assert sorted(p.name for p in (tiny / split).iterdir()) == sorted(LABELS)
        for label in LABELS:
            names = sorted(p.name for p in (tiny / split / label).iterdir())
            assert names == [f"{i:05d}.jpg" for i in range(4)], (split, label)
    info = json.loads((tiny / scenes.INFO_FILE).read_text())
    assert info["spec_hash"] == scenes.spec_hash(TINY)
    assert info["generator"] == scenes.GENERATOR_VERSION


def test_images_are_square_rgb_jpegs_of_the_requested_size(tiny):
    for path in tiny.rglob("*.jpg"):
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 64)), path


def test_odd_counts_give_the_extra_image_to_person():
    assert scenes.counts(SceneSpec(train=5, validation=1, test=2)) == {
        "train": {"person": 3, "non_person": 2},
        "validation": {"person": 1, "non_person": 0},
        "test": {"person": 1, "non_person": 1},
    }


def test_same_spec_gives_identical_bytes_and_another_seed_differs(tiny, tmp_path):
    again = scenes.run(TINY, tmp_path / "again", progress=False)
    assert _files(again) == _files(tiny)
    other = _files(scenes.run(SceneSpec(**{**vars(TINY), "seed": 1}), tmp_path / "s1", False))
    same = [name for name, data in _files(tiny).items() if other[name] == data]
    assert not same


def test_parallel_workers_give_the_same_bytes(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(scenes, "PARALLEL_FROM", 0)
    monkeypatch.setattr(scenes, "CHUNK", 5)
    assert _files(scenes.run(TINY, tmp_path / "par", progress=False, workers=2)) == _files(tiny)


# No main guard, run from standard input: the parallel workers must not re-run it.
STDIN_SCRIPT = """\
from pathlib import Path
from components.vision import scenes
with open("runs.log", "a") as log:
    log.write("ran\\n")
scenes.PARALLEL_FROM, scenes.CHUNK = 0, 5
scenes.run(scenes.SceneSpec(image_size=64, train=8, validation=8, test=8), Path("set"),
           progress=False, workers=2)
"""


def test_parallel_workers_run_from_standard_input_without_a_main_guard(tiny, tmp_path):
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-"], input=STDIN_SCRIPT, text=True, cwd=tmp_path, timeout=300,
        capture_output=True, env={**os.environ, "PYTHONPATH": str(repo)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "runs.log").read_text() == "ran\n"
    assert _files(tmp_path / "set") == _files(tiny)


def test_second_call_with_the_same_spec_returns_at_once_without_writing(tiny, monkeypatch):
    before = {p: p.stat().st_mtime_ns for p in tiny.rglob("*")}

    def fail(*args, **kwargs):
        raise AssertionError("a cached set was rendered again")

    monkeypatch.setattr(scenes, "render_chunk", fail)
    started = time.monotonic()
    assert scenes.run(TINY, tiny, progress=False) == tiny
    assert time.monotonic() - started < 0.5
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*")} == before


def test_a_different_spec_regenerates_in_place(tmp_path):
    out = scenes.run(TINY, tmp_path / "set", progress=False)
    first = _files(out)
    bigger = SceneSpec(**{**vars(TINY), "train": 10})
    scenes.run(bigger, out, progress=False)
    assert scenes.is_complete(out, scenes.spec_hash(bigger))
    assert len(list((out / "train").rglob("*.jpg"))) == 10
    assert _files(out) != first


def test_a_set_missing_images_is_regenerated(tiny, tmp_path):
    out = scenes.run(TINY, tmp_path / "set", progress=False)
    (out / "test" / "person" / "00001.jpg").unlink()
    assert not scenes.is_complete(out, scenes.spec_hash(TINY))
    scenes.run(TINY, out, progress=False)
    assert _files(out) == _files(tiny)


def test_an_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    real, calls = scenes.render_chunk, []

    def crash_on_second_chunk(spec, root, jobs):
        calls.append(len(jobs))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(spec, root, jobs)

    monkeypatch.setattr(scenes, "CHUNK", 4)
    monkeypatch.setattr(scenes, "render_chunk", crash_on_second_chunk)
    out = tmp_path / "set"
    with pytest.raises(KeyboardInterrupt):
        scenes.run(TINY, out, progress=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the partial folder was removed too


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".set.partial-{int(dead.stdout)}"
    (stale / "train" / "person").mkdir(parents=True)
    scenes.run(TINY, tmp_path / "set", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(ComponentError, match="did not write"):
        scenes.run(TINY, tmp_path / "photos", progress=False)


@pytest.mark.parametrize("field", ["train", "validation", "test"])
def test_a_count_of_zero_is_refused(field):
    with pytest.raises(pydantic.ValidationError, match=field):
        SceneSpec(**{field: 0})


@pytest.mark.parametrize(
    "fields",
    [
        {"person_area": (0.5, 0.2)},
        {"jpeg_quality": (90, 101)},
        {"image_size": 8},
        {"close_up_head": (0.2, 0.5)},
        {"contrast": (1.5, 1.0)},
        {"saturation": (-0.1, 1.0)},
        {"max_sharpen": 3.5},
    ],
)
def test_bad_ranges_are_refused(fields):
    with pytest.raises(pydantic.ValidationError):
        SceneSpec(**fields)


def test_describe_checks_split_label_and_index():
    with pytest.raises(ComponentError):
        scenes.describe(TINY, "train", "person", 4)
    with pytest.raises(ComponentError):
        scenes.describe(TINY, "holdout", "person", 0)


DEFAULT = SceneSpec()
CLOSE_UPS = SceneSpec(close_up_probability=0.2)
REAL_FACES = SceneSpec(real_faces=True, close_up_probability=0.2)


def _described(split: str, label: str, n: int = 200, spec=DEFAULT) -> list[scene_plan.Scene]:
    return [scenes.describe(spec, split, label, i) for i in range(n)]


def test_person_sizes_poses_and_views_spread():
    described = _described("train", "person")
    people = [p for scene in described for p in scene.people]
    areas = [p.area for p in people]
    assert all(scene.people for scene in described)
    assert min(areas) >= 0.05 and min(areas) < 0.08
    assert max(areas) > 0.7
    small, large = sum(a < 0.15 for a in areas), sum(a > 0.4 for a in areas)
    assert small > 0.2 * len(areas) and large > 0.15 * len(areas)
    poses = Counter(p.pose.name for p in people)
    assert set(poses) == set(figures.POSES)
    assert set(p.pose.view for p in people) == {"front", "back", "side"}
    assert sum(len(s.people) > 1 for s in described) > 20
    assert sum(p.occluded for p in people) > 20
    assert sum(p.cut for p in people) > 20


def test_close_ups_frame_a_large_head_inside_the_frame():
    people = [p for scene in _described("train", "person", spec=CLOSE_UPS) for p in scene.people]
    close = [p for p in people if p.unit >= 0.2]  # a head a fifth of the frame or more
    assert 0.03 * len(people) < len(close) < 0.2 * len(people)
    assert max(p.unit for p in people) > 0.25
    for p in close:
        hx, hy = p.joints["head"]
        assert 0.03 < hy < 0.5 and 0 < hx < 1, (hx, hy)
    far = [p for s in _described("train", "person") for p in s.people]  # no close-ups
    assert sum(p.unit >= 0.2 for p in far) < 0.5 * len(close)


def test_people_get_real_faces_from_their_split_group_only():
    for split, allowed in (("train", faces.TRAIN_FACES), ("test", faces.TEST_FACES)):
        used = {
            p.style.face for s in _described(split, "person", spec=REAL_FACES) for p in s.people
        }
        assert used <= set(allowed) and len(used) > 0.5 * len(allowed), split
    assert not set(faces.TRAIN_FACES) & set(faces.TEST_FACES)
    assert {p.style.face for s in _described("train", "person", 50) for p in s.people} == {-1}


def test_a_real_face_is_tinted_by_the_skin_and_keeps_its_features():
    dark, light = (faces.face_patch(0, skin, 40, 48)[0] for skin in ((80, 50, 35), (240, 200, 170)))
    dark_px, light_px = np.asarray(dark, float), np.asarray(light, float)
    assert dark_px.shape == (48, 40, 3)
    assert dark_px.mean() < 0.5 * light_px.mean()
    assert light_px[..., 0].mean() > light_px[..., 2].mean()  # the tone's hue, not grey
    assert light_px[..., 0].std() > 15  # eyes, nose, mouth: not a flat disc


def test_a_large_front_facing_head_shows_its_face():
    spec = SceneSpec(image_size=128, real_faces=True, close_up_probability=0.5)
    for i in range(400):
        scene = scenes.describe(spec, "train", "person", i)
        big = [p for p in scene.people if p.unit > 0.2 and p.pose.view == "front"]
        if big and not scene.occluders and len(scene.people) == 1:
            break
    person = big[0]
    plain = dataclasses.replace(person, style=dataclasses.replace(person.style, face=-1))
    drawn = [
        rendering.render(dataclasses.replace(scene, layers=_swap(scene.layers, person, who)), 128)
        for who in (person, plain)
    ]
    hx, hy = (round(v * 128) for v in person.joints["head"])
    r = round(0.3 * person.unit * 128)
    crops = [np.asarray(im, float)[hy - r : hy + r, hx - r : hx + r] for im in drawn]
    assert np.abs(crops[0] - crops[1]).mean() > 5


def _swap(layers, old, new):
    return tuple(new if item is old else item for item in layers)


def test_non_person_scenes_have_no_people_but_the_same_kind_of_objects():
    negatives, positives = _described("train", "non_person"), _described("train", "person")
    assert all(not scene.people for scene in negatives)
    kinds = {prop.kind for scene in negatives for prop in scene.props}
    assert {"coat_stand", "animal", "chair", "pole", "bottle", "tree"} <= kinds
    n_neg, n_pos = (sum(len(s.props) for s in d) for d in (negatives, positives))
    assert n_neg > n_pos  # stand-ins take the people's place
    assert sum(bool(s.occluders) for s in negatives) > 30


def test_the_held_out_groups_share_nothing():
    train, test = scene_plan.STYLE_GROUPS["train"], scene_plan.STYLE_GROUPS["test"]
    for field in ("photos", "textures", "bodies", "palettes", "hair", "faces"):
        a, b = getattr(train, field), getattr(test, field)
        assert a and b and not set(a) & set(b), field
    assert scene_plan.SPLIT_GROUPS == {"train": "train", "validation": "train", "test": "test"}
    used = set(train.photos) | set(test.photos)
    assert not used & set(backgrounds.EXCLUDED_PHOTOS)
    assert set(train.textures) | set(test.textures) == set(backgrounds.TEXTURES)


def test_every_photo_is_bundled_with_scikit_image():
    for name in backgrounds.TRAIN_PHOTOS + backgrounds.TEST_PHOTOS:
        assert min(backgrounds.load_photo(name).size) >= 128, name
    with pytest.raises(KeyError):
        backgrounds.load_photo("astronaut")


@pytest.mark.parametrize("split", SPLITS)
def test_each_split_uses_only_its_group(split):
    group = scene_plan.STYLE_GROUPS[scene_plan.SPLIT_GROUPS[split]]
    allowed = {f"photo:{p}" for p in group.photos} | set(group.textures)
    for label in LABELS:
        for scene in _described(split, label, 100):
            assert set(scene.background.sources) <= allowed, scene.background.sources
            for p in scene.people:
                assert p.style.body in group.bodies
                assert p.style.palette in group.palettes
                assert p.style.hair in group.hair


@pytest.mark.parametrize("pattern_probability", [0.0, 0.5])
def test_paired_non_person_scenes_are_the_person_scenes_without_people(pattern_probability):
    spec = dataclasses.replace(TINY, pattern_probability=pattern_probability)
    for i in range(4):
        person, other = (scenes.describe(spec, "train", label, i) for label in LABELS)
        assert person.people and not other.people
        assert other.background == person.background and other.effects == person.effects
        assert set(person.props) <= set(other.props)  # the same objects, occluders, seats
        added = set(other.props) - set(person.props)
        assert all(p.kind in scene_plan.props.STAND_INS for p in added)
    unpaired = SceneSpec(**{**vars(TINY), "paired": False})
    person, other = (scenes.describe(unpaired, "train", label, 0) for label in LABELS)
    assert person.background != other.background


def test_objects_wear_patterns_at_the_requested_rate_and_people_never():
    spec = SceneSpec(train=400, pattern_probability=0.5)
    described = [scenes.describe(spec, "train", label, i) for label in LABELS for i in range(200)]
    props = [p for scene in described for p in scene.props]
    worn = Counter(p.pattern for p in props if p.pattern)
    assert 0.4 < sum(worn.values()) / len(props) < 0.6
    assert set(worn) == set(textures.PATTERNS)
    animals = {p.pattern for p in props if p.kind == "animal" and p.pattern}
    assert animals == set(scene_plan.props.ANIMAL_PATTERNS)
    plain = [scenes.describe(TINY, "train", label, i) for label in LABELS for i in range(4)]
    assert all(not p.pattern for scene in plain for p in scene.props)


@pytest.mark.parametrize("kind", textures.PATTERNS)
def test_each_pattern_marks_part_of_the_surface_and_darkens_only(kind):
    gain = textures.pattern(np.random.default_rng(3), kind, 90, 60)
    assert gain.shape == (60, 90) and gain.dtype == np.float32
    assert 0.1 < gain.min() < 0.9 and gain.max() <= 1.0
    marked = np.mean(gain < gain.max() - 0.05)
    assert 0.1 < marked < 0.9, marked


def test_an_unknown_pattern_is_refused_by_name():
    with pytest.raises(ValueError, match="'tartan'.*stripes"):
        textures.pattern(np.random.default_rng(0), "tartan", 8, 8)


def test_a_patterned_object_is_drawn_with_more_edges_than_a_plain_one():
    scene = scenes.describe(TINY, "train", "non_person", 0)
    box = (0.2, 0.3, 0.8, 0.9)
    palettes = scene_plan.STYLE_GROUPS["train"].palettes
    plain = scene_plan.props.make_prop(np.random.default_rng(0), "box", box, palettes)
    edges = []
    for printed in ("", "stripes"):
        prop = dataclasses.replace(plain, pattern=printed)
        flat = dataclasses.replace(
            scene,
            layers=(prop,),
            occluders=(),
            effects=dataclasses.replace(scene.effects, noise=0.0, blur=0.0),
        )
        pixels = np.asarray(rendering.render(flat, 64).convert("L"), float)
        inside = pixels[24:54, 16:48]
        edges.append(sum(np.abs(np.diff(inside, axis=a)).mean() for a in (0, 1)))
    assert edges[1] > 2 * edges[0], edges


def _photo_statistics(images) -> np.ndarray:
    """Mean brightness, contrast (grey std), edge density (mean neighbour difference) and
    HSV saturation, averaged over images at 96 x 96."""
    rows = []
    for image in images:
        small = image.convert("RGB").resize((96, 96))
        grey = np.asarray(small.convert("L"), float)
        edges = (np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()) / 2
        saturation = np.asarray(small.convert("HSV"), float)[..., 1].mean()
        rows.append((grey.mean(), grey.std(), edges, saturation))
    return np.mean(rows, axis=0)


def test_the_photographic_camera_gives_scenes_the_contrast_edges_and_colour_of_photos():
    """``PHOTOGRAPHIC_CAMERA`` was set so that scenes look like COCO photos at 96 px to a
    detector's first layers; the default, softer camera gives about 2/3 of the photos'
    contrast and edges and a quarter more saturation."""
    photos = sorted(require("data", "vww_coco").rglob("*.png"))
    real = _photo_statistics(Image.open(p) for p in photos)
    made = {
        name: _photo_statistics(
            Image.open(io.BytesIO(scenes.render_jpeg(spec, "train", label, i)))
            for label in LABELS
            for i in range(60)
        )
        for name, spec in (("photo", SceneSpec(**scenes.PHOTOGRAPHIC_CAMERA)), ("soft", DEFAULT))
    }
    assert np.all(np.abs(made["photo"] - real) < 0.2 * real), (made["photo"].round(1), real)
    soft = made["soft"] / real  # brightness, contrast, edges, saturation against the photos
    assert soft[1] < 0.8 and soft[2] < 0.8 and soft[3] > 1.15, soft.round(2)
