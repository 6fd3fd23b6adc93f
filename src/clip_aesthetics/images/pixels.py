"""RGB image -> the model input a backbone's own image processor makes, computed directly where it can be.

The processors of the supported families (CLIP, SigLIP, DINOv2; the Pil backend transformers uses without
torchvision) do one of two things: short side to `shortest_edge`, centre crop (CLIP, DINOv2), or a resize to
a fixed height x width (SigLIP, SigLIP 2 FixRes); then 1/255 and mean/std. The resize uses the processor's own
`resample` filter, any of Pillow's (bicubic for CLIP, SigLIP and DINOv2; bilinear for SigLIP 2 FixRes). SigLIP 2
NaFlex processors (variable resolution within a patch budget) are called as they are, their three outputs packed into
one array per image. ModelPixels does the same steps itself, about 2x
faster, and tests hold it equal to the processor. Split in two so that decoding workers do the image work and
hand over 8-bit pixels (a quarter of the bytes), while 1/255 and mean/std run once per batch where the model
is: `crop` per image, then `finish` per batch. A processor configured otherwise is called as it is (by
`crop`; `finish` then passes its float output through).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SHORT_SIDE_AND_CROP = {"CLIPImageProcessor", "CLIPImageProcessorPil", "BitImageProcessor", "BitImageProcessorPil"}
FIXED_SIZE = {"SiglipImageProcessor", "SiglipImageProcessorPil"}
NAFLEX = {"Siglip2ImageProcessor", "Siglip2ImageProcessorPil"}  # called as they are; their output packed
# Pillow's filters by the number a processor's `resample` holds, and by the name preprocess.json writes
FILTERS = {int(f): f.name.lower() for f in Image.Resampling}


class ModelPixels:
    def __init__(self, processor, mode: str = "auto"):
        """`mode`: the path the backbone family declares (short-crop, fixed, naflex, or processor: always call the
        processor); auto: the one this processor's class and settings allow. A declared fast path is taken only
        when the processor's settings are ones it reproduces; otherwise the processor is called."""
        self.processor = processor
        self.mode = None if mode == "processor" else _fast_mode(processor)
        if mode not in ("auto", "processor", "naflex") and self.mode != mode:
            self.mode = None
        self.fast = self.mode is not None
        if mode == "naflex" or (mode == "auto" and type(processor).__name__ in NAFLEX):
            self.mode, self.fast = "naflex", False
        if self.mode == "short-crop":
            self.short, self.crop_side = int(processor.size["shortest_edge"]), int(processor.crop_size["height"])
        elif self.mode == "fixed":
            self.height, self.width = int(processor.size["height"]), int(processor.size["width"])
            self.short = max(self.height, self.width)  # reduced decoding keeps at least this short side
        if self.fast:
            self.resample = Image.Resampling(int(processor.resample))
            self.scale = float(np.float32(processor.rescale_factor))
            self.mean = np.asarray(processor.image_mean, dtype=np.float32).reshape(1, 3, 1, 1)
            self.std = np.asarray(processor.image_std, dtype=np.float32).reshape(1, 3, 1, 1)

    def describe(self) -> dict:
        """Every step `crop` and `finish` take, as plain values (an exported model's preprocess.json): enough to
        redo them exactly with Pillow and numpy, and to rebuild this object with `described`."""
        if not self.fast:
            raise ValueError(f"{type(self.processor).__name__} is called as it is (mode {self.mode or 'processor'}): "
                             "its steps are not ones this project reproduces, so they cannot be described")
        doc = {"mode": self.mode, "resample": FILTERS[int(self.resample)], "rescale_factor": self.scale,
               "image_mean": self.mean.ravel().tolist(), "image_std": self.std.ravel().tolist()}
        if self.mode == "short-crop":
            doc.update(shortest_edge=self.short, crop_size=self.crop_side)
        else:
            doc.update(height=self.height, width=self.width)
        return doc

    @classmethod
    def described(cls, doc: dict) -> ModelPixels:
        """The ModelPixels a `describe` output stands for, without the processor (or transformers)."""
        pixels = cls.__new__(cls)
        pixels.processor, pixels.mode, pixels.fast = None, doc["mode"], True
        names = {name: number for number, name in FILTERS.items()}
        if str(doc.get("resample", "bicubic")) not in names:
            raise ValueError(f"resample {doc.get('resample')!r}: expected one of {', '.join(names)}")
        pixels.resample = Image.Resampling(names[str(doc.get("resample", "bicubic"))])
        pixels.scale = float(doc["rescale_factor"])
        pixels.mean = np.asarray(doc["image_mean"], dtype=np.float32).reshape(1, 3, 1, 1)
        pixels.std = np.asarray(doc["image_std"], dtype=np.float32).reshape(1, 3, 1, 1)
        if pixels.mode == "short-crop":
            pixels.short, pixels.crop_side = int(doc["shortest_edge"]), int(doc["crop_size"])
        elif pixels.mode == "fixed":
            pixels.height, pixels.width = int(doc["height"]), int(doc["width"])
            pixels.short = max(pixels.height, pixels.width)
        else:
            raise ValueError(f"preprocess mode {pixels.mode!r}: expected short-crop or fixed")
        return pixels

    def __call__(self, image: Image.Image) -> np.ndarray:
        import torch

        return self.finish(torch.from_numpy(self.crop(image)[None].copy()))[0].numpy()

    def crop(self, image: Image.Image) -> np.ndarray:
        """Resized (and centre-cropped): height x width x 3 uint8, or the processor's own float output."""
        if self.mode == "naflex":  # patches, padding mask, patch grid: one array, so that batches stack
            out = self.processor(images=image, return_tensors="np")
            patches, mask = out["pixel_values"][0].astype(np.float32), out["pixel_attention_mask"][0]
            grid = np.broadcast_to(out["spatial_shapes"][0].astype(np.float32), (len(patches), 2))
            return np.concatenate([patches, mask[:, None].astype(np.float32), grid], axis=1)
        if not self.fast:
            return self.processor(images=image, return_tensors="np")["pixel_values"][0]
        image = image.convert("RGB")
        if self.mode == "fixed":
            return np.asarray(image.resize((self.width, self.height), resample=self.resample))
        width, height = image.size
        if width <= height:
            size = (self.short, int(self.short * height / width))
        else:
            size = (int(self.short * width / height), self.short)
        image = image.resize(size, resample=self.resample)
        left, top = (size[0] - self.crop_side) // 2, (size[1] - self.crop_side) // 2
        return np.asarray(image.crop((left, top, left + self.crop_side, top + self.crop_side)))

    def finish(self, batch):
        """A batch of `crop` outputs (a torch tensor) -> float32 N x 3 x H x W model input, on the batch's device."""
        import torch

        if batch.dtype != torch.uint8:
            return batch
        pixels = batch.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format) * self.scale
        return (pixels - torch.from_numpy(self.mean).to(batch.device)) / torch.from_numpy(self.std).to(batch.device)


def _fast_mode(processor) -> str | None:
    """Which direct path reproduces this processor, or None (it is then called as it is)."""
    name = type(processor).__name__
    size = getattr(processor, "size", None) or {}
    crop = getattr(processor, "crop_size", None) or {}
    steps = all(getattr(processor, f"do_{step}", False) for step in ("resize", "rescale", "normalize"))
    try:
        pillow_filter = int(getattr(processor, "resample", -1)) in FILTERS
    except (TypeError, ValueError):  # a torchvision InterpolationMode, say: the processor is called as it is
        pillow_filter = False
    if not (steps and pillow_filter and len(getattr(processor, "image_mean", []) or []) == 3):
        return None
    if (name in SHORT_SIDE_AND_CROP and getattr(processor, "do_center_crop", False) and size.get("shortest_edge")
            and not size.get("longest_edge") and crop.get("height") and crop.get("height") == crop.get("width")):
        return "short-crop"
    if (name in FIXED_SIZE and not getattr(processor, "do_center_crop", False) and size.get("height")
            and size.get("width")):
        return "fixed"
    return None
