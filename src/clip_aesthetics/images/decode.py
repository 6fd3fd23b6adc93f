"""Image file or bytes -> RGB PIL image, or an ImageError whose message is the reason it was skipped."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# 8,000 x 8,000: far above any AVA photo (they are at most a few megapixels) and small enough
# that a hostile file cannot make a decoding worker allocate gigabytes.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}  # what counts as an image file
MAX_PIXELS = 64_000_000

# What Pillow raises on a corrupt or hostile file: truncated data and bad headers (OSError),
# broken PNG chunks (SyntaxError), bad structures (struct.error, ValueError, EOFError), and
# files far above its own pixel limit (DecompressionBombError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


# Full scale of each wide grayscale mode: 16-bit integers (Pillow opens 16-bit PNGs as I or I;16) and
# floats, which are taken as 0-1 intensities.
_WIDE_GREY_RANGE = {"I": 65535.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "F": 1.0}

# CLIP resizes the short side to its input size and keeps only the centre square, so an extreme strip
# (6000x1 becomes 1.3 million x 224 pixels, gigabytes as floats) is cut to its centre first: long side at
# most this multiple of the short side. Photos up to 8:1 (panoramas included) are left untouched; beyond,
# CLIP still sees the same centre, sampled up to a pixel apart. Memory per image stays a few MB.
MAX_ASPECT = 8.0


class ImageError(Exception):
    """An image that cannot be used; str(error) is the reason recorded beside its id."""


def load_rgb(path: Path, max_pixels: int = MAX_PIXELS, min_short: int | None = None) -> Image.Image:
    """Read one file into an upright RGB image (see `_to_rgb` for `min_short`)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError("missing file") from None
    except OSError as error:
        raise ImageError(f"unreadable file: {error.strerror or error}") from None
    if size == 0:
        raise ImageError("empty file")
    return _decode(lambda: Image.open(path), max_pixels, min_short)


def decode_rgb(data: bytes, max_pixels: int = MAX_PIXELS, min_short: int | None = None) -> Image.Image:
    """Decode encoded image bytes (JPEG, PNG, ...) into an upright RGB image."""
    if not data:
        raise ImageError("empty image data")
    return _decode(lambda: Image.open(io.BytesIO(data)), max_pixels, min_short)


def load_source(source, max_pixels: int = MAX_PIXELS, min_short: int | None = None) -> Image.Image:
    """A file (path) or encoded bytes (a labels table's image column) -> an upright RGB image."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_rgb(bytes(source), max_pixels, min_short)
    return load_rgb(source, max_pixels, min_short)


def from_image(image: Image.Image, max_pixels: int = MAX_PIXELS, min_short: int | None = None) -> Image.Image:
    """A PIL image in memory -> an upright RGB copy, converted as a file's pixels are (the caller's image is left
    as it is). Decoded in full: `min_short` applies to files and bytes only."""
    try:
        return _to_rgb(image.copy(), max_pixels)
    except (OSError, ValueError) as error:
        raise ImageError(f"unreadable image ({type(error).__name__}: {error})") from None


ACCEPTED = "a path (str or pathlib.Path), encoded image bytes or a PIL image"


def load_any(source, max_pixels: int = MAX_PIXELS, min_short: int | None = None) -> Image.Image:
    """A path, encoded bytes or a PIL image -> an upright RGB image (the Python API's mixed inputs); anything else
    is that item's error, naming what is accepted."""
    if isinstance(source, Image.Image):
        return from_image(source, max_pixels, min_short)
    if isinstance(source, str):
        source = Path(source)
    if not isinstance(source, (Path, bytes, bytearray, memoryview)):
        raise ImageError(f"an item of type {type(source).__name__} ({str(source)[:40]!r}): expected {ACCEPTED}")
    return load_source(source, max_pixels, min_short)


def as_items(images) -> list:
    """The Python API's input as a list: one image (a path, bytes, a PIL image) is one item, never its characters
    or bytes; a list, tuple or other iterable of them, as it is."""
    if isinstance(images, (str, Path, bytes, bytearray, memoryview, Image.Image)):
        return [images]
    try:
        return list(images)
    except TypeError:
        raise TypeError(f"score() takes {ACCEPTED}, or a list of them; got {type(images).__name__}") from None


def _decode(open_image, max_pixels: int, min_short: int | None = None) -> Image.Image:
    """Open, check and convert; every decoder failure becomes an ImageError with its reason."""
    try:
        with open_image() as image:
            return _to_rgb(image, max_pixels, min_short)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can decode") from None
    except _DECODE_ERRORS as error:
        raise ImageError(_describe(error)) from None


def _to_rgb(image: Image.Image, max_pixels: int, min_short: int | None = None) -> Image.Image:
    """Refuse oversized images before decoding, then apply EXIF orientation and convert any mode.

    With `min_short`, a JPEG is decoded at the smallest of 1/2, 1/4, 1/8 of its size (libjpeg's DCT
    scaling, several times less work on large photos) whose short side is still at least `min_short`;
    smaller JPEGs and other formats are decoded whole.
    """
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels:,}")
    if min_short and image.format == "JPEG":
        image.draft(None, (min_short, min_short))  # Pillow keeps both sides >= these (scale <= short // min_short)
    image.load()  # decode now, so truncation surfaces here with a reason
    image = ImageOps.exif_transpose(image)
    if image.mode in _WIDE_GREY_RANGE:
        # 16-bit or float grayscale: scale by the type's range (not the image's own maximum), so dark stays dark.
        values = np.asarray(image, dtype=np.float64) / _WIDE_GREY_RANGE[image.mode]
        image = Image.fromarray(np.rint(values.clip(0, 1) * 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels carry arbitrary colour; show them on white, as a viewer would.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def crop_long_side(image: Image.Image, max_ratio: float = MAX_ASPECT) -> Image.Image:
    """The centre of an image whose long side exceeds `max_ratio` x its short side; others unchanged."""
    width, height = image.size
    short = min(width, height)
    keep = max(1, int(round(short * max_ratio)))
    if max(width, height) <= keep:
        return image
    if width > height:
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    top = (height - keep) // 2
    return image.crop((0, top, width, top + keep))


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    if "truncated" in text.lower():
        return f"truncated image ({text})"
    return f"undecodable image ({type(error).__name__}: {text})"
