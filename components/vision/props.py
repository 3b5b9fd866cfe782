"""Objects in the generated person-detection scenes: hard negatives, seats and occluders.

Called by ``components.vision.scene_plan`` (what goes where) and
``components.vision.rendering`` (drawing). Person and non-person scenes get the same kinds
in the same numbers: upright things (poles, bottles, lamps, trees, coat stands with a coat,
cacti with raised arms), four-legged animals and furniture, so that a detector has to find
a person's structure rather than "a tall blob" or "something coloured like clothing".
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import ImageDraw

from components.vision.figure_drawing import capsule, shade
from components.vision.figures import PALETTES, SKIN_TONES, jitter
from components.vision.textures import PATTERNS, random_colour

RGB = tuple[int, int, int]
Box = tuple[float, float, float, float]

# kind: (height range as a frame fraction, width / height range)
DISTRACTORS = {
    "pole": ((0.5, 1.3), (0.04, 0.08)), "lamp_post": ((0.6, 1.3), (0.15, 0.3)),
    "floor_lamp": ((0.35, 0.9), (0.2, 0.35)), "bottle": ((0.12, 0.8), (0.25, 0.4)),
    "vase": ((0.1, 0.5), (0.4, 0.7)), "tree": ((0.5, 1.3), (0.4, 0.8)),
    "coat_stand": ((0.45, 1.0), (0.25, 0.45)), "cactus": ((0.2, 0.9), (0.45, 0.75)),
    "chair": ((0.2, 0.7), (0.5, 0.8)), "table": ((0.15, 0.45), (1.0, 2.0)),
    "animal": ((0.12, 0.5), (1.1, 1.6)), "plant": ((0.15, 0.6), (0.5, 0.9)),
    "hydrant": ((0.12, 0.35), (0.5, 0.7)), "trash_can": ((0.15, 0.45), (0.5, 0.8)),
    "cone": ((0.1, 0.3), (0.55, 0.75)), "sign": ((0.5, 1.1), (0.15, 0.35)),
    "box": ((0.1, 0.4), (0.8, 1.6)), "bench": ((0.15, 0.35), (1.6, 2.8)),
}  # fmt: skip
BOTTOM_OCCLUDERS = ("box", "table", "bench", "car", "bush", "wall")
SIDE_OCCLUDERS = ("pillar", "door")
SEATS = ("chair", "bench", "stool")
WOOD = ((140, 95, 55), (100, 65, 35), (190, 150, 100), (70, 45, 30))
METAL = ((60, 60, 65), (150, 150, 155), (30, 30, 30), (200, 200, 205))


@dataclasses.dataclass(frozen=True)
class Prop:
    """One planned object: its kind, box (frame fractions, y down) and colours."""

    kind: str
    box: Box
    colour: RGB
    accent: RGB
    facing: int = 1
    seat: float = 0.55  # chairs and benches: seat height, as a fraction of the box from the top
    pattern: str = ""  # a surface pattern printed over it (``textures.PATTERNS``), or none


def _pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def _colours(rng: np.random.Generator, kind: str, palettes: tuple[str, ...]) -> tuple[RGB, RGB]:
    """A main and an accent colour that suit the kind (coats wear the split's palettes)."""
    clothes = [c for p in palettes for c in PALETTES[p][0] + PALETTES[p][1]]
    pools = {
        "tree": ((60, 110, 40), (40, 80, 30), (90, 130, 50)),
        "bush": ((50, 100, 40), (70, 120, 50)),
        "cactus": ((60, 120, 60), (80, 140, 70)), "plant": ((50, 120, 50), (90, 150, 60)),
        "animal": ((120, 80, 40), (30, 30, 30), (230, 225, 215), (150, 150, 150), (200, 120, 50)),
        "cone": ((240, 110, 20),), "hydrant": ((200, 30, 30), (230, 200, 40)),
        "vase": SKIN_TONES + ((60, 90, 160), (200, 200, 200)),
        "coat_stand": WOOD + METAL, "box": ((190, 150, 100), (170, 130, 90)),
    }  # fmt: skip
    pool = pools.get(kind) or (WOOD + METAL + tuple(clothes) + (random_colour(rng),))
    accent = _pick(rng, tuple(clothes) + SKIN_TONES + WOOD)
    return jitter(rng, _pick(rng, pool), 25), jitter(rng, accent, 25)


def make_prop(rng: np.random.Generator, kind: str, box: Box, palettes: tuple[str, ...]) -> Prop:
    colour, accent = _colours(rng, kind, palettes)
    facing = 1 if rng.random() < 0.5 else -1
    return Prop(kind, tuple(float(v) for v in box), colour, accent, facing)


def random_distractor(rng: np.random.Generator, horizon: float, palettes) -> Prop:
    """A hard negative standing somewhere on the ground, from a few percent of the frame up."""
    kind = _pick(rng, tuple(DISTRACTORS))
    (h_lo, h_hi), (a_lo, a_hi) = DISTRACTORS[kind]
    h = math.exp(rng.uniform(math.log(h_lo), math.log(h_hi)))
    w = h * rng.uniform(a_lo, a_hi)
    bottom = rng.uniform(min(horizon + 0.1, 0.95), 1.08)
    x = rng.uniform(-0.5 * w, 1 - 0.5 * w)
    return make_prop(rng, kind, (x, bottom - h, x + w, bottom), palettes)


STAND_INS = ("coat_stand", "floor_lamp", "bottle", "cactus", "sign", "animal", "plant", "vase",
             "trash_can", "chair", "tree", "hydrant", "lamp_post")  # fmt: skip


def stand_in(rng: np.random.Generator, target: Box, palettes) -> Prop:
    """An object where a person would have stood, about as tall, for non-person scenes."""
    kind = _pick(rng, STAND_INS)
    x0, y0, x1, y1 = target
    h = (y1 - y0) * rng.uniform(0.75, 1.1) * (0.6 if kind == "animal" else 1.0)
    w = h * rng.uniform(*DISTRACTORS[kind][1])
    cx = (x0 + x1) / 2
    return make_prop(rng, kind, (cx - w / 2, y1 - h, cx + w / 2, y1), palettes)


ANIMAL_PATTERNS = ("stripes", "patches", "cells", "fur")  # zebra, cow, giraffe, bear or cat


def with_pattern(prop: Prop, seed: int, probability: float) -> Prop:
    """``prop``, with a chance ``probability`` of a surface pattern (animals wear coats).

    The draw is tied to the object's place, not to its order in the scene, so an object
    looks the same in a paired scene without people, where stand-ins join the list."""
    if probability <= 0:
        return prop
    rng = np.random.default_rng([seed, *(int(v * 1e6) % 2**31 for v in prop.box)])
    if rng.random() >= probability:
        return prop
    return dataclasses.replace(
        prop, pattern=_pick(rng, ANIMAL_PATTERNS if prop.kind == "animal" else PATTERNS)
    )


def occluder(rng: np.random.Generator, target: Box, core: Box, palettes) -> Prop:
    """Something in front of ``target``: hiding its lower part, or one side of it, but at
    most 40 % of its ``core`` (head and torso), so that the person stays recognisable."""
    x0, y0, x1, y1 = target
    w, h = x1 - x0, y1 - y0
    cx0, cy0, cx1, cy1 = core
    if rng.random() < 0.7:
        kind = _pick(rng, BOTTOM_OCCLUDERS)
        top = max(y1 - rng.uniform(0.2, 0.5) * h, cy1 - 0.4 * (cy1 - cy0))
        width, centre = w * rng.uniform(0.9, 2.2), (x0 + x1) / 2 + w * rng.uniform(-0.3, 0.3)
        box = (centre - width / 2, top, centre + width / 2, y1 + h * rng.uniform(0, 0.1))
    else:
        kind, cover = _pick(rng, SIDE_OCCLUDERS), rng.uniform(0.1, 0.4)
        width = max(w * rng.uniform(0.5, 1.0), (cx1 - cx0) * 0.5)
        from_left = rng.random() < 0.5
        edge = cx0 + cover * (cx1 - cx0) if from_left else cx1 - cover * (cx1 - cx0) + width
        box = (edge - width, y0 - h * rng.uniform(0.1, 0.5), edge, y1 + h * 0.05)
    return make_prop(rng, kind, box, palettes)


def draw_prop(d: ImageDraw.ImageDraw, prop: Prop, size: int, origin=(0.0, 0.0)) -> None:
    """Draw ``prop`` on a canvas of ``size`` pixels whose top left is at ``origin`` pixels."""
    x0, y0, x1, y1 = (v * size for v in prop.box)
    ox, oy = origin
    PAINTERS[prop.kind](d, prop, x0 - ox, y0 - oy, x1 - ox, y1 - oy)


def _pole(d, p: Prop, x0, y0, x1, y1) -> None:
    d.rectangle([x0, y0, x1, y1], fill=p.colour)
    d.rectangle([x0, y0, x0 + (x1 - x0) * 0.3, y1], fill=shade(p.colour, 1.25))


def _lamp_post(d, p: Prop, x0, y0, x1, y1) -> None:
    w, cx = x1 - x0, x0 + (x1 - x0) * (0.2 if p.facing > 0 else 0.8)
    pole = w * 0.12
    d.rectangle([cx - pole / 2, y0 + w * 0.1, cx + pole / 2, y1], fill=p.colour)
    arm_end = x1 - w * 0.1 if p.facing > 0 else x0 + w * 0.1
    capsule(d, (cx, y0 + w * 0.12), (arm_end, y0 + w * 0.12), pole / 2, pole / 2, p.colour)
    d.chord([arm_end - w * 0.2, y0 + w * 0.05, arm_end + w * 0.2, y0 + w * 0.35], 0, 180,
            fill=(250, 240, 200))  # fmt: skip
    d.rectangle([cx - pole, y1 - w * 0.25, cx + pole, y1], fill=shade(p.colour, 0.8))


def _floor_lamp(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h, cx = x1 - x0, y1 - y0, (x0 + x1) / 2
    d.rectangle([cx - w * 0.04, y0 + h * 0.2, cx + w * 0.04, y1], fill=p.colour)
    d.ellipse([cx - w * 0.3, y1 - h * 0.04, cx + w * 0.3, y1], fill=p.colour)
    d.polygon([(x0 + w * 0.2, y0), (x1 - w * 0.2, y0), (x1, y0 + h * 0.22), (x0, y0 + h * 0.22)],
              fill=p.accent)  # fmt: skip


def _bottle(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h, cx = x1 - x0, y1 - y0, (x0 + x1) / 2
    d.rounded_rectangle([x0, y0 + h * 0.35, x1, y1], w * 0.2, fill=p.colour)
    d.polygon([(x0, y0 + h * 0.4), (cx - w * 0.16, y0 + h * 0.18), (cx + w * 0.16, y0 + h * 0.18),
               (x1, y0 + h * 0.4)], fill=p.colour)  # fmt: skip
    d.rectangle([cx - w * 0.16, y0 + h * 0.04, cx + w * 0.16, y0 + h * 0.2], fill=p.colour)
    d.rectangle([cx - w * 0.18, y0, cx + w * 0.18, y0 + h * 0.06], fill=p.accent)
    d.rectangle([x0, y0 + h * 0.55, x1, y0 + h * 0.75], fill=p.accent)


def _vase(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h, cx = x1 - x0, y1 - y0, (x0 + x1) / 2
    d.ellipse([x0, y0 + h * 0.25, x1, y1], fill=p.colour)
    d.rectangle([cx - w * 0.2, y0, cx + w * 0.2, y0 + h * 0.4], fill=p.colour)
    rim = [cx - w * 0.28, y0 - h * 0.03, cx + w * 0.28, y0 + h * 0.06]
    d.ellipse(rim, fill=shade(p.colour, 0.7))


def _tree(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h, cx = x1 - x0, y1 - y0, (x0 + x1) / 2
    d.rectangle([cx - w * 0.08, y0 + h * 0.4, cx + w * 0.08, y1], fill=(90, 65, 40))
    for k in range(6):
        a = k * 1.05
        ex, ey = cx + w * 0.25 * math.cos(a), y0 + h * (0.25 + 0.1 * math.sin(a))
        d.ellipse([ex - w * 0.3, ey - h * 0.18, ex + w * 0.3, ey + h * 0.18],
                  fill=shade(p.colour, 0.8 + 0.08 * k))  # fmt: skip


def _coat_stand(d, p: Prop, x0, y0, x1, y1) -> None:
    """A pole with hooks; often a coat and a hat on it, a near miss for a person."""
    w, h, cx = x1 - x0, y1 - y0, (x0 + x1) / 2
    r = max(1.0, w * 0.05)
    capsule(d, (cx, y0 + h * 0.05), (cx, y1), r, r, p.colour)
    for sx in (-1, 1):
        capsule(d, (cx, y1 - h * 0.1), (cx + sx * w * 0.45, y1), r, r, p.colour)
        capsule(d, (cx, y0 + h * 0.1), (cx + sx * w * 0.3, y0), r * 0.8, r * 0.8, p.colour)
    if p.facing > 0:  # a coat hangs on it
        d.polygon([(cx - w * 0.2, y0 + h * 0.1), (cx + w * 0.2, y0 + h * 0.1),
                   (cx + w * 0.42, y0 + h * 0.62), (cx - w * 0.42, y0 + h * 0.62)],
                  fill=p.accent)  # fmt: skip


def _cactus(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h, cx = x1 - x0, y1 - y0, (x0 + x1) / 2
    r = w * 0.15
    capsule(d, (cx, y0 + r), (cx, y1), r, r * 1.1, p.colour)
    for sx, hy in ((-1, 0.45), (1, 0.35)):
        elbow = (cx + sx * w * 0.35, y0 + h * (hy + 0.12))
        capsule(d, (cx, y0 + h * (hy + 0.15)), elbow, r * 0.7, r * 0.7, p.colour)
        capsule(d, elbow, (elbow[0], y0 + h * (hy - 0.15)), r * 0.7, r * 0.6, p.colour)


def _chair(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h = x1 - x0, y1 - y0
    seat_y, leg = y0 + h * p.seat, max(1.0, w * 0.05)
    back = x0 if p.facing > 0 else x1 - w * 0.12
    d.rectangle([back, y0, back + w * 0.12, seat_y], fill=p.colour)
    d.rectangle([x0, seat_y - h * 0.05, x1, seat_y + h * 0.03], fill=shade(p.colour, 1.15))
    for lx in (x0 + leg, x1 - leg * 2):
        d.rectangle([lx, seat_y, lx + leg, y1], fill=shade(p.colour, 0.8))


def _stool(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h = x1 - x0, y1 - y0
    seat_y, leg = y0 + h * p.seat, max(1.0, w * 0.06)
    d.rectangle([x0, seat_y - h * 0.06, x1, seat_y + h * 0.02], fill=p.colour)
    for lx in (x0 + w * 0.1, x1 - w * 0.1 - leg):
        d.rectangle([lx, seat_y, lx + leg, y1], fill=shade(p.colour, 0.8))


def _table(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h = x1 - x0, y1 - y0
    d.rectangle([x0, y0, x1, y0 + h * 0.12], fill=p.colour)
    for lx in (x0 + w * 0.05, x1 - w * 0.1):
        d.rectangle([lx, y0, lx + w * 0.05, y1], fill=shade(p.colour, 0.75))
    if p.facing > 0:  # a tablecloth
        d.rectangle([x0, y0, x1, y0 + h * 0.45], fill=p.accent)


def _bench(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h = x1 - x0, y1 - y0
    seat_y = y0 + h * p.seat
    d.rectangle([x0, y0, x1, y0 + h * 0.25], fill=p.colour)
    d.rectangle([x0, seat_y - h * 0.08, x1, seat_y + h * 0.05], fill=shade(p.colour, 1.15))
    for lx in (x0 + w * 0.06, x1 - w * 0.1):
        d.rectangle([lx, y0, lx + w * 0.04, y1], fill=(50, 50, 50))


def _animal(d, p: Prop, x0, y0, x1, y1) -> None:
    """A four-legged side-on silhouette: body, legs, neck, head, ears and tail."""
    w, h, f = x1 - x0, y1 - y0, p.facing
    cx = (x0 + x1) / 2
    body = (cx, y0 + h * 0.45)
    d.ellipse([cx - w * 0.32, y0 + h * 0.25, cx + w * 0.32, y0 + h * 0.65], fill=p.colour)
    leg = w * 0.05
    for lx in (-0.25, -0.15, 0.15, 0.25):
        capsule(d, (cx + lx * w, body[1]), (cx + lx * w * 1.05, y1 - leg), leg, leg * 0.8, p.colour)
    head = (cx + f * w * 0.4, y0 + h * 0.15)
    capsule(d, (cx + f * w * 0.25, body[1]), head, h * 0.1, h * 0.08, p.colour)
    d.ellipse([head[0] - w * 0.09, head[1] - h * 0.1, head[0] + w * 0.09, head[1] + h * 0.1],
              fill=p.colour)  # fmt: skip
    d.polygon([(head[0], head[1] - h * 0.1), (head[0] + f * w * 0.03, head[1] - h * 0.2),
               (head[0] + f * w * 0.06, head[1] - h * 0.06)], fill=p.colour)  # fmt: skip
    capsule(d, (cx - f * w * 0.3, body[1] - h * 0.1), (cx - f * w * 0.48, y0 + h * 0.5),
            leg * 0.7, leg * 0.5, p.colour)  # fmt: skip


def _plant(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h, cx = x1 - x0, y1 - y0, (x0 + x1) / 2
    for k in range(7):
        a = math.radians(-70 + k * 23)
        tip = (cx + w * 0.5 * math.sin(a), y0 + h * 0.05 + h * 0.3 * (1 - math.cos(a)))
        capsule(d, (cx, y1 - h * 0.3), tip, w * 0.06, w * 0.03, shade(p.colour, 0.8 + 0.05 * k))
    d.polygon([(x0 + w * 0.2, y1 - h * 0.35), (x1 - w * 0.2, y1 - h * 0.35),
               (x1 - w * 0.28, y1), (x0 + w * 0.28, y1)], fill=p.accent)  # fmt: skip


def _hydrant(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h, cx = x1 - x0, y1 - y0, (x0 + x1) / 2
    d.rectangle([cx - w * 0.3, y0 + h * 0.25, cx + w * 0.3, y1], fill=p.colour)
    d.chord([cx - w * 0.3, y0 + h * 0.05, cx + w * 0.3, y0 + h * 0.45], 180, 360, fill=p.colour)
    d.rectangle([x0, y0 + h * 0.4, x1, y0 + h * 0.55], fill=shade(p.colour, 0.8))
    d.rectangle([cx - w * 0.4, y1 - h * 0.08, cx + w * 0.4, y1], fill=shade(p.colour, 0.7))


def _trash_can(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h = x1 - x0, y1 - y0
    d.polygon([(x0, y0 + h * 0.08), (x1, y0 + h * 0.08), (x1 - w * 0.08, y1), (x0 + w * 0.08, y1)],
              fill=p.colour)  # fmt: skip
    d.rectangle([x0 - w * 0.04, y0, x1 + w * 0.04, y0 + h * 0.1], fill=shade(p.colour, 0.75))


def _cone(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h, cx = x1 - x0, y1 - y0, (x0 + x1) / 2
    d.polygon([(cx - w * 0.08, y0), (cx + w * 0.08, y0), (x1 - w * 0.1, y1), (x0 + w * 0.1, y1)],
              fill=p.colour)  # fmt: skip
    d.rectangle([x0 + w * 0.3, y0 + h * 0.4, x1 - w * 0.3, y0 + h * 0.55], fill=(240, 240, 240))
    d.rectangle([x0, y1 - h * 0.08, x1, y1], fill=p.colour)


def _sign(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h, cx = x1 - x0, y1 - y0, (x0 + x1) / 2
    d.rectangle([cx - w * 0.06, y0 + h * 0.1, cx + w * 0.06, y1], fill=(120, 120, 125))
    if p.facing > 0:
        d.ellipse([x0, y0, x1, y0 + w], fill=p.accent)
    else:
        d.rectangle([x0, y0, x1, y0 + w * 0.8], fill=p.accent)


def _box(d, p: Prop, x0, y0, x1, y1) -> None:
    d.rectangle([x0, y0, x1, y1], fill=p.colour)
    d.rectangle([x0, y0, x1, y0 + (y1 - y0) * 0.15], fill=shade(p.colour, 1.15))
    cx = (x0 + x1) / 2
    d.rectangle([cx - (x1 - x0) * 0.05, y0, cx + (x1 - x0) * 0.05, y1], fill=shade(p.colour, 0.8))


def _car(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h = x1 - x0, y1 - y0
    d.rounded_rectangle([x0, y0 + h * 0.3, x1, y1 - h * 0.15], h * 0.15, fill=p.colour)
    d.rounded_rectangle([x0 + w * 0.2, y0, x1 - w * 0.25, y0 + h * 0.4], h * 0.12, fill=p.colour)
    d.rectangle([x0 + w * 0.25, y0 + h * 0.07, x1 - w * 0.3, y0 + h * 0.3], fill=(60, 80, 100))
    for wx in (x0 + w * 0.22, x1 - w * 0.22):
        d.ellipse([wx - h * 0.2, y1 - h * 0.38, wx + h * 0.2, y1], fill=(25, 25, 25))


def _bush(d, p: Prop, x0, y0, x1, y1) -> None:
    w, h = x1 - x0, y1 - y0
    for k in range(7):
        ex = x0 + w * (0.1 + 0.8 * k / 6)
        ey = y0 + h * (0.45 + 0.2 * math.sin(k * 2.1))
        r = w * 0.16
        d.ellipse([ex - r, ey - h * 0.45, ex + r, y1], fill=shade(p.colour, 0.8 + 0.06 * (k % 4)))


def _wall(d, p: Prop, x0, y0, x1, y1) -> None:
    d.rectangle([x0, y0, x1, y1], fill=p.colour)
    h = y1 - y0
    for k in range(1, 4):
        y = y0 + h * k / 4
        d.line([(x0, y), (x1, y)], fill=shade(p.colour, 0.75), width=max(1, int(h * 0.03)))


def _pillar(d, p: Prop, x0, y0, x1, y1) -> None:
    d.rectangle([x0, y0, x1, y1], fill=p.colour)
    d.rectangle([x0, y0, x0 + (x1 - x0) * 0.25, y1], fill=shade(p.colour, 1.2))


def _door(d, p: Prop, x0, y0, x1, y1) -> None:
    d.rectangle([x0, y0, x1, y1], fill=p.colour)
    inset = (x1 - x0) * 0.12
    d.rectangle([x0 + inset, y0 + inset, x1 - inset, y1 - inset], outline=shade(p.colour, 0.7),
                width=max(1, int(inset * 0.3)))  # fmt: skip


PAINTERS = {
    "pole": _pole, "lamp_post": _lamp_post, "floor_lamp": _floor_lamp, "bottle": _bottle,
    "vase": _vase, "tree": _tree, "coat_stand": _coat_stand, "cactus": _cactus, "chair": _chair,
    "stool": _stool, "table": _table, "bench": _bench, "animal": _animal, "plant": _plant,
    "hydrant": _hydrant, "trash_can": _trash_can, "cone": _cone, "sign": _sign, "box": _box,
    "car": _car, "bush": _bush, "wall": _wall, "pillar": _pillar, "door": _door,
}  # fmt: skip
