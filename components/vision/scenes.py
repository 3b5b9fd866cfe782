"""Generated person-detection data (Visual Wake Words style): the VWW default data set.

The project's embedded default image set is generated here rather than downloaded. Each
image is a scene: a background made from scikit-image's bundled sample photographs (none
shows a person) or from procedural rooms, streets, foliage, fields, skies, tiles, shelves,
gradients and lights; hard-negative objects (poles, bottles, lamps, trees, coat stands,
cacti, animals, furniture) in every image; and, in the ``person`` class, one to three
articulated people in many poses, sizes (about 5 % of the frame to filling it; optionally
close-ups framed from the head down), views, clothes, skin tones and hair (optionally real
faces), sometimes occluded or cut by the frame. Non-person image ``i`` is, by default,
person image ``i`` with its people taken away and objects standing in their place, so the
classes differ only in the people. A simple camera adds lighting, colour cast, blur,
sharpening, sensor noise and JPEG artefacts (``PHOTOGRAPHIC_CAMERA``: settings matched to
photographs). The modules: ``scene_plan`` (what a scene holds),
``figures``/``figure_drawing``/``faces`` (people), ``props``, ``backgrounds``/``textures``
and ``rendering``.

The test split is rendered from held-out styles (``scene_plan.STYLE_GROUPS``): background
sources and figure styles that training never sees. The output is
``out_dir/<split>/<label>/<index>.jpg`` (splits train/validation/test, labels person and
non_person), read by ``components.vision.image_folder``. It is a pure function of the spec
and is cached: a second call with an identical spec returns at once. Called by the VWW
pipeline before the image reader.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Annotated

import pydantic
from tqdm.auto import tqdm

from components import generated_set
from components.artifacts import SPLITS
from components.errors import ComponentError
from components.spec import component_spec
from components.vision.rendering import render
from components.vision.scene_plan import LABELS, STYLE_GROUPS, Scene, plan_scene

log = logging.getLogger(__name__)

INFO_FILE = "SCENES_INFO.json"
GENERATOR_VERSION = 2  # bump whenever the scene recipe changes, so cached sets are rebuilt
CHUNK = 64  # images per worker task, at least (a worker is a fresh interpreter)
PARALLEL_FROM = 256  # smaller sets are rendered in this process: starting workers costs more

Fraction = Annotated[float, pydantic.Field(ge=0.0, le=1.0)]


@component_spec
class SceneSpec:
    """What to generate. Every field feeds the cache key, so any change regenerates."""

    seed: int = 0
    image_size: int = pydantic.Field(128, ge=32, le=1024)  # square; resized for the model later
    # Images per split, half person and half non_person (an odd one out is a person).
    train: int = pydantic.Field(2400, gt=0)
    validation: int = pydantic.Field(300, gt=0)
    test: int = pydantic.Field(600, gt=0)
    person_area: tuple[float, float] = (0.05, 1.0)  # a person's box, share of the frame
    multi_person_probability: Fraction = 0.25  # else one person per person scene
    max_people: int = pydantic.Field(3, ge=2, le=6)
    occlusion_probability: Fraction = 0.3  # an object in front of (where) the main person (is)
    border_cut_probability: Fraction = 0.2  # a person placed across the frame's border
    # A person framed from the head down to the chest or knees, the head a sizeable share
    # of the frame (``close_up_head``, head height over frame height): photographs' people.
    close_up_probability: Fraction = 0.0
    close_up_head: tuple[float, float] = (0.1, 0.3)
    real_faces: bool = False  # front-facing people wear real faces (``faces``)
    max_distractors: int = pydantic.Field(4, ge=0, le=12)  # hard-negative objects per scene
    # Chance of an object (not a person) wearing a surface pattern: stripes, patches, cells,
    # fur or checks (``textures.PATTERNS``), the textures of real negatives that flat objects
    # lack (zebras, giraffes, cows, food, cloth). 0 draws nothing: older sets stay alike.
    pattern_probability: Fraction = 0.0
    # Non-person scenes: chance of an object standing where each (left out) person would be.
    stand_in_probability: Fraction = 0.7
    # Non-person image i is person image i without its people (see scene_plan); else unpaired.
    paired: bool = True
    # The camera, drawn per image. PHOTOGRAPHIC_CAMERA brings the set's contrast, edge
    # density and saturation to photographs' (COCO photos at 96 px); the defaults are softer.
    brightness: tuple[float, float] = (0.65, 1.3)
    contrast: tuple[float, float] = (0.7, 1.25)
    saturation: tuple[float, float] = (0.5, 1.3)
    blur_probability: Fraction = 0.5
    max_blur: float = pydantic.Field(1.2, ge=0.3, le=4.0)  # pixels of a 128-pixel image
    max_sharpen: float = pydantic.Field(0.0, ge=0.0, le=3.0)  # unsharp mask, half the images
    max_noise: float = pydantic.Field(8.0, ge=0.0, le=40.0)  # sensor noise, 0-255 scale
    jpeg_quality: tuple[int, int] = (35, 95)

    def __post_init__(self) -> None:
        _check_range("person_area", self.person_area, 0.01, 1.0)
        _check_range("close_up_head", self.close_up_head, 0.05, 0.35,
                     " (a larger head leaves no torso in the frame)")  # fmt: skip
        for name in ("brightness", "contrast", "saturation"):
            _check_range(name, getattr(self, name), 0.0, 3.0)
        _check_range("jpeg_quality", self.jpeg_quality, 5, 100)


def _check_range(name: str, value: tuple[float, float], least: float, most: float, why="") -> None:
    lo, hi = value
    if not least <= lo <= hi <= most:
        raise ValueError(f"{name}={value} must be {least} <= low <= high <= {most}{why}")


# Camera settings that give generated scenes COCO photos' contrast, edge density and
# saturation at 96 px (pinned by a test against ../shared/data/vww_coco); the README gives
# them as --set overrides of data.synth.
PHOTOGRAPHIC_CAMERA = {
    "brightness": (0.8, 1.4),
    "contrast": (0.9, 1.7),
    "saturation": (0.25, 0.8),
    "blur_probability": 0.25,
    "max_sharpen": 1.5,
}


def counts(spec: SceneSpec) -> dict[str, dict[str, int]]:
    """Images per split and label: half of each split is person, half non_person."""
    sizes = {"train": spec.train, "validation": spec.validation, "test": spec.test}
    return {s: {"person": n - n // 2, "non_person": n // 2} for s, n in sizes.items()}


def describe(spec: SceneSpec, split: str, label: str, index: int) -> Scene:
    """The plan of one image, without rendering it: its people (boxes, poses, styles),
    objects, background sources and camera settings."""
    if split not in SPLITS or label not in LABELS:
        raise ComponentError(f"no split {split!r} or label {label!r}: use {SPLITS}, {LABELS}")
    if not 0 <= index < counts(spec)[split][label]:
        raise ComponentError(f"{split}/{label} has {counts(spec)[split][label]} images, "
                             f"not an index {index}")  # fmt: skip
    return plan_scene(spec, split, label, index)


def render_jpeg(spec: SceneSpec, split: str, label: str, index: int) -> bytes:
    """One finished image, as the bytes of its JPEG file."""
    scene = describe(spec, split, label, index)
    buffer = io.BytesIO()
    render(scene, spec.image_size).save(buffer, "JPEG", quality=scene.effects.jpeg_quality)
    return buffer.getvalue()


def image_path(split: str, label: str, index: int) -> str:
    return f"{split}/{label}/{index:05d}.jpg"


def run(spec: SceneSpec, out_dir: Path, progress: bool = True, workers: int | None = None) -> Path:
    """Generate the image set into ``out_dir`` (or reuse it if it already holds this spec's)
    and return ``out_dir``. ``workers`` processes render (default: CPU count, at most 4);
    it does not change the output."""
    out_dir, key = Path(out_dir), spec_hash(spec)
    if is_complete(out_dir, key):
        log.info("generated scenes in %s are up to date (spec %s), not regenerating", out_dir, key)
        return out_dir
    _check_target(out_dir)
    started = time.monotonic()
    _remove_stale_partials(out_dir)
    partial = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    try:
        total = _generate(spec, key, partial, progress, workers or _default_workers())
        _replace(out_dir, partial, key)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("generated %d scenes in %s in %.1f s", total, out_dir, time.monotonic() - started)
    return out_dir


def spec_hash(spec: SceneSpec) -> str:
    """The cache key: the generator version and every field of the spec."""
    return generated_set.spec_hash(GENERATOR_VERSION, spec)


def is_complete(out_dir: Path, key: str) -> bool:
    """Whether ``out_dir`` holds a finished set generated from the spec with this key."""
    out_dir = Path(out_dir)
    info = generated_set.finished_info(out_dir, INFO_FILE, key)
    if info is None:
        return False
    return all(
        len(list((out_dir / split / label).glob("*.jpg"))) == n
        for split, per_label in info.get("counts", {}).items()
        for label, n in per_label.items()
    )


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _jobs(spec: SceneSpec) -> list[tuple[str, str, int]]:
    return [
        (split, label, i)
        for split, per_label in counts(spec).items()
        for label, n in per_label.items()
        for i in range(n)
    ]


def render_chunk(spec: SceneSpec, root: str, jobs: list[tuple[str, str, int]]) -> int:
    """Render and write some images (in a worker process); return how many."""
    for split, label, index in jobs:
        Path(root, image_path(split, label, index)).write_bytes(
            render_jpeg(spec, split, label, index)
        )
    return len(jobs)


def _generate(spec: SceneSpec, key: str, root: Path, progress: bool, workers: int) -> int:
    """Write the whole set into ``root``, its info file last; return the number of images."""
    for split, per_label in counts(spec).items():
        for label in per_label:
            (root / split / label).mkdir(parents=True)
    jobs = _jobs(spec)
    size = max(CHUNK, math.ceil(len(jobs) / (8 * workers)))  # 8 tasks a worker: a smooth bar
    chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    with tqdm(total=len(jobs), unit="image", desc="rendering scenes", disable=not progress) as bar:
        if workers == 1 or len(jobs) < PARALLEL_FROM:
            for chunk in chunks:
                bar.update(render_chunk(spec, str(root), chunk))
        else:
            _render_in_children(spec, root, chunks, workers, bar)
    _write_info(spec, key, root)
    return len(jobs)


def _render_in_children(spec: SceneSpec, root: Path, chunks, workers: int, bar) -> None:
    """Each chunk in a fresh interpreter (``tflm_ext.isolation``), ``workers`` at a time.

    Not multiprocessing: forking a parent that runs TensorFlow or Beam threads can deadlock,
    and its spawn re-imports the parent's ``__main__``, which fails from standard input and
    re-runs a script that has no main guard. Each image's randomness is its own, so the
    order the chunks finish in does not matter."""
    from tflm_ext.errors import TflmExtError
    from tflm_ext.isolation import run_isolated

    with ThreadPoolExecutor(workers) as pool:
        futures = [
            pool.submit(run_isolated, render_chunk, spec, str(root), c, timeout_s=None)
            for c in chunks
        ]
        try:
            for future in as_completed(futures):
                bar.update(future.result())
        except TflmExtError as e:
            for future in futures:
                future.cancel()
            raise ComponentError(f"rendering scenes into {root} failed: {e}") from e


def _write_info(spec: SceneSpec, key: str, root: Path) -> None:
    """Written last: its presence (with the right key) marks a complete set."""
    info = {
        "generator": GENERATOR_VERSION,
        "spec_hash": key,
        "spec": dataclasses.asdict(spec),
        "counts": counts(spec),
        "style_groups": {k: dataclasses.asdict(g) for k, g in STYLE_GROUPS.items()},
    }
    (root / INFO_FILE).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


def _replace(out_dir: Path, partial: Path, key: str) -> None:
    """Move the finished set into place, replacing only an earlier generated (or empty) one."""
    if is_complete(out_dir, key):  # another process finished the same set meanwhile
        return
    _check_target(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)


def _remove_stale_partials(out_dir: Path) -> None:
    """Delete what killed runs left beside ``out_dir`` (their process no longer exists)."""
    for partial in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_target(out_dir: Path) -> None:
    """Only an empty folder, or one the generator wrote, may be replaced."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ComponentError(f"{out_dir} is a file; the generator needs a folder there")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / INFO_FILE).exists():
        raise ComponentError(
            f"{out_dir} holds files the generator did not write; "
            "give the generator an empty folder or one it wrote before"
        )
