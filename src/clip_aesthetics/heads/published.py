"""A published aesthetic head's weight file -> a head of this project (HeadSpec kind `chain`) that scores as its
authors' code does: L2-normalised backbone embedding, then their layers, the raw output on their scale.

The layouts read (shapes come from the file; nothing is downloaded):

- LAION aesthetic-predictor (`sa_0_4_vit_b_32_linear.pth`, `..._b_16_...`, `..._l_14_...`): one linear layer,
  keys `weight` [1, d] and `bias` [1], on CLIP's projected image embedding;
- improved-aesthetic-predictor (`sac+logos+ava1-l14-linearMSE.pth`, `ava+logos-l14-linearMSE.pth`, ...): five
  linear layers `layers.{0,2,4,6,7}` (768 -> 1024 -> 128 -> 64 -> 16 -> 1, dropout between, no activation; the
  `reluMSE` files put a ReLU between: `activation=relu`), on CLIP ViT-L/14's projected embedding;
- aesthetic-predictor-v2-5 (`aesthetic_predictor_v2_5.pth`): `scoring_head.{0,2,4,6,8}` (1152 -> 1024 -> 128 ->
  64 -> 16 -> 1), on SigLIP so400m-patch14-384's pooled embedding.

Any other state dict that is a chain of linear layers is read the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from clip_aesthetics.digests import file_sha256
from clip_aesthetics.errors import UserError
from clip_aesthetics.heads.chain import ACTIVATIONS, ChainHead
from clip_aesthetics.heads.head import SCORE_RANGE, HeadSpec

# Where each layout is published, and what its authors say of its licence (shown on the registered version).
KNOWN = {
    "laion-linear": ("LAION-AI/aesthetic-predictor (github.com/LAION-AI/aesthetic-predictor, sa_0_4_vit_*_linear.pth)",
                     "MIT, as its repository states (check before shipping)"),
    "improved-mlp": ("christophschuhmann/improved-aesthetic-predictor (github.com/christophschuhmann/"
                     "improved-aesthetic-predictor, *.pth)",
                     "Apache-2.0, as its repository states (check before shipping)"),
    "v2.5": ("discus0434/aesthetic-predictor-v2-5 (github.com/discus0434/aesthetic-predictor-v2-5, "
             "models/aesthetic_predictor_v2_5.pth)", "AGPL-3.0, as its repository states (check before shipping)"),
    "linear-chain": ("a state dict of linear layers", "unknown: check the file's source"),
}


class HeadFileError(UserError, ValueError):
    """The head file cannot be read as a published head, or does not fit the backbone; the message says why."""


def _natural(key: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


NESTED = ("state_dict", "model", "model_state_dict", "net", "head", "ema")  # where checkpoints keep the weights


def read_head_file(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors by name: a state dict, or one nested under a checkpoint's usual keys. Only tensors are
    ever loaded (weights_only): a file holding Python objects is refused, never unpickled."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise HeadFileError(f"no head file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" not in str(error).lower():  # no Python object named: damaged, or not a torch file at all
            raise HeadFileError(f"{path}: not a PyTorch state dict (the file is damaged or in another format)") \
                from None
        raise HeadFileError(f"{path}: holds Python objects besides tensors (a pickled model or class), which this "
                            "project never loads: unpickling them could run any code. Save the weights alone, "
                            "torch.save(model.state_dict(), 'head.pth'), from code you trust") from None
    except Exception as error:  # torch raises many kinds for a damaged or non-torch file
        raise HeadFileError(f"{path}: not a PyTorch state dict ({type(error).__name__}: "
                            f"{str(error).splitlines()[0] if str(error) else ''})") from None
    state = _unwrapped(state, path)
    for name, tensor in state.items():
        if tensor.is_meta:
            raise HeadFileError(f"{path}: tensor {name!r} holds no values (a meta tensor, saved from a model that was "
                                "never given weights): not a trained head")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise HeadFileError(f"{path}: tensor {name!r} holds {bad} NaN or infinite value(s) of {tensor.numel()}: "
                                "it would score every image NaN or infinity; not imported")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def _unwrapped(state, path: Path) -> dict[str, torch.Tensor]:
    def tensors(value) -> bool:
        return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())

    if tensors(state):
        return state
    if isinstance(state, dict):
        for key in NESTED:
            if tensors(state.get(key)):
                return state[key]
        nested = [k for k, v in state.items() if tensors(v)]
        if len(nested) == 1:
            return state[nested[0]]
        keys = ", ".join(map(str, list(state)[:8]))
        raise HeadFileError(f"{path}: expected a state dict of tensors, got a dict with keys {keys}"
                            + (f"; {len(nested)} of them hold tensors ({', '.join(map(str, nested[:4]))}): save the "
                               "head's alone" if nested else ""))
    raise HeadFileError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")


def chain_layers(state: dict[str, torch.Tensor], path: Path) -> list[list]:
    """[[prefix, in, out], ...] of the linear layers in the file, in order; refused unless they chain to 1 output."""
    weights = sorted((k for k, v in state.items() if k.endswith("weight") and v.ndim == 2), key=_natural)
    if not weights:
        raise HeadFileError(f"{path}: no linear layer weights (2-d `*weight` tensors) among keys {sorted(state)[:8]}")
    layers = []
    for key in weights:
        prefix = key[: -len("weight")].rstrip(".")
        out_dim, in_dim = state[key].shape
        bias = state.get(f"{prefix}.bias" if prefix else "bias")
        if bias is not None and tuple(bias.shape) != (out_dim,):
            raise HeadFileError(f"{path}: {prefix or '(root)'} bias has shape {list(bias.shape)}, expected [{out_dim}]")
        layers.append([prefix, int(in_dim), int(out_dim), bias is not None])
    for (name, _, out_dim, _), (next_name, in_dim, _, _) in zip(layers, layers[1:]):
        if out_dim != in_dim:
            raise HeadFileError(f"{path}: layer {name} gives {out_dim} values but {next_name} takes {in_dim}")
    if layers[-1][2] != 1:
        raise HeadFileError(f"{path}: the last layer ({layers[-1][0] or 'weight'}) gives {layers[-1][2]} values, not "
                            "one score")
    expected = {(f"{p}." if p else "") + n for p, _, _, has_bias in layers for n in (("weight", "bias") if has_bias
                                                                                    else ("weight",))}
    extra = sorted(set(state) - expected)
    if extra:
        raise HeadFileError(f"{path}: keys that are not linear layers ({', '.join(extra[:5])}): not a chain of linear "
                            "layers this project can rebuild")
    return layers


def layout_of(layers: list[list]) -> str:
    prefixes = [p for p, *_ in layers]
    if prefixes == [""]:
        return "laion-linear"
    if prefixes == [f"layers.{k}" for k in (0, 2, 4, 6, 7)]:
        return "improved-mlp"
    if prefixes == [f"scoring_head.{k}" for k in (0, 2, 4, 6, 8)]:
        return "v2.5"
    return "linear-chain"


def import_head(path: Path, embedding_dim: int, activation: str = "none") -> tuple[dict, HeadSpec, dict]:
    """(state dict, spec, facts) of a published head for a backbone giving `embedding_dim`-d embeddings."""
    if activation not in ACTIVATIONS:
        raise HeadFileError(f"activation={activation!r}: expected one of {', '.join(ACTIVATIONS)}")
    state = read_head_file(path)
    layers = chain_layers(state, path)
    first = layers[0]
    if first[1] != embedding_dim:
        key = f"{first[0]}.weight" if first[0] else "weight"
        raise HeadFileError(f"{path}: the head takes {first[1]}-d embeddings ({key} has shape "
                            f"{list(state[key].shape)}) but the backbone gives {embedding_dim}-d ones: pass the "
                            "backbone the head was trained on (LAION B/32 and B/16: 512, L/14: 768, SigLIP so400m: "
                            "1152)")
    spec = HeadSpec("chain", embedding_dim, "l2", 1.0, 0.0, SCORE_RANGE, layers=tuple(tuple(layer) for layer in layers),
                    activation=activation, clip_scores=False)
    head = ChainHead(layers, activation)
    head.load_state_dict(state, strict=True)
    layout = layout_of(layers)
    origin, licence = KNOWN[layout]
    facts = {"head_layout": layout, "head_sha256": file_sha256(path), "head_file": Path(path).name,
             "head_origin": origin, "head_licence": licence,
             "head_layers": " -> ".join([str(layers[0][1]), *(str(layer[2]) for layer in layers)])}
    return {k: v.float() for k, v in head.state_dict().items()}, spec, facts
