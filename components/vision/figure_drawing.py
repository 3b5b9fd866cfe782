"""Draws one planned person (``components.vision.figures``) with Pillow.

Called by ``components.vision.rendering`` on a transparent layer at the supersampled
canvas size. Limbs are tapered capsules (a quadrilateral between two round caps), the torso
a polygon (front and back views) or a capsule (side view), the head an ellipse with hair,
a cap or a hat, and, when the head is large enough to show one, a face: a real one
(``components.vision.faces``) seen from the front, drawn eyes and mouth otherwise.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from components.vision import faces
from components.vision.figures import BODIES, THICKNESS, Pose, Style

Point = tuple[float, float]
RGB = tuple[int, int, int]


def shade(colour: RGB, factor: float) -> RGB:
    return tuple(int(min(255, max(0, c * factor))) for c in colour)


def capsule(draw: ImageDraw.ImageDraw, a: Point, b: Point, ra: float, rb: float, fill) -> None:
    """A limb segment: round ends of radius ``ra`` and ``rb`` joined by tangent-ish sides."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy) or 1e-6
    nx, ny = -dy / length, dx / length
    quad = [
        (a[0] + nx * ra, a[1] + ny * ra),
        (b[0] + nx * rb, b[1] + ny * rb),
        (b[0] - nx * rb, b[1] - ny * rb),
        (a[0] - nx * ra, a[1] - ny * ra),
    ]
    draw.polygon(quad, fill=fill)
    for (x, y), r in ((a, ra), (b, rb)):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


class _Painter:
    """Draws one figure's parts; holds the joints in pixels and the sizes derived from them."""

    def __init__(self, layer, style: Style, pose: Pose, joints: dict[str, Point], unit: float):
        self.layer, self.d = layer, ImageDraw.Draw(layer)
        self.style, self.pose, self.j = style, pose, joints
        self.u, self.g = unit, BODIES[style.body].girth
        self.side = pose.view == "side"
        self.facing = 1 if joints["toe1"][0] >= joints["ankle1"][0] else -1

    def r(self, part: str) -> tuple[float, float]:
        start, end = THICKNESS[part]
        return start * self.g * self.u, end * self.g * self.u

    def seg(self, a: str, b: str, part: str, colour: RGB) -> None:
        """A rounded limb segment, darker at its edges and lit from the upper left."""
        ra, rb = self.r(part)
        (ax, ay), (bx, by) = self.j[a], self.j[b]
        capsule(self.d, (ax, ay), (bx, by), ra, rb, shade(colour, 0.75))
        ox, oy = -0.22 * ra, -0.12 * ra
        capsule(self.d, (ax + ox, ay + oy), (bx + ox, by + oy), ra * 0.7, rb * 0.7, colour)

    def arm(self, k: int, dim: float) -> None:
        s = self.style
        self.seg(f"shoulder{k}", f"elbow{k}", "upper_arm", shade(s.top, dim))
        fore = s.top if s.long_sleeves else s.skin
        self.seg(f"elbow{k}", f"wrist{k}", "forearm", shade(fore, dim))
        self.seg(f"wrist{k}", f"hand{k}", "hand", shade(s.skin, dim))

    def leg(self, k: int, dim: float) -> None:
        s = self.style
        thigh = s.skin if s.legwear == "skirt" else s.bottom
        shin = s.bottom if s.legwear == "trousers" else s.skin
        self.seg(f"hip{k}", f"knee{k}", "thigh", shade(thigh, dim))
        self.seg(f"knee{k}", f"ankle{k}", "shin", shade(shin, dim))
        self.seg(f"ankle{k}", f"toe{k}", "foot", shade(s.shoes, dim))

    def neck(self) -> None:
        capsule(self.d, self.j["neck"], self.j["head"], *self.r("neck"), self.style.skin)

    def torso(self) -> None:
        if self.side:
            self._torso_side()
        else:
            self._torso_front()

    def _torso_side(self) -> None:
        s, j, w = self.style, self.j, 0.46 * self.g * self.u
        pelvis, neck = j["pelvis"], j["neck"]
        waist = (pelvis[0] + 0.3 * (neck[0] - pelvis[0]), pelvis[1] + 0.3 * (neck[1] - pelvis[1]))
        capsule(self.d, pelvis, waist, w * 1.02, w * 0.92, s.bottom)
        chest = (neck[0] + 0.2 * (pelvis[0] - neck[0]), neck[1] + 0.2 * (pelvis[1] - neck[1]))
        capsule(self.d, waist, chest, w * 0.92, w * 1.05, s.top)
        capsule(self.d, chest, neck, w * 1.0, w * 0.6, s.top)
        if s.legwear == "skirt":
            self._skirt()

    def _torso_front(self) -> None:
        s, j, g, u = self.style, self.j, self.g, self.u
        (l_sh, r_sh), (l_hip, r_hip) = (j["shoulder0"], j["shoulder1"]), (j["hip0"], j["hip1"])
        arm, thigh = self.r("upper_arm")[0], self.r("thigh")[0]
        waist = BODIES[s.body].waist
        mid = lambda a, b, t: (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))  # noqa: E731
        centre = mid(mid(l_sh, r_sh, 0.5), mid(l_hip, r_hip, 0.5), 0.62)
        half = 0.5 * waist * (r_sh[0] - l_sh[0]) + 0.7 * arm
        l_w, r_w = (centre[0] - half, centre[1]), (centre[0] + half, centre[1])
        hips = [(l_hip[0] - thigh, l_hip[1]), (r_hip[0] + thigh, r_hip[1])]
        lower = [l_w, r_w, (hips[1][0], hips[1][1] + 0.25 * thigh)]
        lower += [(j["pelvis"][0], j["pelvis"][1] + 0.55 * thigh)]
        lower += [(hips[0][0], hips[0][1] + 0.25 * thigh)]
        self.d.polygon(lower, fill=s.bottom)
        up = 0.6 * arm
        top = [(l_sh[0] - up, l_sh[1] - up), (r_sh[0] + up, r_sh[1] - up)]
        top += [(r_w[0], r_w[1] + 0.1 * u * g), (l_w[0], l_w[1] + 0.1 * u * g)]
        self.d.polygon(top, fill=s.top)
        for p in (l_sh, r_sh):
            capsule(self.d, p, p, arm, arm, s.top)
        capsule(self.d, r_sh, r_w, 0.45 * arm, 0.35 * arm, shade(s.top, 0.85))  # shaded side
        if s.legwear == "skirt":
            self._skirt()

    def _skirt(self) -> None:
        j, thigh = self.j, self.r("thigh")[0]
        if self.side:
            (px, py), w = j["pelvis"], 0.46 * self.g * self.u
            knees_x = sorted((j["knee0"][0], j["knee1"][0]))
            hem = max(j["knee0"][1], j["knee1"][1]) + 0.5 * thigh
            poly = [
                (px - w, py - 0.6 * w),
                (px + w, py - 0.6 * w),
                (max(knees_x[1], px) + thigh, hem),
                (min(knees_x[0], px) - thigh, hem),
            ]
            self.d.polygon(poly, fill=self.style.bottom)
            return
        knees = sorted((j["knee0"], j["knee1"]))
        hips = sorted((j["hip0"], j["hip1"]))
        flare = 0.5 * thigh
        poly = [
            (hips[0][0] - thigh, hips[0][1] - 0.4 * thigh),
            (hips[1][0] + thigh, hips[1][1] - 0.4 * thigh),
            (max(knees[1][0], hips[1][0]) + thigh + flare, max(k[1] for k in knees)),
            (min(knees[0][0], hips[0][0]) - thigh - flare, max(k[1] for k in knees)),
        ]
        self.d.polygon(poly, fill=self.style.bottom)

    def head_box(self) -> tuple[float, float, float, float]:
        """Centre and radii of the head ellipse, in pixels."""
        hx, hy = self.j["head"]
        width = BODIES[self.style.body].head_width * (1.08 if self.side else 1.0)
        return hx, hy, 0.5 * width * self.u, 0.5 * self.u

    def head(self) -> None:
        hx, hy, rx, ry = self.head_box()
        skin = self.style.skin
        if not self.side and self.pose.view == "front":
            ear = shade(skin, 0.92)
            for sx in (-1, 1):
                self._ellipse(hx + sx * rx * 0.95, hy + 0.05 * ry, 0.2 * rx, 0.26 * ry, ear)
        self._ellipse(hx, hy, rx, ry, skin)
        if self.side:
            self._ellipse(hx + self.facing * rx * 0.93, hy + 0.1 * ry, 0.16 * rx, 0.2 * ry, skin)

    def _ellipse(self, x: float, y: float, rx: float, ry: float, fill) -> None:
        self.d.ellipse([x - rx, y - ry, x + rx, y + ry], fill=fill)

    def shows_real_face(self) -> bool:
        """Whether the style's real face is seen: from the front, on a head big enough."""
        ry = self.head_box()[3]
        return self.pose.view == "front" and self.style.face >= 0 and ry >= faces.MIN_HEAD_RADIUS

    def real_face(self) -> None:
        """The style's real face over the head, under the hair (a fringe or a cap's peak
        covers the forehead)."""
        hx, hy, rx, ry = self.head_box()
        w, h = round(1.7 * rx), round(1.7 * ry)
        patch, mask = faces.face_patch(self.style.face, self.style.skin, w, h)
        self.layer.paste(patch, (round(hx - w / 2), round(hy + 0.12 * ry - h / 2)), mask)

    def face(self) -> None:
        """Drawn eyes and a mouth, only where the head is big enough for them to be seen."""
        hx, hy, rx, ry = self.head_box()
        if ry < 7 or self.pose.view == "back":
            return
        eye = shade(self.style.skin, 0.25)
        er = max(1.0, 0.1 * rx)
        if self.side:
            self._ellipse(hx + self.facing * 0.55 * rx, hy - 0.08 * ry, er, er, eye)
            return
        for sx in (-1, 1):
            self._ellipse(hx + sx * 0.36 * rx, hy - 0.06 * ry, er, er, eye)
        mouth = shade(self.style.skin, 0.6)
        w = max(1, int(0.08 * ry))
        self.d.line([(hx - 0.28 * rx, hy + 0.48 * ry), (hx + 0.28 * rx, hy + 0.48 * ry)], mouth, w)

    def hair_behind(self) -> None:
        """Hair that falls behind the head and neck (front view only)."""
        hx, hy, rx, ry = self.head_box()
        hair, view = self.style.hair, self.pose.view
        colour = self.style.hair_colour
        if view != "front":
            return
        if hair == "long":
            self.d.rounded_rectangle(
                [hx - 1.12 * rx, hy - 0.4 * ry, hx + 1.12 * rx, hy + 1.75 * ry], rx * 0.5, colour
            )
        elif hair == "curly":
            self._ellipse(hx, hy - 0.12 * ry, 1.4 * rx, 1.28 * ry, colour)
        elif hair == "bun":
            self._ellipse(hx, hy - 1.0 * ry, 0.42 * rx, 0.36 * ry, colour)
        elif hair == "ponytail":
            tip = (hx + 0.5 * rx, hy + 1.3 * ry)
            capsule(self.d, (hx + 0.3 * rx, hy - 0.5 * ry), tip, 0.3 * rx, 0.2 * rx, colour)

    def hair_over(self) -> None:
        """Hair, caps and hats drawn over the head."""
        hx, hy, rx, ry = self.head_box()
        hair, colour = self.style.hair, self.style.hair_colour
        if hair == "bald":
            return
        self._scalp(hx, hy, rx, ry, 1.25 if hair == "curly" else 1.0, colour)
        f, view = self.facing, self.pose.view
        if hair == "long" and view == "front":
            for sx in (-1, 1):
                a, b = (hx + sx * 0.95 * rx, hy - 0.4 * ry), (hx + sx * 1.02 * rx, hy + 1.1 * ry)
                capsule(self.d, a, b, 0.25 * rx, 0.2 * rx, colour)
        elif hair == "long":
            back = -f * 0.6 * rx if self.side else 0.0
            a, b = (hx + back, hy - 0.2 * ry), (hx + back * 1.2, hy + 1.55 * ry)
            capsule(self.d, a, b, (0.55 if self.side else 1.05) * rx, 0.5 * rx, colour)
        elif hair == "bun" and view != "front":
            self._ellipse(hx - (f * 0.7 * rx if self.side else 0), hy - 0.85 * ry, 0.42 * rx,
                          0.38 * ry, colour)  # fmt: skip
        elif hair == "ponytail" and view != "front":
            back = -f * rx if self.side else 0.0
            a, b = (hx + 0.85 * back, hy - 0.35 * ry), (hx + 1.3 * back, hy + 1.3 * ry)
            capsule(self.d, a, b, 0.3 * rx, 0.17 * rx, colour)
        elif hair in ("cap", "hat"):
            self._headwear(hx, hy, rx, ry)

    def _scalp(self, hx: float, hy: float, rx: float, ry: float, bulk: float, colour) -> None:
        """The hair on the skull: a fringe from the front, the whole head from the back."""
        if self.pose.view == "back":
            self._ellipse(hx, hy - 0.06 * ry, 1.05 * rx * bulk, 1.02 * ry * bulk, colour)
            return
        box = [hx - 1.06 * rx * bulk, hy - 1.1 * ry * bulk, hx + 1.06 * rx * bulk, hy + 0.45 * ry]
        self.d.chord(box, 180, 360, fill=colour)
        if self.side:
            self._ellipse(hx - self.facing * 0.42 * rx, hy - 0.05 * ry, 0.66 * rx * bulk,
                          0.9 * ry, colour)  # fmt: skip

    def _headwear(self, hx: float, hy: float, rx: float, ry: float) -> None:
        hat, f = self.style.hat, self.facing
        dark = shade(hat, 0.75)
        if self.style.hair == "cap":
            self.d.chord([hx - 1.08 * rx, hy - 1.15 * ry, hx + 1.08 * rx, hy + 0.15 * ry], 180,
                         360, fill=hat)  # fmt: skip
            if self.side:
                a, b = (hx + f * 0.5 * rx, hy - 0.48 * ry), (hx + f * 1.65 * rx, hy - 0.4 * ry)
                capsule(self.d, a, b, 0.09 * ry, 0.07 * ry, dark)
            elif self.pose.view == "front":
                self._ellipse(hx, hy - 0.48 * ry, 1.12 * rx, 0.12 * ry, dark)
            return
        box = [hx - 0.82 * rx, hy - 1.55 * ry, hx + 0.82 * rx, hy - 0.45 * ry]
        self.d.rounded_rectangle(box, 0.3 * rx, fill=hat)
        self._ellipse(hx, hy - 0.58 * ry, 1.55 * rx, 0.16 * ry, dark)


def draw_figure(layer: Image.Image, style: Style, pose: Pose, joints: dict, unit: float):
    """Draw a person on ``layer``; ``joints`` are in its pixels and the head is ``unit``
    pixels tall."""
    p = _Painter(layer, style, pose, joints, unit)
    if p.side:
        p.arm(0, 0.72)
        p.leg(0, 0.72)
        p.neck()
        p.leg(1, 1.0)
        p.torso()
        p.arm(1, 1.0)
    else:
        p.hair_behind()
        p.neck()
        if not pose.legs_in_front:
            p.leg(0, 0.92)
            p.leg(1, 0.92)
        p.torso()
        if pose.legs_in_front:
            p.leg(0, 1.0)
            p.leg(1, 1.0)
        p.arm(0, 1.0)
        p.arm(1, 1.0)
    p.head()
    if p.shows_real_face():
        p.real_face()
        p.hair_over()
    else:
        p.hair_over()
        p.face()
