"""The ONNX scorer: an exported model (model.onnx + preprocess.json) scored with ONNX Runtime, numpy and Pillow.

The same requests, columns and errors as the PyTorch scorer (scoring/model.py), so `score`, a served model,
`evaluate`, Spark and curation use it through its URI unchanged. Imports neither torch nor transformers: a
machine that scores with an exported model needs onnxruntime, numpy, pillow, pandas and mlflow only.
"""

from __future__ import annotations

import json
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from clip_aesthetics.errors import ModelFolderError, non_finite_reason
from clip_aesthetics.images.decode import ImageError, as_items, crop_long_side, load_any, load_rgb, load_source
from clip_aesthetics.images.pixels import ModelPixels
from clip_aesthetics.scoring.model_checks import check_graph, check_preprocess, open_session, read_json, scale
from clip_aesthetics.scoring.reference import annotate, of_spec
from clip_aesthetics.scoring.requests import decode_value, dispatch

BATCH = 32  # images per ONNX Runtime call


def providers_for(device: str = "auto") -> list[str]:
    """ONNX Runtime's execution providers for `device`: CUDA where the package and a GPU offer it, else the CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    wants_gpu = str(device) == "auto" or str(device).lower().startswith("cuda")  # cuda:1, CUDAExecutionProvider
    if wants_gpu and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxScorer(PythonModel):
    """An exported model: images -> DataFrame(score, percentile, error) on the source model's scale."""

    runtime = "onnx"
    uses_embedding_cache = False  # evaluate scores its images with it, not through the embedding cache

    def load_context(self, context) -> None:
        self.load(context.artifacts)

    def load(self, artifacts: dict[str, str], device: str = "auto") -> OnnxScorer:
        self.graph = str(artifacts["graph"])
        self.preprocess = read_json(artifacts["preprocess"], "preprocess.json")
        check_preprocess(self.preprocess, artifacts["preprocess"])
        try:
            self.pixels = ModelPixels.described(self.preprocess["pixels"])
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFolderError(f"{artifacts['preprocess']}: its pixel steps cannot be read ({error})") from None
        decode = self.preprocess.get("decode", {})
        self.decoding, self.min_short = decode.get("decoding", "full"), decode.get("min_short_side")
        self.max_aspect = float(self.preprocess.get("max_aspect", 8.0))
        output = self.preprocess["output"]
        self.clip_to = scale(output.get("clip_to"), artifacts["preprocess"], "output.clip_to")
        self._score_range = scale(output["score_range"], artifacts["preprocess"], "output.score_range")
        self.extra_outputs = list(output.get("extra_outputs", []))  # a distribution head's score_std
        # the source's backbone (id, revision), as reports name it; the export itself needs neither
        spec = read_json(artifacts["scorer_spec"], "scorer.json") if "scorer_spec" in artifacts else {}
        self.clip_info = spec.get("clip", {"model_id": "", "revision": ""})
        self.reference = of_spec(spec)  # the source's: what `percentile` compares with
        self.weights = str(self.preprocess.get("weights", "float32"))
        return self.to(device)

    def to(self, device, precision: str | None = None) -> OnnxScorer:
        """Score on `device` (auto: a CUDA GPU when ONNX Runtime has one, else the CPU). The graph computes in the
        precision it was exported in, whatever `precision` asks (a PyTorch model's setting)."""
        self.session = open_session(self.graph, providers_for(str(device)))
        check_graph(self.session, self.preprocess, self.graph, self.extra_outputs)
        self.device = self.session.get_providers()[0]
        asked = "" if precision in (None, "auto", "float32") else \
            f"; {precision} asked, which applies to PyTorch models"
        self.precision_reason = (f"float32 (an ONNX export with {self.weights} weights computes as it was "
                                 f"exported{asked})")
        return self

    @property
    def compute_precision(self) -> str:
        return "float32" if self.weights == "float32" else f"{self.weights} weights, float32 activations"

    @property
    def score_range(self) -> tuple[float, float]:
        """The scale scores are on: the ratings the source model was trained on (AVA: 1-10)."""
        return self._score_range

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """`image` column (bytes or base64) -> DataFrame(score, percentile, error); `path` only outside a server."""
        return dispatch(self, model_input)

    def score_paths(self, paths: list, num_workers: int = -1, progress: bool = False) -> pd.DataFrame:
        return self._score([Path(p) for p in paths], load_rgb, num_workers)

    def score_sources(self, sources: list, num_workers: int = -1, progress: bool = False) -> pd.DataFrame:
        """Files (Path) and encoded bytes, mixed -> DataFrame(score, percentile, error), one row each, in order."""
        return self._score(list(sources), load_source, num_workers)

    def score_bytes(self, images: list) -> pd.DataFrame:
        return self._score(list(images), decode_value)

    def score(self, images, num_workers: int = -1) -> pd.DataFrame:
        """Paths, encoded bytes or PIL images, mixed (one alone: one row) -> DataFrame(score, percentile, error), one
        row per image, in order; an item of another type gets its error."""
        return self._score(as_items(images), load_any, num_workers)

    def _pixels(self, load, source):
        try:
            image = load(source, min_short=self.min_short)
            return self.pixels.crop(crop_long_side(image, self.max_aspect)), None
        except ImageError as error:
            return None, str(error)

    def _score(self, sources: list, load, num_workers: int = -1) -> pd.DataFrame:
        scores = np.full(len(sources), np.nan)
        extras = {name: np.full(len(sources), np.nan) for name in self.extra_outputs}
        errors = [""] * len(sources)
        workers = (os.cpu_count() or 1) if num_workers < 1 else num_workers  # threads; 0 and -1: one per core
        with ThreadPoolExecutor(workers) as pool:  # Pillow decodes and resizes outside the GIL
            batches = deque()
            starts = iter(range(0, len(sources), BATCH))

            def submit() -> None:
                start = next(starts, None)
                if start is not None:
                    batches.append((start, [pool.submit(self._pixels, load, s) for s in sources[start:start + BATCH]]))

            submit()
            submit()  # one batch decoding ahead while the graph runs
            while batches:
                start, futures = batches.popleft()
                submit()
                ok, arrays = [], []
                for row, future in enumerate(futures, start=start):
                    array, reason = future.result()
                    if reason is None:
                        ok.append(row)
                        arrays.append(array)
                    else:
                        errors[row] = reason
                if not ok:
                    continue
                out, *more = (o.astype(np.float64) for o in
                              self.session.run(["score", *extras], {"pixels": np.stack(arrays)}))
                for k, (row, value) in enumerate(zip(ok, out, strict=True)):
                    if not np.isfinite(value):
                        errors[row] = non_finite_reason(value)
                    else:
                        scores[row] = np.clip(value, *self.clip_to) if self.clip_to else value
                        for name, values in zip(extras, more, strict=True):
                            extras[name][row] = values[k]
        return annotate(pd.DataFrame({"score": scores, **extras, "error": errors}), self.reference)


def set_model() -> None:
    """Called by onnx_entry.py when MLflow loads the model from code."""
    import mlflow

    mlflow.models.set_model(OnnxScorer())


ONNX_ENTRY = Path(__file__).resolve().parents[1] / "onnx_entry.py"  # models-from-code: builds the scorer at load
RUNTIME_PACKAGES = ["mlflow", "onnxruntime", "pillow", "pandas", "numpy"]  # no torch, no transformers


def _pyfunc(artifacts: dict[str, str]) -> dict:
    import importlib.metadata

    from clip_aesthetics.scoring.requests import example_png, signature_for

    spec = json.loads(Path(artifacts["scorer_spec"]).read_text()) if "scorer_spec" in artifacts else {}
    return dict(python_model=str(ONNX_ENTRY), artifacts=artifacts, code_paths=[str(ONNX_ENTRY.parent)],
                pip_requirements=[f"{p}=={importlib.metadata.version(p)}" for p in RUNTIME_PACKAGES],
                signature=signature_for(spec), input_example=pd.DataFrame({"image": [example_png()]}))


def log_model(artifacts: dict[str, str]) -> str:
    """Log the export as a pyfunc model in the active run; returns its model URI."""
    import mlflow

    return mlflow.pyfunc.log_model(name="model", **_pyfunc(artifacts)).model_uri


def save_model(path: Path, artifacts: dict[str, str]) -> Path:
    """The same model saved to a local folder, outside any tracking store (benchmarks, offline copies)."""
    import mlflow

    mlflow.pyfunc.save_model(str(path), **_pyfunc(artifacts))
    return Path(path)
