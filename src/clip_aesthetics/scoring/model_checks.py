"""A model folder's files -> their checked contents, or one line naming the file and what is wrong with it: a
missing or cut-off file, JSON that does not parse, an ONNX graph that does not load or whose input disagrees with
preprocess.json, a scale or clip range the wrong way round. Checked when a model loads, before any image is
scored, so a damaged folder never scores every image alike or ends in a library's traceback.

Imports neither torch nor transformers (the ONNX scorer uses it)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from clip_aesthetics.errors import ModelFolderError


def read_json(path, what: str) -> dict:
    """A JSON file of the model (scorer.json, preprocess.json) as a dict."""
    path = Path(path)
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing ({what}); the model folder is incomplete: download or export it again")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        where = f" (line {error.lineno})" if isinstance(error, json.JSONDecodeError) else ""
        raise ModelFolderError(f"{path}: not valid JSON{where}, so not a {what}; the file is damaged: download or "
                               "export the model again") from None
    if not isinstance(doc, dict):
        raise ModelFolderError(f"{path}: holds a JSON {type(doc).__name__}, not the {what}'s object")
    return doc


def scale(values, path, key: str) -> tuple[float, float] | None:
    """A [low, high] pair of finite numbers with low < high (a score range, a clip range)."""
    if values is None:
        return None
    try:
        low, high = (float(v) for v in values)
    except (TypeError, ValueError):
        raise ModelFolderError(f"{path}: {key} {values!r} is not two numbers [low, high]") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        turned = " (reversed: low must be below high)" if low > high else ""
        raise ModelFolderError(f"{path}: {key} {values!r} is not a range{turned}; every score would be clipped "
                               "to one value: the file is damaged or was edited")
    return low, high


def check_preprocess(doc: dict, path) -> None:
    """The sizes preprocess.json gives agree with each other (the graph's own input is checked in `check_graph`)."""
    try:
        height, width = int(doc["input"]["height"]), int(doc["input"]["width"])
        pixels, output = doc["pixels"], doc["output"]
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFolderError(f"{path}: lacks {error} (input height and width, pixels, output): not a "
                               "preprocess.json this project wrote, or a damaged one") from None
    if pixels.get("mode") == "short-crop":
        sides = (pixels.get("crop_size"), pixels.get("crop_size"))
    else:
        sides = (pixels.get("height"), pixels.get("width"))
    if tuple(sides) != (height, width) or height <= 0 or width <= 0:
        raise ModelFolderError(f"{path}: its pixel steps make {sides[0]}x{sides[1]} images but its input is "
                               f"{height}x{width}: the file disagrees with itself")
    scale(output.get("score_range"), path, "output.score_range")
    scale(output.get("clip_to"), path, "output.clip_to")


def check_graph(session, doc: dict, path, extras: list[str]) -> None:
    """The loaded graph takes what preprocess.json makes (N x H x W x 3) and answers score and the extra outputs."""
    inputs = session.get_inputs()
    shape = list(inputs[0].shape) if inputs else []
    expected = [doc["input"]["height"], doc["input"]["width"], 3]
    if len(shape) != 4 or [int(v) if isinstance(v, int) else v for v in shape[1:]] != expected:
        raise ModelFolderError(f"{path}: the graph takes input {shape} but preprocess.json makes [N, "
                               f"{', '.join(map(str, expected))}]: the two files are not of one export")
    names = {o.name for o in session.get_outputs()}
    missing = [n for n in ("score", *extras) if n not in names]
    if missing:
        raise ModelFolderError(f"{path}: the graph has no output {', '.join(missing)} (it has "
                               f"{', '.join(sorted(names))})")


def open_session(graph, providers: list[str]):
    """An ONNX Runtime session of the graph file, or one line saying why the file cannot be one."""
    import onnxruntime

    path = Path(graph)
    if not path.is_file() or path.stat().st_size == 0:
        raise ModelFolderError(f"{path}: {'missing' if not path.exists() else 'empty'}; the model folder is "
                               "incomplete: export the model again")
    try:
        return onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as error:  # noqa: BLE001  onnxruntime raises its own kinds for a cut or foreign file
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ModelFolderError(f"{path}: not an ONNX graph ONNX Runtime can load (cut off or damaged?): {first}") \
            from None
