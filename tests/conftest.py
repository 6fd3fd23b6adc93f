"""Shared fixtures: a generated AVA-format dataset, tiny CLIP models, a private MLflow store per test."""

import os

# Before transformers is imported anywhere: no test may reach (or wait for) the model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Test files run in several worker processes (`make test`): each worker's torch (and the processes it starts) gets its
# share of the cores instead of all of them, so workers do not oversubscribe the machine. A value you set wins.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

# The JVMs the Spark tests start (a local session, a standalone master, workers, executors, spark-submit drivers) run
# jobs of seconds: with only the client compiler and the serial collector they start and finish faster, where C2's
# and the parallel collector's threads would compete for 2 cores with the job (a cluster `spark-submit` here: 39 s ->
# 24 s). What the jobs compute is the same. A value you set wins.
os.environ.setdefault("JDK_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")


import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import mlflow  # noqa: E402
import pytest  # noqa: E402
from helpers import new_store  # noqa: E402

from clip_aesthetics.backbones.families import save_random_clip  # noqa: E402
from clip_aesthetics.cli import app as cli  # noqa: E402
from clip_aesthetics.data.sample_data import write_sample_ava  # noqa: E402
from clip_aesthetics.environment import interpreter_env  # noqa: E402

N_SAMPLE_IMAGES = 240

# Every subprocess a test starts (`mlflow run` -> python3, `mlflow models serve` -> uvicorn) must find this
# interpreter's environment, not the machine's, also when pytest is run without activating the venv.
os.environ["PATH"] = interpreter_env()["PATH"]


# The files that take longest (Spark clusters, the browser, fresh processes): run first, so that with several workers
# (`make test`) none of them starts last and leaves the other workers idle.
LONGEST_FIRST = ("test_spark_cluster.py", "test_spark.py", "test_ui.py", "test_backbones.py", "test_register.py",
                 "test_score.py", "test_serving.py")
# Files that share a worker, one after the other: each Spark file starts JVMs (a cluster of four, or a local
# session) that would compete for the same cores and memory if run side by side.
SAME_WORKER = {"test_spark_cluster.py": "spark", "test_spark.py": "spark"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups from the markers
def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's own order is kept
    for item in items:  # `--dist loadgroup` (make test): a file is one group, whole in one worker
        item.add_marker(pytest.mark.xdist_group(SAME_WORKER.get(item.path.name, str(item.path))))


def pytest_configure(config):
    """precision=auto depends on the CPU (float32, or bfloat16 where this machine measures it faster), so no test may
    rely on what it picks here: every command the suite runs, in this process and in the ones it starts (`mlflow run`,
    servers, Spark executors), computes in `--precision` (float32 by default) unless a test asks for another.
    `pytest --precision bfloat16` runs the whole suite in bfloat16 (emulated where the CPU has no native bfloat16), as
    on a machine whose auto picks it; the tests that compare paths run in both anyway; the tests of auto clear it."""
    os.environ["CLIP_AESTHETICS_PRECISION"] = config.getoption("precision")


def pytest_addoption(parser):
    parser.addoption("--cpu-bf16", choices=("machine", "native", "emulated"), default="machine",
                     help="answer of the native-bfloat16 CPU detection inside the test process: this machine's, or "
                          "forced, to run the suite as on a CPU of the other kind (tests that force it themselves win)")
    parser.addoption("--precision", choices=("float32", "bfloat16"), default="float32",
                     help="what every command computes in unless a test asks otherwise (pytest_configure)")


@pytest.fixture(scope="session", autouse=True)
def cpu_bf16(request):
    forced = request.config.getoption("--cpu-bf16")
    if forced == "machine":
        yield
        return
    from clip_aesthetics.embedding import precision

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision, "native_bfloat16", lambda: forced == "native")
        yield


@pytest.fixture(scope="session", autouse=True)
def precision_timings(tmp_path_factory):
    """Where precision=auto keeps its measurements during the tests: never the user's ~/.cache."""
    from clip_aesthetics.embedding import precision

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision, "TIMINGS", tmp_path_factory.mktemp("precision") / "timings.json")
        yield


@pytest.fixture
def fake_cpu(monkeypatch, tmp_path):
    """precision=auto as on a CPU a test describes: `native` bfloat16 or not, bfloat16 measured at `speed` x
    float32's speed (the forward is not timed for real). Returns the list of model sizes timed, in order."""
    from clip_aesthetics.embedding import precision

    timed: list[str] = []

    def make(native: bool, speed: float = 0.59) -> list[str]:
        monkeypatch.delenv("CLIP_AESTHETICS_PRECISION", raising=False)
        monkeypatch.setattr(precision, "native_bfloat16", lambda: native)
        monkeypatch.setattr(precision, "TIMINGS", tmp_path / "precision-timings.json")

        def fake(model, processor) -> dict[str, float]:
            timed.append(precision.size_of_model(model))
            return {"float32": 1.0, "bfloat16": 1.0 / speed}

        monkeypatch.setattr(precision, "time_forward", fake)
        return timed

    return make


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    return save_random_clip(tmp_path_factory.mktemp("clip") / "tiny-a", "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_clip_b(tmp_path_factory) -> Path:
    return save_random_clip(tmp_path_factory.mktemp("clip") / "tiny-b", "tiny", seed=1)


@pytest.fixture(scope="session")
def backbones(tmp_path_factory) -> dict[str, Path]:
    """One tiny random checkpoint of each family (helpers.FAMILIES), by name."""
    from helpers import FAMILIES

    from clip_aesthetics.backbones.families import save_random_backbone

    root = tmp_path_factory.mktemp("backbones")
    return {name: save_random_backbone(root / name, kind, seed=3, **options)
            for name, (kind, options) in FAMILIES.items()}


@pytest.fixture(scope="session")
def sample_ava(tmp_path_factory) -> Path:
    """Read-only: tests that change files make their own copy."""
    return write_sample_ava(tmp_path_factory.mktemp("ava") / "ava", N_SAMPLE_IMAGES, seed=0, traps=True)


@pytest.fixture(scope="session")
def small_ava(tmp_path_factory) -> Path:
    """Read-only, like sample_ava with a quarter of its images (and the same trap files): for tests that embed the
    whole dataset twice to compare two ways of doing it (Spark against one process)."""
    return write_sample_ava(tmp_path_factory.mktemp("ava-small") / "ava", N_SAMPLE_IMAGES // 4, seed=2, traps=True)


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    uri = new_store(tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # artifacts land in ./mlruns beside the store
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    # mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID for subprocesses; don't leak it to the next test.
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, sample_ava, tiny_clip):
    """Once per test process: a tracking store with one training run; its logged scorer is what the tests score
    with. Shared by every module that uses it: a test may add runs, models or files of its own (under names no
    other test uses), never change or remove what is there."""
    import mlflow

    from clip_aesthetics.cli import app as cli

    root = tmp_path_factory.mktemp("trained")
    uri = new_store(root / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        assert cli.main(["main", "--clip", str(tiny_clip), "--ava-dir", str(sample_ava), "--cache-dir",
                         str(root / "cache"), "--epochs", "2", "--lr", "0.003", "--num-workers", "0",
                         "--precision", "float32"]) == 0
        run = mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name("clip-aesthetics").experiment_id])[0]
        yield {"root": root, "uri": uri, "model": f"runs:/{run.info.run_id}/model", "run": run}
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


@pytest.fixture
def trained_store(trained, monkeypatch):
    """The `trained` store made the current one (environment and MLflow's own setting) for one test."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    mlflow.set_tracking_uri(trained["uri"])
    return trained


@pytest.fixture(scope="session")
def registered(tmp_path_factory, sample_ava, tiny_clip, tiny_clip_b):
    """A 2-model sweep, then `register` (read by the register, score and serving tests); CLIP folders are copies."""
    root = tmp_path_factory.mktemp("registry")
    clips = [shutil.copytree(clip, root / "clips" / clip.name) for clip in (tiny_clip, tiny_clip_b)]
    uri = new_store(root / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        assert cli.main(["sweep", "--clips", ",".join(map(str, clips)), "--norms", "true", "--ava-dir",
                         str(sample_ava), "--cache-dir", str(root / "cache"), "--epochs", "4", "--lr", "0.003",
                         "--batch-size", "16", "--num-workers", "0"]) == 0
        assert cli.main(["register"]) == 0
        yield {"root": root, "uri": uri, "clips": clips, "ava": sample_ava}
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


@pytest.fixture
def store(registered, monkeypatch):
    monkeypatch.chdir(registered["root"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    mlflow.set_tracking_uri(registered["uri"])
    return registered


@pytest.fixture
def one_run(sample_ava, tiny_clip, tmp_path, tracking_uri):
    """A fresh store holding one finished training run (its own, so versions can be counted)."""
    assert cli.main(["main", "--clip", str(tiny_clip), "--ava-dir", str(sample_ava), "--cache-dir",
                     str(tmp_path / "cache"), "--epochs", "2", "--lr", "0.003", "--batch-size", "16",
                     "--num-workers", "0"]) == 0
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("clip-aesthetics").experiment_id
    return client, client.search_runs([experiment])[0]
