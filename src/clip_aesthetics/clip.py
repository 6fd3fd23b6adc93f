"""A CLIP name (b16, b32, hub id, local folder) -> one resolved checkpoint -> its vision tower and processor.

The only module that imports transformers. A checkpoint is resolved once per command into a ClipSource
(model id + resolved revision + local folder), which is passed down, logged, and stored with the model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import AutoImageProcessor, CLIPConfig, CLIPModel, CLIPVisionModelWithProjection

from .config import CLIP_ALIASES
from .errors import UserError

transformers.logging.set_verbosity_error()  # the load report lists every unused text-tower weight
transformers.logging.disable_progress_bar()

_MODEL_FILES = ["config.json", "preprocessor_config.json"]


class ClipUnavailableError(UserError, RuntimeError):
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


def load_clip(source: ClipSource, device: torch.device):
    """The vision tower with its projection (about 60% of CLIPModel) and the model's own image processor."""
    model = CLIPVisionModelWithProjection.from_pretrained(source.folder, dtype=torch.float32)
    processor = AutoImageProcessor.from_pretrained(source.folder)
    return model.eval().to(device), processor


class ClipPixels:
    """RGB image -> the model input CLIP's image processor makes, computed directly (about 2x faster).

    The same steps as transformers' CLIPImageProcessor (Pil backend, the one used without torchvision):
    short side to `size` with bicubic resampling, centre crop, 1/255, mean/std; a test holds the two
    equal. Split in two so that decoding workers do the image work and hand over 8-bit pixels (a quarter of
    the bytes), while 1/255 and mean/std run once per batch where the model is: `crop` per image, then
    `finish` per batch; calling the object does both for one image. A processor configured otherwise is
    called as it is (by `crop`; `finish` then passes its float output through).
    """

    def __init__(self, processor):
        self.processor = processor
        size, crop = getattr(processor, "size", None), getattr(processor, "crop_size", None)
        self.fast = (type(processor).__name__ in ("CLIPImageProcessor", "CLIPImageProcessorPil")
                     and all(getattr(processor, f"do_{step}", False)
                             for step in ("resize", "center_crop", "rescale", "normalize"))
                     and size is not None and size.get("shortest_edge") and crop is not None
                     and crop.get("height") and crop.get("height") == crop.get("width")
                     and int(getattr(processor, "resample", -1)) == int(Image.Resampling.BICUBIC))
        if self.fast:
            self.short, self.crop_side = int(size["shortest_edge"]), int(crop["height"])
            self.scale = float(np.float32(processor.rescale_factor))
            self.mean = torch.tensor(processor.image_mean, dtype=torch.float32).reshape(1, 3, 1, 1)
            self.std = torch.tensor(processor.image_std, dtype=torch.float32).reshape(1, 3, 1, 1)

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.finish(torch.from_numpy(self.crop(image)[None]))[0].numpy()

    def crop(self, image: Image.Image) -> np.ndarray:
        """Resized and centre-cropped: height x width x 3 uint8 (or the processor's own float output)."""
        if not self.fast:
            return self.processor(images=image, return_tensors="np")["pixel_values"][0]
        width, height = image.size
        if width <= height:
            size = (self.short, int(self.short * height / width))
        else:
            size = (int(self.short * width / height), self.short)
        image = image.convert("RGB").resize(size, resample=Image.Resampling.BICUBIC)
        left, top = (size[0] - self.crop_side) // 2, (size[1] - self.crop_side) // 2
        return np.asarray(image.crop((left, top, left + self.crop_side, top + self.crop_side)))

    def finish(self, batch: torch.Tensor) -> torch.Tensor:
        """A batch of `crop` outputs -> float32 N x 3 x H x W model input, on the batch's device."""
        if batch.dtype != torch.uint8:
            return batch
        pixels = batch.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format) * self.scale
        return (pixels - self.mean.to(batch.device)) / self.std.to(batch.device)


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
