"""Procedural backgrounds for the generated person-detection scenes, painted with Pillow.

Called by ``components.vision.backgrounds``. Each painter takes a random generator, the
square size in pixels and the row where the ground (floor, road, grass) begins, and returns
an RGB image. They are kept simple and fast: flat shapes plus smooth noise, since the camera
effects added later (blur, lighting, noise, JPEG) supply most of the realism.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

RGB = tuple[int, int, int]


def random_colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> RGB:
    return tuple(int(v) for v in rng.integers(low, high, 3))


def _near(rng: np.random.Generator, colour: RGB, spread: int) -> RGB:
    offsets = rng.integers(-spread, spread + 1, 3)
    return tuple(min(255, max(0, c + int(o))) for c, o in zip(colour, offsets, strict=True))


def value_noise(rng: np.random.Generator, size: int, cells: int) -> Image.Image:
    """Smooth random greyscale noise: a ``cells`` x ``cells`` grid, bicubically enlarged."""
    grid = rng.integers(0, 256, (cells, cells), dtype=np.uint8)
    return Image.fromarray(grid, "L").resize((size, size), Image.Resampling.BICUBIC)


def gradient(size: int, top: RGB, bottom: RGB, angle: float = 0.0) -> Image.Image:
    """A linear gradient from ``top`` to ``bottom``, turned by ``angle`` degrees.

    Computed on an 8 x 8 grid and enlarged: a linear ramp survives bilinear scaling exactly,
    at a fraction of the cost of computing every pixel."""
    grid = np.linspace(-0.5, 0.5, 8)
    a = np.radians(angle)
    t = np.clip(0.5 + grid[:, None] * np.cos(a) + grid[None, :] * np.sin(a), 0, 1)[..., None]
    pixels = (1 - t) * np.array(top) + t * np.array(bottom)
    small = Image.fromarray(pixels.astype(np.uint8), "RGB")
    return small.resize((size, size), Image.Resampling.BILINEAR)


def textured(rng: np.random.Generator, image: Image.Image, amount: float, cells: int):
    """``image`` with its brightness modulated by smooth noise (stains, grain, unevenness)."""
    noise = value_noise(rng, image.size[0], cells)
    lo = int(255 * (1 - amount))
    grey = noise.point(lambda v: lo + v * (255 - lo) // 255)
    return ImageChops.multiply(image, Image.merge("RGB", [grey] * 3))


PATTERNS = ("stripes", "patches", "cells", "fur", "checks")


def pattern(rng: np.random.Generator, kind: str, width: int, height: int) -> np.ndarray:
    """A ``height`` x ``width`` brightness gain in (0, 1] that prints a surface pattern.

    Real negatives are richly textured (a zebra's stripes, a giraffe's cells, a cow's
    patches, fur, a checked cloth, a plate of food); the painted objects are flat, so a
    detector trained on them alone takes any textured thing for a person. The pattern's
    size follows the object's, as an animal's coat does."""
    side = max(width, height)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = rng.uniform(0.35, 0.85)
    if kind == "stripes":  # wavy bands across the object: zebra, tiger, striped cloth
        period = side * rng.uniform(0.05, 0.16)
        a = rng.uniform(0, np.pi)
        along, across = xs * np.cos(a) + ys * np.sin(a), -xs * np.sin(a) + ys * np.cos(a)
        wobble = period * rng.uniform(0, 0.8) * np.sin(across * rng.uniform(2, 8) / side)
        mark = np.sin(2 * np.pi * (along + wobble) / period) > rng.uniform(-0.3, 0.4)
    elif kind == "patches":  # irregular blobs: a cow's or a dalmatian's coat, camouflage
        cells = int(rng.integers(3, 9))
        blobs = np.asarray(value_noise(rng, side, cells), np.float32)[:height, :width]
        mark = blobs > np.quantile(blobs, rng.uniform(0.45, 0.7))
    elif kind == "cells":  # dark cells parted by light lines: a giraffe, paving, a honeycomb
        n = int(rng.integers(8, 40))
        seeds = rng.uniform(0, 1, (n, 2)) * (width, height)
        d = np.hypot(xs[..., None] - seeds[:, 0], ys[..., None] - seeds[:, 1])
        d.partition(1, axis=-1)
        mark = d[..., 1] - d[..., 0] > side * rng.uniform(0.01, 0.04)
    elif kind == "fur":  # fine streaks along one direction: fur, grass, wood grain
        grid = rng.integers(0, 256, (max(2, height // 3), max(2, width // 12)), dtype=np.uint8)
        streaks = Image.fromarray(grid, "L").resize((width, height), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            streaks = streaks.transpose(Image.Transpose.TRANSPOSE).resize((width, height))
        return 1 - depth * 0.6 * np.asarray(streaks, np.float32) / 255
    elif kind == "checks":  # checked or tartan cloth, a tiled floor, a chessboard
        period = side * rng.uniform(0.06, 0.2)
        mark = (np.sin(2 * np.pi * xs / period) > 0) ^ (np.sin(2 * np.pi * ys / period) > 0)
    else:
        raise ValueError(f"no surface pattern {kind!r}; use one of {PATTERNS}")
    return np.where(mark, 1 - depth, 1.0).astype(np.float32)


def sky(rng: np.random.Generator, size: int, height: int) -> Image.Image:
    """A sky gradient with soft clouds (the full square is painted; ``height`` is unused)."""
    top = random_colour(rng, 40, 140)
    top = (top[0] // 2, top[1] * 3 // 4, min(255, top[2] + 100))
    base = gradient(size, top, random_colour(rng, 170, 256))
    cells = int(rng.integers(3, 7))
    clouds = value_noise(rng, 32, cells).point(lambda v: max(0, v - 140) * 2)
    clouds = clouds.resize((size, size), Image.Resampling.BICUBIC)  # soft edges for free
    white = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(215, 256, 3)))
    return Image.composite(white, base, clouds)


def _room(rng: np.random.Generator, size: int, horizon: int) -> Image.Image:
    """A wall with windows, doors or pictures over a wooden, tiled or carpeted floor."""
    image = textured(rng, Image.new("RGB", (size, size), random_colour(rng, 90, 240)), 0.25, 6)
    d = ImageDraw.Draw(image)
    if rng.random() < 0.35:  # wallpaper stripes
        step, dark = int(rng.integers(size // 24, size // 8)), random_colour(rng, 60, 200)
        for x in range(0, size, step * 2):
            d.rectangle([x, 0, x + step - 1, horizon], fill=dark)
    for _ in range(int(rng.integers(0, 4))):
        _wall_feature(rng, image, d, size, horizon)
    floor = random_colour(rng, 50, 200) if rng.random() < 0.4 else _near(rng, (140, 95, 55), 40)
    d.rectangle([0, horizon, size, size], fill=floor)
    vx = size * rng.uniform(0.2, 0.8)
    for k in range(-8, 17):  # boards or tiles converging on a vanishing point
        x = k * size / 8
        d.line([(vx + (x - vx) * 0.15, horizon), (x, size)], fill=_near(rng, floor, 25), width=2)
    d.rectangle([0, horizon - size // 60, size, horizon + 1], fill=_near(rng, floor, 60))
    return image


def _wall_feature(rng, image: Image.Image, d: ImageDraw.ImageDraw, size: int, horizon: int):
    kind = rng.integers(3)
    w, h = int(size * rng.uniform(0.12, 0.35)), int(size * rng.uniform(0.15, 0.45))
    x, y = int(rng.uniform(-0.1, 0.9) * size), int(rng.uniform(0.05, 0.3) * size)
    frame = random_colour(rng, 30, 255)
    if kind == 0:  # a window onto the sky
        image.paste(sky(rng, max(w, 2), h).resize((max(w, 2), max(h, 2))), (x, y))
        d.rectangle([x, y, x + w, y + h], outline=frame, width=max(2, size // 64))
        d.line([(x + w // 2, y), (x + w // 2, y + h)], fill=frame, width=max(2, size // 80))
    elif kind == 1:  # a door standing on the floor
        d.rectangle([x, horizon - int(h * 1.6), x + w, horizon], fill=_near(rng, frame, 30))
        d.ellipse([x + w * 0.8, horizon - h * 0.8, x + w * 0.86, horizon - h * 0.74], fill=frame)
    else:  # a framed picture
        art = value_noise(rng, 8, 3).resize((max(w, 2), max(h, 2)))
        image.paste(Image.merge("RGB", [art, art.rotate(90), art.transpose(0)]), (x, y))
        d.rectangle([x, y, x + w, y + h], outline=frame, width=max(2, size // 50))


def _street(rng: np.random.Generator, size: int, horizon: int) -> Image.Image:
    """Buildings with rows of windows along a pavement and a road with lane markings."""
    image = sky(rng, size, horizon)
    d = ImageDraw.Draw(image)
    x = -int(rng.integers(0, size // 8))
    while x < size:
        w, top = int(size * rng.uniform(0.15, 0.45)), int(horizon - size * rng.uniform(0.15, 0.7))
        wall = random_colour(rng, 60, 220)
        d.rectangle([x, top, x + w, horizon], fill=wall)
        glass, step = random_colour(rng, 20, 160), max(4, int(size * rng.uniform(0.04, 0.08)))
        for wy in range(top + step // 2, horizon - step, step):
            for wx in range(x + step // 3, x + w - step // 2, step):
                d.rectangle([wx, wy, wx + step // 2, wy + step // 2], fill=glass)
        x += w + int(rng.integers(0, size // 20))
    kerb = horizon + int(size * rng.uniform(0.05, 0.15))
    d.rectangle([0, horizon, size, kerb], fill=random_colour(rng, 120, 200))
    road = _near(rng, (70, 70, 75), 25)
    d.rectangle([0, kerb, size, size], fill=road)
    line_y, paint = (kerb + size) // 2, (230, 230, 220) if rng.random() < 0.6 else (220, 190, 40)
    for lx in range(-int(rng.integers(0, size // 6)), size, size // 5):
        d.rectangle([lx, line_y, lx + size // 10, line_y + max(2, size // 60)], fill=paint)
    return textured(rng, image, 0.2, 12)


def _foliage(rng: np.random.Generator, size: int, horizon: int) -> Image.Image:
    """Dense leaves: many overlapping ellipses in greens, slightly out of focus."""
    base = (int(rng.integers(10, 50)), int(rng.integers(40, 90)), int(rng.integers(10, 40)))
    image = Image.new("RGB", (size, size), base)
    d = ImageDraw.Draw(image)
    hue, n = rng.uniform(-30, 30), int(rng.integers(150, 300))
    radii, centres = size * rng.uniform(0.01, 0.06, n), rng.uniform(0, size, (n, 2))
    greens = rng.integers(60, 200, n)
    reds = np.clip(greens * 0.45 + hue + rng.integers(-20, 20, n), 0, 255).astype(int)
    blues = np.clip(greens * 0.3 + rng.integers(-15, 15, n), 0, 255).astype(int)
    for r, (x, y), red, g, b in zip(radii, centres, reds, greens, blues, strict=True):
        d.ellipse([x - r, y - r * 0.6, x + r, y + r * 0.6], fill=(int(red), int(g), int(b)))
    if rng.random() < 0.5:  # the ground in front of the hedge
        d.rectangle([0, horizon + size // 5, size, size], fill=random_colour(rng, 60, 170))
    radius = size * rng.uniform(0.0, 0.006)
    return image.filter(ImageFilter.GaussianBlur(radius)) if radius > 0.5 else image


def _gradient(rng: np.random.Generator, size: int, horizon: int) -> Image.Image:
    """A studio backdrop or plain wall: two colours, any direction, a little unevenness."""
    image = gradient(size, random_colour(rng), random_colour(rng), rng.uniform(-60, 60))
    return textured(rng, image, 0.3, int(rng.integers(2, 8)))


def _bokeh(rng: np.random.Generator, size: int, horizon: int) -> Image.Image:
    """Out-of-focus lights: soft bright discs over a darker gradient."""
    image = gradient(size, random_colour(rng, 0, 120), random_colour(rng, 0, 160))
    small = max(8, size // 2)  # drawn small, blurred and enlarged: defocused, cheaply
    lights = Image.new("RGB", (small, small))
    d = ImageDraw.Draw(lights)
    for _ in range(int(rng.integers(15, 50))):
        r, (x, y) = small * rng.uniform(0.02, 0.1), rng.uniform(0, small, 2)
        d.ellipse([x - r, y - r, x + r, y + r], fill=random_colour(rng, 40, 200))
    lights = lights.filter(ImageFilter.BoxBlur(1)).resize((size, size), Image.Resampling.BICUBIC)
    return ImageChops.screen(image, lights)


def _field(rng: np.random.Generator, size: int, horizon: int) -> Image.Image:
    """A park: sky, a line of distant trees, grass and sometimes a path."""
    image = sky(rng, size, horizon)
    d = ImageDraw.Draw(image)
    tree = _near(rng, (40, 80, 40), 25)
    for x in np.arange(-size * 0.05, size * 1.05, size * rng.uniform(0.03, 0.08)):
        r = size * rng.uniform(0.04, 0.12)
        d.ellipse([x - r, horizon - 1.6 * r, x + r, horizon + r * 0.2], fill=_near(rng, tree, 15))
    grass = Image.new("RGB", (size, size - horizon), _near(rng, (90, 140, 60), 35))
    image.paste(textured(rng, grass, 0.35, 24), (0, horizon))
    if rng.random() < 0.5:
        vx, spread = size * rng.uniform(0.3, 0.7), size * rng.uniform(0.2, 0.5)
        d.polygon([(vx - 2, horizon), (vx + 2, horizon), (vx + spread, size), (vx - spread, size)],
                  fill=_near(rng, (170, 150, 115), 30))  # fmt: skip
    return image


def _tiles(rng: np.random.Generator, size: int, horizon: int) -> Image.Image:
    """A tiled wall (kitchen, bathroom, underpass) over a floor of larger tiles."""
    image = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(image)
    grout = random_colour(rng, 100, 230)
    for top, bottom, colour in ((0, horizon, random_colour(rng, 60, 250)),
                                (horizon, size, random_colour(rng, 40, 200))):  # fmt: skip
        step = max(4, int(size / rng.uniform(5, 14)) * (2 if top else 1))
        for y in range(top, bottom, step):
            for x in range(-(y // step % 2) * step // 2 * int(rng.random() < 0.3), size, step):
                d.rectangle([x, y, x + step, min(y + step, bottom)], fill=_near(rng, colour, 12),
                            outline=grout, width=max(1, size // 120))  # fmt: skip
    return textured(rng, image, 0.2, 8)


def _shelves(rng: np.random.Generator, size: int, horizon: int) -> Image.Image:
    """Shop or library shelves loaded with boxes and books."""
    image = Image.new("RGB", (size, size), random_colour(rng, 60, 220))
    d = ImageDraw.Draw(image)
    board, step = random_colour(rng, 80, 230), int(size * rng.uniform(0.16, 0.28))
    for y in range(int(rng.integers(step // 3, step)), horizon + step // 2, step):
        x = 0
        while x < size:
            w = int(size * rng.uniform(0.02, 0.09))
            h = int(step * rng.uniform(0.45, 0.9))
            d.rectangle([x, y - h, x + w - 1, y], fill=random_colour(rng, 20, 250))
            x += w + int(rng.integers(0, 3)) * size // 40
        d.rectangle([0, y, size, y + max(2, size // 40)], fill=board)
    d.rectangle([0, horizon + step // 2, size, size], fill=random_colour(rng, 70, 190))
    return textured(rng, image, 0.2, 10)


def _sky(rng: np.random.Generator, size: int, horizon: int) -> Image.Image:
    """Open sky with clouds above the sea, hills or a flat roof."""
    image = sky(rng, size, horizon)
    d = ImageDraw.Draw(image)
    ground = random_colour(rng, 30, 160)
    if rng.random() < 0.5:  # hills
        xs = np.linspace(0, size, 9)
        ys = horizon - size * rng.uniform(0, 0.12, 9)
        d.polygon([(0, size), *zip(xs, ys, strict=True), (size, size)], fill=ground)
    else:
        d.rectangle([0, horizon, size, size], fill=ground)
    return textured(rng, image, 0.25, 16)


TEXTURE_PAINTERS = {
    "room": _room, "street": _street, "foliage": _foliage, "gradient": _gradient,
    "bokeh": _bokeh, "field": _field, "tiles": _tiles, "shelves": _shelves, "sky": _sky,
}  # fmt: skip
