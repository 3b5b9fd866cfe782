"""Backgrounds for the generated person-detection scenes: real photographs and textures.

Called by ``components.vision.scene_plan`` (which sources a scene uses) and
``components.vision.rendering`` (the pixels). The photographs are scikit-image's bundled
sample images, read from the installed package (nothing is downloaded), cropped, scaled,
flipped and re-coloured; the procedural kinds paint rooms, streets, foliage, fields, skies,
tiled walls, shop shelves, studio gradients and out-of-focus lights. A scene may blend a
second source over its first, so photographs also texture the procedural scenes.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources

import numpy as np
from PIL import Image, ImageChops, ImageOps

from components.vision.textures import TEXTURE_PAINTERS, random_colour

RGB = tuple[int, int, int]

# Sample images that show a person or a face are never used, in any split.
EXCLUDED_PHOTOS = ("astronaut", "camera", "lfw_subset", "no_time_for_that_tiny")
PHOTO_FILES = {
    "brick": "brick.png", "cell": "cell.png", "chelsea": "chelsea.png",
    "clock_motion": "clock_motion.png", "coffee": "coffee.png", "coins": "coins.png",
    "color": "color.png", "grass": "grass.png", "gravel": "gravel.png", "horse": "horse.png",
    "hubble_deep_field": "hubble_deep_field.jpg", "ihc": "ihc.png", "logo": "logo.png",
    "moon": "moon.png", "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png", "page": "page.png", "retina": "retina.jpg",
    "rocket": "rocket.jpg", "text": "text.png",
}  # fmt: skip
# Held-out backgrounds: the test split sees only TEST_* sources, training only TRAIN_* ones.
# The two motorcycle views are one stereo pair, so they stay in the same group.
TRAIN_PHOTOS = (
    "chelsea", "coffee", "motorcycle_left", "motorcycle_right", "brick", "grass", "coins",
    "page", "ihc", "logo", "horse", "color",
)  # fmt: skip
TEST_PHOTOS = ("rocket", "hubble_deep_field", "gravel", "moon", "text", "retina", "clock_motion",
               "cell")  # fmt: skip
TRAIN_TEXTURES = ("room", "street", "foliage", "gradient", "bokeh")
TEST_TEXTURES = ("field", "tiles", "shelves", "sky")
TEXTURES = TRAIN_TEXTURES + TEST_TEXTURES


@dataclasses.dataclass(frozen=True)
class Background:
    """The planned background: its sources (the first is the base), blend and ground line."""

    sources: tuple[str, ...]  # "photo:<name>" or a texture kind
    horizon: float  # frame fraction where the ground starts; people stand below it
    blend: float  # opacity of the second source, if any
    seed: int  # the pixels' own random stream


def plan_background(rng: np.random.Generator, photos: tuple, textures: tuple) -> Background:
    """Pick a base source (photo or texture, even odds) and maybe a second one to blend in."""
    pool = [f"photo:{p}" for p in photos], list(textures)
    sources = [_pick(rng, pool[int(rng.random() < 0.5)])]
    if rng.random() < 0.35:
        sources.append(_pick(rng, pool[int(rng.random() < 0.6)]))
    blend = float(rng.uniform(0.2, 0.5))
    return Background(tuple(sources), float(rng.uniform(0.3, 0.7)), blend, int(rng.integers(2**31)))


def render_background(bg: Background, size: int) -> Image.Image:
    """The background as an RGB image of ``size`` x ``size`` pixels."""
    rng = np.random.default_rng(bg.seed)
    image = _source(rng, bg.sources[0], size, bg.horizon)
    if len(bg.sources) > 1:
        over = _source(rng, bg.sources[1], size, bg.horizon)
        if rng.random() < 0.5:
            image = Image.blend(image, over, bg.blend)
        else:  # the second source as a texture: modulate the first one's brightness
            grey = ImageOps.autocontrast(over.convert("L")).point(lambda v: 150 + v * 105 // 255)
            image = ImageChops.multiply(image, Image.merge("RGB", [grey] * 3))
    return image


def _pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def _source(rng: np.random.Generator, source: str, size: int, horizon: float) -> Image.Image:
    if source.startswith("photo:"):
        return photo_crop(rng, source.removeprefix("photo:"), size)
    return TEXTURE_PAINTERS[source](rng, size, int(horizon * size))


def sample_data(file: str):
    """A file scikit-image ships in its ``data`` folder (read from the installed package)."""
    return importlib.resources.files("skimage") / "data" / file


@functools.cache
def load_photo(name: str) -> Image.Image:
    """One bundled sample image, as RGB or L (transparent ones flattened on white)."""
    if name in EXCLUDED_PHOTOS or name not in PHOTO_FILES:
        raise KeyError(f"{name!r} is not one of the usable sample images")
    with Image.open(sample_data(PHOTO_FILES[name])) as image:
        image.load()
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        flat = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(flat, image).convert("RGB")
    return image if image.mode in ("RGB", "L") else image.convert("RGB")


def photo_crop(rng: np.random.Generator, name: str, size: int) -> Image.Image:
    """A random square-ish crop, flipped and re-coloured (grey images get a random tint)."""
    image = load_photo(name)
    w, h = image.size
    side = max(rng.uniform(0.3, 1.0) * min(w, h), min(w, h, 96))  # not too blurry
    cw, ch = min(w, side * rng.uniform(0.8, 1.25)), side
    x, y = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    box = (x, y, x + cw, y + ch)
    crop = image.resize((size, size), Image.Resampling.BILINEAR, box, reducing_gap=2.0)
    if rng.random() < 0.5:
        crop = ImageOps.mirror(crop)
    if crop.mode == "L":
        dark, light = random_colour(rng, 0, 110), random_colour(rng, 120, 256)
        return ImageOps.colorize(crop, dark, light)
    gains = rng.uniform(0.8, 1.2, 3)
    return crop.point([int(min(255, v * g)) for g in gains for v in range(256)])
