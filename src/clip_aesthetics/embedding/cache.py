"""Embedding cache on disk: verified shards of (image ids, float16 embeddings, file stamps) plus failures with reasons.

One cache folder per (CLIP model id + revision, image folder, precision, decoding). The target normalisation is
not part of the key: an embedding does not depend on it. Each image's file stamp (size, mtime) is
stored, so a replaced file is embedded again; a failed image is tried again on the next embed; for
every image the newest answer wins. Shards are written atomically under a unique name that carries
their checksum; a shard that does not match it (truncated, garbage, a flipped byte) is set aside in
`damaged/` with a warning and never read, so its images count as missing and are embedded again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import secrets
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from clip_aesthetics.atomic import write_atomically
from clip_aesthetics.errors import UserError

MISSING_STAMP = (-1, -1)
_ARRAYS = ("ids", "embeddings", "stamps", "failed_ids", "failed_stamps", "failed_reasons")
# shard-<time ns>-<pid>-<random>-<sha256 prefix>.npz; older caches have shard-<time ns>.npz (zip CRCs only).
_CHECKSUM = re.compile(r"^shard-\d+-\d+-[0-9a-f]+-(?P<sha>[0-9a-f]{16})\.npz$")
_log = logging.getLogger(__name__)


class CacheError(UserError, RuntimeError):
    """The cache cannot be read as it is; the message says which file and what to do."""


class DamagedShard(Exception):
    """A shard whose bytes do not match its checksum or do not parse; str(error) says how."""


def file_stamp(path: Path) -> tuple[int, int]:
    """(size, mtime in ns) of a file, or MISSING_STAMP when there is none (or the image is bytes, not a file)."""
    if isinstance(path, (bytes, bytearray, memoryview)):
        return MISSING_STAMP
    try:
        info = os.stat(path)
    except OSError:
        return MISSING_STAMP
    return info.st_size, info.st_mtime_ns


@dataclass
class CachedEmbeddings:
    """Rows of `embeddings` (float16, as stored) belong to `ids`; `failures` has image_id and reason."""

    ids: np.ndarray
    embeddings: np.ndarray
    failures: pd.DataFrame


@dataclass(frozen=True)
class Answer:
    """The newest outcome for one image: the stamp it was made from, and the reason when it failed."""

    stamp: tuple[int, int]
    reason: str | None


class EmbeddingCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.set_aside: list[Path] = []  # damaged files moved to damaged/ by this object

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def open(self, manifest: dict) -> None:
        """Create the folder, or check that an existing one was made for the same model and images."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.manifest_path.exists():
            try:
                stored = json.loads(self.manifest_path.read_text())
            except (ValueError, OSError) as error:  # truncated or garbage: the folder's key still names the model
                self._set_aside(self.manifest_path, f"unreadable ({error})")
            else:
                if stored != manifest:
                    raise CacheError(
                        f"embedding cache {self.root} was written for {stored}, not {manifest}; "
                        "remove the folder or choose another cache_dir"
                    )
                return
        write_atomically(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())

    def manifest(self) -> dict:
        if not self.manifest_path.exists():
            raise CacheError(f"no embedding cache at {self.root}")
        try:
            return json.loads(self.manifest_path.read_text())
        except (ValueError, OSError) as error:
            raise CacheError(f"{self.manifest_path} is damaged ({error}); run `clip-aesthetics embed` again with the "
                             "same clip and ava_dir: it sets the file aside and rewrites it") from None

    def shards(self) -> list[Path]:
        return sorted(self.root.glob("shard-*.npz"))

    def verified_shards(self) -> Iterator[dict[str, np.ndarray]]:
        """Every intact shard's arrays, oldest first; a damaged shard is set aside (with a warning), never read."""
        for path in self.shards():
            try:
                yield read_shard(path)
            except DamagedShard as error:
                self._set_aside(path, str(error))

    def answers(self) -> dict[int, Answer]:
        """The newest answer (embedding or failure) the cache holds for each image."""
        latest: dict[int, Answer] = {}
        for data in self.verified_shards():
            for image_id, stamp in zip(data["ids"].tolist(), data["stamps"].tolist(), strict=True):
                latest[image_id] = Answer(tuple(stamp), None)
            for image_id, stamp, reason in zip(data["failed_ids"].tolist(), data["failed_stamps"].tolist(),
                                               data["failed_reasons"].tolist(), strict=True):
                latest[image_id] = Answer(tuple(stamp), reason)
        return latest

    def missing(self, items: list[tuple[int, Path]], answers: dict[int, Answer] | None = None,
                stamps: bool = True) -> list[tuple[int, Path]]:
        """The (id, source) pairs to embed: no answer yet, a failure (tried again), or (with `stamps`, for a
        cache keyed by file) a file changed since. A cache keyed by content never goes stale."""
        answers = self.answers() if answers is None else answers
        return [(image_id, path) for image_id, path in items
                if (answer := answers.get(image_id)) is None or answer.reason is not None
                or (stamps and answer.stamp != file_stamp(path))]

    def add_shard(self, ids, embeddings, stamps, failed_ids, failed_stamps, reasons) -> Path:
        """Write one shard atomically under a name no concurrent writer can take; rows align with their arrays."""
        arrays = {
            "ids": np.asarray(ids, dtype=np.int64),
            "embeddings": np.asarray(embeddings, dtype=np.float16),
            "stamps": np.asarray(stamps, dtype=np.int64).reshape(-1, 2),
            "failed_ids": np.asarray(failed_ids, dtype=np.int64),
            "failed_stamps": np.asarray(failed_stamps, dtype=np.int64).reshape(-1, 2),
            "failed_reasons": np.asarray(reasons, dtype=np.str_),
        }
        if len(arrays["ids"]) != len(arrays["embeddings"]) or len(arrays["failed_ids"]) != len(reasons):
            raise ValueError("shard rows out of line: every id needs exactly one embedding or one reason")
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        payload = buffer.getvalue()
        checksum = hashlib.sha256(payload).hexdigest()[:16]
        name = f"shard-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}-{checksum}.npz"
        path = self.root / name
        write_atomically(path, payload)
        return path

    def load(self) -> CachedEmbeddings:
        """Every image's newest answer: its embedding (float16, as stored) or its failure reason."""
        ids, is_ok, embeddings, reasons = [], [], [], []
        for data in self.verified_shards():
            ids += [data["ids"], data["failed_ids"]]
            is_ok += [np.ones(len(data["ids"]), bool), np.zeros(len(data["failed_ids"]), bool)]
            embeddings.append(data["embeddings"])
            reasons.append(data["failed_reasons"])
        dim = int(self.manifest().get("embedding_dim", 0))
        all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        ok = np.concatenate(is_ok) if is_ok else np.zeros(0, bool)
        # Shards in write order, each one's rows in order: the last row of an id is its newest answer.
        _, last_from_end = np.unique(all_ids[::-1], return_index=True)
        latest = np.sort(len(all_ids) - 1 - last_from_end)
        ok_rows = (np.cumsum(ok) - 1)[latest[ok[latest]]]
        failed_rows = (np.cumsum(~ok) - 1)[latest[~ok[latest]]]
        stacked = np.concatenate(embeddings) if embeddings else np.zeros((0, dim), np.float16)
        del embeddings
        if len(ok_rows) != len(stacked) or np.any(np.diff(ok_rows) != 1):
            stacked = stacked[ok_rows]  # only when some rows were superseded: avoid a copy otherwise
        all_reasons = np.concatenate(reasons) if reasons else np.zeros(0, np.str_)
        return CachedEmbeddings(
            ids=all_ids[ok][ok_rows],
            embeddings=stacked,
            failures=pd.DataFrame(
                {"image_id": all_ids[~ok][failed_rows], "reason": all_reasons[failed_rows].astype(object)}
            ),
        )

    def _set_aside(self, path: Path, why: str) -> None:
        damaged = self.root / "damaged"
        damaged.mkdir(exist_ok=True)
        target = damaged / f"{path.name}.{time.time_ns()}"
        try:
            os.replace(path, target)
        except FileNotFoundError:  # a concurrent reader set it aside first
            return
        self.set_aside.append(target)
        _log.warning("embedding cache: %s is damaged (%s); moved to %s, its images will be embedded again",
                     path, why, target)


def read_shard(path: Path) -> dict[str, np.ndarray]:
    """A shard's arrays, after checking its bytes against the checksum in its name; DamagedShard otherwise."""
    try:
        payload = path.read_bytes()
    except OSError as error:
        raise DamagedShard(f"unreadable: {error}") from None
    named = _CHECKSUM.match(path.name)
    if named and hashlib.sha256(payload).hexdigest()[:16] != named["sha"]:
        raise DamagedShard(f"checksum mismatch ({len(payload):,} bytes)")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as data:
            arrays = {name: data[name] for name in _ARRAYS}  # reading every array also checks the zip CRCs
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as error:
        raise DamagedShard(f"not a readable shard: {type(error).__name__}: {error}") from None
    if len(arrays["ids"]) != len(arrays["embeddings"]) or len(arrays["failed_ids"]) != len(arrays["failed_reasons"]):
        raise DamagedShard("rows out of line")
    return arrays
