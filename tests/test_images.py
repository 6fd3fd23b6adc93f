"""Decoding: unusual but valid images become upright RGB; broken ones give a reason, never a crash."""

import numpy as np
import pytest
from PIL import Image

from clip_aesthetics.images import ImageError, decode_rgb, load_rgb
from clip_aesthetics.sample_data import TRAPS_EMBEDDED, TRAPS_SKIPPED


@pytest.mark.parametrize("image_id", sorted(TRAPS_EMBEDDED))
def test_unusual_valid_images_become_rgb(sample_ava, image_id):
    image = load_rgb(sample_ava / "image" / f"{image_id}.jpg")
    assert image.mode == "RGB"
    assert np.asarray(image).std() > 1, f"{TRAPS_EMBEDDED[image_id]} decoded to a flat image"


def test_exif_orientation_is_applied(sample_ava):
    assert load_rgb(sample_ava / "image" / "11.jpg").size == (80, 60)
    assert load_rgb(sample_ava / "image" / "14.jpg").size == (60, 80), "EXIF orientation 6 turns 80x60 upright"


def test_transparent_pixels_are_shown_on_white(tmp_path):
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    image.save(tmp_path / "a.png")
    rgb = np.asarray(load_rgb(tmp_path / "a.png"))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[1, 1]) == (255, 0, 0)


def test_sixteen_bit_grayscale_keeps_its_contrast(sample_ava):
    values = np.asarray(load_rgb(sample_ava / "image" / "16.jpg"))
    assert values.min() < 200 and values.max() > 100, "16-bit values must not all clip to white"


@pytest.mark.parametrize(
    "image_id, reason",
    [(21, "truncated image"), (22, "empty file"), (23, "missing file"), (24, "not an image"), (25, "image too large")],
)
def test_broken_files_raise_with_their_reason(sample_ava, image_id, reason):
    assert image_id in TRAPS_SKIPPED
    with pytest.raises(ImageError, match=reason):
        load_rgb(sample_ava / "image" / f"{image_id}.jpg")


def test_bytes_decode_like_files(sample_ava):
    path = sample_ava / "image" / "14.jpg"
    assert np.array_equal(np.asarray(decode_rgb(path.read_bytes())), np.asarray(load_rgb(path)))
    with pytest.raises(ImageError, match="empty"):
        decode_rgb(b"")
    with pytest.raises(ImageError, match="truncated"):
        decode_rgb((sample_ava / "image" / "21.jpg").read_bytes())
