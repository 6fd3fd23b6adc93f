"""Per-family figures at the real sizes of the named checkpoints (random weights): `bench.py --only backbones`.

Forward alone and end to end (files -> cache) in images/s, in float32 and, where the CPU computes it natively,
bfloat16; their ratio; the vision tower's parameter count; half-precision fidelity (Spearman of a trained ridge
head's scores in bfloat16 against float32, on generated scored pictures); peak memory of embedding with the
largest, measured in a fresh process. On a 2-core CPU the large towers run a few images each: say so with the
figures (`backbone_images`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from clip_aesthetics.backbones.families import load_backbone, resolve_backbone, save_random_backbone
from clip_aesthetics.data.sample_data import write_sample_ava
from clip_aesthetics.embedding import precision
from clip_aesthetics.embedding.cache import EmbeddingCache
from clip_aesthetics.embedding.embed import default_workers, embed_pixels, embed_to_cache
from clip_aesthetics.heads.head import HeadSpec, build_head, predict_scores
from clip_aesthetics.heads.kinds import fit_ridge
from clip_aesthetics.heads.metrics import spearman
from clip_aesthetics.images.decode import load_rgb
from clip_aesthetics.images.pixels import ModelPixels

KINDS = ["b32", "l14", "siglip-so400m", "dinov2-l"]


def bench_backbones(work: Path, quick: bool) -> dict:
    n = 8 if quick else 32
    ava = write_sample_ava(work / "ava", max(n, 24), seed=4, size=(500, 400))
    paths = sorted((ava / "image").glob("*.jpg"))
    scores = _scores(ava)
    dtypes = [torch.float32] + ([torch.bfloat16] if precision.native_bfloat16() else [])
    figures = {"backbone_images": n}
    for kind in KINDS:
        folder = save_random_backbone(work / kind, kind, seed=0)
        model, processor = load_backbone(resolve_backbone(str(folder)), torch.device("cpu"))
        figures[f"backbone_{kind}_parameters_m"] = sum(p.numel() for p in model.parameters()) / 1e6
        figures[f"backbone_{kind}_embedding_dim"] = model.embedding_dim
        pixels = torch.from_numpy(np.stack([ModelPixels(processor)(load_rgb(p)) for p in paths]))
        embeddings = {}
        for dtype in dtypes:
            suffix = "" if dtype == torch.float32 else "_bf16"
            embed_pixels(model, pixels[:2], dtype)  # warm-up: kernels of this precision
            started = time.perf_counter()
            embeddings[dtype] = np.concatenate([embed_pixels(model, pixels[i:i + 8], dtype)
                                                for i in range(0, len(pixels), 8)])
            forward = len(pixels) / (time.perf_counter() - started)
            cache = EmbeddingCache(work / "caches" / f"{kind}{suffix}")
            cache.open({"embedding_dim": model.embedding_dim})
            started = time.perf_counter()
            embed_to_cache(cache, [(i, p) for i, p in enumerate(paths[:n])], model, processor, dtype, 8,
                           default_workers(-1), 4096, progress=False)
            through = n / (time.perf_counter() - started)
            figures.update({f"backbone_{kind}_forward_images_per_second{suffix}": forward * 1.0,
                            f"backbone_{kind}_end_to_end_images_per_second{suffix}": through,
                            f"backbone_{kind}_fraction_of_forward{suffix}": through / forward})
        if torch.bfloat16 in embeddings:
            figures[f"backbone_{kind}_bf16_score_spearman_trained_head"] = _fidelity(
                embeddings[torch.float32], embeddings[torch.bfloat16], scores[:len(pixels)])
        del model
    figures["backbone_peak_rss_mb_embedding_siglip-so400m"] = _peak_rss(work / "siglip-so400m", paths[:n])
    return figures


def _scores(ava: Path) -> np.ndarray:
    from clip_aesthetics.data.ava import read_ava

    table = read_ava(ava / "AVA.txt").set_index("image_name")["mean_score"]
    return np.array([table[p.stem] for p in sorted((ava / "image").glob("*.jpg"))])


def _fidelity(reference: np.ndarray, half: np.ndarray, scores: np.ndarray) -> float:
    """Spearman of a ridge head's scores (fitted on float32 embeddings) between float32 and bfloat16 inputs."""
    spec = HeadSpec("ridge", reference.shape[1], "none", 10.0)
    head = build_head(spec)
    fit_ridge(head, reference, scores / 10, None, None)
    return spearman(predict_scores(head, spec, reference), predict_scores(head, spec, half))


def _peak_rss(folder: Path, paths: list[Path]) -> float:
    """Peak resident memory (MB) of a fresh process embedding `paths` with the model in `folder`."""
    code = (
        "import json, resource, sys, torch\nfrom pathlib import Path\n"
        "from clip_aesthetics.embedding.cache import EmbeddingCache\n"
        "from clip_aesthetics.backbones.families import load_backbone, resolve_backbone\n"
        "from clip_aesthetics.embedding.embed import embed_to_cache\n"
        "folder, paths, root = Path(sys.argv[1]), [Path(p) for p in json.loads(sys.argv[2])], Path(sys.argv[3])\n"
        "model, processor = load_backbone(resolve_backbone(str(folder)), torch.device('cpu'))\n"
        "cache = EmbeddingCache(root); cache.open({'embedding_dim': model.embedding_dim})\n"
        "embed_to_cache(cache, list(enumerate(paths)), model, processor, torch.float32,"
        " 8, 0, 4096, progress=False)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    done = subprocess.run([sys.executable, "-c", code, str(folder), json.dumps([str(p) for p in paths]),
                           str(folder.parent / "rss-cache")], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])
