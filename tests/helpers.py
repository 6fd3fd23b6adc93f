"""Helpers shared by several test files (fixtures are in conftest.py)."""

import atexit
import shutil
import sqlite3
import tempfile
from pathlib import Path

from clip_aesthetics.data.labels import read_dataset
from clip_aesthetics.embedding.filling import EmbedReport, embed_dataset


def embed_named(data, embed, source, progress: bool = False) -> EmbedReport:
    """Embed the dataset the settings name (AVA's folder, or `labels=`), as `embed` does, without a run."""
    return embed_dataset(read_dataset(data, embed.cache_dir), embed, source, progress)


FAMILIES = {  # `backbones` fixture name -> (kind, options): one tiny random model of each supported family
    "clip768": ("clip", {"projection_dim": 768}),
    "siglip": ("siglip", {}),
    "siglip2_fixres": ("siglip", {"resample": 2}),  # SigLIP 2 FixRes: a SigLIP model whose processor is bilinear
    "siglip_nearest": ("siglip", {"resample": 0}),
    "siglip2_naflex": ("siglip2", {}),
    "dinov2": ("dinov2", {}),
    "dinov2_registers": ("dinov2", {"registers": 4}),
}


_EMPTY_STORE: list[Path] = []  # this test process's migrated, empty database, made at the first new_store()


def new_store(database: Path) -> str:
    """A new, empty MLflow SQLite store at `database`; returns its tracking URI.

    MLflow creates a new store by running its schema migrations, about 1.3 s on 2 cores (74 stores in a run of the
    suite: some 100 s). Every store here is instead a copy of one migrated once per test process, with its Default
    experiment removed: MLflow adds it back when the copy is first opened, with that copy's own artifact folder, so a
    copy is what MLflow would have made there. The tests of creating a store (test_store.py) make theirs for real."""
    if not _EMPTY_STORE:
        folder = Path(tempfile.mkdtemp(prefix="clip-aesthetics-empty-store-"))
        atexit.register(shutil.rmtree, folder, True)
        import mlflow

        mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()  # creates and migrates it
        with sqlite3.connect(folder / "mlflow.db") as db:
            db.execute("DELETE FROM experiments WHERE experiment_id = 0")
        _EMPTY_STORE.append(folder / "mlflow.db")
    database = Path(database)
    database.parent.mkdir(parents=True, exist_ok=True)
    if database.exists():
        raise FileExistsError(f"{database} exists: a new store is made only where there is none")
    shutil.copyfile(_EMPTY_STORE[0], database)
    return f"sqlite:///{database}"
