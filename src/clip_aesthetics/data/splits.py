"""A Labelled dataset -> train/val/test, settled once (`settle`) for everything after it: AVA's own split, a table's
split column or a seeded split in content order, a pair table's split by pair. Each reader says which of these is
its own (Labelled.splitter); this module makes them and checks the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clip_aesthetics.data import ava
from clip_aesthetics.data.tables import LabelsError


def settle(labelled, data, check: bool = True):
    """The dataset's split, made from the split settings (`data`: split, val_fraction, test_fraction, seed) once and
    (`check`) checked: every part can be trained on or measured. Returns the same Labelled, its `split` and
    `split_info` set."""
    labelled.split, info = labelled.splitter(data.split, data.val_fraction, data.test_fraction, data.seed)
    labelled.split_info = {**info, "val_fraction": data.val_fraction, "seed": data.seed,
                           "table_rows": len(labelled.frame), "score_range": labelled.scale_text()}
    if check:
        check_split(labelled, labelled.split)
    return labelled


def split_ava_labelled(table: pd.DataFrame, folder: Path, split: str, val_fraction: float, test_fraction: float,
                       seed: int) -> tuple[ava.Split, dict]:
    """AVA's own split (the seed notebook's, or the official test list), which needs AVA.txt's row order."""
    return ava.split_ava(table, split, folder, val_fraction, seed), {"split": split}


def split_table_labelled(frame: pd.DataFrame, given: bool, location: Path, split: str, val_fraction: float,
                         test_fraction: float, seed: int) -> tuple[ava.Split, dict]:
    """A table's split column (`given`), or a seeded split of its images in content order (the same images give
    the same split in any layout or row order)."""
    frame = frame.rename(columns={"score": "mean_score"})
    columns = ["image_id", "mean_score"]
    rng = np.random.RandomState(seed)
    if given:
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
        parts = {"test": ordered.iloc[np.sort(order[:n_test])],
                 "val": ordered.iloc[np.sort(order[n_test:n_test + n_val])],
                 "train": ordered.iloc[np.sort(order[n_test + n_val:])]}
    made = ava.Split(**{name: part[columns].reset_index(drop=True) for name, part in parts.items()},
                     no_votes=np.zeros(0, np.int64))
    return made, ({"split": "given"} if given else {"split": "seeded", "test_fraction": test_fraction})


def check_split(labelled, split: ava.Split) -> None:
    """Refuse, before any embedding, a split too small to train on or to measure."""
    given = labelled.split_info.get("split") == "given"
    if split.pairs is not None:
        for name in ("train", "test"):
            if len(split.pairs[name]) < 2:
                raise LabelsError(f"{labelled.location}: the {name} split holds {len(split.pairs[name])} pair(s); "
                                  "train and test need at least two each. Add pairs or change test_fraction / "
                                  "val_fraction")
        if (split.pairs["train"]["preference"] == 0.5).all():
            raise LabelsError(f"{labelled.location}: every one of the {len(split.pairs['train'])} training pairs is a "
                              "tie: there is nothing to learn about which image is better. Add pairs where raters "
                              "preferred one image (a, b, or a share other than 0.5)")
        return
    for name in ("train", "val", "test"):
        size = len(getattr(split, name))
        if size < 2 and not (name == "val" and size == 0):
            how = "as the table's split column gives it" if given else "after the seeded split"
            raise LabelsError(f"{labelled.location}: the {name} split holds {size} image(s) {how}; each split "
                              "needs at least two (val may be empty). Label more images or change test_fraction / "
                              "val_fraction")


def split_table(split: ava.Split, labelled) -> pd.DataFrame:
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
