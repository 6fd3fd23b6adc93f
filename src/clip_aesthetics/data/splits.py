"""A Labelled dataset -> train/val/test: AVA's own split, a table's split column, or a seeded split in content order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clip_aesthetics.data import ava
from clip_aesthetics.data.labels import Labelled
from clip_aesthetics.data.tables import LabelsError


def split_labelled(labelled: Labelled, split: str, val_fraction: float, test_fraction: float, seed: int,
                   ava_dir: Path | None = None) -> ava.Split:
    """train/val/test frames (image_id, mean_score): AVA's own split, a table's `split` column, or a seeded split
    of the table's images in content order (the same images give the same split in any layout or row order)."""
    if labelled.pairs is not None:  # split by pair; each split's images are those its pairs name
        from clip_aesthetics.data.pairs import split_pairs

        parts = split_pairs(labelled, val_fraction, test_fraction, seed)
        frames = {name: pd.DataFrame({"image_id": pd.unique(part[["a_id", "b_id"]].to_numpy().ravel()).astype(
            np.int64), "mean_score": np.nan}) for name, part in parts.items()}
        return ava.Split(**frames, no_votes=np.zeros(0, np.int64), pairs=parts)
    if labelled.kind == "ava":
        return ava.split_ava(labelled.ava_table, split, ava_dir if ava_dir is not None else labelled.location,
                             val_fraction, seed)
    frame = labelled.frame.rename(columns={"score": "mean_score"})
    columns = ["image_id", "mean_score"]
    rng = np.random.RandomState(seed)
    if labelled.given_split:
        parts = {name: frame[frame["split"] == name].sort_values("image_id") for name in ("train", "val", "test")}
        if len(parts["val"]) == 0 and val_fraction > 0:  # no val given: hold out a seeded share of train
            train = parts["train"].reset_index(drop=True)
            in_val = np.zeros(len(train), bool)
            in_val[rng.permutation(len(train))[:round(len(train) * val_fraction)]] = True
            parts["train"], parts["val"] = train[~in_val], train[in_val]
    else:
        ordered = frame.sort_values("image_id").reset_index(drop=True)
        order = rng.permutation(len(ordered))
        n_test = round(len(ordered) * test_fraction)
        n_val = round((len(ordered) - n_test) * val_fraction)
        parts = {"test": ordered.iloc[np.sort(order[:n_test])], "val": ordered.iloc[np.sort(order[n_test:n_test + n_val])],
                 "train": ordered.iloc[np.sort(order[n_test + n_val:])]}
    return ava.Split(**{name: part[columns].reset_index(drop=True) for name, part in parts.items()},
                     no_votes=np.zeros(0, np.int64))


def check_split(labelled: Labelled, split: ava.Split) -> None:
    """Refuse, before any embedding, a split too small to train on or to measure."""
    if split.pairs is not None:
        for name in ("train", "test"):
            if len(split.pairs[name]) < 2:
                raise LabelsError(f"{labelled.location}: the {name} split holds {len(split.pairs[name])} pair(s); train "
                                  "and test need at least two each. Add pairs or change test_fraction / val_fraction")
        if (split.pairs["train"]["preference"] == 0.5).all():
            raise LabelsError(f"{labelled.location}: every one of the {len(split.pairs['train'])} training pairs is a "
                              "tie: there is nothing to learn about which image is better. Add pairs where raters "
                              "preferred one image (a, b, or a share other than 0.5)")
        return
    for name in ("train", "val", "test"):
        size = len(getattr(split, name))
        if size < 2 and not (name == "val" and size == 0):
            how = "as the table's split column gives it" if labelled.given_split else "after the seeded split"
            raise LabelsError(f"{labelled.location}: the {name} split holds {size} image(s) {how}; each split "
                              "needs at least two (val may be empty). Label more images or change test_fraction / "
                              "val_fraction")


def split_table(split: ava.Split, labelled: Labelled) -> pd.DataFrame:
    """image_id, image, split: which image went where (logged as data/split.csv)."""
    names = labelled.frame.set_index("image_id")["image"]
    if split.pairs is not None:  # which pair went where
        return pd.concat([pd.DataFrame({"image_a": names.reindex(part["a_id"]).to_numpy(),
                                        "image_b": names.reindex(part["b_id"]).to_numpy(),
                                        "preference": part["preference"], "split": name})
                          for name, part in split.pairs.items()], ignore_index=True)
    parts = [pd.DataFrame({"image_id": part["image_id"], "image": names.reindex(part["image_id"]).to_numpy(),
                           "split": name}) for name, part in (("train", split.train), ("val", split.val),
                                                               ("test", split.test))]
    return pd.concat(parts, ignore_index=True)
