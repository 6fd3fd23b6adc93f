"""A local SQLite tracking/registry URI -> MLflow's own store, opened under a file lock beside the database.

MLflow creates and migrates a new SQLite store the first time a process opens it; several processes
doing that at once race (`duplicate column name`, `table ... already exists`) and can leave the store
unusable. Registered as MLflow's store plugin for the `sqlite` scheme (pyproject.toml entry points),
this wraps MLflow's own builders so that opening a store, and creating it when it is new, happens one
process at a time. Every MLflow command in this environment gets it: `mlflow run`, `mlflow ui`, this
project's CLI. Other schemes, `:memory:` and a store whose folder cannot hold a lock file are unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator

_PREFIX = "sqlite:///"


def sqlite_file(store_uri: str) -> Path | None:
    """The database file of a `sqlite:///relative` or `sqlite:////absolute` URI; None for anything else."""
    if not store_uri.startswith(_PREFIX):
        return None
    path = store_uri[len(_PREFIX):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def opening_lock(store_uri: str) -> Iterator[None]:
    """Hold an exclusive lock on `<database>.lock` while the store is opened (and created, when new)."""
    database = sqlite_file(store_uri)
    try:
        handle = open(f"{database}.lock", "a") if database is not None else None  # noqa: SIM115
    except OSError:  # a read-only folder: nobody can create the store there anyway
        handle = None
    if handle is None:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tracking_store(store_uri: str, artifact_uri: str | None = None):
    from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store

    with opening_lock(store_uri):
        return _get_sqlalchemy_store(store_uri, artifact_uri)


def registry_store(store_uri: str):
    from mlflow.tracking._model_registry.utils import _get_sqlalchemy_store

    with opening_lock(store_uri):
        return _get_sqlalchemy_store(store_uri)
