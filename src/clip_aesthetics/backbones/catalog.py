"""The built-in backbone families, one `Family` row each (entries of extensions.BACKBONE_FAMILIES): CLIP, SigLIP,
SigLIP 2 NaFlex and DINOv2. A new family is a module like this one defining a `Family` (its model types, vision
tower class, embedding rule, float32 modules, pixel path and random-model builder) and one entry in the table."""

from __future__ import annotations

import torch
import transformers

from clip_aesthetics.backbones.families import Family, vision_of

TINY_TEXT = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64,
                 max_position_embeddings=8)


def _text(tiny: bool, **extra) -> dict:
    return {**TINY_TEXT, **extra} if tiny else extra


def _random_clip(vision: dict, crop: int, tiny: bool):
    dim = vision.get("projection_dim", 512)
    text = _text(tiny, projection_dim=dim)
    config = transformers.CLIPConfig(vision_config=vision, text_config=text, projection_dim=dim)
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": crop}, crop_size={"height": crop, "width": crop})
    return transformers.CLIPModel(config), processor


def _random_siglip(vision: dict, crop: int, tiny: bool):
    model = transformers.SiglipModel(transformers.SiglipConfig(vision_config=vision, text_config=_text(tiny)))
    return model, transformers.SiglipImageProcessor(size={"height": crop, "width": crop})


def _random_siglip2(vision: dict, crop: int, tiny: bool):
    vision = {**vision, "num_patches": 16}
    model = transformers.Siglip2Model(transformers.Siglip2Config(vision_config=vision, text_config=_text(tiny)))
    return model, transformers.Siglip2ImageProcessor(patch_size=vision["patch_size"], max_num_patches=16)


def _random_dinov2(vision: dict, crop: int, tiny: bool, registers: int = 0):
    vision = {k: v for k, v in vision.items() if k != "intermediate_size"}  # DINOv2 sizes it by mlp_ratio
    if registers:
        model = transformers.Dinov2WithRegistersModel(
            transformers.Dinov2WithRegistersConfig(num_register_tokens=registers, **vision))
    else:
        model = transformers.Dinov2Model(transformers.Dinov2Config(**vision))
    processor = transformers.BitImageProcessor(
        size={"shortest_edge": crop + crop // 7}, crop_size={"height": crop, "width": crop},
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return model, processor


def _dinov2_embedding(out, config) -> torch.Tensor:
    """The DINOv2 paper's linear-probe input: the CLS token beside the mean of the patch tokens (registers out)."""
    patches = out.last_hidden_state[:, 1 + int(getattr(config, "num_register_tokens", 0) or 0):]
    return torch.cat([out.pooler_output, patches.mean(dim=1)], dim=1)


def _hidden_size(config: dict) -> int:
    return int(vision_of(config).get("hidden_size", 768))


def _naflex_inputs(packed: torch.Tensor) -> dict:
    """images/pixels.py packs NaFlex's three inputs into one tensor per image (so batches stack): patches, then the
    padding mask, then the patch grid's height and width on every row."""
    return {"pixel_values": packed[..., :-3], "pixel_attention_mask": packed[..., -3].round().to(torch.int32),
            "spatial_shapes": packed[:, 0, -2:].round().long()}


CLIP = Family(
    "clip", ("clip", "clip_vision_model"), "CLIPVisionModelWithProjection", "clip-projected-image-embedding",
    lambda out, config: out.image_embeds, ("vision_model.post_layernorm", "visual_projection"),
    lambda c: int(c.get("projection_dim") or vision_of(c)["projection_dim"]),
    pixels="short-crop", build_random=_random_clip)
SIGLIP = Family(
    "siglip", ("siglip", "siglip_vision_model"), "SiglipVisionModel", "siglip-attention-pool-output",
    lambda out, config: out.pooler_output, ("post_layernorm", "head"), _hidden_size,
    pixels="fixed", build_random=_random_siglip)
SIGLIP2_NAFLEX = Family(
    "siglip2-naflex", ("siglip2", "siglip2_vision_model"), "Siglip2VisionModel", "siglip2-naflex-attention-pool-output",
    lambda out, config: out.pooler_output, ("post_layernorm", "head"), _hidden_size,
    inputs=_naflex_inputs, pixels="naflex", build_random=_random_siglip2)
DINOV2 = Family(
    "dinov2", ("dinov2", "dinov2_with_registers"), {"dinov2": "Dinov2Model", "dinov2_with_registers":
                                                    "Dinov2WithRegistersModel"}, "dinov2-cls-and-mean-patch-tokens",
    _dinov2_embedding, ("layernorm",), lambda c: 2 * int(c.get("hidden_size", 768)),
    pixels="short-crop", build_random=_random_dinov2)
