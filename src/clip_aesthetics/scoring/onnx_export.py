"""A scorer (backbone + head) -> one ONNX graph, from the model's 8-bit input to its score, and its int8 variant.

The graph takes what `ModelPixels.crop` makes (N x H x W x 3 uint8: the image decoded, cut to at most 8:1,
resized and centre-cropped) and computes the rest exactly as the PyTorch scorer does: 1/255 and mean/std, the
vision tower with its family's activation and pooling, the final norm and projection in float32, the embedding
rounded to float16 and back (as the embedding cache stores it, so as training saw it), the embedding
normalisation, the head, and the map onto the data's scale. Output `score`: N float32, unclipped (the ONNX
scorer clips it to the scale, keeping non-finite values as errors). preprocess.json describes the steps before
the graph: decoding, the 8:1 cut, resize and crop.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from clip_aesthetics.errors import UserError
from clip_aesthetics.images.decode import MAX_ASPECT
from clip_aesthetics.images.pixels import ModelPixels
from clip_aesthetics.scoring.runtime import Runtime
from clip_aesthetics.scoring.uris import GRAPH_FILE, SPEC_FILE

OPSET = 17
PREPROCESS_FILE = "preprocess.json"
FORMAT_VERSION = 1


class ExportRefused(UserError, ValueError):
    """This model cannot be exported (a processor the project does not reproduce, say); the message says why."""


def extra_outputs(scorer) -> tuple[str, ...]:
    """What the head answers beside the score (a distribution head's score_std): more outputs of the graph."""
    from clip_aesthetics.extensions import HEADS

    return tuple(HEADS.get(scorer.spec.kind).extra_outputs)


class ScoreGraph(nn.Module):
    """uint8 N x H x W x 3 -> score N (float32, on the data's scale, unclipped), then the head's extra outputs."""

    def __init__(self, scorer):
        super().__init__()
        pixels = ModelPixels(scorer.processor, scorer.model.family.pixels)
        self.encoder, self.head = scorer.model, scorer.head
        self.register_buffer("mean", torch.from_numpy(pixels.mean.copy()))
        self.register_buffer("std", torch.from_numpy(pixels.std.copy()))
        self.scale = pixels.scale
        self.l2 = scorer.spec.embed_norm == "l2"
        self.target_scale, self.target_offset = float(scorer.spec.target_scale), float(scorer.spec.target_offset)
        self.extras = bool(extra_outputs(scorer))

    def forward(self, pixels: torch.Tensor):
        x = pixels.permute(0, 3, 1, 2).to(torch.float32) * self.scale
        x = (x - self.mean) / self.std
        embeddings = self.encoder(x).to(torch.float16).to(torch.float32)
        if self.l2:
            embeddings = embeddings / torch.clamp(torch.linalg.vector_norm(embeddings, dim=1, keepdim=True), min=1e-12)
        score = self.head(embeddings)[:, 0] * self.target_scale + self.target_offset
        return (score, *self.head.extra_outputs(embeddings)) if self.extras else score


def preprocess_doc(scorer) -> dict:
    """preprocess.json: every step before the graph, as values (a reader without this project can redo them)."""
    family = scorer.model.family
    if family.pixels == "naflex" or type(scorer.processor).__name__ in ("Siglip2ImageProcessor",
                                                                         "Siglip2ImageProcessorPil"):
        raise ExportRefused(f"{family.name} (NaFlex) takes a variable number of patches per image, chosen by its "
                            "processor at each image's own aspect ratio: a fixed-input graph cannot reproduce it")
    pixels = ModelPixels(scorer.processor, family.pixels)
    try:
        steps = pixels.describe()
    except ValueError as error:
        raise ExportRefused(f"the model's image processor cannot be exported: {error}") from None
    reduced = scorer.decoding == "reduced"
    return {
        "format_version": FORMAT_VERSION,
        "input": {"name": "pixels", "dtype": "uint8", "layout": "NHWC", "channels": "RGB",
                  "height": steps.get("crop_size", steps.get("height")),
                  "width": steps.get("crop_size", steps.get("width"))},
        "output": {"name": "score", "dtype": "float32", "score_range": list(scorer.spec.score_range),
                   "clip_to": list(scorer.spec.score_range) if scorer.spec.clip_scores else None,
                   "extra_outputs": list(extra_outputs(scorer))},
        "decode": {"mode": "RGB", "exif_transpose": True, "decoding": scorer.decoding,
                   "min_short_side": pixels.short if reduced else None},
        "max_aspect": MAX_ASPECT,
        "pixels": steps,
        "in_graph": ["x * rescale_factor", "(x - image_mean) / image_std", "vision tower", "embedding -> float16 -> "
                     "float32", f"embedding normalisation: {scorer.spec.embed_norm}", "head",
                     "x * target_scale + target_offset"],
    }


def export_graph(scorer, path: Path, batch: int = 2) -> Path:
    """The scorer's graph as ONNX (float32) at `path`, any batch size."""
    graph = ScoreGraph(scorer).eval().to("cpu")
    doc = preprocess_doc(scorer)
    example = torch.zeros((batch, doc["input"]["height"], doc["input"]["width"], 3), dtype=torch.uint8)
    frozen = _freeze_position_encodings(graph, example)
    try:
        with torch.inference_mode():
            outputs = ["score", *extra_outputs(scorer)]
            torch.onnx.export(graph, (example,), str(path), input_names=["pixels"], output_names=outputs,
                              dynamic_axes={"pixels": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
                              opset_version=OPSET,
                              dynamo=False, do_constant_folding=True)
    finally:
        for module in frozen:
            del module.interpolate_pos_encoding  # the class's own method again
    return path


def _freeze_position_encodings(graph: ScoreGraph, example: torch.Tensor) -> list[nn.Module]:
    """The position encodings a tower resizes to the input's size (DINOv2 with an antialiased bicubic resize that
    ONNX has no operator for), computed once at the exported input size and kept as constants: the input size is
    fixed (preprocess.json), so the graph computes what the tower computes. Returns the modules changed."""
    recorded: dict[nn.Module, torch.Tensor] = {}
    modules = [m for m in graph.encoder.modules() if callable(getattr(m, "interpolate_pos_encoding", None))]
    for module in modules:
        method = module.interpolate_pos_encoding

        def recording(*args, _method=method, _module=module, **kwargs):
            recorded[_module] = out = _method(*args, **kwargs)
            return out

        module.interpolate_pos_encoding = recording
    with torch.inference_mode():
        graph(example)
    for module in modules:
        if module in recorded:
            constant = recorded[module].detach().clone()
            module.interpolate_pos_encoding = lambda *args, _constant=constant, **kwargs: _constant
        else:
            del module.interpolate_pos_encoding
    return [m for m in modules if m in recorded]


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantisation of the graph's matrix products (weights int8, activations quantised per batch)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    return target


def write_export(scorer, folder: Path, quantize: str = "none", spec_doc: dict | None = None) -> dict[str, str]:
    """model.onnx (float32, or int8), preprocess.json and the source's scorer.json (its head spec, scale and
    backbone: what reports and model identities read) in `folder`; returns the artifacts of the ONNX model."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = preprocess_doc(scorer)
    if quantize == "int8":
        export_graph(scorer, folder / "float32.onnx")
        quantize_int8(folder / "float32.onnx", folder / GRAPH_FILE)
        (folder / "float32.onnx").unlink()
    else:
        export_graph(scorer, folder / GRAPH_FILE)
    doc["weights"] = quantize if quantize != "none" else "float32"
    (folder / PREPROCESS_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True))
    artifacts = {"graph": str(folder / GRAPH_FILE), "preprocess": str(folder / PREPROCESS_FILE)}
    if spec_doc is not None:
        (folder / SPEC_FILE).write_text(json.dumps(spec_doc, indent=2, sort_keys=True))
        artifacts["scorer_spec"] = str(folder / SPEC_FILE)
    return artifacts


def check(quantize: str) -> None:
    """Refuse, before any work, what this runtime cannot do or a machine without onnxruntime."""
    if quantize not in ("none", "int8"):
        raise ExportRefused(f"--quantize {quantize}: the onnx format offers none or int8")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ExportRefused("--format onnx needs onnxruntime and onnx: pip install -e '.[onnx]'") from None


def scorer(artifacts: dict[str, str]):
    from clip_aesthetics.scoring.onnx_model import OnnxScorer

    return OnnxScorer().load(artifacts, device="cpu")


def torch_float32(scorer):
    """The scorer computing in float32 on the CPU: what the export reproduces and is compared with."""
    scorer.to("cpu")
    scorer.dtype = torch.float32
    return scorer


ONNX = Runtime("onnx", check=check, reference=torch_float32, write=write_export, scorer=scorer,
               log="clip_aesthetics.scoring.onnx_model:log_model", packages=("onnxruntime",))
