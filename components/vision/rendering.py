"""Turns a planned scene (``components.vision.scene_plan``) into pixels.

Called by ``components.vision.scenes`` for every image. The scene is drawn at twice the
output size and reduced, which anti-aliases Pillow's hard-edged shapes, then passed through
a simple camera: exposure, contrast, saturation, colour cast, light fall-off and vignette,
defocus blur and sensor noise. JPEG compression is applied when the image is written.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from components.vision.backgrounds import render_background
from components.vision.figure_drawing import draw_figure
from components.vision.props import Prop, draw_prop
from components.vision.scene_plan import Effects, Person, Scene
from components.vision.textures import pattern, value_noise

SUPERSAMPLE = 2


def render(scene: Scene, size: int) -> Image.Image:
    """The scene as an RGB image of ``size`` x ``size`` pixels, before compression."""
    canvas = size * SUPERSAMPLE
    image = render_background(scene.background, canvas)
    _cast_shadows(image, scene, canvas)
    for item in scene.draw_order():
        _draw_item(image, item, canvas, _item_rng(scene, item), scene.effects.light_angle)
    return camera(image.reduce(SUPERSAMPLE), scene.effects)


def _item_rng(scene: Scene, item: Person | Prop) -> np.random.Generator:
    """A texture stream tied to the item (its place), not to the drawing order, so that an
    object looks the same with or without the people of a paired scene."""
    place = [int(v * 1e6) % 2**31 for v in item.box]
    return np.random.default_rng([scene.effects.seed, *place])


def _draw_item(image: Image.Image, item: Person | Prop, canvas: int, rng, light: float) -> None:
    """Draw one person or object on its own layer, give it shading and surface texture, and
    paste it in. People and objects are treated alike, so texture is no clue to the class."""
    x0, y0, x1, y1 = item.box
    mx, my = 0.12 * (x1 - x0) + 0.01, 0.12 * (y1 - y0) + 0.01  # what painters draw past the box
    left, top = max(0, int((x0 - mx) * canvas)), max(0, int((y0 - my) * canvas))
    right = min(canvas, int((x1 + mx) * canvas) + 1)
    bottom = min(canvas, int((y1 + my) * canvas) + 1)
    if right - left < 2 or bottom - top < 2:
        return
    layer = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if isinstance(item, Prop):
        draw_prop(draw, item, canvas, (left, top))
    else:
        joints = {k: (x * canvas - left, y * canvas - top) for k, (x, y) in item.joints.items()}
        draw_figure(layer, item.style, item.pose, joints, item.unit * canvas)
    printed = item.pattern if isinstance(item, Prop) else ""
    surface = _surface(layer, rng, light, printed)
    image.paste(surface, (left, top), layer.getchannel("A"))


def _surface(layer: Image.Image, rng: np.random.Generator, light: float, printed: str = ""):
    """The layer's colours lit from ``light`` degrees, mottled by smooth noise and, if
    ``printed`` names one, patterned (``textures.pattern``)."""
    w, h = layer.size
    a = np.radians(light)
    xs = np.linspace(-0.5, 0.5, w, dtype=np.float32) * np.cos(a)
    ys = np.linspace(-0.5, 0.5, h, dtype=np.float32) * np.sin(a)
    gain = 1 + rng.uniform(0.1, 0.5) * (xs[None, :] + ys[:, None])
    noise = value_noise(rng, max(w, h), int(rng.integers(3, 9))).crop((0, 0, w, h))
    amount = rng.uniform(0.05, 0.3)
    gain = gain * (1 - amount + amount * 2 * np.asarray(noise, np.float32) / 255)
    if printed:
        gain = gain * pattern(rng, printed, w, h)
    rgb = np.asarray(layer.convert("RGB"), np.float32) * gain[..., None]
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def _cast_shadows(image: Image.Image, scene: Scene, canvas: int) -> None:
    """Soft dark ellipses on the ground under everything that stands inside the frame."""
    small = canvas // 4  # drawn small and enlarged: the enlargement blurs it for free
    mask = Image.new("L", (small, small), 0)
    d = ImageDraw.Draw(mask)
    for item in scene.draw_order():
        x0, _, x1, y1 = item.box
        if y1 > 1.0:
            continue
        w = (x1 - x0) * (0.7 if isinstance(item, Person) else 0.55)
        cx, h = (x0 + x1) / 2, max(0.01, 0.12 * w)
        box = [(cx - w) * small, (y1 - h) * small, (cx + w) * small, (y1 + h) * small]
        d.ellipse(box, fill=90)
    if mask.getbbox() is None:
        return
    mask = mask.filter(ImageFilter.BoxBlur(1)).resize(image.size, Image.Resampling.BILINEAR)
    image.paste(Image.new("RGB", image.size, (0, 0, 0)), (0, 0), mask)


def camera(image: Image.Image, fx: Effects) -> Image.Image:
    """Exposure and colour, then optics (fall-off, blur), then the sensor (noise)."""
    image = ImageEnhance.Brightness(image).enhance(fx.brightness)
    image = ImageEnhance.Contrast(image).enhance(fx.contrast)
    image = ImageEnhance.Color(image).enhance(0.0 if fx.grey else fx.saturation)
    size = image.size[0]
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    a = np.radians(fx.light_angle)
    light = 1 + fx.light_strength * 2 * (ramp[None, :] * np.cos(a) + ramp[:, None] * np.sin(a))
    light *= 1 - fx.vignette * 2 * (ramp[None, :] ** 2 + ramp[:, None] ** 2)
    gain = light[..., None] * np.array(fx.cast, np.float32)
    pixels = np.asarray(image, np.float32) * gain
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if fx.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(fx.blur * size / 128))
    if fx.sharpen > 0:
        image = image.filter(ImageFilter.UnsharpMask(size / 128, round(100 * fx.sharpen), 2))
    if fx.noise > 0:
        rng = np.random.default_rng(fx.seed)
        noise = rng.standard_normal((size, size, 3), dtype=np.float32) * fx.noise
        pixels = np.asarray(image, np.float32) + noise
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return image
