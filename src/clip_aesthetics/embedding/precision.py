"""A requested precision + a device (+ the loaded backbone, for `auto` on a CPU) -> the dtype of the backbone's
forward, and why, in words a user reads.

`auto` means: float16 on a CUDA GPU (or the half precision a model was trained in there); on a CPU, the faster of
float32 and bfloat16 as measured on this machine with the model's own forward, never bfloat16 because a CPU flag
exists. An AVX512-BF16 Xeon without AMX computes bfloat16 "natively" yet ran a ViT-B/32 forward at 0.59x of float32
(benchmarks/RESULTS.md); an AMX one runs it about 2x faster. Where bfloat16 is not native at all it is emulated,
several times slower, and float32 is chosen without measuring. A measurement is a few seconds (two batches per
precision) and is kept in a small JSON file per machine (CPU, cores, torch) and model size (family and tower
shape), so it is taken once. Elsewhere: float32 (MPS).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PRECISIONS = ("float32", "float16", "bfloat16")
CHOICES = ("auto", *PRECISIONS)
TIMINGS = Path("~/.cache/clip-aesthetics/precision-timings.json")  # measurements, per machine and model size
BATCH = 4  # images per timed forward
REPEATS = 2  # timed forwards per precision (after one warm-up each); the fastest counts
MARGIN = 1.1  # bfloat16 must be at least this much faster than float32 to be chosen: it is also less exact


@dataclass(frozen=True)
class Choice:
    """The dtype a forward runs in, and why (printed by `score` and `main`, logged as precision_reason)."""

    dtype: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere it is emulated, and slow."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch build without these probes
        return False


def check(precision: str) -> str:
    if precision not in CHOICES:
        raise ValueError(f"precision={precision!r}: expected one of {', '.join(CHOICES)}")
    return precision


def choose(precision: str, device: torch.device, recorded: str | None = None, size: str = "", load=None,
           timings: Path | None = None) -> Choice:
    """The forward's dtype: `precision` as asked, or for `auto` this device's choice (see the module's docstring).

    On a CPU with native bfloat16, `auto` reads the timings of a model of this `size` (size_of) measured on this
    machine, or measures them with the backbone `load()` returns (model, processor); with neither, float32.
    `recorded`: the precision a model was trained in (a GPU keeps a half precision it was trained in)."""
    check(precision)
    if precision != "auto":
        emulated = device.type == "cpu" and precision in ("bfloat16", "float16") and not (
            precision == "bfloat16" and native_bfloat16())
        slow = "; emulated on this CPU, slow" if emulated else ""
        return Choice(getattr(torch, precision), f"{precision} (as asked{slow})")
    if device.type == "cuda":
        half = recorded if recorded in ("float16", "bfloat16") else "float16"
        return Choice(getattr(torch, half), f"{half} (precision=auto on a CUDA GPU)")
    if device.type != "cpu":
        return Choice(torch.float32, f"float32 (precision=auto on {device.type})")
    if not native_bfloat16():
        return Choice(torch.float32, "float32 (precision=auto: this CPU has no native bfloat16; emulated it would be "
                                     "several times slower)")
    seconds = measured(size, load, timings) if size else None
    if seconds is None:
        return Choice(torch.float32, "float32 (precision=auto: bfloat16 not yet measured on this CPU for this model)")
    ratio = seconds["float32"] / seconds["bfloat16"]
    if ratio >= MARGIN:
        return Choice(torch.bfloat16, f"bfloat16 (precision=auto: measured {ratio:.2f}x float32's speed on this CPU)")
    return Choice(torch.float32, f"float32 (precision=auto: bfloat16 measured at {ratio:.2f}x float32's speed on "
                                 "this CPU, which computes it natively)")


def measured(size: str, load=None, timings: Path | None = None) -> dict[str, float] | None:
    """Seconds per forward of BATCH images in float32 and in bfloat16 on this CPU, for a model of `size`: from the
    timings file when this machine measured one before, else measured now with `load()`'s backbone and written
    there; None when neither is possible."""
    path = Path(timings or TIMINGS).expanduser()
    key = f"{machine()} | {size}"
    known = _read(path)
    if isinstance(known.get(key), dict) and {"float32", "bfloat16"} <= set(known[key]):
        return known[key]
    if load is None:
        return None
    import sys

    print("precision=auto: timing float32 against bfloat16 on this CPU (once per machine and model size)",
          file=sys.stderr, flush=True)
    seconds = time_forward(*load())
    known = {**_read(path), key: seconds}
    try:
        from clip_aesthetics.atomic import write_atomically

        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(known, indent=1, sort_keys=True).encode())
    except OSError:  # a read-only home: measured again next time, nothing lost
        pass
    return seconds


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def time_forward(model, processor) -> dict[str, float]:
    """The fastest of REPEATS forwards of BATCH generated images, in each precision (one warm-up each)."""
    from PIL import Image

    from clip_aesthetics.embedding.embed import embed_pixels
    from clip_aesthetics.images.pixels import ModelPixels

    pixels = ModelPixels(processor, getattr(getattr(model, "family", None), "pixels", "auto"))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)) for _ in range(BATCH)]
    batch = pixels.finish(torch.from_numpy(np.stack([pixels.crop(image) for image in images])))
    seconds = {}
    for dtype in (torch.float32, torch.bfloat16):
        embed_pixels(model, batch, dtype)  # warm-up: kernels chosen, caches filled
        times = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            embed_pixels(model, batch, dtype)
            times.append(time.perf_counter() - started)
        seconds[str(dtype).removeprefix("torch.")] = min(times)
    return seconds


def machine() -> str:
    """What makes a timing this machine's: the CPU's model and features, the threads torch uses, torch's version."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        import platform

        name = platform.processor()
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = "?"
    return f"{name or 'cpu'} {capability} x{torch.get_num_threads()} torch {torch.__version__}"


def size_of(config: dict, family: str) -> str:
    """The family and shape of a tower (what its speed depends on), from its config.json, not its weights."""
    vision = config.get("vision_config") or config
    shape = [vision.get(k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                     "patch_size", "image_size")]
    return f"{family} {'x'.join(str(v) for v in shape)}"


def size_of_model(model) -> str:
    """size_of for a loaded backbone (backbones.families.ImageEncoder)."""
    config = getattr(getattr(model, "tower", model), "config", None)
    family = getattr(getattr(model, "family", None), "name", type(model).__name__)
    return size_of(config.to_dict() if config is not None else {}, family)
