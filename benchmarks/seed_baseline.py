"""The seed notebook's costs, reproduced faithfully for the benchmark (its bugs are not).

Embedding: images decoded and preprocessed one by one in the main process, the full CLIPModel,
batches of 32, one .pt file per batch, once per (model, norm) pair. Training: every epoch re-reads
every batch file and re-creates the model from the last checkpoint; a checkpoint after every batch;
Spearman on the test files after each epoch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.stats import spearmanr
from torch import nn
from transformers import AutoImageProcessor, CLIPModel

BATCH = 32


def embed_like_seed(model_dir: Path, paths: list[Path], out: Path) -> None:
    model = CLIPModel.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    for norm in (True, False):  # the seed embeds every image once per norm setting
        folder = out / ("normed" if norm else "raw")
        folder.mkdir(parents=True, exist_ok=True)
        for index, start in enumerate(range(0, len(paths), BATCH)):
            batch = paths[start:start + BATCH]
            images = [Image.open(p).convert("RGB") for p in batch]
            inputs = processor(images=images, return_tensors="pt")
            with torch.no_grad():
                features = model.get_image_features(**inputs).pooler_output
            scores = torch.rand(len(batch)) * (0.9 if norm else 9) + (0.1 if norm else 1)
            torch.save({"image_names": [p.stem for p in batch], "image_features": features, "scores": scores},
                       folder / f"batch_{index}.pt")


def write_batch_files(dataset, norm: bool, folder: Path) -> None:
    """What the seed's embedding step leaves for training: train (train + val) and test batch files."""
    scale = 10.0 if norm else 1.0
    parts = {"train": (np.concatenate([dataset.train.embeddings, dataset.val.embeddings]),
                       np.concatenate([dataset.train.scores, dataset.val.scores])),
             "test": (dataset.test.embeddings, dataset.test.scores)}
    for name, (x, y) in parts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index, start in enumerate(range(0, len(x), BATCH)):
            torch.save({"image_names": [str(i) for i in range(start, min(start + BATCH, len(x)))],
                        "image_features": torch.from_numpy(x[start:start + BATCH]),
                        "scores": torch.from_numpy((y[start:start + BATCH] / scale).astype(np.float32))},
                       folder / name / f"batch_{index:06d}.pt")


def train_like_seed(folder: Path, epochs: int) -> list[float]:
    checkpoint = folder / "checkpoint.pt"
    spearmans = []
    for epoch in range(epochs):
        model = nn.Linear(512, 1)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
        if checkpoint.exists():  # the seed re-creates its model from the last checkpoint every epoch
            state = torch.load(checkpoint)
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimizer"])
        for path in sorted((folder / "train").glob("*.pt")):  # and re-reads every file
            batch = torch.load(path)
            loss = nn.functional.mse_loss(model(batch["image_features"]).squeeze(1), batch["scores"])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            torch.save({"model": model.state_dict(), "optimizer": optimiser.state_dict(), "epoch": epoch},
                       checkpoint)  # after every batch
        true, pred = [], []
        with torch.no_grad():
            for path in sorted((folder / "test").glob("*.pt")):
                batch = torch.load(path)
                true.append(batch["scores"].numpy())
                pred.append(model(batch["image_features"]).squeeze(1).numpy())
        spearmans.append(float(spearmanr(np.concatenate(true), np.concatenate(pred)).statistic))
    return spearmans
