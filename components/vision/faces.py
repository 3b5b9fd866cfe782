"""Real faces for the generated people: scikit-image's bundled LFW sample.

Called by ``components.vision.figure_drawing`` for people seen from the front, when the
scene spec asks for real faces (``SceneSpec.real_faces``). Drawn faces (two dots and a
line) are the part of a person that real photographs show most often and that a cartoon
renders worst. scikit-image ships ``lfw_subset.npy`` (100 grey 25x25 face crops from
Labeled Faces in the Wild, then 100 non-face crops), read from the installed package:
nothing is downloaded. Each face is tinted with the figure's skin tone, so its features
bring the texture and the tone stays the figure's; the held-out split uses faces training
never sees (``TEST_FACES``). Measured, they did not raise accuracy on real photos (README).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from components.vision.backgrounds import sample_data

RGB = tuple[int, int, int]
FACE_COUNT = 100  # the sample's first 100 crops are faces, the rest are not
TRAIN_FACES = tuple(range(0, 70))
TEST_FACES = tuple(range(70, FACE_COUNT))
MIN_HEAD_RADIUS = 6  # drawing pixels (2 per image pixel); a smaller head gets drawn features


@functools.cache
def _faces() -> np.ndarray:
    with sample_data("lfw_subset.npy").open("rb") as f:
        crops = np.load(f)
    return np.asarray(crops[:FACE_COUNT], np.float32)


def face_patch(index: int, skin: RGB, width: int, height: int) -> tuple[Image.Image, Image.Image]:
    """Face ``index`` at ``width`` x ``height`` pixels in the skin tone, and its soft oval
    mask: the features' light and shade multiply the tone (mean brightness kept)."""
    grey = _faces()[index]
    lum = grey / max(float(grey[6:19, 6:19].mean()), 1e-3)  # normalised on the face's centre
    factor = np.clip(0.35 + 0.65 * lum, 0.2, 1.5)
    rgb = np.clip(factor[..., None] * np.asarray(skin, np.float32), 0, 255).astype(np.uint8)
    patch = Image.fromarray(rgb, "RGB").resize((width, height), Image.Resampling.BILINEAR)
    mask = Image.new("L", (width, height), 0)
    inset_x, inset_y = 0.08 * width, 0.06 * height
    ImageDraw.Draw(mask).ellipse([inset_x, inset_y, width - inset_x, height - inset_y], 255)
    mask = mask.filter(ImageFilter.GaussianBlur(max(0.5, 0.08 * min(width, height))))
    return patch, mask
