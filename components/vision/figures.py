"""People for the generated person-detection scenes: body styles, poses and their skeletons.

Called by ``components.vision.scene_plan``. A figure is planned here as joint positions
(no pixels), so that a scene can be described, and its person boxes checked, without
drawing; ``components.vision.figure_drawing`` then draws the planned skeleton.

Units are head heights with the pelvis at the origin and y pointing down. Limb angles are
in degrees in the image plane: 0 points straight down and positive turns towards +x. In a
front or back view limb 0 is on the image's left; in a side view the figure faces +x (it is
mirrored afterwards to face left) and limb 0 is the far one, drawn first and darker.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

Point = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class Body:
    """Proportions in head heights; ``girth`` scales every thickness."""

    shoulders: float  # distance between the shoulder joints (front view)
    hips: float  # distance between the hip joints
    torso: float  # pelvis to the base of the neck
    neck: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    girth: float
    waist: float  # torso width at the waist, relative to the shoulders
    head_width: float  # relative to the head's height


# Held-out styles: the test split draws its bodies, clothing palettes and hair styles only
# from the TEST_* groups, training (and validation) only from the TRAIN_* ones.
BODIES = {
    "average": Body(1.5, 0.95, 2.65, 0.30, 1.35, 1.20, 1.85, 1.75, 1.00, 0.78, 0.78),
    "slim": Body(1.3, 0.80, 2.75, 0.35, 1.40, 1.25, 1.95, 1.85, 0.80, 0.75, 0.74),
    "broad": Body(1.8, 1.00, 2.70, 0.25, 1.40, 1.20, 1.85, 1.70, 1.25, 0.85, 0.80),
    "child": Body(1.1, 0.70, 1.90, 0.22, 0.95, 0.85, 1.25, 1.15, 0.95, 0.90, 0.84),
    "heavy": Body(1.7, 1.25, 2.60, 0.20, 1.30, 1.15, 1.75, 1.65, 1.45, 1.12, 0.84),
}
TRAIN_BODIES = ("average", "slim", "broad")
TEST_BODIES = ("child", "heavy")

# Tops, then bottoms, of each palette (RGB); colours are jittered per figure.
PALETTES = {
    "casual": (
        ((200, 40, 40), (40, 90, 190), (60, 150, 70), (235, 200, 60), (240, 240, 235)),
        ((50, 70, 120), (70, 90, 140), (190, 170, 120), (40, 40, 45)),
    ),
    "business": (
        ((30, 40, 70), (110, 110, 115), (235, 235, 240), (25, 25, 28), (150, 170, 200)),
        ((30, 30, 35), (60, 60, 70), (35, 45, 75), (100, 95, 90)),
    ),
    "earth": (
        ((120, 80, 45), (100, 110, 50), (200, 180, 140), (150, 60, 30), (90, 70, 60)),
        ((80, 60, 40), (110, 100, 70), (60, 70, 40), (170, 150, 110)),
    ),
    "sport": (
        ((250, 110, 20), (20, 200, 220), (220, 30, 160), (160, 230, 30), (250, 250, 250)),
        ((20, 20, 25), (90, 90, 100), (20, 40, 120), (200, 30, 40)),
    ),
    "pastel": (
        ((245, 180, 200), (170, 230, 200), (200, 180, 240), (170, 210, 245), (250, 230, 170)),
        ((200, 200, 215), (230, 215, 190), (150, 180, 210), (120, 120, 140)),
    ),
    "jewel": (
        ((120, 20, 50), (20, 90, 60), (30, 110, 120), (80, 30, 110), (60, 60, 65)),
        ((40, 30, 40), (25, 50, 45), (70, 60, 80), (30, 30, 60)),
    ),
}
TRAIN_PALETTES = ("casual", "business", "earth", "sport")
TEST_PALETTES = ("pastel", "jewel")

HAIR_STYLES = ("short", "long", "bald", "cap", "curly", "bun", "ponytail", "hat")
TRAIN_HAIR = ("short", "long", "bald", "cap", "curly")
TEST_HAIR = ("bun", "ponytail", "hat")

# Shared by every split: held-out skin tones would teach nothing but bias.
SKIN_TONES = (
    (255, 224, 196), (241, 194, 167), (234, 192, 134), (224, 172, 105), (198, 134, 66),
    (170, 110, 70), (141, 85, 36), (110, 70, 45), (85, 55, 38), (60, 40, 30),
)  # fmt: skip
HAIR_COLOURS = (
    (20, 16, 14), (45, 30, 20), (85, 55, 30), (140, 95, 50), (200, 160, 90), (150, 60, 30),
    (130, 130, 130), (220, 220, 215),
)  # fmt: skip
SHOE_COLOURS = ((20, 20, 20), (60, 40, 25), (230, 230, 230), (90, 90, 95), (120, 30, 30))

LIMBS = ("arm_far", "arm_near", "leg_far", "leg_near")  # far = limb 0, near = limb 1
HAND, FOOT = 0.3, 0.45  # lengths in head heights


@dataclasses.dataclass(frozen=True)
class Limb:
    """One arm or leg: absolute angles of its two segments and their foreshortening."""

    upper: float
    lower: float
    upper_scale: float = 1.0
    lower_scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class Pose:
    name: str
    view: str  # front, back or side
    arms: tuple[Limb, Limb]
    legs: tuple[Limb, Limb]
    lean: float = 0.0  # torso tilt towards +x, degrees
    legs_in_front: bool = False  # thighs pointing at the camera are drawn over the torso


def _j(rng: np.random.Generator, centre: float, spread: float) -> float:
    return float(centre + rng.uniform(-spread, spread))


def _mirror(outer: Limb) -> tuple[Limb, Limb]:
    """A front-view pair from the right limb's angles: the left one turns the other way."""
    left = Limb(-outer.upper, -outer.lower, outer.upper_scale, outer.lower_scale)
    return left, outer


def _front_pair(rng: np.random.Generator, upper: Point, lower: Point, scale=(1.0, 1.0)):
    """Two mirrored limbs with independent jitter: (centre, spread) per segment."""
    pair = []
    for _ in range(2):
        angle = _j(rng, *upper)
        pair.append(Limb(angle, angle + _j(rng, *lower), *scale))
    return _mirror(pair[0])[0], pair[1]


def _hanging_arms(rng: np.random.Generator) -> tuple[Limb, Limb]:
    return _front_pair(rng, (7, 5), (4, 5))


def _standing_legs(rng: np.random.Generator) -> tuple[Limb, Limb]:
    return _front_pair(rng, (4, 3), (-2, 2))


def _one_arm(rng: np.random.Generator, arm: Limb) -> tuple[Limb, Limb]:
    """A pair with one hanging arm and ``arm`` (given as a right arm) on a random side."""
    rest = _hanging_arms(rng)
    if rng.random() < 0.5:
        return rest[0], arm
    return _mirror(arm)[0], rest[1]


def _front(rng: np.random.Generator, name: str) -> tuple[tuple, tuple, bool]:
    """Arms, legs and legs-in-front of a front- or back-view pose."""
    legs, arms, in_front = _standing_legs(rng), _hanging_arms(rng), False
    if name == "walking":
        legs = (Limb(_j(rng, -4, 3), _j(rng, 2, 3), 0.9, 1.0), Limb(_j(rng, 3, 3), 2.0))
        arms = _front_pair(rng, (9, 6), (6, 8), (0.9, 0.9))
    elif name == "arms_raised":
        arms, legs = _front_pair(rng, (155, 18), (0, 15)), _front_pair(rng, (9, 5), (-3, 3))
    elif name == "waving":
        arms = _one_arm(rng, Limb(_j(rng, 110, 20), _j(rng, 170, 15)))
    elif name == "hands_on_hips":
        arms = _front_pair(rng, (42, 8), (-85, 10))
    elif name == "reaching":
        arms = _one_arm(rng, Limb(_j(rng, 85, 12), _j(rng, 88, 15)))
    elif name == "phone":
        arms = _one_arm(rng, Limb(_j(rng, 40, 8), _j(rng, -150, 10), 0.7, 1.0))
    elif name == "sitting":
        legs = _front_pair(rng, (12, 8), (-9, 5), (_j(rng, 0.3, 0.06), 1.0))
        arms, in_front = _front_pair(rng, (12, 6), (-35, 15), (0.9, 0.85)), True
    elif name == "crouching":
        legs = _front_pair(rng, (58, 10), (-65, 10), (0.65, 0.9))
        arms, in_front = _front_pair(rng, (28, 8), (-30, 12), (0.8, 0.8)), True
    return arms, legs, in_front


def _side(rng: np.random.Generator, name: str) -> tuple[tuple, tuple, float]:
    """Far and near arms and legs, and the lean, of a side-view pose (facing +x)."""
    standing = Limb(_j(rng, 2, 4), _j(rng, 6, 5))
    arms = (standing, Limb(_j(rng, 2, 4), _j(rng, 6, 5)))
    legs = (Limb(_j(rng, -1, 3), _j(rng, -2, 3)), Limb(_j(rng, 1, 3), _j(rng, 0, 3)))
    lean = _j(rng, 0, 4)
    if name == "walking":
        p = rng.uniform(0.6, 1.0)
        arms = (Limb(22 * p, 38 * p), Limb(-20 * p, -12 * p))
        legs = (Limb(-20 * p, -42 * p), Limb(24 * p, 4 * p))
    elif name == "running":
        arms = (Limb(_j(rng, 38, 8), _j(rng, 125, 15)), Limb(_j(rng, -45, 8), _j(rng, 50, 12)))
        legs = (Limb(_j(rng, -22, 6), _j(rng, -115, 12)), Limb(_j(rng, 50, 10), _j(rng, -5, 8)))
        lean = _j(rng, 12, 5)
    elif name == "sitting":
        arms = (Limb(_j(rng, 15, 8), _j(rng, 70, 15)), Limb(_j(rng, 18, 8), _j(rng, 75, 15)))
        legs = (Limb(_j(rng, 86, 6), _j(rng, -4, 8)), Limb(_j(rng, 92, 6), _j(rng, 8, 10)))
        lean = _j(rng, 3, 6)
    elif name == "crouching":
        arms = (Limb(_j(rng, 40, 10), _j(rng, 70, 12)), Limb(_j(rng, 45, 10), _j(rng, 75, 12)))
        legs = (Limb(_j(rng, 105, 8), _j(rng, -20, 6)), Limb(_j(rng, 110, 8), _j(rng, -25, 6)))
        lean = _j(rng, 28, 8)
    elif name == "arms_raised":
        arms = (Limb(_j(rng, 165, 12), _j(rng, 170, 12)), Limb(_j(rng, 160, 12), _j(rng, 168, 12)))
    elif name == "reaching":
        arms = (standing, Limb(_j(rng, 85, 12), _j(rng, 88, 12)))
    elif name == "phone":
        arms = (standing, Limb(_j(rng, 65, 10), _j(rng, 195, 10)))
    return arms, legs, lean


# Which views each pose is seen from (side-only poses read poorly head-on).
POSE_VIEWS = {
    "standing": ("front", "back", "side"),
    "walking": ("side", "side", "front", "back"),
    "running": ("side",),
    "sitting": ("front", "side"),
    "crouching": ("front", "side"),
    "arms_raised": ("front", "back", "side"),
    "waving": ("front", "back"),
    "hands_on_hips": ("front", "back"),
    "reaching": ("front", "side"),
    "phone": ("front", "side", "back"),
}
POSES = tuple(POSE_VIEWS)
VIEWS = ("front", "back", "side")


def random_pose(rng: np.random.Generator) -> Pose:
    """A pose with random joint angles, drawn uniformly over the pose names."""
    name = POSES[rng.integers(len(POSES))]
    views = POSE_VIEWS[name]
    view = views[rng.integers(len(views))]
    if view == "side":
        arms, legs, lean = _side(rng, name)
        if rng.random() < 0.5 and name in ("walking", "standing"):  # the other stride phase
            arms, legs = arms[::-1], legs[::-1]
        return Pose(name, view, arms, legs, lean)
    arms, legs, in_front = _front(rng, name)
    return Pose(name, view, arms, legs, _j(rng, 0, 3), in_front)


def _dir(angle: float) -> Point:
    a = math.radians(angle)
    return math.sin(a), math.cos(a)


def _step(p: Point, length: float, angle: float) -> Point:
    dx, dy = _dir(angle)
    return p[0] + length * dx, p[1] + length * dy


def skeleton(body: Body, pose: Pose) -> dict[str, Point]:
    """Joint positions in head heights, pelvis at (0, 0), facing +x in a side view."""
    side = pose.view == "side"
    neck = _step((0.0, 0.0), body.torso, 180 - pose.lean)
    j = {"pelvis": (0.0, 0.0), "neck": neck}
    j["head"] = _step(neck, body.neck + 0.5, 180 - pose.lean * 1.2)
    half_s, half_h = (0.0, 0.0) if side else (body.shoulders / 2, body.hips / 2)
    cos_l, sin_l = math.cos(math.radians(pose.lean)), math.sin(math.radians(pose.lean))
    drop = _step(neck, 0.18, -pose.lean)  # shoulders sit a little below the neck's base
    for k, sign in enumerate((-1, 1)):
        depth = 0.08 * sign if side else 0.0  # far and near joints, slightly apart
        shoulder = (drop[0] + sign * half_s * cos_l + depth, drop[1] + sign * half_s * sin_l)
        hip = (sign * half_h + depth, 0.0)
        arm, leg = pose.arms[k], pose.legs[k]
        j[f"shoulder{k}"] = shoulder
        j[f"elbow{k}"] = _step(shoulder, body.upper_arm * arm.upper_scale, arm.upper)
        j[f"wrist{k}"] = _step(j[f"elbow{k}"], body.forearm * arm.lower_scale, arm.lower)
        j[f"hand{k}"] = _step(j[f"wrist{k}"], HAND, arm.lower)
        j[f"hip{k}"] = hip
        j[f"knee{k}"] = _step(hip, body.thigh * leg.upper_scale, leg.upper)
        j[f"ankle{k}"] = _step(j[f"knee{k}"], body.shin * leg.lower_scale, leg.lower)
        toe = leg.lower + 90 if side else leg.lower + sign * 8
        j[f"toe{k}"] = _step(j[f"ankle{k}"], FOOT if side else 0.22, toe)
    return j


# Half thicknesses in head heights, before ``Body.girth``: start and end of each segment.
THICKNESS = {
    "neck": (0.19, 0.19),
    "upper_arm": (0.22, 0.18),
    "forearm": (0.17, 0.13),
    "hand": (0.12, 0.1),
    "thigh": (0.32, 0.24),
    "shin": (0.23, 0.16),
    "foot": (0.14, 0.12),
}
HAIR_REACH = {"curly": 1.45, "hat": 1.5, "cap": 1.2}  # head radii the hair/hat extends


def extent(body: Body, pose: Pose, hair: str, joints: dict[str, Point]) -> tuple[float, ...]:
    """The figure's bounding box (x0, y0, x1, y1) in head heights, thickness included."""
    g = body.girth
    pts = [(p, 0.3 * g) for n, p in joints.items() if n not in ("head", "pelvis", "neck")]
    pts.append((joints["neck"], 0.5 * g))
    head_r = 0.5 * HAIR_REACH.get(hair, 1.08)
    hx, hy = joints["head"]
    xs = [p[0] - r for p, r in pts] + [p[0] + r for p, r in pts] + [hx - head_r, hx + head_r]
    ys = [p[1] - r for p, r in pts] + [p[1] + r for p, r in pts] + [hy - head_r, hy + 0.5]
    return min(xs), min(ys), max(xs), max(ys)


@dataclasses.dataclass(frozen=True)
class Style:
    """How one person looks: body, clothing and hair, chosen from one split's style group."""

    body: str
    palette: str
    hair: str
    skin: tuple[int, int, int]
    hair_colour: tuple[int, int, int]
    top: tuple[int, int, int]
    bottom: tuple[int, int, int]
    shoes: tuple[int, int, int]
    hat: tuple[int, int, int]  # cap or hat colour, when the hair style has one
    long_sleeves: bool
    legwear: str  # trousers, shorts or skirt
    face: int = -1  # a real face (``components.vision.faces``) seen from the front; -1: drawn


def _pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def jitter(rng: np.random.Generator, colour, spread: int = 18) -> tuple[int, int, int]:
    """A colour moved a little, so no two people wear exactly the same shade."""
    offsets = rng.integers(-spread, spread + 1, 3)
    return tuple(min(255, max(0, c + int(o))) for c, o in zip(colour, offsets, strict=True))


def random_style(
    rng: np.random.Generator,
    bodies: tuple[str, ...],
    palettes: tuple[str, ...],
    hair: tuple[str, ...],
    faces: tuple[int, ...],
) -> Style:
    """A person's look drawn from the given style groups (and the shared skin tones);
    ``faces`` empty: drawn faces only."""
    palette = _pick(rng, palettes)
    tops, bottoms = PALETTES[palette]
    legwear = _pick(rng, ("trousers", "trousers", "trousers", "shorts", "skirt"))
    return Style(
        body=_pick(rng, bodies),
        palette=palette,
        hair=_pick(rng, hair),
        skin=jitter(rng, _pick(rng, SKIN_TONES), 10),
        hair_colour=jitter(rng, _pick(rng, HAIR_COLOURS), 10),
        top=jitter(rng, _pick(rng, tops)),
        bottom=jitter(rng, _pick(rng, bottoms)),
        shoes=jitter(rng, _pick(rng, SHOE_COLOURS), 10),
        hat=jitter(rng, _pick(rng, tops + bottoms)),
        long_sleeves=bool(rng.random() < 0.55),
        legwear=legwear,
        face=int(_pick(rng, faces)) if faces else -1,  # no draw without faces: older sets stay
    )
