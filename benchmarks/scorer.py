"""The `scorer` section: the registered model's scoring paths against its own forward."""

from __future__ import annotations

from pathlib import Path

from common import b32_setup, fast_precisions, forward_all, fraction_of_forward, pixels_of


def bench_scorer(work: Path, quick: bool) -> dict:
    """The registered model's path against its own forward, in each precision this CPU runs well:
    pyfunc on encoded bytes (what a server gets) and file paths (what `clip-aesthetics score` calls)."""
    n_images = 96 if quick else 256
    import pandas as pd

    from clip_aesthetics.scoring.model import AestheticScorer, write_artifacts

    paths, _, source, spec, head = b32_setup(work, n_images, seed=1)
    images = pd.DataFrame({"image": [p.read_bytes() for p in paths]})
    figures = {"scorer_images": len(paths)}
    for precision in fast_precisions():
        spec_doc = {"head": spec.to_dict(), "precision": precision,
                    "clip": {"model_id": source.model_id, "revision": source.revision}}
        scorer = AestheticScorer().load(write_artifacts(work / precision, head.state_dict(), spec_doc, None), "cpu")
        pixels = pixels_of(scorer.processor, paths)
        suffix = "" if precision == "float32" else "_bf16"
        for kind, end_to_end in (("pyfunc_bytes", lambda: scorer.predict(None, images)),
                                 ("cli_files", lambda: scorer.score_paths(paths))):
            forward, through, fraction = fraction_of_forward(
                lambda: forward_all(scorer.model, pixels, scorer.dtype), end_to_end, len(paths))
            figures.update({f"score_forward_images_per_second{suffix}": forward,
                            f"score_images_per_second_{kind}{suffix}": through,
                            f"score_fraction_of_forward_{kind}{suffix}": fraction})
    return figures
