"""The scorer model and its format: images (bytes or paths) -> scores on its training data's scale (AVA: 1-10)
through a training run's CLIP and head.

Owns the files of the model (head.pt, scorer.json with the head spec and the CLIP id + revision, and,
once registered, the CLIP vision weights and processor): writing them, logging them as a
models-from-code pyfunc with its signature, reading them back, and loading the model.
"""

from __future__ import annotations

import importlib.metadata
import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel

from clip_aesthetics.backbones.families import BackboneSource, load_backbone, resolve_backbone
from clip_aesthetics.embedding import precision as precisions
from clip_aesthetics.embedding.embed import batch_for, default_workers, embed_sources, pick_device
from clip_aesthetics.environment import RUNTIME_PACKAGES
from clip_aesthetics.errors import ModelFolderError, non_finite_reason
from clip_aesthetics.heads.head import HeadSpec, build_head, head_extras, predict_scores, prepare
from clip_aesthetics.images.decode import load_source
from clip_aesthetics.scoring.model_checks import read_json, scale
from clip_aesthetics.scoring.reference import annotate, of_spec
from clip_aesthetics.scoring.requests import decode_value, dispatch, example_png, signature_for
from clip_aesthetics.scoring.uris import HEAD_FILE, SPEC_FILE

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the whole package: copied into every model
SCORER_ENTRY = PACKAGE_DIR / "scorer_entry.py"  # models-from-code: this file builds the pyfunc at load time
MODEL_NAME = "model"  # the scorer every training run logs (it refers to the CLIP checkpoint, not carrying it)


def write_artifacts(folder: Path, head_state: dict, spec_doc: dict, clip_folder: Path | None = None) -> dict[str, str]:
    """The scorer's files in `folder`, as the artifacts dict the model is logged with (and `load` reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(head_state, folder / HEAD_FILE)
    (folder / SPEC_FILE).write_text(json.dumps(spec_doc, indent=2, sort_keys=True))
    artifacts = {"head": str(folder / HEAD_FILE), "scorer_spec": str(folder / SPEC_FILE)}
    if clip_folder is not None:
        artifacts["clip"] = str(clip_folder)
    return artifacts


def _pyfunc(artifacts: dict[str, str]) -> dict:
    spec_doc = json.loads(Path(artifacts["scorer_spec"]).read_text())
    return dict(python_model=str(SCORER_ENTRY), artifacts=artifacts, code_paths=[str(PACKAGE_DIR)],
                pip_requirements=[f"{p}=={importlib.metadata.version(p)}" for p in RUNTIME_PACKAGES],
                signature=signature_for(spec_doc), input_example=pd.DataFrame({"image": [example_png()]}))


def log_scorer(name: str, head_state: dict, spec_doc: dict, clip_folder: Path | None = None,
               model_id: str | None = None) -> str:
    """Log the scorer (in the active run, or as the given logged model); returns its model URI."""
    with tempfile.TemporaryDirectory() as tmp:
        return log_model(write_artifacts(Path(tmp), head_state, spec_doc, clip_folder), name, model_id)


def log_model(artifacts: dict[str, str], name: str = MODEL_NAME, model_id: str | None = None) -> str:
    """Log the scorer whose files `write_artifacts` wrote (in the active run, or as the given logged model);
    returns its model URI."""
    return mlflow.pyfunc.log_model(name=name, model_id=model_id, **_pyfunc(artifacts)).model_uri


def save_scorer(path: Path, head_state: dict, spec_doc: dict, clip_folder: Path | None = None) -> Path:
    """The same model saved to a local folder, outside any tracking store (benchmarks, offline copies)."""
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.pyfunc.save_model(str(path), **_pyfunc(write_artifacts(Path(tmp), head_state, spec_doc, clip_folder)))
    return Path(path)


def read_logged(artifact_location: str) -> tuple[dict, dict]:
    """(head state, scorer.json) of a logged scorer, from its artifact location."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(mlflow.artifacts.download_artifacts(f"{artifact_location}/artifacts", dst_path=tmp))
        spec_doc = json.loads((folder / SPEC_FILE).read_text())
        head_state = torch.load(folder / HEAD_FILE, map_location="cpu", weights_only=True)
    return head_state, spec_doc


def _head_state(path) -> dict:
    """The head's weights (tensors only), or one line saying why the file cannot be them."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFolderError(f"{path}: missing (the head's weights); the model folder is incomplete") from None
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as error:
        raise ModelFolderError(f"{path}: not the head's weights (cut off or damaged?): "
                               f"{str(error).splitlines()[0][:160] if str(error) else type(error).__name__}") from None


def set_model() -> None:
    """Called by scorer_entry.py when MLflow loads the model from code."""
    mlflow.models.set_model(AestheticScorer())


class AestheticScorer(PythonModel):
    """The registered model: applies exactly the CLIP (id + revision), processor, decoding, precision, embed_norm
    and scale of training."""

    runtime = "torch"
    uses_embedding_cache = True  # evaluate embeds its images into the shared cache, then applies the head

    def load_context(self, context) -> None:
        """MLflow's load, in the precision of the load's model_config, else of the process's
        CLIP_AESTHETICS_PRECISION setting (a served model, say), else auto; load_scorer applies a user's choice."""
        from clip_aesthetics.settings.scoring import requested_precision

        self.load(context.artifacts, precision=requested_precision(context.model_config))

    def load(self, artifacts: dict[str, str], device: str = "auto", precision: str = "auto") -> AestheticScorer:
        doc = read_json(artifacts["scorer_spec"], "scorer.json")
        try:
            self.spec = HeadSpec(**doc["head"])
            self.clip_info = {"model_id": doc["clip"]["model_id"], "revision": doc["clip"]["revision"]}
        except (KeyError, TypeError) as error:
            raise ModelFolderError(f"{artifacts['scorer_spec']}: lacks or garbles {error} (the head spec and the "
                                   "backbone): not a scorer.json this project wrote, or a damaged one") from None
        scale(self.spec.score_range, artifacts["scorer_spec"], "head.score_range")
        self.reference = of_spec(doc)  # what `percentile` compares with (None: models saved before it)
        self.extra_outputs = list(doc.get("extra_outputs", []))  # beside score: a distribution head's score_std
        self.head = build_head(self.spec)
        self.head.load_state_dict(_head_state(artifacts["head"]))
        self.head.eval()
        if "clip" in artifacts:  # bundled into the model: no hub, no original folder needed
            source = BackboneSource(self.clip_info["model_id"], self.clip_info["revision"], Path(artifacts["clip"]))
        else:
            source = resolve_backbone(self.clip_info["model_id"], self.clip_info["revision"])
            if source.revision != self.clip_info["revision"]:
                raise RuntimeError(
                    f"the CLIP folder {source.model_id} changed since training (fingerprint {source.revision}, "
                    f"trained with {self.clip_info['revision']}); scores would not match the trained head"
                )
        self.precision = doc.get("precision")  # what its embeddings were computed in at training (None: imported)
        # what it scores in when precision=auto: a published head as its authors computed it (float32)
        self.default_precision = doc.get("scoring_precision") or "auto"
        self.decoding = doc.get("decoding", "full")  # as at training; older models decoded in full
        device = pick_device(device)
        self.model, self.processor = load_backbone(source, device)
        if self.model.embedding_dim != self.spec.in_dim:
            raise RuntimeError(f"backbone {source.model_id} gives {self.model.embedding_dim}-d embeddings but the "
                               f"head was trained on {self.spec.in_dim}-d ones")
        return self.to(device, precision)

    def to(self, device, precision: str | None = None) -> AestheticScorer:
        """Move the backbone to `device` (a GPU Spark assigned a task, say) and compute in `precision` (auto: the
        model's default, or the device's choice; see embedding/precision.py); None keeps the precision asked
        before."""
        self.device = torch.device(device)
        self.model = self.model.to(self.device)
        self.requested_precision = precision or getattr(self, "requested_precision", "auto")
        asked = self.requested_precision if self.requested_precision != "auto" else self.default_precision
        choice = precisions.choose(asked, self.device, recorded=self.precision,
                                   size=precisions.size_of_model(self.model), load=lambda: (self.model, self.processor))
        if asked != self.requested_precision:  # a published head, as its authors computed it
            choice = precisions.Choice(choice.dtype, f"{choice.name} (precision=auto: a published head scores as its "
                                                     "authors computed it)")
        self.dtype, self.precision_reason = choice.dtype, choice.reason
        return self

    @property
    def compute_precision(self) -> str:
        """The precision the backbone's forward runs in now (float32, bfloat16, float16)."""
        return str(self.dtype).removeprefix("torch.")

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """`image` column (bytes or base64) -> DataFrame(score, percentile, error); `path` only outside a server.

        A bad row gets NaN and its reason; a request that cannot be scored at all raises an error whose
        message (what a server answers with, as HTTP 400) says what was wrong.
        """
        return dispatch(self, model_input)

    def score_paths(self, paths: list, num_workers: int = -1, progress: bool = False) -> pd.DataFrame:
        return self.score_sources([Path(p) for p in paths], num_workers, progress)

    def score_sources(self, sources: list, num_workers: int = -1, progress: bool = False) -> pd.DataFrame:
        """Files (Path) and encoded bytes, mixed -> DataFrame(score, percentile, error), one row each, in order:
        files are decoded by worker processes beside the model (where the device wants it), bytes on threads."""
        threads = any(not isinstance(source, Path) for source in sources)
        return self._score(list(sources), load_source, threads=threads, workers=default_workers(num_workers),
                           progress=progress)

    def _score(self, sources: list, load, threads: bool, workers: int = -1, progress: bool = False) -> pd.DataFrame:
        scores = np.full(len(sources), np.nan)
        extras = {name: np.full(len(sources), np.nan) for name in self.extra_outputs}
        errors = [""] * len(sources)
        batch = batch_for(self.device)
        items = list(enumerate(sources))
        workers = default_workers(workers)  # bytes: a thread pool sized to the cores; files: worker processes
        for ok, embeddings, failed in embed_sources(
            items, load, self.model, self.processor, self.dtype, batch, workers, threads=threads, progress=progress,
            decoding=self.decoding,
        ):
            if ok:
                rows = [row[0] for row in ok]
                features = prepare(embeddings, self.spec.embed_norm)
                predicted = predict_scores(self.head, self.spec, features)
                for name, values in head_extras(self.head, self.spec, features).items():
                    extras[name][rows] = np.where(np.isfinite(predicted), values, np.nan)
                for row, value in zip(rows, predicted, strict=True):
                    if np.isfinite(value):
                        scores[row] = value
                    else:  # never a silent NaN or infinity: the row says why it has no score
                        errors[row] = non_finite_reason(value)
            for row in failed:
                errors[row[0]] = row[2]
        return annotate(pd.DataFrame({"score": scores, **extras, "error": errors}), self.reference)

    def score(self, images, num_workers: int = -1) -> pd.DataFrame:
        """Images -> DataFrame(score, percentile, error), one row per image, in order: each a path (str or Path),
        encoded bytes or a PIL image, mixed as you like (one of them alone is one row). `score` is on the model's
        scale (its `score_range`); an image that cannot be scored, or an item of another type, gets NaN and the
        reason in `error`. The same embedding and head as every other path (CLI, server, Spark); a PIL image is
        taken as it is in memory (decoded in full)."""
        from clip_aesthetics.images.decode import as_items, load_any

        return self._score(as_items(images), load_any, threads=True, workers=num_workers)

    @property
    def score_range(self) -> tuple[float, float]:
        """The scale scores are on: the ratings the model was trained on (AVA: 1-10)."""
        return self.spec.score_range

    def score_bytes(self, images: list) -> pd.DataFrame:
        """Encoded images (bytes, or base64 text) -> DataFrame(score, percentile, error), decoded on a thread pool."""
        return self._score(list(images), decode_value, threads=True)
