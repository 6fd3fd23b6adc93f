"""The tracking store: concurrent first use of a new SQLite store does not break it."""

import subprocess
import sys

import pytest

OPEN_STORE = """
import sys, mlflow
client = mlflow.MlflowClient(sys.argv[1])
client.search_experiments()
mlflow.set_registry_uri(sys.argv[1])
mlflow.MlflowClient(sys.argv[1]).search_registered_models()
"""


def test_mlflow_opens_sqlite_stores_through_the_projects_lock():
    from mlflow.tracking._model_registry.utils import _get_store_registry
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    from clip_aesthetics.tracking import store_lock

    assert _tracking_store_registry.get_store_builder("sqlite:///x.db") is store_lock.tracking_store
    assert _get_store_registry().get_store_builder("sqlite:///x.db") is store_lock.registry_store
    assert store_lock.sqlite_file("sqlite:////abs/m.db").as_posix() == "/abs/m.db"
    assert store_lock.sqlite_file("sqlite:///m.db?mode=ro").as_posix() == "m.db"
    assert store_lock.sqlite_file("sqlite:///:memory:") is None and store_lock.sqlite_file("http://h:5000") is None


@pytest.mark.slow
def test_concurrent_first_use_of_a_new_sqlite_store(tmp_path):
    """Without the lock, 2-4 of 4 processes failed in MLflow's migration here (`table ... already exists`), on
    every attempt: one attempt of four processes shows a regression."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_STORE, uri], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outputs = [process.communicate(timeout=180)[0] for process in processes]
    assert [p.returncode for p in processes] == [0] * 4, "\n".join(o[-1500:] for o in outputs)
    done = subprocess.run([sys.executable, "-c", OPEN_STORE, uri], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
