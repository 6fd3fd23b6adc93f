"""Content digests of files: one rule for every file the project identifies by its bytes (head files, a model's
head and spec, a backbone folder's weights)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, hex, read in blocks (any size)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
