"""Image decoding: the one function that turns a file or an array into model-ready pixels.

Training preprocessing (the Beam image pipeline), evaluation and the MLflow model's
``predict`` all call :func:`load_image`, so an image is decoded, converted and resized in
exactly one way wherever it is used; a second resize path would silently shift the input
distribution between training and deployment.

Decisions, each made once here:

- Decoding is Pillow's, first frame only for animated GIF/WebP. EXIF orientation is not
  applied: pixels are used as stored, as ``tf.image.decode_jpeg`` (the MLPerf Tiny and VWW
  reference pipelines) and a camera feeding the firmware do.
- Colour is Pillow's ``convert("RGB")`` or ``convert("L")`` (ITU-R 601-2 luma); an alpha
  channel is dropped, not composited. 16-bit and float images are refused, because Pillow
  would clip them to 8 bits instead of scaling them.
- Resizing is ``Image.Resampling.BILINEAR`` and only when the size differs. When shrinking,
  Pillow widens the bilinear support with the scale factor (an antialiased resize), so it
  does not match ``tf.image.resize(..., antialias=False)``; whoever needs the same pixels
  must call this function, not reimplement it.
- JPEG draft mode (decoding at 1/2, 1/4, 1/8 scale) is not used: it would make the result
  depend on the requested size in a second, codec-specific way.
- Truncated files are errors. Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` would fill the
  missing part with grey; if any code has switched it on, loading refuses to run.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from components.errors import ComponentError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
RESAMPLE = Image.Resampling.BILINEAR
_MODES = {3: "RGB", 1: "L"}
_WIDE_MODES = ("I", "F")  # 32-bit int, float, and every "I;16..." variant


def has_image_suffix(path: str | os.PathLike[str]) -> bool:
    """Whether a file name ends in one of ``IMAGE_SUFFIXES`` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def load_image(
    source: str | os.PathLike[str] | np.ndarray, size: tuple[int, int], channels: int
) -> np.ndarray:
    """Decode ``source`` to uint8 pixels of shape ``(height, width, channels)``.

    ``source`` is a path to anything Pillow decodes, or a uint8 array (HxWx3, HxWx1 or
    HxW). ``size`` is ``(height, width)``; ``channels`` is 3 (RGB) or 1 (grayscale).
    Raises ComponentError naming the file (or the array) and what is wrong with it.
    """
    height, width, mode = _check_request(size, channels)
    if isinstance(source, np.ndarray):
        image = _from_array(source)
    elif isinstance(source, str | os.PathLike):
        image = _open(Path(source))
    else:
        raise ComponentError(
            f"load_image: source must be a path or a numpy array, not {type(source).__name__}"
        )
    image = image.convert(mode)
    if image.size != (width, height):
        image = image.resize((width, height), resample=RESAMPLE)
    pixels = np.array(image, dtype=np.uint8)
    return pixels.reshape(height, width, channels)


def _check_request(size: tuple[int, int], channels: int) -> tuple[int, int, str]:
    """The (height, width) as ints and the Pillow mode for ``channels``."""
    if channels not in _MODES:
        raise ComponentError(f"load_image: channels must be 3 (RGB) or 1 (gray), not {channels}")
    dims = tuple(size) if isinstance(size, tuple | list) else ()
    if len(dims) != 2 or not all(isinstance(n, int | np.integer) and n > 0 for n in dims):
        raise ComponentError(f"load_image: size must be (height, width), both > 0, not {size!r}")
    return int(dims[0]), int(dims[1]), _MODES[channels]


def _from_array(array: np.ndarray) -> Image.Image:
    """Wrap an HxW, HxWx1 or HxWx3 uint8 array; any other dtype or shape is refused."""
    if array.dtype != np.uint8:
        raise ComponentError(f"load_image: array must be uint8, not {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ComponentError(
            f"load_image: array must be HxWx3, HxWx1 or HxW, not shape {array.shape}"
        )
    if 0 in array.shape:
        raise ComponentError(f"load_image: array is empty (shape {array.shape})")
    return Image.fromarray(np.ascontiguousarray(array))  # uint8: HxW -> "L", HxWx3 -> "RGB"


def _open(path: Path) -> Image.Image:
    """Open and fully decode one file, turning every Pillow failure into a ComponentError."""
    _check_file(path)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ComponentError(
            f"cannot load {path}: PIL.ImageFile.LOAD_TRUNCATED_IMAGES was switched on by other "
            "code, so truncated images would load silently; switch it off"
        )
    try:
        with Image.open(path) as image:
            image.load()  # decode now, inside the try, so truncation surfaces here
            if image.mode.startswith(_WIDE_MODES):
                raise ComponentError(
                    f"image {path} has {image.mode} pixels (16-bit or float); convert it to "
                    "8-bit first, Pillow would clip it"
                )
            return image.copy()
    except Image.UnidentifiedImageError as e:
        raise ComponentError(f"{path} is not an image Pillow can decode") from e
    except (FileNotFoundError, PermissionError) as e:
        raise ComponentError(f"cannot read image {path}: {e}") from e
    except Image.DecompressionBombError as e:
        raise ComponentError(f"image {path} is too large to decode safely: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ComponentError(f"image {path} is truncated or corrupt: {e}") from e


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ComponentError(f"image {path} does not exist")
    if not path.is_file():
        raise ComponentError(f"image {path} is not a file")
    if path.stat().st_size == 0:
        raise ComponentError(f"image {path} is empty (0 bytes)")
