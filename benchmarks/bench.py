"""The project against a seed-style baseline, measured side by side in one run.

    python benchmarks/bench.py --quick --json out.json

Embedding: the 2-model grid on generated AVA-like JPEGs with real-sized, randomly initialised
ViT-B/32 models (openai's sizes, from CLIPConfig). Training: the 4 x 5 grid on 229,971 + 25,559
synthetic 512-d embeddings. Plus the closed-form probe, and the peak memory of `clip-aesthetics train`
on a 255,530-image cache. The baseline is written here, reproducing the seed notebook's costs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sections beside this file

from clip_aesthetics.embedding import precision  # noqa: E402

# section -> "module:function": a module of this folder per section, each function taking (its work folder, quick)
SECTIONS = {"embed": "embedding:bench_embedding", "train": "training:bench_training",
            "closed_form": "training:bench_closed_form", "memory": "training:bench_memory",
            "decoding": "decoding:bench_decoding", "scorer": "scorer:bench_scorer", "spark": "spark_engine:bench_spark",
            "shards": "shards:bench_shards", "backbones": "backbones:bench_backbones",
            "runtimes": "runtimes:bench_runtimes", "meaning": "meaning:bench_meaning"}

TARGETS = {  # figure: (comparison, bound)
    "embed_grid_speedup_vs_seed": (">=", 1.9),
    "embed_fraction_of_forward": (">=", 0.9),
    "embed_fraction_of_forward_bf16": (">=", 0.9),
    "score_fraction_of_forward_pyfunc_bytes": (">=", 0.9),
    "score_fraction_of_forward_cli_files": (">=", 0.9),
    "score_fraction_of_forward_pyfunc_bytes_bf16": (">=", 0.9),
    "score_fraction_of_forward_cli_files_bf16": (">=", 0.9),
    "train_grid_speedup_vs_seed": (">=", 20.0),
    "closed_form_seconds": ("<=", 5.0),
    "peak_rss_mb": ("<=", 2000.0),
}


TARGETS_SECTIONS = ["embed", "train", "closed_form", "memory"]
EXTRA_SECTIONS = ["decoding", "scorer", "spark"]
# on request (--only): backbones, minutes on 2 cores (ViT-L/14, SigLIP so400m at 384); shards; runtimes: torch and
# ONNX Runtime, float32 and int8; meaning: the distribution and pairwise heads
ON_REQUEST = ["backbones", "shards", "runtimes", "meaning"]


def report(figures: dict) -> str:
    """The targets present in `figures`, project against seed-style where there is one, then every figure."""
    pairs = {"embed_grid_speedup_vs_seed": ("embed_project_seconds", "embed_seed_seconds"),
             "train_grid_speedup_vs_seed": ("train_seconds_per_config_epoch", "train_seed_seconds_per_config_epoch")}
    lines = ["| figure | project | seed-style | value | target |", "|---|---|---|---|---|"]
    for name, (comparison, bound) in TARGETS.items():
        if name not in figures:
            continue
        ours, theirs = (f"{figures[k]:.3f}" for k in pairs[name]) if name in pairs else ("", "")
        lines.append(f"| {name} | {ours} | {theirs} | {figures[name]:.3f} | {comparison} {bound} "
                     f"{'met' if _met(figures[name], name) else 'NOT MET'} |")
    extra = [k for k in figures if k not in TARGETS]
    lines += ["", "| other figure | value |", "|---|---|"] + [f"| {k} | {_fmt(figures[k])} |" for k in extra]
    return "\n".join(lines)


def _met(value: float, name: str) -> bool:
    comparison, bound = TARGETS[name]
    return value >= bound if comparison == ">=" else value <= bound


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images and a sampled baseline: under 5 minutes")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--only", choices=TARGETS_SECTIONS + EXTRA_SECTIONS + ON_REQUEST, action="append")
    args = parser.parse_args()
    sections = args.only or TARGETS_SECTIONS + EXTRA_SECTIONS
    native = "native bfloat16" if precision.native_bfloat16() else "no native bfloat16"
    figures = {"date": date.today().isoformat(), "machine": f"{platform.machine()} "
               f"({torch.backends.cpu.get_cpu_capability()}, {native}), {os.cpu_count()} cores, "
               f"torch {torch.__version__}, {torch.get_num_threads()} threads", "quick": args.quick,
               "command": "python benchmarks/bench.py" + " --quick" * args.quick
               + "".join(f" --only {s}" for s in args.only or [])}
    with tempfile.TemporaryDirectory() as tmp:
        for name in sections:
            module, _, function = SECTIONS[name].partition(":")
            run = getattr(importlib.import_module(module), function)
            figures.update(run(Path(tmp) / name, args.quick))
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
