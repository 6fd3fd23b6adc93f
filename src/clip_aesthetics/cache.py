"""Embedding cache on disk: shards of (image ids, float16 embeddings, file stamps) plus failures with reasons.

One cache folder per (CLIP model id + revision, image folder). The target normalisation is not part
of the key: an embedding does not depend on it. Each image's file stamp (size, mtime) is stored, so a
replaced file is embedded again. Shards are written atomically; an interrupted embed loses at most
the shard it was filling, and the next run embeds only what no shard holds.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

MISSING_STAMP = (-1, -1)


def file_stamp(path: Path) -> tuple[int, int]:
    """(size, mtime in ns) of a file, or MISSING_STAMP when there is none."""
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


class EmbeddingCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def open(self, manifest: dict) -> None:
        """Create the folder, or check that an existing one was made for the same model and images."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.manifest_path.exists():
            stored = json.loads(self.manifest_path.read_text())
            if stored != manifest:
                raise RuntimeError(
                    f"embedding cache {self.root} was written for {stored}, not {manifest}; "
                    "remove the folder or choose another cache_dir"
                )
            return
        _write_atomically(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())

    def manifest(self) -> dict:
        if not self.manifest_path.exists():
            raise FileNotFoundError(f"no embedding cache at {self.root}")
        return json.loads(self.manifest_path.read_text())

    def shards(self) -> list[Path]:
        return sorted(self.root.glob("shard-*.npz"))

    def stamps(self) -> dict[int, tuple[int, int]]:
        """For every image the cache has an answer for (embedding or failure): the stamp it was made from."""
        known: dict[int, tuple[int, int]] = {}
        for shard in self.shards():
            with np.load(shard) as data:
                for ids, stamps in ((data["ids"], data["stamps"]), (data["failed_ids"], data["failed_stamps"])):
                    known.update(zip(ids.tolist(), map(tuple, stamps.tolist()), strict=True))
        return known

    def missing(self, items: list[tuple[int, Path]]) -> list[tuple[int, Path]]:
        """The (id, path) pairs with no answer yet, or whose file changed since it was embedded."""
        known = self.stamps()
        return [(image_id, path) for image_id, path in items if known.get(image_id) != file_stamp(path)]

    def add_shard(self, ids, embeddings, stamps, failed_ids, failed_stamps, reasons) -> Path:
        """Write one shard atomically; ids and failures are aligned row by row with their arrays."""
        path = self.root / f"shard-{time.time_ns():020d}.npz"
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
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return path

    def load(self) -> CachedEmbeddings:
        """Every image's latest answer: its embedding (float16, as stored) or its failure reason."""
        ids, embeddings, failed_ids, reasons = [], [], [], []
        for shard in self.shards():
            with np.load(shard) as data:
                ids.append(data["ids"])
                embeddings.append(data["embeddings"])
                failed_ids.append(data["failed_ids"])
                reasons.append(data["failed_reasons"])
        dim = int(self.manifest().get("embedding_dim", 0))
        all_ids = np.concatenate(ids + failed_ids) if ids else np.zeros(0, np.int64)
        n_ok = sum(len(i) for i in ids)
        # Later shards supersede earlier ones (a re-embedded, replaced file): keep each id's last row.
        _, last_from_end = np.unique(all_ids[::-1], return_index=True)
        latest = np.sort(len(all_ids) - 1 - last_from_end)
        ok_rows, failed_rows = latest[latest < n_ok], latest[latest >= n_ok] - n_ok
        stacked = np.concatenate(embeddings) if embeddings else np.zeros((0, dim), np.float16)
        del embeddings
        if len(ok_rows) != len(stacked) or np.any(np.diff(ok_rows) != 1):
            stacked = stacked[ok_rows]  # only when some rows were superseded: avoid a copy otherwise
        all_reasons = np.concatenate(reasons) if reasons else np.zeros(0, np.str_)
        return CachedEmbeddings(
            ids=all_ids[ok_rows],
            embeddings=stacked,
            failures=pd.DataFrame(
                {"image_id": all_ids[n_ok:][failed_rows], "reason": all_reasons[failed_rows].astype(object)}
            ),
        )


def _write_atomically(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
