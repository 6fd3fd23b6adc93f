"""The `files` input format: image files (and the image files in folders), one sample per file, keyed by its path.

The sample carries the file's path, not its bytes: the scorer reads and decodes it where it decodes (worker
processes beside the model, with reduced decoding where the model asks for it), so a folder of a million photos is
never in memory. Missing, empty or undecodable files get their reason when they are scored."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from clip_aesthetics.images.decode import IMAGE_SUFFIXES
from clip_aesthetics.scoring.samples import InputReader, Sample


def read_file(path: str, image_column: str = "", keep_members: bool = False, name: str | None = None
              ) -> Iterator[Sample]:
    yield Sample(str(path), image=Path(path))


def from_bytes(key: str, data: bytes) -> Sample:
    """A file's sample from its contents (an engine that lists and reads files itself, Spark)."""
    return Sample(key, image=bytes(data)) if data else Sample(key, error="empty file")


IMAGE_FILES = InputReader(tuple(sorted(IMAGE_SUFFIXES)), read_file, "image files, and the image files in folders "
                          "(recursively): one row per file, keyed by its path", per_file=True, from_bytes=from_bytes)


def collect(inputs) -> list[Path]:
    """Image files as given, and every image file under each folder (recursively, sorted), each once."""
    from clip_aesthetics.errors import ScoringInputError
    from clip_aesthetics.scoring.samples import plan

    found = plan([str(item) for item in inputs])
    if found.containers:
        raise ScoringInputError(f"{found.containers[0]}: expected image files or folders of them")
    return [Path(p) for p in found.files]
