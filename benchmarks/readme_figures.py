"""benchmarks/results-quick.json -> the results block of docs/performance.md, so that every figure there is one
measured run's.

    python benchmarks/readme_figures.py --write     # after `python benchmarks/bench.py --quick --json ...`

A test keeps that page equal to what this renders from the committed JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results-quick.json"
BACKBONES = ROOT / "benchmarks" / "results-backbones.json"  # `bench.py --quick --only backbones`
RUNTIMES = ROOT / "benchmarks" / "results-runtimes.json"  # `bench.py --only runtimes`
MEANING = ROOT / "benchmarks" / "results-meaning.json"  # `bench.py --quick --only meaning` -> docs/score-meaning.md
MEANING_START, MEANING_END = "<!-- meaning:start -->", "<!-- meaning:end -->"
START, END = "<!-- results:start -->", "<!-- results:end -->"
RUNTIME_NAMES = {"torch_float32": "torch eager, float32", "torch_bfloat16": "torch eager, bfloat16",
                 "onnx_float32": "ONNX Runtime, float32", "onnx_int8": "ONNX Runtime, int8 (dynamic)"}


def runtime_table(r: dict) -> list[str]:
    """One row per model and runtime of a `--only runtimes` run: speed as a ratio to torch float32 in the same run."""
    lines = [f"Runtimes (`clip-aesthetics export`, [ONNX](onnx.md)), one run of `{r.get('command', '')} --json "
             f"out.json`, {r['date']}, on {r['machine']}; {r['runtime_images']} generated 500x400 JPEGs, random "
             "weights at the real sizes:", "",
             "| model | runtime | forward, images/s | forward vs torch float32 | end to end, images/s | end to end vs "
             "torch float32 | end to end / own forward | max score difference, Spearman vs torch float32 | cold "
             "start of `score`, one image (s) | its peak memory (MiB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for size in ("b32", "b16"):
        for name, label in RUNTIME_NAMES.items():
            key = f"runtime_{size}_{name}"
            if f"{key}_images_per_second" not in r:
                continue
            cold = r.get(f"{key}_cold_start_seconds")
            peak = r.get(f"{key}_cold_start_peak_mib")
            lines.append(
                f"| ViT-{size[0].upper()}/{size[1:]} | {label} | {r[f'{key}_forward_images_per_second']:.1f} | "
                f"{r[f'{key}_forward_vs_torch_float32']:.2f}x | {r[f'{key}_images_per_second']:.1f} | "
                f"{r[f'{key}_vs_torch_float32']:.2f}x | {r[f'{key}_fraction_of_forward']:.2f} | "
                f"{r[f'{key}_max_abs_diff']:.2g}, {r[f'{key}_spearman_vs_float32']:.5f} | "
                f"{'' if cold is None else f'{cold:.1f}'} | {'' if peak is None else f'{peak:,.0f}'} |")
    standalone = [f"{r[k]:.1f} s" for k in (f"runtime_b32_onnx_{w}_standalone_cold_start_seconds"
                                              for w in ("float32", "int8")) if k in r]
    if standalone:
        lines += ["", f"Cold start of [`docs/onnx_standalone.py`](onnx.md) (onnxruntime, numpy and Pillow, no MLflow) "
                  f"on one image with the ViT-B/32 export: {' (float32), '.join(standalone)} (int8). Most of "
                  "`score`'s own cold start with an export is importing MLflow and opening its store."]
    return lines + [""]


def backbone_table(b: dict) -> list[str]:
    """One row per backbone of a `--only backbones` run."""
    lines = [f"Backbones at their real sizes (random weights), one run of `{b.get('command', '')} --json out.json`, "
             f"{b['date']}, on {b['machine']}; forward on 24 pre-decoded images, end to end on "
             f"{b['backbone_images']} files (few images: read the ratios, not the third digit):", "",
             "| backbone | parameters (M) | embedding | forward, images/s (float32 / bfloat16) | end-to-end / forward "
             "| bfloat16 fidelity (Spearman of a trained head vs float32) |", "|---|---|---|---|---|---|"]
    for kind in ("b32", "l14", "siglip-so400m", "dinov2-l"):
        key = f"backbone_{kind}"
        if f"{key}_parameters_m" not in b:
            continue
        rates = " / ".join(f"{b[k]:.2f}" for k in (f"{key}_forward_images_per_second",
                                                    f"{key}_forward_images_per_second_bf16") if k in b)
        fractions = " / ".join(f"{b[k]:.2f}" for k in (f"{key}_fraction_of_forward", f"{key}_fraction_of_forward_bf16")
                               if k in b)
        fidelity = b.get(f"{key}_bf16_score_spearman_trained_head")
        lines.append(f"| `{kind}` | {b[f'{key}_parameters_m']:.0f} | {b[f'{key}_embedding_dim']} | {rates} | "
                     f"{fractions} | {'' if fidelity is None else f'{fidelity:.5f}'} |")
    peak = b.get("backbone_peak_rss_mb_embedding_siglip-so400m")
    if peak:
        lines += ["", f"Peak memory of a process embedding with SigLIP so400m at 384: {peak:,.0f} MB."]
    lines += ["", "The fidelity column's ridge head is fitted on the same 24 images' float32 embeddings: with fewer "
              "images than dimensions it interpolates them, a harsher test than a real head (the 96-image protocol "
              "above, penalty chosen on held-out images, gives the bfloat16 figure quoted there)."]
    return lines + [""]


def render(f: dict, backbones: dict | None = None, runtimes: dict | None = None) -> str:
    def pair(key: str) -> str:
        both = [f.get(key), f.get(f"{key}_bf16")]
        return " / ".join(f"{v:.2f}" for v in both if v is not None)

    policy = f.get("embed_cpu_decoding_policy", "?")
    lines = [
        START,
        "<!-- generated from benchmarks/results-quick.json by `python benchmarks/readme_figures.py --write`; "
        "a test keeps it current -->",
        f"One run of `{f.get('command', 'python benchmarks/bench.py --quick')} --json out.json`, {f['date']}, on "
        f"{f['machine']} (figures: `benchmarks/results-quick.json`; how to read them: `benchmarks/RESULTS.md`):",
        "",
        "| figure | project | seed-style | ratio | target |",
        "|---|---|---|---|---|",
        f"| embedding, 2-model grid, {f['embed_images']} images, ViT-B/32, float32 (s) | "
        f"{f['embed_project_seconds']:.1f} | {f['embed_seed_seconds']:.1f} | {f['embed_grid_speedup_vs_seed']:.2f}x | "
        ">= 1.9 |",
        f"| training, one config-epoch, 229,971 + 25,559 embeddings (s) | {f['train_seconds_per_config_epoch']:.2f} | "
        f"{f['train_seed_seconds_per_config_epoch']:.1f} | {f['train_grid_speedup_vs_seed']:.1f}x | >= 20 |",
        f"| end-to-end embedding / model forward alone, float32 / bfloat16 (this CPU's policy: decoding {policy}) | "
        f"{pair('embed_fraction_of_forward')} | | | >= 0.9 |",
        f"| the same, decoding in worker processes beside the forward | "
        f"{pair('embed_fraction_of_forward_decoding_beside_forward')} | | | |",
        f"| the same, decoding on threads between forwards | "
        f"{pair('embed_fraction_of_forward_decoding_between_forwards')} | | | |",
        f"| scoring / forward alone, pyfunc on bytes (float32 / bfloat16) | "
        f"{pair('score_fraction_of_forward_pyfunc_bytes')} | | | >= 0.9 |",
        f"| scoring / forward alone, CLI on files (float32 / bfloat16) | "
        f"{pair('score_fraction_of_forward_cli_files')} | | | >= 0.9 |",
        f"| closed-form probe, 230k x 512 (s) | {f['closed_form_seconds']:.2f} | | | <= 5 |",
        f"| peak memory of `train` on a 255,530-image cache (MB) | {f['peak_rss_mb']:,.0f} | | | <= 2,000 |",
        f"| Spark `local[2]` / one process: scoring, embedding ({f.get('scorer_images', 96)} images) | "
        f"{f['spark_score_fraction_of_local']:.2f}, {f['spark_embed_fraction_of_local']:.2f} | | | |",
        "",
    ]
    if "embed_grid_speedup_vs_seed_bf16" in f:
        lines += [
            "In bfloat16 (what `precision=auto` picks on a CPU that measures it faster, as this one did) the forward "
            "runs "
            f"{f['embed_forward_images_per_second_bf16'] / f['embed_forward_images_per_second']:.1f}x faster than in "
            f"float32 and the embedding grid {f['embed_grid_speedup_vs_seed_bf16']:.1f}x faster than the seed-style "
            f"float32 baseline, while a trained head's scores keep a Spearman of "
            f"{f['precision_bf16_score_spearman_trained_head']:.5f} against float32 (largest change "
            f"{f['precision_bf16_score_max_abs_change_trained_head']:.4f} on the 1-10 scale).",
        ]
    if backbones:
        lines += [""] + backbone_table(backbones)
    if runtimes:
        lines += runtime_table(runtimes)
    lines += [
        f"`decoding=reduced` makes decoding {f['decode_speedup_reduced']:.1f}x cheaper on 640-1024 px JPEGs and "
        f"{f['decode_speedup_large_reduced']:.1f}x on 2000-4000 px ones, but moves embeddings of finely textured "
        "images more than re-saving them as JPEG does, so it is an option, not the default. Spark cannot win on 2 "
        "cores (see [Spark](spark.md)). Not yet reproduced on real CLIP weights or real AVA photos.",
        END,
    ]
    return "\n".join(lines) + "\n"


def with_block(readme: str, figures: dict, backbones: dict | None = None, runtimes: dict | None = None) -> str:
    start, end = readme.index(START), readme.index(END) + len(END) + 1
    return readme[:start] + render(figures, backbones, runtimes) + readme[end:]


def committed() -> tuple[dict, dict | None, dict | None]:
    def optional(path: Path) -> dict | None:
        return json.loads(path.read_text()) if path.exists() else None

    return json.loads(RESULTS.read_text()), optional(BACKBONES), optional(RUNTIMES)


def with_meaning(page: str, figures: dict) -> str:
    """docs/score-meaning.md with its generated block from a `--only meaning` run."""
    from meaning import meaning_table

    start, end = page.index(MEANING_START), page.index(MEANING_END) + len(MEANING_END)
    block = [MEANING_START, "<!-- generated from benchmarks/results-meaning.json by "
             "`python benchmarks/readme_figures.py --write`; do not edit -->", *meaning_table(figures), MEANING_END]
    return page[:start] + "\n".join(block) + page[end:]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    if "--write" in sys.argv:
        page = ROOT / "docs" / "performance.md"
        page.write_text(with_block(page.read_text(), *committed()))
        meaning_page = ROOT / "docs" / "score-meaning.md"
        meaning_page.write_text(with_meaning(meaning_page.read_text(), json.loads(MEANING.read_text())))
    else:
        print(render(*committed()), end="")
