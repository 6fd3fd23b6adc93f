"""clip-aesthetics: frozen image-backbone embeddings -> aesthetic-score heads, tracked, compared and served with MLflow.

The Python API is one call::

    import clip_aesthetics

    scorer = clip_aesthetics.load("models:/clip-aesthetics@champion")
    scores = scorer.score(["photo.jpg", jpeg_bytes, pil_image])  # score, percentile, error: one row per image

Importing the package loads nothing heavy: torch and MLflow are imported by `load`.
"""

from __future__ import annotations

from clip_aesthetics import environment  # noqa: F401  (standard library only) its clock starts with the package

__version__ = "0.1.0"


def load(model_uri: str, tracking_uri: str | None = None, device: str | None = None, precision: str | None = None):
    """The scorer behind any MLflow model URI (`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/RUN_ID/model`,
    a model folder), ready to `score(images)`: the same model the CLI, the server and Spark load.

    `tracking_uri`: the store holding the model (e.g. `sqlite:////abs/path/mlflow.db`); None: MLflow's own
    choice ($MLFLOW_TRACKING_URI, else ./mlflow.db as the CLI uses). `device`: cpu, cuda, cuda:1, mps; None: the
    device the model picks (a GPU when there is one). `precision`: float32, bfloat16, float16 or auto (None: the
    CLIP_AESTHETICS_PRECISION setting, else auto: float16 on a GPU; on a CPU the faster of float32 and bfloat16 as
    measured there; a published head in float32); the choice and its reason are printed (stderr) and kept as
    `scorer.compute_precision` and `scorer.precision_reason`. Raises `clip_aesthetics.errors.ScoringInputError` with
    the reason when the model cannot be found or loaded.
    """
    import sys

    from clip_aesthetics.scoring.uris import load_scorer
    from clip_aesthetics.settings.scoring import requested_precision
    from clip_aesthetics.tracking.stores import use_store

    if tracking_uri:  # else MLflow's own choice, which a notebook may have set already
        use_store(tracking_uri)
    asked = requested_precision({"precision": precision} if precision else None)
    scorer = load_scorer(model_uri, asked)
    if device:
        scorer = scorer.to(device)
    print(f"clip-aesthetics: {model_uri} scores in {scorer.precision_reason}", file=sys.stderr)
    return scorer
