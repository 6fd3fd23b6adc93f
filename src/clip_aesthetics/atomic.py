"""Files written whole or not at all: a hidden temporary name beside the target, renamed over it at the end."""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A hidden temporary name beside `path` to write to; renamed to `path` only when the block ends without an
    error (a reader never sees half a file; a crash leaves at most a `.*.tmp` file)."""
    tmp = Path(path).with_name(f".{Path(path).name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomically(path: Path, payload: bytes) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
