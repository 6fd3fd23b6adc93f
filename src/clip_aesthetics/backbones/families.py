"""A backbone name (b16, l14, siglip-so400m, dinov2-l, a hub id, a local folder) -> one resolved checkpoint ->
its vision tower, wrapped to return the family's embedding, and its image processor.

The only module that imports transformers. A checkpoint is resolved once per command into a BackboneSource
(model id + resolved revision + local folder), which is passed down, logged, and stored with the model.
Each supported family is one row of extensions.BACKBONE_FAMILIES (catalog.py): which transformers class holds its
vision tower, which embedding it gives, which final modules run in float32 when the rest runs in half precision.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import transformers
from torch import nn
from transformers import AutoImageProcessor

from clip_aesthetics.digests import file_sha256
from clip_aesthetics.errors import UserError
from clip_aesthetics.settings.values import BACKBONE_ALIASES

transformers.logging.set_verbosity_error()  # the load report lists every unused text-tower weight
transformers.logging.disable_progress_bar()

_MODEL_FILES = ["config.json", "preprocessor_config.json"]


class BackboneUnavailableError(UserError, RuntimeError):
    """The checkpoint could not be found locally nor fetched from the hub, or is of no supported family."""


@dataclass(frozen=True)
class Family:
    """One backbone family (an entry of extensions.BACKBONE_FAMILIES; the built-in ones are in catalog.py).

    `tower`: the transformers class that loads only the vision tower (or model_type -> class name);
    `pixels`: the direct pixel path images/pixels.py takes for its processor (short-crop, fixed, naflex), or
    "processor" to call the checkpoint's processor as it is; `build_random(vision, crop, tiny) -> (model, processor)`
    makes a randomly initialised model of the family (tests, benchmarks, the sample data), saved with
    save_pretrained by save_random_backbone."""

    name: str
    model_types: tuple[str, ...]  # config.json's model_type: the full model's and the vision tower's own
    tower: str | dict
    embedding_kind: str  # logged as embedding_kind
    embed: Callable  # (model output, config) -> embedding
    float32_modules: tuple[str, ...]  # final norm and projection / pooling head: float32 in half precision
    dim: Callable[[dict], int]  # config.json -> embedding size, without loading weights
    inputs: Callable = lambda pixels: {"pixel_values": pixels}  # model input tensor (pixels.py) -> forward kwargs
    pixels: str = "processor"
    build_random: Callable | None = None

    def tower_class(self, model_type: str) -> str:
        return self.tower[model_type] if isinstance(self.tower, dict) else self.tower


def vision_of(config: dict) -> dict:
    return config.get("vision_config") or config


def families() -> list[Family]:
    from clip_aesthetics.extensions import BACKBONE_FAMILIES

    return [family for _, family in BACKBONE_FAMILIES.entries()]


NOT_YET: dict[str, str] = {}


def read_config(folder: Path) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())


def family_of(folder: Path) -> Family:
    """The family of the checkpoint in `folder`, or one line naming what was found and what is supported."""
    model_type = str(read_config(folder).get("model_type", "(none)"))
    for family in families():
        if model_type in family.model_types:
            return family
    supported = ", ".join(f"{f.name} ({'/'.join(f.model_types)})" for f in families())
    why = NOT_YET.get(model_type, f"model_type {model_type!r} is not an image backbone this project supports")
    raise BackboneUnavailableError(f"{folder}: {why}; supported families: {supported}")


@dataclass(frozen=True)
class BackboneSource:
    """Where a checkpoint was found: `revision` is a hub commit hash or a local content fingerprint."""

    model_id: str
    revision: str
    folder: Path


def resolve_backbone(clip: str, revision: str = "main", hub_timeout: float = 10.0) -> BackboneSource:
    """Find the checkpoint on disk (local folder or hub cache), downloading it only when needed; refuse one of
    no supported family before any work."""
    source = _find(clip, revision, hub_timeout)
    family_of(source.folder)
    return source


def _find(clip: str, revision: str, hub_timeout: float) -> BackboneSource:
    local = Path(clip).expanduser()
    if clip not in BACKBONE_ALIASES and local.is_dir():
        if not (local / "config.json").is_file():
            raise BackboneUnavailableError(f"{local} has no config.json: save the model there with save_pretrained")
        return BackboneSource(str(local.resolve()), "local-" + _fingerprint(local), local.resolve())
    if clip not in BACKBONE_ALIASES and (local.is_absolute() or clip.startswith((".", "~"))):
        raise BackboneUnavailableError(f"the local model folder {local} does not exist (moved or deleted?); put the "
                                   "folder saved with save_pretrained back there, or register the run, whose "
                                   "registered model carries the backbone's weights")
    model_id = BACKBONE_ALIASES.get(clip, clip)
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(model_id, revision=revision, local_files_only=True)
        return BackboneSource(model_id, Path(folder).name, Path(folder))
    except LocalEntryNotFoundError:
        pass
    try:  # one short probe, so that an offline machine fails in seconds rather than retrying
        info = HfApi().model_info(model_id, revision=revision, timeout=hub_timeout, files_metadata=False)
    except Exception as error:  # offline mode, DNS, timeout, unknown repo or revision: all end the same
        raise BackboneUnavailableError(
            f"model {model_id!r} (revision {revision!r}) is not in the local Hugging Face cache and "
            f"the hub could not be reached or refused it ({type(error).__name__}: {error}). "
            "Where the hub is reachable, save it once with "
            f"`AutoModel.from_pretrained({model_id!r}).save_pretrained(FOLDER)` and "
            f"`AutoImageProcessor.from_pretrained({model_id!r}).save_pretrained(FOLDER)`, copy FOLDER here "
            "and pass clip=FOLDER."
        ) from error
    names = {sibling.rfilename for sibling in info.siblings or []}
    weights = "model.safetensors" if "model.safetensors" in names else "pytorch_model.bin"
    folder = snapshot_download(model_id, revision=info.sha, allow_patterns=_MODEL_FILES + [weights])
    return BackboneSource(model_id, info.sha, Path(folder))


def _fingerprint(folder: Path) -> str:
    """Content hash of the files that decide the embedding: config, preprocessing, weights."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.name in _MODEL_FILES or path.suffix in (".safetensors", ".bin"):
            digest.update(path.name.encode())
            digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()[:16]


SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def stored_dtype(source: BackboneSource) -> str:
    """The precision the checkpoint's floating-point weights are stored in (the most of them), read from the
    safetensors header without loading them; a checkpoint in another format says it in config.json, else float32."""
    import struct
    from collections import Counter

    weights = sorted(Path(source.folder).glob("*.safetensors"))
    counts: Counter = Counter()
    for path in weights:
        with path.open("rb") as handle:
            header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
        for name, tensor in header.items():
            if name != "__metadata__" and tensor.get("dtype") in SAFETENSORS_DTYPES:
                start, end = tensor["data_offsets"]
                counts[SAFETENSORS_DTYPES[tensor["dtype"]]] += end - start
    if counts:
        return counts.most_common(1)[0][0]
    config = read_config(source.folder)
    return str(config.get("dtype") or config.get("torch_dtype") or "float32")


def embedding_dim(source: BackboneSource) -> int:
    """The embedding size, read from config.json without loading weights."""
    return family_of(source.folder).dim(read_config(source.folder))


def describe(source: BackboneSource) -> dict[str, str]:
    """What decides a score besides the weights, for the run's params and the registered version's tags."""
    config, family = read_config(source.folder), family_of(source.folder)
    vision = vision_of(config)
    processor = source.folder / "preprocessor_config.json"
    digest = hashlib.sha256(processor.read_bytes()).hexdigest()[:16] if processor.is_file() else "none"
    record = {"backbone_family": family.name, "embedding_kind": family.embedding_kind,
              "embedding_dim": str(family.dim(config)), "input_size": str(vision.get("image_size", "?")),
              "activation": str(vision.get("hidden_act", "?")), "processor_digest": digest}
    if processor.is_file() and "max_num_patches" in (settings := json.loads(processor.read_text())):
        record["max_num_patches"] = str(settings["max_num_patches"])  # NaFlex: the input is a patch budget
        record["input_size"] = f"{settings['max_num_patches']} patches of {settings.get('patch_size', '?')}px"
    return record


class ImageEncoder(nn.Module):
    """A vision tower -> the family's embedding, float32 out. Under autocast (half precision) the final
    modules of its Family's `float32_modules` run in float32, so the embedding is not rounded to 8 or 11 bits
    on its way out (measured for CLIP: half the score differences against float32)."""

    def __init__(self, tower: nn.Module, family: Family):
        super().__init__()
        self.tower, self.family = tower, family
        self.embedding_dim = family.dim(tower.config.to_dict())
        for name in family.float32_modules:
            module = tower.get_submodule(name)
            module.forward = _in_float32(module.forward)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.family.embed(self.tower(**self.family.inputs(pixel_values)), self.tower.config).float()

    def save_pretrained(self, folder: Path) -> None:
        self.tower.save_pretrained(folder)

    def float32_parameter_names(self) -> set[str]:
        return {f"tower.{module}.{name}" for module in self.family.float32_modules
                for name, _ in self.tower.get_submodule(module).named_parameters()}


def _in_float32(forward):
    def run(*args, **kwargs):
        tensors = [a for a in args if torch.is_tensor(a)]
        device = tensors[0].device.type if tensors else "cpu"
        with torch.autocast(device, enabled=False):
            return forward(*(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args),
                           **kwargs)
    return run


def load_backbone(source: BackboneSource, device: torch.device):
    """Only the vision tower (never a text tower) as an ImageEncoder, and the checkpoint's own image processor."""
    family = family_of(source.folder)
    model_type = str(read_config(source.folder).get("model_type"))
    tower_class = getattr(transformers, family.tower_class(model_type))
    tower = tower_class.from_pretrained(source.folder, dtype=torch.float32)
    processor = AutoImageProcessor.from_pretrained(source.folder)
    return ImageEncoder(tower.eval(), family).eval().to(device), processor


TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
# The vision towers of the named checkpoints, at their real sizes (for benchmarks, random weights).
REAL_SIZES = {
    "b32": ("clip", dict(patch_size=32, projection_dim=512), 224),
    "b16": ("clip", dict(patch_size=16, projection_dim=512), 224),
    "l14": ("clip", dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                         patch_size=14, projection_dim=768), 224),
    "siglip-so400m": ("siglip", dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                     num_attention_heads=16, patch_size=14, image_size=384), 384),
    "dinov2-l": ("dinov2", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, patch_size=14,
                                image_size=518), 224),
}


def save_random_clip(folder: Path, size: str = "tiny", seed: int = 0, projection_dim: int = 16) -> Path:
    """A randomly initialised CLIP saved with save_pretrained: 'tiny' for tests, 'b32'/'b16' at openai's sizes.

    `projection_dim` (the embedding size) applies to 'tiny'; it is set inside vision_config too, or
    the folder would not load as CLIPVisionModelWithProjection.
    """
    if size == "tiny":
        return save_random_backbone(folder, "clip", seed, projection_dim=projection_dim)
    if size not in ("b32", "b16"):
        raise ValueError(f"size={size!r}: expected tiny, b32 or b16")
    return save_random_backbone(folder, size, seed)


def save_random_backbone(folder: Path, kind: str, seed: int = 0, registers: int = 0, projection_dim: int = 16,
                         resample: int | None = None, **vision) -> Path:
    """A randomly initialised model and its processor saved with save_pretrained, no download: `kind` a family
    (clip, siglip, siglip2 (NaFlex), dinov2, or any family with a random builder; tiny, for tests; `vision`
    overrides its sizes) or a named checkpoint's real size (b32, b16, l14, siglip-so400m, dinov2-l; for
    benchmarks). `resample`: the processor's resize filter as Pillow numbers it (SigLIP 2 FixRes: 2, bilinear)."""
    torch.manual_seed(seed)
    tiny = kind not in REAL_SIZES
    if tiny:
        family, crop = RANDOM_KINDS.get(kind, kind), 32
        vision = {**TINY, "image_size": 32, "patch_size": 8, **vision}
        if family == "clip":
            vision["projection_dim"] = projection_dim
    else:
        family, vision, crop = REAL_SIZES[kind]
    try:
        row = next(f for f in families() if f.name == family and f.build_random is not None)
    except StopIteration:
        raise ValueError(f"kind={kind!r}: expected a family with a random builder "
                         f"({', '.join(f.name for f in families() if f.build_random)}) or one of "
                         f"{', '.join(REAL_SIZES)}") from None
    options = {"registers": registers} if registers else {}
    model, processor = row.build_random(vision, crop, tiny, **options)
    if resample is not None:
        processor.resample = resample
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)


RANDOM_KINDS = {"siglip2": "siglip2-naflex"}  # save_random_backbone's short name of a family
