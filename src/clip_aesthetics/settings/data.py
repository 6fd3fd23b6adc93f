"""Which dataset and how it is split: AVA's folder or a labels table, the validation and test shares, the scale."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from clip_aesthetics.settings.base import Settings
from clip_aesthetics.settings.values import OptionalNumber, ScoreRange, VoteColumns


class DatasetSettings(Settings):
    """Which dataset: AVA's folder, or a labels table of your own ratings (data/labels.py)."""

    ava_dir: Path = Field(
        Path("data/AVA_dataset"),
        description="folder holding AVA.txt and image/<id>.jpg (the layout AVA is distributed in); used when "
        "labels is empty",
    )
    labels: str = Field("", description="your own ratings instead of AVA: a CSV, TSV, parquet or JSON Lines table, "
                        "or a Hugging Face imagefolder (a folder with metadata.jsonl / metadata.csv beside the images)")
    image_dir: str = Field("", description="folder the table's image paths are relative to (and must stay inside); "
                           "empty = the table's own folder")
    image_column: str = Field("", description="the table's image column (paths, or image bytes in parquet); empty = "
                              "the first of file_name, image, image_name, image_path, path, filename found")
    score_column: str = Field("", description="the table's score column; empty = the first of score, mos, "
                              "mean_score, rating, label found (any case)")
    preference_column: str = Field("", description="a pair table: its preference column (a, b, tie, or the share "
                                   "preferring image a, 0-1); empty = the first of preference, winner, choice, "
                                   "label, prob_a, p_a (Pick-a-Pic: label_0)")
    image_a_column: str = Field("", description="a pair table in a layout of your own: the column of its first image "
                                "(paths or bytes); with image_b_column. Empty: image_a, or a layout read as "
                                "published (Pick-a-Pic's jpg_0 / image_0_uid, HPD's image_path)")
    image_b_column: str = Field("", description="a pair table in a layout of your own: the column of its second "
                                "image; with image_a_column")
    vote_columns: VoteColumns = Field([], description="vote-count columns instead of a score, lowest rating first "
                                      "(c1..c5 or c1,c2,c3,c4,c5): the score is their mean rating, as AVA's")

    @model_validator(mode="after")
    def _both_image_columns(self):
        if bool(self.image_a_column) != bool(self.image_b_column):
            raise ValueError("image_a_column and image_b_column name a pair table's two image columns: give both")
        return self


class DataSettings(DatasetSettings):
    split: Literal["seed", "official"] = Field(
        "seed",
        description="AVA: seed = the seed notebook's shuffled 229,971/25,559 split, official = test is "
        "aesthetics_image_lists/generic_test.jpgl; a table: its split column when it has one, else a seeded split "
        "(test_fraction, val_fraction)",
    )
    val_fraction: float = Field(
        0.05, ge=0.0, lt=0.5,
        description="share of train held out for epoch/model selection; 0 trains on the seed's exact train set",
    )
    test_fraction: float = Field(0.1, gt=0.0, lt=0.9, description="a table without a split column: share of its "
                                 "images held out as test (AVA's test split is fixed by `split`)")
    seed: int = Field(42, description="seed for the validation split, head initialisation and shuffling")
    score_range: ScoreRange = Field(None, description="a table's rating scale, low,high (e.g. 1,5); empty = 1..number "
                                    "of vote columns, else the lowest and highest score in the table. Scores are "
                                    "clipped to it; norm=true maps it to 0-1. AVA: 1-10")
    threshold: OptionalNumber = Field(None, description="good/bad line of the accuracy metric; empty = 5 on AVA, the "
                                      "middle of score_range on a table")

    @model_validator(mode="after")
    def _split_for_labels(self):
        if self.labels and self.split == "official":
            raise ValueError("split=official is AVA's own test list; a labels table uses its split column or a "
                             "seeded split (test_fraction)")
        return self
