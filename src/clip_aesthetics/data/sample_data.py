"""Seed + size -> an AVA-format folder (AVA.txt, image/<id>.jpg, official test list) a probe can learn from.

Each image's true mean score is a fixed function of what it shows (brightness, colourfulness and a
warm/cool tint), and its vote counts are drawn around that mean, so a probe on any reasonable image
embedding can rank them. With `traps=True` the folder also holds the files that break naive loaders.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from clip_aesthetics.data.ava import OFFICIAL_TEST_LIST


def _picture(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, float]:
    """An image and the 1-10 mean score its visible properties earn."""
    brightness = rng.uniform(0.15, 0.9)
    colourful = rng.uniform(0.0, 1.0)
    warmth = rng.uniform(-1.0, 1.0)
    base = np.array([brightness + 0.25 * warmth * colourful, brightness, brightness - 0.25 * warmth * colourful])
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    # A soft diagonal gradient and a blob, scaled by colourfulness, over a little noise.
    gradient = (x + y)[..., None] * colourful * np.array([0.5, -0.2, -0.4])
    blob = np.exp(-(((x - rng.uniform(0.2, 0.8)) ** 2) + (y - rng.uniform(0.2, 0.6)) ** 2) / 0.02)[..., None]
    tint = rng.uniform(-0.5, 0.5, 3)  # drawn before the noise: the generated images depend on this order
    pixels = base + gradient * 0.6 + blob * colourful * tint + rng.normal(0, 0.03, (height, width, 3))
    score = 5.4 + 1.6 * (brightness - 0.52) / 0.22 * 0.45 + 0.9 * (colourful - 0.5) + 0.35 * warmth
    return (np.clip(pixels, 0, 1) * 255).astype(np.uint8), float(np.clip(score, 1.5, 9.5))


def _sized_picture(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """`_picture` at a size drawn within 20% of `size`."""
    width, height = int(size[0] * rng.uniform(0.8, 1.2)), int(size[1] * rng.uniform(0.8, 1.2))
    return _picture(rng, width, height)


def _votes(rng: np.random.Generator, mean: float) -> np.ndarray:
    """Vote counts c1..c10 from 60-240 voters whose scores scatter around `mean`."""
    voters = int(rng.integers(60, 240))
    scores = np.clip(np.rint(rng.normal(mean, 1.3, voters)), 1, 10).astype(int)
    return np.bincount(scores, minlength=11)[1:]


def write_sample_ava(folder: Path, n_images: int = 300, seed: int = 0, traps: bool = False,
                     size: tuple[int, int] = (96, 72)) -> Path:
    """Write an AVA-format dataset of `n_images` JPEGs (plus trap files when asked) into `folder`."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    images = folder / "image"
    images.mkdir(parents=True, exist_ok=True)
    ids = rng.choice(np.arange(1000, 1_000_000), size=n_images, replace=False)
    rows = []
    for index, image_id in enumerate(ids, start=1):
        pixels, mean = _sized_picture(rng, size)
        Image.fromarray(pixels).save(images / f"{image_id}.jpg", quality=90)
        rows.append((index, int(image_id), _votes(rng, mean)))
    if traps:
        rows += _write_traps(rng, images, start_index=len(rows) + 1)
    lines = [" ".join(map(str, [index, image_id, *votes, 0, 0, 1])) for index, image_id, votes in rows]
    (folder / "AVA.txt").write_text("\n".join(lines) + "\n")
    test_list = folder / OFFICIAL_TEST_LIST
    test_list.parent.mkdir(parents=True, exist_ok=True)
    test_ids = sorted(int(i) for i in rng.choice(ids, size=max(1, n_images // 10), replace=False))
    test_list.write_text("".join(f"{i}\n" for i in test_ids))
    return folder


# Trap files: (AVA id, what the loader must do with it). Ids below 1000 never clash with the images above.
TRAPS_EMBEDDED = {11: "grayscale", 12: "CMYK JPEG", 13: "palette PNG with transparency saved as .jpg",
                  14: "EXIF-rotated JPEG", 15: "PNG saved as .jpg", 16: "16-bit grayscale PNG saved as .jpg"}
TRAPS_SKIPPED = {21: "truncated", 22: "empty", 23: "missing", 24: "not an image", 25: "too large"}
TRAP_NO_VOTES = 31


def _write_traps(rng: np.random.Generator, images: Path, start_index: int) -> list:
    pixels, _ = _picture(rng, 80, 60)
    rgb = Image.fromarray(pixels)
    rgb.convert("L").save(images / "11.jpg")
    rgb.convert("CMYK").save(images / "12.jpg")
    palette = rgb.convert("P")
    palette.info["transparency"] = 0
    palette.save(images / "13.jpg", format="PNG", transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    rgb.save(images / "14.jpg", exif=exif)
    rgb.save(images / "15.jpg", format="PNG")
    Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257)).save(images / "16.jpg", format="PNG")
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG")
    (images / "21.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (images / "22.jpg").write_bytes(b"")
    (images / "24.jpg").write_text("this is not an image\n")
    _write_huge_png(images / "25.jpg", 9000, 9000)
    rows = [(start_index + k, image_id, _votes(rng, 5.5))
            for k, image_id in enumerate([*TRAPS_EMBEDDED, *TRAPS_SKIPPED])]
    rows.append((start_index + len(rows), TRAP_NO_VOTES, np.zeros(10, dtype=int)))
    return rows


def _write_huge_png(path: Path, width: int, height: int) -> None:
    """A valid PNG header announcing width x height pixels (a decompression bomb), without the pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def write_sample_ratings(folder: Path, n_images: int = 120, seed: int = 1, size: tuple[int, int] = (80, 64)) -> Path:
    """A Hugging Face imagefolder of your-own-ratings kind: images/<name>.jpg and metadata.jsonl with
    `file_name` and `rating` on a 1-5 scale (the generated 1-10 mean stretched onto it, two decimals)."""
    import json

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(n_images):
        pixels, mean = _sized_picture(rng, size)
        name = f"images/photo_{index:04d}.jpg"
        Image.fromarray(pixels).save(folder / name, quality=90)
        rating = float(np.clip(round(3 + (mean - 5.4) * 1.1 + rng.normal(0, 0.15), 2), 1, 5))
        lines.append(json.dumps({"file_name": name, "rating": rating}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def write_sample_votes(folder: Path, n_images: int = 300, seed: int = 3, size: tuple[int, int] = (80, 64),
                      bins: int = 10) -> Path:
    """A labels table of vote counts (votes.csv: image, c1..c<bins>) whose raters disagree more on some images
    than on others, independently of the mean: each image's mean comes from `_picture`, its spread (the std of
    its raters' votes, 0.4-2.4) from a green tint the image shows. What a distribution head learns from."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = ["image," + ",".join(f"c{k}" for k in range(1, bins + 1))]
    for index in range(n_images):
        pixels, mean = _sized_picture(rng, size)
        spread = rng.uniform(0.4, 2.4)
        tinted = pixels.astype(np.float64)
        tinted[..., 1] += 70.0 * (spread - 1.4)
        Image.fromarray(np.clip(tinted, 0, 255).astype(np.uint8)).save(folder / "images" / f"{index:04d}.jpg",
                                                                        quality=90)
        centre = 1 + (mean - 1) * (bins - 1) / 9  # the 1-10 mean onto 1..bins
        votes = np.clip(np.rint(rng.normal(centre, spread * (bins - 1) / 9, 200)), 1, bins).astype(int)
        lines.append(f"images/{index:04d}.jpg," + ",".join(map(str, np.bincount(votes, minlength=bins + 1)[1:])))
    (folder / "votes.csv").write_text("\n".join(lines) + "\n")
    return folder


def write_sample_pairs(folder: Path, n_images: int = 150, n_pairs: int = 1200, seed: int = 4, flip: float = 0.1,
                       size: tuple[int, int] = (80, 64)) -> Path:
    """A pair table of generated preferences (pairs.csv: image_a, image_b, preference as a / b / tie) over images
    whose true 1-10 scores are known (scores.csv: image, score): image_a wins when it truly scores higher, except
    for a `flip` share of label noise; pairs within 0.05 of each other are ties."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    scores = []
    for index in range(n_images):
        pixels, mean = _sized_picture(rng, size)
        Image.fromarray(pixels).save(folder / "images" / f"{index:04d}.jpg", quality=90)
        scores.append(mean)
    (folder / "scores.csv").write_text("image,score\n" + "".join(f"images/{i:04d}.jpg,{s!r}\n"
                                                                for i, s in enumerate(scores)))
    lines = ["image_a,image_b,preference"]
    for _ in range(n_pairs):
        a, b = (int(i) for i in rng.choice(n_images, size=2, replace=False))
        gap = scores[a] - scores[b]
        winner = "tie" if abs(gap) < 0.05 else ("a" if gap > 0 else "b")
        if winner != "tie" and rng.uniform() < flip:
            winner = "b" if winner == "a" else "a"
        lines.append(f"images/{a:04d}.jpg,images/{b:04d}.jpg,{winner}")
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    return folder
