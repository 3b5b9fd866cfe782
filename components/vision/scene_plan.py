"""What one generated person-detection scene contains: the plan that is later drawn.

Called by ``components.vision.scenes`` (``describe``, and rendering each image). A plan is a
pure function of the spec and the image's (split, label, index), made from independent
random streams (background, objects, people, camera, stand-ins, surface patterns). Person
and non-person scenes are planned by the same code: a non-person scene plans its people
too, only to place the seats and occluders they would have had, then leaves them out and
may put an object where each would have stood, so both classes share every distribution
but the people.

With ``spec.paired`` (the default) the streams do not depend on the label: non-person image
``i`` is person image ``i`` with its people taken away (and stand-ins added). Backgrounds,
objects and lighting then cannot tell the classes apart even by memorisation, which makes
a small training set teach "person" rather than "this kind of background".
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import TYPE_CHECKING

import numpy as np

from components.vision import backgrounds, faces, figures, props
from components.vision.backgrounds import Background
from components.vision.figures import BODIES, Pose, Style
from components.vision.props import Prop

if TYPE_CHECKING:
    from components.vision.scenes import SceneSpec

Box = tuple[float, float, float, float]
LABELS = ("person", "non_person")


@dataclasses.dataclass(frozen=True)
class StyleGroup:
    """The background sources and figure styles one group of splits may use."""

    photos: tuple[str, ...]
    textures: tuple[str, ...]
    bodies: tuple[str, ...]
    palettes: tuple[str, ...]
    hair: tuple[str, ...]
    faces: tuple[int, ...]  # indices of real faces (``components.vision.faces``)


# The held-out partition: the test split is rendered only from the "test" group, which
# shares no photograph, texture kind, body variant, clothing palette, hair style or face
# with the "train" group. Validation uses the training group: it measures fit and picks the
# epoch, while the test split measures how well that carries over to unseen looks.
STYLE_GROUPS = {
    "train": StyleGroup(
        backgrounds.TRAIN_PHOTOS, backgrounds.TRAIN_TEXTURES, figures.TRAIN_BODIES,
        figures.TRAIN_PALETTES, figures.TRAIN_HAIR, faces.TRAIN_FACES,
    ),
    "test": StyleGroup(
        backgrounds.TEST_PHOTOS, backgrounds.TEST_TEXTURES, figures.TEST_BODIES,
        figures.TEST_PALETTES, figures.TEST_HAIR, faces.TEST_FACES,
    ),
}  # fmt: skip
SPLIT_GROUPS = {"train": "train", "validation": "train", "test": "test"}


@dataclasses.dataclass(frozen=True)
class Person:
    """One planned person: look, pose, joints (frame fractions) and boxes."""

    style: Style
    pose: Pose
    unit: float  # head height, as a fraction of the frame
    joints: dict[str, tuple[float, float]]
    box: Box  # the whole figure, possibly reaching past the frame
    visible: Box  # ``box`` clipped to the frame
    cut: bool  # deliberately placed across the frame's border
    occluded: bool = False

    @property
    def area(self) -> float:
        """The visible box's share of the frame."""
        x0, y0, x1, y1 = self.visible
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    @property
    def core(self) -> Box:
        """Head, shoulders and hips: what an occluder or the frame may not take away."""
        names = ("head", "neck", "shoulder0", "shoulder1", "pelvis", "hip0", "hip1")
        xs, ys = zip(*(self.joints[n] for n in names), strict=True)
        r = 0.5 * self.unit
        return min(xs) - r, min(ys) - r, max(xs) + r, max(ys) + r


@dataclasses.dataclass(frozen=True)
class Effects:
    """The camera: exposure, colour, light fall-off, focus, sensor noise and compression."""

    brightness: float
    contrast: float
    saturation: float
    cast: tuple[float, float, float]
    light_angle: float
    light_strength: float
    vignette: float
    blur: float  # Gaussian radius in pixels of a 128-pixel image
    sharpen: float  # unsharp-mask strength (1: edges doubled); a phone camera's processing
    noise: float  # standard deviation, 0-255 scale
    grey: bool
    jpeg_quality: int
    seed: int


@dataclasses.dataclass(frozen=True)
class Scene:
    """A whole planned image; it has no people in a non-person scene."""

    split: str
    label: str
    index: int
    background: Background
    layers: tuple[Person | Prop, ...]  # people, objects and seats, far to near
    occluders: tuple[Prop, ...]  # drawn last, in front of everything
    effects: Effects

    @property
    def people(self) -> tuple[Person, ...]:
        return tuple(x for x in self.layers if isinstance(x, Person))

    @property
    def props(self) -> tuple[Prop, ...]:
        return tuple(x for x in self.layers if isinstance(x, Prop)) + self.occluders

    def draw_order(self) -> list[Person | Prop]:
        return [*self.layers, *self.occluders]


def scene_streams(seed: int, split: str, key: str, index: int) -> list[np.random.Generator]:
    """Six independent random streams private to one scene (``key``: its label, or one
    shared name for both labels when the classes are paired). A stream added later is
    spawned last, so that it leaves the earlier streams, and sets made without it, alike."""
    ids = (zlib.crc32(split.encode()), zlib.crc32(key.encode()), index)
    children = np.random.SeedSequence(seed, spawn_key=ids).spawn(6)
    return [np.random.default_rng(c) for c in children]


def plan_scene(spec: SceneSpec, split: str, label: str, index: int) -> Scene:
    """The plan of image ``index`` of class ``label`` in ``split``."""
    group = STYLE_GROUPS[SPLIT_GROUPS[split]]
    key = "pair" if spec.paired else label
    streams = scene_streams(spec.seed, split, key, index)
    bg_rng, prop_rng, people_rng, fx_rng, stand_in_rng, pattern_rng = streams
    background = backgrounds.plan_background(bg_rng, group.photos, group.textures)
    count = 1
    if people_rng.random() < spec.multi_person_probability:
        count = int(people_rng.integers(2, spec.max_people + 1))
    people = [plan_person(people_rng, spec, group, background.horizon) for _ in range(count)]
    objects = _plan_objects(prop_rng, spec, group, background.horizon, people)
    if label != "person":  # so that "one more object" does not mean "a person"
        chosen = [p for p in people if stand_in_rng.random() < spec.stand_in_probability]
        objects += [props.stand_in(stand_in_rng, p.box, group.palettes) for p in chosen]
    occluders = []
    if prop_rng.random() < spec.occlusion_probability:
        main = max(range(count), key=lambda k: people[k].area)
        target = people[main]
        occluders.append(props.occluder(prop_rng, target.visible, target.core, group.palettes))
        people[main] = dataclasses.replace(target, occluded=True)
    pattern_seed = int(pattern_rng.integers(2**31))
    objects, occluders = (
        [props.with_pattern(p, pattern_seed, spec.pattern_probability) for p in group]
        for group in (objects, occluders)
    )
    layers = _depth_order(objects, people, shown=label == "person")
    fx = plan_effects(fx_rng, spec)
    return Scene(split, label, index, background, layers, tuple(occluders), fx)


def _plan_objects(rng, spec: SceneSpec, group: StyleGroup, horizon: float, people) -> list:
    """Hard negatives, and seats under the people who sit."""
    count = int(rng.integers(0, spec.max_distractors + 1))
    objects = [props.random_distractor(rng, horizon, group.palettes) for _ in range(count)]
    return objects + [_seat(rng, p, group.palettes) for p in people if p.pose.name == "sitting"]


def _overlap(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _depth_order(objects: list[Prop], people: list[Person], shown: bool) -> tuple:
    """Far to near by lowest point, except that an object hiding more than a quarter of a
    person is moved behind them: only the planned occluders may hide much of a person."""

    def depth(item: Person | Prop) -> float:
        bottom = item.box[3]
        for p in people if isinstance(item, Prop) else ():
            if bottom > p.box[3] and _overlap(item.box, p.visible) > 0.25 * p.area:
                bottom = p.box[3] - 1e-6
        return bottom

    return tuple(sorted([*objects, *(people if shown else ())], key=depth))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def plan_person(rng: np.random.Generator, spec: SceneSpec, group: StyleGroup, horizon: float):
    """A person of the group's styles, in a random pose, size and place, at least
    ``spec.person_area[0]`` of the frame visible and the head inside the frame."""
    real_faces = group.faces if spec.real_faces else ()
    style = figures.random_style(rng, group.bodies, group.palettes, group.hair, real_faces)
    pose = figures.random_pose(rng)
    body = BODIES[style.body]
    joints = figures.skeleton(body, pose)
    extent = figures.extent(body, pose, style.hair, joints)
    close_up = spec.close_up_probability > 0 and bool(rng.random() < spec.close_up_probability)
    for _ in range(30):
        person = _place(rng, spec, style, pose, joints, extent, horizon, close_up)
        if person.area >= spec.person_area[0] and _in_frame(person):
            return person
    return person


def _in_frame(person: Person) -> bool:
    """Whether the head and the middle of the torso are well inside the frame."""
    (hx, hy), (nx, ny), (px, py) = (person.joints[k] for k in ("head", "neck", "pelvis"))
    mx, my = (nx + px) / 2, (ny + py) / 2
    return 0.04 < hx < 0.96 and 0.03 < hy < 0.96 and 0.05 < mx < 0.95 and 0.05 < my < 0.95


def _place(rng, spec: SceneSpec, style, pose, joints, extent, horizon: float, close_up: bool):
    """Scale and position a skeleton: the whole box's area is log-uniform in
    ``spec.person_area``, feet below the horizon, taller than the frame meaning a close-up;
    or, for a ``close_up``, the head's height log-uniform in ``spec.close_up_head``."""
    w0, h0 = extent[2] - extent[0], extent[3] - extent[1]
    if close_up:
        unit = _log_uniform(rng, *spec.close_up_head)
    else:
        unit = math.sqrt(_log_uniform(rng, *spec.person_area) / (w0 * h0))
    w, h = w0 * unit, h0 * unit
    if close_up:
        top = rng.uniform(-0.01, 0.12)
    elif h < 0.95:
        bottom = rng.uniform(max(h, min(horizon + 0.2 * h, 1.0)), 1.0)
        top = bottom - h
    else:
        top = rng.uniform(-0.08 * h, 0.02)
    left = rng.uniform(0, 1 - w) if w < 1 else rng.uniform(1 - w, 0)
    cut = bool(rng.random() < spec.border_cut_probability)
    if cut:
        side, share = int(rng.integers(3)), rng.uniform(0.2, 0.45)
        left += (-share * w, share * w, 0.0)[side] if side < 2 else 0.0
        top += share * h if side == 2 else 0.0
    facing = 1 if pose.view != "side" or rng.random() < 0.5 else -1
    ox = left - unit * extent[0] if facing > 0 else left + unit * extent[2]
    oy = top - unit * extent[1]
    placed = {k: (ox + facing * unit * x, oy + unit * y) for k, (x, y) in joints.items()}
    box = (left, top, left + w, top + h)
    visible = (max(0.0, box[0]), max(0.0, box[1]), min(1.0, box[2]), min(1.0, box[3]))
    return Person(style, pose, unit, placed, box, visible, cut)


def _seat(rng: np.random.Generator, person: Person, palettes) -> Prop:
    """A chair, stool or bench under a sitting person, its seat at the hips."""
    j, u = person.joints, person.unit
    pelvis, feet = j["pelvis"], max(j["toe0"][1], j["toe1"][1])
    seat_y = pelvis[1] + 0.3 * u * BODIES[person.style.body].girth
    if person.pose.view == "side":
        kind = ("chair", "chair", "stool", "bench")[rng.integers(4)]
        knee_x = j["knee1"][0]
        x0, x1 = sorted((2 * pelvis[0] - knee_x, knee_x))
    else:
        kind = ("stool", "bench")[rng.integers(2)]
        half = BODIES[person.style.body].hips * u * rng.uniform(0.9, 1.3)
        x0, x1 = pelvis[0] - half, pelvis[0] + half
    top = seat_y - (2.2 * u if kind != "stool" else 0.05 * u)
    box = (x0, top, x1, feet - 1e-6)
    prop = props.make_prop(rng, kind, box, palettes)
    facing = 1 if j["toe1"][0] >= j["ankle1"][0] else -1
    return dataclasses.replace(prop, facing=facing, seat=(seat_y - top) / max(feet - top, 1e-6))


def plan_effects(rng: np.random.Generator, spec: SceneSpec) -> Effects:
    """Random camera settings; identical in distribution for both classes."""
    return Effects(
        brightness=float(rng.uniform(*spec.brightness)),
        contrast=float(rng.uniform(*spec.contrast)),
        saturation=float(rng.uniform(*spec.saturation)),
        cast=tuple(float(v) for v in rng.uniform(0.88, 1.12, 3)),
        light_angle=float(rng.uniform(0, 360)),
        light_strength=float(rng.uniform(0, 0.35)),
        vignette=float(rng.uniform(0, 0.4)) if rng.random() < 0.4 else 0.0,
        blur=_blurring(rng, spec.blur_probability, spec.max_blur),
        sharpen=_sharpening(rng, spec.max_sharpen),
        noise=float(rng.uniform(0, spec.max_noise)),
        grey=bool(rng.random() < 0.05),
        jpeg_quality=int(rng.integers(spec.jpeg_quality[0], spec.jpeg_quality[1] + 1)),
        seed=int(rng.integers(2**31)),
    )


def _blurring(rng: np.random.Generator, probability: float, most: float) -> float:
    """Defocus in a share of the images, 0.3 to ``most`` pixels of a 128-pixel image."""
    return float(rng.uniform(0.3, most)) if rng.random() < probability else 0.0


def _sharpening(rng: np.random.Generator, most: float) -> float:
    """Half the images sharpened, by up to ``most``; no random draw when ``most`` is 0, so
    that sets made before sharpening existed are drawn alike."""
    if most <= 0:
        return 0.0
    return float(rng.uniform(min(0.5, most), most)) if rng.random() < 0.5 else 0.0
