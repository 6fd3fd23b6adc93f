"""Score one image with an exported model folder (model.onnx + preprocess.json), without clip-aesthetics:
onnxruntime, numpy and Pillow only. Usage: python onnx_standalone.py EXPORT_DIR IMAGE"""
import json
import sys

import numpy as np
import onnxruntime
from PIL import Image, ImageOps

folder, path = sys.argv[1], sys.argv[2]
prep = json.load(open(f"{folder}/preprocess.json"))
px = prep["pixels"]
image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
w, h = image.size
keep = max(1, round(min(w, h) * prep["max_aspect"]))  # very long strips: their centre, 8:1 at most
if max(w, h) > keep:
    x, y = max(0, (w - keep) // 2), max(0, (h - keep) // 2)
    image = image.crop((x, 0, x + keep, h) if w > h else (0, y, w, y + keep))
    w, h = image.size
resample = Image.Resampling[px.get("resample", "bicubic").upper()]  # the processor's own filter
if px["mode"] == "fixed":  # SigLIP: straight to height x width
    image = image.resize((px["width"], px["height"]), resample)
else:  # CLIP, DINOv2: short side to shortest_edge, then the centre crop
    s, c = px["shortest_edge"], px["crop_size"]
    size = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
    image = image.resize(size, resample)
    left, top = (size[0] - c) // 2, (size[1] - c) // 2
    image = image.crop((left, top, left + c, top + c))
session = onnxruntime.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])
score = float(session.run(["score"], {"pixels": np.asarray(image)[None]})[0][0])
low, high = prep["output"]["clip_to"] or (-np.inf, np.inf)
print(min(max(score, low), high))
