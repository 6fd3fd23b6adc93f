"""CLIP checkpoint + image files -> embeddings in the cache. The only module that imports transformers."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import transformers
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import AutoImageProcessor, CLIPConfig, CLIPModel, CLIPVisionModelWithProjection

from .cache import EmbeddingCache, file_stamp
from .config import CLIP_ALIASES
from .images import ImageError, crop_long_side, load_rgb

transformers.logging.set_verbosity_error()  # the load report lists every unused text-tower weight
transformers.logging.disable_progress_bar()

_MODEL_FILES = ["config.json", "preprocessor_config.json"]


class ClipUnavailableError(RuntimeError):
    """The CLIP checkpoint could not be found locally nor fetched from the hub."""


@dataclass(frozen=True)
class ClipSource:
    """Where a checkpoint was found: `revision` is a hub commit hash or a local content fingerprint."""

    model_id: str
    revision: str
    folder: Path


def resolve_clip(clip: str, revision: str = "main", hub_timeout: float = 10.0) -> ClipSource:
    """Find the checkpoint on disk (local folder or hub cache), downloading it only when needed."""
    local = Path(clip).expanduser()
    if clip not in CLIP_ALIASES and local.is_dir():
        if not (local / "config.json").is_file():
            raise ClipUnavailableError(f"{local} has no config.json: save the model there with save_pretrained")
        return ClipSource(str(local.resolve()), "local-" + _fingerprint(local), local.resolve())
    if clip not in CLIP_ALIASES and (local.is_absolute() or clip.startswith((".", "~"))):
        raise ClipUnavailableError(f"the local CLIP folder {local} does not exist (moved or deleted?); put the "
                                   "folder saved with save_pretrained back there, or register the run, whose "
                                   "registered model carries the CLIP weights")
    model_id = CLIP_ALIASES.get(clip, clip)
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(model_id, revision=revision, local_files_only=True)
        return ClipSource(model_id, Path(folder).name, Path(folder))
    except LocalEntryNotFoundError:
        pass
    try:  # one short probe, so that an offline machine fails in seconds rather than retrying
        info = HfApi().model_info(model_id, revision=revision, timeout=hub_timeout, files_metadata=False)
    except Exception as error:  # offline mode, DNS, timeout, unknown repo or revision: all end the same
        raise ClipUnavailableError(
            f"CLIP model {model_id!r} (revision {revision!r}) is not in the local Hugging Face cache and "
            f"the hub could not be reached or refused it ({type(error).__name__}: {error}). "
            "Where the hub is reachable, save it once with "
            f"`CLIPModel.from_pretrained({model_id!r}).save_pretrained(FOLDER)` and "
            f"`AutoImageProcessor.from_pretrained({model_id!r}).save_pretrained(FOLDER)`, copy FOLDER here "
            "and pass clip=FOLDER."
        ) from error
    names = {sibling.rfilename for sibling in info.siblings or []}
    weights = "model.safetensors" if "model.safetensors" in names else "pytorch_model.bin"
    folder = snapshot_download(model_id, revision=info.sha, allow_patterns=_MODEL_FILES + [weights])
    return ClipSource(model_id, info.sha, Path(folder))


def _fingerprint(folder: Path) -> str:
    """Content hash of the files that decide the embedding: config, preprocessing, weights."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.name in _MODEL_FILES or path.suffix in (".safetensors", ".bin"):
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


def pick_device(device: str) -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, precision)


def load_clip(source: ClipSource, device: torch.device):
    """The vision tower with its projection (about 60% of CLIPModel) and the model's own image processor."""
    model = CLIPVisionModelWithProjection.from_pretrained(source.folder, dtype=torch.float32)
    processor = AutoImageProcessor.from_pretrained(source.folder)
    return model.eval().to(device), processor


def embed_pixels(model, pixel_values: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """The projected image embedding (not normalised), rounded to the cache's float16 as at training."""
    device = next(model.parameters()).device
    pixel_values = pixel_values.to(device, non_blocking=True)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        embeds = model(pixel_values=pixel_values).image_embeds
    return embeds.float().cpu().numpy().astype(np.float16).astype(np.float32)


class _ImageSources(Dataset):
    """(key, source) -> (key, pixel array or None, reason or None, file stamp or None)."""

    def __init__(self, items: list, load: Callable, processor, stamp: bool):
        self.items, self.load, self.processor, self.stamp = items, load, processor, stamp

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        key, source = self.items[index]
        stamp = file_stamp(source) if self.stamp else None
        try:
            image = self.load(source)
        except ImageError as error:
            return key, None, str(error), stamp
        pixels = self.processor(images=crop_long_side(image), return_tensors="np")["pixel_values"][0]
        return key, pixels, None, stamp


def _collate(rows):
    ok = [row for row in rows if row[1] is not None]
    pixels = torch.from_numpy(np.stack([row[1] for row in ok])) if ok else None
    return ok, pixels, [row for row in rows if row[1] is None]


def _single_thread_worker(_: int) -> None:
    torch.set_num_threads(1)  # decoding workers must not compete with the model for every core


def _batches(dataset: _ImageSources, batch_size: int, num_workers: int, threads: bool, pin: bool):
    """Decoded, preprocessed batches; worker processes (files) or threads (bytes inside a server)."""
    if threads:
        with ThreadPoolExecutor(max(1, num_workers)) as pool:
            for start in range(0, len(dataset), batch_size):
                yield _collate(list(pool.map(dataset.__getitem__, range(start, min(start + batch_size, len(dataset))))))
        return
    yield from DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate, pin_memory=pin,
        worker_init_fn=_single_thread_worker if num_workers else None, prefetch_factor=4 if num_workers else None,
    )


def embed_sources(
    items: list, load: Callable, model, processor, dtype: torch.dtype, batch_size: int, num_workers: int,
    threads: bool = False, stamp: bool = False, progress: bool = True,
) -> Iterator[tuple[list, np.ndarray | None, list]]:
    """The one embedding path of training and scoring: yields (ok rows, their embeddings, failed rows).

    Rows are (key, pixels, reason, stamp); a failed row's reason says why its image was skipped.
    """
    device = next(model.parameters()).device
    dataset = _ImageSources(items, load, processor, stamp)
    with tqdm(total=len(items), unit="img", desc="embedding", disable=not progress, smoothing=0.1) as bar:
        for ok, pixels, failed in _batches(dataset, batch_size, num_workers, threads, device.type == "cuda"):
            yield ok, (embed_pixels(model, pixels, dtype) if ok else None), failed
            bar.update(len(ok) + len(failed))


def embed_to_cache(
    cache: EmbeddingCache, items: Iterable[tuple[int, Path]], model, processor, dtype: torch.dtype,
    batch_size: int, num_workers: int, shard_size: int, progress: bool = True,
) -> int:
    """Embed the given (id, path) pairs into new shards (see EmbeddingCache.missing); returns how many."""
    items = list(items)
    pending = _Shard()
    for ok, embeddings, failed in embed_sources(
        items, load_rgb, model, processor, dtype, batch_size, num_workers, stamp=True, progress=progress
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
    return min(8, os.cpu_count() or 1) if num_workers < 0 else num_workers


def save_random_clip(folder: Path, size: str = "tiny", seed: int = 0, projection_dim: int = 16) -> Path:
    """A randomly initialised CLIP saved with save_pretrained: 'tiny' for tests, 'b32'/'b16' at openai's sizes.

    `projection_dim` (the embedding size) applies to 'tiny'; it is set inside vision_config too, or
    the folder would not load as CLIPVisionModelWithProjection.
    """
    torch.manual_seed(seed)
    if size == "tiny":
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      image_size=32, patch_size=8, projection_dim=projection_dim)
        text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                    vocab_size=64, max_position_embeddings=8, projection_dim=projection_dim)
        config = CLIPConfig(vision_config=vision, text_config=text, projection_dim=projection_dim)
        crop = 32
    elif size in ("b32", "b16"):
        patch = 32 if size == "b32" else 16
        config = CLIPConfig(vision_config=dict(patch_size=patch, projection_dim=512),
                            text_config=dict(projection_dim=512), projection_dim=512)
        crop = 224
    else:
        raise ValueError(f"size={size!r}: expected tiny, b32 or b16")
    folder = Path(folder)
    CLIPModel(config).save_pretrained(folder)
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(size={"shortest_edge": crop}, crop_size={"height": crop, "width": crop}).save_pretrained(folder)
    return folder
