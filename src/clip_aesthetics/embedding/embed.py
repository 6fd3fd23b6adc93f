"""Images (files or bytes) + a loaded backbone -> embeddings: the one batching path of training and scoring, and the
cache writer."""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from clip_aesthetics.embedding.cache import EmbeddingCache, file_stamp
from clip_aesthetics.images.decode import ImageError, crop_long_side, load_source
from clip_aesthetics.images.pixels import ModelPixels


def pick_device(device: str) -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def batch_for(device: torch.device) -> int:
    """Images per forward when none is asked for: 256 on a GPU, 32 on a CPU (larger batches gain nothing there)."""
    return 256 if device.type == "cuda" else 32


def avx512_cpu() -> bool:
    """Whether this CPU has AVX512 (torch's kernels then use it for the forward's matrix products)."""
    try:
        return torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    except (AttributeError, RuntimeError):
        return False


def decode_beside_forward(device: torch.device) -> bool:
    """Whether images are decoded beside the forward (worker processes) or between forwards (threads).

    Beside a GPU, always. On a CPU the two compete for the same cores, and which costs the forward less
    depends on the CPU (benchmarks/RESULTS.md, both measured on 2 cores): with AVX512 the forward keeps
    every core busy and decoding between forwards keeps 0.968 of the forward in float32 (0.943 in
    bfloat16) against 0.958 (0.878) beside it; without AVX512, decoding beside the forward keeps 0.949
    against 0.896 between. So: between forwards on AVX512 CPUs, beside elsewhere.
    """
    return device.type != "cpu" or not avx512_cpu()


DECODINGS = ("full", "reduced")


def embed_pixels(model, pixel_values: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """The backbone's embedding (not normalised; clip.ImageEncoder), rounded to the cache's float16 as at training.

    In float16/bfloat16 the transformer runs under autocast (matrix products in that dtype, the residual
    stream in float32); the family's final norm and projection or pooling head run in float32, so the
    embedding is not rounded to 8 or 11 bits on its way out.
    """
    device = next(model.parameters()).device
    pixel_values = pixel_values.to(device, non_blocking=True)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        embeds = model(pixel_values)
    return embeds.float().cpu().numpy().astype(np.float16).astype(np.float32)


def decode_target(pixels: ModelPixels, decoding: str) -> int | None:
    """The short side reduced decoding must keep (the model's own resize target), or None for full decoding.

    A processor that ModelPixels does not reproduce always gets full decoding.
    """
    if decoding not in DECODINGS:
        raise ValueError(f"decoding={decoding!r}: expected one of {', '.join(DECODINGS)}")
    return pixels.short if decoding == "reduced" and pixels.fast else None


class _ImageSources(Dataset):
    """(key, source) -> (key, pixel array or None, reason or None, file stamp or None)."""

    def __init__(self, items: list, load: Callable, processor, stamp: bool, decoding: str = "full",
                 pixel_mode: str = "auto"):
        self.items, self.load, self.stamp = items, load, stamp
        self.to_pixels = ModelPixels(processor, pixel_mode)
        self.min_short = decode_target(self.to_pixels, decoding)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        key, source = self.items[index]
        stamp = file_stamp(source) if self.stamp else None
        try:
            image = self.load(source, min_short=self.min_short)
        except ImageError as error:
            return key, None, str(error), stamp
        pixels = self.to_pixels.crop(crop_long_side(image))  # 8-bit; ModelPixels.finish completes it per batch
        return key, pixels, None, stamp


def _collate(rows):
    ok = [row for row in rows if row[1] is not None]
    pixels = torch.from_numpy(np.stack([row[1] for row in ok])) if ok else None
    return ok, pixels, [row for row in rows if row[1] is None]


def _single_thread_worker(_: int) -> None:
    torch.set_num_threads(1)  # decoding workers must not compete with the model for every core


def _batches(dataset: _ImageSources, batch_size: int, num_workers: int, threads: bool, device: torch.device,
             overlap: bool | None = None):
    """Decoded, preprocessed batches, in order.

    Decoding overlaps the forward (see decode_beside_forward for when): worker processes for files, a thread
    pool two batches ahead for bytes (a server). Otherwise it runs between forwards, one batch at a time on
    `num_workers` threads. `overlap` overrides the choice (the benchmark measures both on a CPU).
    """
    starts = range(0, len(dataset), batch_size)
    overlap = decode_beside_forward(device) if overlap is None else overlap
    if not overlap or threads:
        with ThreadPoolExecutor(max(1, num_workers)) as pool:
            ahead = 2 if overlap else 0  # batches submitted before the current one is used
            pending: deque = deque()
            for start in starts:
                pending.append([pool.submit(dataset.__getitem__, i)
                                for i in range(start, min(start + batch_size, len(dataset)))])
                if len(pending) > ahead:
                    yield _collate([future.result() for future in pending.popleft()])
            while pending:
                yield _collate([future.result() for future in pending.popleft()])
        return
    yield from DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate, pin_memory=device.type == "cuda",
        worker_init_fn=_single_thread_worker if num_workers else None, prefetch_factor=2 if num_workers else None,
    )


def embed_sources(
    items: list, load: Callable, model, processor, dtype: torch.dtype, batch_size: int, num_workers: int,
    threads: bool = False, stamp: bool = False, progress: bool = True, decoding: str = "full",
) -> Iterator[tuple[list, np.ndarray | None, list]]:
    """The one embedding path of training and scoring: yields (ok rows, their embeddings, failed rows).

    Rows are (key, pixels, reason, stamp); a failed row's reason says why its image was skipped.
    `load(source, min_short=...)` decodes one source; `decoding` is "full" or "reduced" (images.py).
    """
    device = next(model.parameters()).device
    family = getattr(model, "family", None)  # the backbone family's declared pixel path
    dataset = _ImageSources(items, load, processor, stamp, decoding, getattr(family, "pixels", "auto"))
    with tqdm(total=len(items), unit="img", desc="embedding", disable=not progress, smoothing=0.1) as bar:
        for ok, pixels, failed in _batches(dataset, batch_size, num_workers, threads, device):
            if ok:
                pixels = dataset.to_pixels.finish(pixels.to(device, non_blocking=True))
            yield ok, (embed_pixels(model, pixels, dtype) if ok else None), failed
            bar.update(len(ok) + len(failed))


def embed_to_cache(
    cache: EmbeddingCache, items: Iterable[tuple[int, Path | bytes]], model, processor, dtype: torch.dtype,
    batch_size: int, num_workers: int, shard_size: int, progress: bool = True, decoding: str = "full",
) -> int:
    """Embed the given (id, file or bytes) pairs into new shards (see EmbeddingCache.missing); returns how many.

    Bytes (a table's image column) are decoded on threads: worker processes would copy them all."""
    items = list(items)
    pending = _Shard()
    in_memory = any(isinstance(source, (bytes, bytearray, memoryview)) for _, source in items)
    for ok, embeddings, failed in embed_sources(
        items, load_source, model, processor, dtype, batch_size, num_workers, threads=in_memory, stamp=True,
        progress=progress, decoding=decoding,
    ):
        if ok:
            pending.add_ok(ok, embeddings)
        pending.add_failed(failed)
        if pending.size >= shard_size:
            pending = pending.flush(cache)
    pending.flush(cache)
    return len(items)


class _Shard:
    """Rows waiting to be written; flushing writes them as one atomic shard."""

    def __init__(self):
        self.ids, self.embeddings, self.stamps = [], [], []
        self.failed_ids, self.failed_stamps, self.reasons = [], [], []

    @property
    def size(self) -> int:
        return len(self.ids) + len(self.failed_ids)

    def add_ok(self, rows, embeddings: np.ndarray) -> None:
        self.ids += [row[0] for row in rows]
        self.stamps += [row[3] for row in rows]
        self.embeddings.append(embeddings)

    def add_failed(self, rows) -> None:
        self.failed_ids += [row[0] for row in rows]
        self.failed_stamps += [row[3] for row in rows]
        self.reasons += [row[2] for row in rows]

    def flush(self, cache: EmbeddingCache) -> _Shard:
        if self.size:
            dim = int(cache.manifest()["embedding_dim"])
            embeddings = np.concatenate(self.embeddings) if self.embeddings else np.zeros((0, dim))
            cache.add_shard(self.ids, embeddings, self.stamps, self.failed_ids, self.failed_stamps, self.reasons)
        return _Shard()


def default_workers(num_workers: int) -> int:
    """-1: one decoding worker per core this process may use (at most 32)."""
    if num_workers >= 0:
        return num_workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(32, cores or 1))
