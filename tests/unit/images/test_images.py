"""Decoding: unusual but valid images become upright RGB; broken ones give a reason, never a crash."""

import numpy as np
import pytest
from PIL import Image

from clip_aesthetics.data.sample_data import TRAPS_EMBEDDED, TRAPS_SKIPPED
from clip_aesthetics.images.decode import ImageError, decode_rgb, load_rgb


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


@pytest.mark.parametrize("mode, value, expected", [
    ("I;16", 4096, 16),  # 4096/65535 of full scale: dark stays dark
    ("I;16", 65535, 255),
    ("I", 32768, 128),
    ("F", 0.25, 64),
    ("F", 1.0, 255),
])
def test_wide_grayscale_is_scaled_by_its_type_range(tmp_path, mode, value, expected):
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    image = Image.fromarray(np.full((6, 6), value, dtype=dtype))
    if mode == "I":
        image = image.convert("I")
    path = tmp_path / ("a.png" if mode == "I;16" else "a.tif")  # 32-bit int and float need TIFF
    image.save(path)
    rgb = np.asarray(load_rgb(path))
    assert rgb.shape == (6, 6, 3) and (rgb == expected).all(), f"{mode} {value} decoded to {rgb[0, 0]}"


MEASURE_STRIP = """
import io, resource, sys
from PIL import Image
from transformers import CLIPImageProcessor
from clip_aesthetics.embedding.embed import _ImageSources
from clip_aesthetics.images.decode import decode_rgb
processor = CLIPImageProcessor()  # CLIP's own sizes: short side to 224, centre crop 224
def encoded(size):
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()
sources = _ImageSources([(0, encoded((64, 48))), (1, encoded((int(sys.argv[1]), 1)))], decode_rgb, processor, False)
sources[0]  # warm up: imports, buffers
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
key, pixels, reason, _ = sources[1]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(pixels.shape, (after - before) / 1024)
"""


@pytest.mark.parametrize("width", [6000, 16000])
def test_memory_per_image_is_bounded_whatever_the_aspect_ratio(width):
    """A 6000x1 PNG is ~100 bytes; resized as CLIP does it would be 1.3 million x 224 pixels (GBs)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", MEASURE_STRIP, str(width)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    shape, grown_mb = done.stdout.strip().rsplit(" ", 1)
    assert shape == "(224, 224, 3)"  # the 8-bit crop a decoding worker hands over
    assert float(grown_mb) < 200, f"decoding + preprocessing one {width}x1 image grew the peak RSS by {grown_mb} MB"


@pytest.mark.parametrize("short", [224, 32])
@pytest.mark.parametrize("size", [(640, 480), (480, 640), (225, 224), (30, 20), (1, 5), (2000, 251)])
def test_direct_clip_pixels_equal_the_image_processors(short, size):
    """The embedding path computes CLIP's model input itself (faster); it must be the processor's, exactly."""
    from transformers import CLIPImageProcessor

    from clip_aesthetics.images.pixels import ModelPixels

    processor = CLIPImageProcessor(size={"shortest_edge": short}, crop_size={"height": short, "width": short})
    pixels = ModelPixels(processor)
    assert pixels.fast
    image = Image.fromarray(np.random.default_rng(size[0]).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    expected = processor(images=image, return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(pixels(image), expected, atol=1e-5)


def test_a_processor_configured_otherwise_is_called_as_it_is():
    from transformers import CLIPImageProcessor

    from clip_aesthetics.images.pixels import ModelPixels

    processor = CLIPImageProcessor(do_center_crop=False)
    pixels = ModelPixels(processor)
    image = Image.new("RGB", (300, 200), (10, 200, 30))
    assert not pixels.fast
    np.testing.assert_array_equal(pixels(image), processor(images=image, return_tensors="np")["pixel_values"][0])


@pytest.mark.parametrize("size, decoded", [((1000, 700), (500, 350)), ((448, 600), (224, 300)),
                                           ((447, 600), (447, 600)), ((4000, 3000), (500, 375)),
                                           ((3000, 4000), (375, 500))])
def test_reduced_decoding_keeps_the_short_side_at_least_the_target(tmp_path, size, decoded):
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    assert load_rgb(path, min_short=224).size == decoded
    assert decode_rgb(path.read_bytes(), min_short=224).size == decoded
    assert load_rgb(path).size == size, "without min_short every image is decoded whole"


def test_reduced_decoding_leaves_other_formats_whole_and_keeps_orientation(tmp_path):
    Image.new("RGB", (1000, 800), (10, 200, 30)).save(tmp_path / "a.png")
    assert load_rgb(tmp_path / "a.png", min_short=224).size == (1000, 800)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (1000, 800), (10, 200, 30)).save(tmp_path / "b.jpg", exif=exif)
    assert load_rgb(tmp_path / "b.jpg", min_short=224).size == (400, 500)
