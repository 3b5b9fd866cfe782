"""load_image: decoding, colour conversion, resizing and the errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile

from components.errors import ComponentError
from components.vision.images import IMAGE_SUFFIXES, has_image_suffix, load_image


def _pixels(height=8, width=12, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _save(path, pixels, **kwargs):
    Image.fromarray(pixels).save(path, **kwargs)
    return path


def test_png_rgb_keeps_pixels_at_same_size(tmp_path):
    pixels = _pixels()
    out = load_image(_save(tmp_path / "a.png", pixels), (8, 12), 3)
    assert out.dtype == np.uint8 and out.shape == (8, 12, 3)
    np.testing.assert_array_equal(out, pixels)


def test_grayscale_is_pillow_luma(tmp_path):
    pixels = _pixels()
    out = load_image(str(_save(tmp_path / "a.png", pixels)), (8, 12), 1)
    expected = np.array(Image.fromarray(pixels).convert("L"))[:, :, None]
    assert out.shape == (8, 12, 1)
    np.testing.assert_array_equal(out, expected)


def test_grayscale_file_to_rgb_repeats_channel(tmp_path):
    gray = _pixels()[:, :, 0]
    out = load_image(_save(tmp_path / "g.bmp", gray), (8, 12), 3)
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


def test_resize_to_height_width_with_bilinear(tmp_path):
    pixels = _pixels(20, 30)
    out = load_image(_save(tmp_path / "a.jpg", pixels, quality=95), (5, 7), 3)
    assert out.shape == (5, 7, 3)
    with Image.open(tmp_path / "a.jpg") as im:
        expected = np.array(im.convert("RGB").resize((7, 5), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out, expected)


def test_array_and_file_give_same_pixels(tmp_path):
    pixels = _pixels(20, 30)
    from_file = load_image(_save(tmp_path / "a.png", pixels), (6, 6), 1)
    np.testing.assert_array_equal(load_image(pixels, (6, 6), 1), from_file)


@pytest.mark.parametrize("shape", [(8, 12), (8, 12, 1)])
def test_gray_array_input(shape):
    array = np.arange(96, dtype=np.uint8).reshape(shape)
    out = load_image(array, (8, 12), 1)
    np.testing.assert_array_equal(out[:, :, 0], array.reshape(8, 12))


@pytest.mark.parametrize(
    "array", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros(4, np.uint8)]
)
def test_bad_array_refused(array):
    with pytest.raises(ComponentError, match="array"):
        load_image(array, (4, 4), 3)


def test_truncated_jpeg_refused(tmp_path):
    _save(tmp_path / "full.jpg", _pixels(64, 64))
    data = (tmp_path / "full.jpg").read_bytes()
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ComponentError, match=r"cut\.jpg.*truncated"):
        load_image(bad, (64, 64), 3)


def test_truncated_images_switch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ComponentError, match="LOAD_TRUNCATED_IMAGES"):
        load_image(_save(tmp_path / "a.png", _pixels()), (8, 12), 3)


def test_text_named_png_refused(tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    with pytest.raises(ComponentError, match=r"notes\.png is not an image"):
        load_image(fake, (8, 8), 3)


def test_empty_and_missing_files_refused(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ComponentError, match=r"empty\.jpg is empty"):
        load_image(tmp_path / "empty.jpg", (8, 8), 3)
    with pytest.raises(ComponentError, match=r"gone\.jpg does not exist"):
        load_image(tmp_path / "gone.jpg", (8, 8), 3)


def test_sixteen_bit_png_refused_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 1000, np.uint16)).save(path)
    with pytest.raises(ComponentError, match="16-bit"):
        load_image(path, (4, 4), 1)


@pytest.mark.parametrize("size, channels", [((8,), 3), ((0, 8), 3), ((8, 8), 4)])
def test_bad_request_refused(size, channels):
    with pytest.raises(ComponentError, match="load_image"):
        load_image(np.zeros((8, 8, 3), np.uint8), size, channels)


def test_suffixes_compare_lower_case():
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"} <= IMAGE_SUFFIXES
    assert has_image_suffix("a/B.JPG") and not has_image_suffix("a/b.txt")
