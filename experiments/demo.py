"""The whole workflow through the MLproject entry points: sweep -> register -> score, then a summary.

    python experiments/demo.py                                  # built-in default, offline (make demo)
    python experiments/demo.py --clips b16,b32 --ava-dir /data/AVA_dataset

Built-in default: a generated AVA-format dataset (labels follow what the images show) and, unless
the real CLIP models are already in the local Hugging Face cache, two small random CLIP models built
from CLIPConfig standing in for b16 and b32. Tracking goes to MLflow's default store: mlflow.db and
mlruns/ in --workdir (the repository when run by `make demo`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # works uninstalled too, as the MLproject commands do

from clip_aesthetics.environment import interpreter_env, require_dependencies  # noqa: E402

EXPERIMENT = "clip-aesthetics"
N_IMAGES = 300
# The seed's lr=1e-4 at batch 32 is sized for AVA's 230k training images; on 300 images it would
# take ~50 steps in 5 epochs and learn nothing, so the built-in data takes larger, more frequent steps.
UI_PAGE = "http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
SMALL_DATA_TRAINING = ["-P", "lr=0.01", "-P", "batch_size=8"]


def step(title: str, command: list[str], env: dict, cwd: Path, timings: list) -> None:
    print(f"\n=== {title}\n$ {' '.join(command)}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True)
    timings.append((title, time.perf_counter() - started))


def stand_in_clips(folder: Path) -> str:
    """Use b16,b32 when already cached locally; otherwise build small stand-ins (no download either way)."""
    from clip_aesthetics.backbones.families import BackboneUnavailableError, resolve_backbone, save_random_clip

    try:
        for alias in ("b16", "b32"):
            resolve_backbone(alias)
        return "b16,b32"
    except BackboneUnavailableError:
        pass
    clips = []
    for name, seed in (("stand-in-b16", 16), ("stand-in-b32", 32)):
        if not (folder / name / "config.json").exists():
            save_random_clip(folder / name, "tiny", seed=seed)
        clips.append(str(folder / name))
    print("NOTE: openai/clip-vit-base-patch16 and -patch32 are not in the local Hugging Face cache, so this demo\n"
          "      uses two small CLIP models with random weights, built from CLIPConfig, standing in for b16 and b32:\n"
          f"      {clips[0]}\n      {clips[1]}\n"
          "      Their scores show the workflow, not real aesthetics. For the real models: make demo CLIP=b16,b32")
    return ",".join(clips)


def sample_photos(ava_dir: Path, folder: Path) -> Path:
    """A folder of images to score: some of the dataset's, nested, plus one broken file."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "nested").mkdir(parents=True)
    images = sorted((ava_dir / "image").glob("*.jpg"))[:24]
    for index, image in enumerate(images):
        shutil.copy(image, folder / ("nested" if index % 2 else "") / image.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return folder


def summary(workdir: Path, scores: Path, timings: list) -> None:
    import mlflow
    import pandas as pd

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    parent = client.search_runs([experiment.experiment_id], "tags.`clip_aesthetics.sweep` = 'true'",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    table = Path(client.download_artifacts(parent.info.run_id, "comparison/epoch_table.txt", str(workdir / "data")))
    print("\n=== test_spearman per epoch (the seed notebook's table, for this data)")
    print(table.read_text())
    champion = client.get_model_version_by_alias("clip-aesthetics", "champion")
    print(f"\nbest child: {parent.data.tags.get('best_run_name')} -> clip-aesthetics version {champion.version} "
          f"(alias champion, val_spearman {float(champion.tags['val_spearman']):.4f}, "
          f"test_spearman {float(champion.tags['test_spearman']):.4f})")
    frame = pd.read_csv(scores, keep_default_na=False)
    for column in ("score", "percentile"):  # the broken file's cells are empty
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    print(f"\nscores of {len(frame)} images: {scores} (gallery: {scores.with_suffix('.html')})")
    print(frame.sort_values("score", ascending=False).head(3).to_string(index=False, formatters={
        "score": "{:.4f}".format, "percentile": "{:.1f}".format}))
    print(frame[frame["error"] != ""].to_string(index=False, na_rep=""))
    print("\n=== time per step")
    for title, seconds in timings:
        print(f"{seconds:7.1f} s  {title}")
    print(f"{sum(s for _, s in timings):7.1f} s  total")
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = str(mlflow_cli) if mlflow_cli.exists() else f"{sys.executable} -m mlflow"
    # MLflow's UI remembers a GenAI/model-training switch per browser (GenAI unless chosen): the link chooses.
    print(f"\nOpen the MLflow UI on these runs:\n  cd {workdir} && {command} ui --backend-store-uri sqlite:///mlflow.db\n"
          f"  then {UI_PAGE.format(experiment_id=experiment.experiment_id)}")


def main() -> None:
    require_dependencies()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", default="", help="comma-separated CLIP models; empty = b16,b32 or stand-ins")
    parser.add_argument("--ava-dir", default="", help="an AVA folder; empty = generate the built-in dataset")
    parser.add_argument("--workdir", type=Path, default=REPO, help="where mlflow.db, mlruns/ and data/ go")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    demo_data = workdir / "data" / "demo"
    # Subprocesses (mlflow run -> python3) use this interpreter's environment, activated or not.
    env = interpreter_env({k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")})
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # dozens of per-file bars otherwise
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"]  # summary()
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    timings: list[tuple[str, float]] = []

    started = time.perf_counter()
    if args.ava_dir:
        ava_dir, training = Path(args.ava_dir).resolve(), []
    else:
        from clip_aesthetics.data.sample_data import write_sample_ava

        ava_dir, training = demo_data / "ava", SMALL_DATA_TRAINING
        if not (ava_dir / "AVA.txt").exists():
            write_sample_ava(ava_dir, N_IMAGES, seed=0, traps=True)
        print(f"built-in dataset: {ava_dir} ({N_IMAGES} generated images plus broken and unusual files)")
    clips = args.clips or stand_in_clips(demo_data)
    timings.append(("data and models", time.perf_counter() - started))

    mlflow_run = [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local",
                  "--experiment-name", EXPERIMENT]
    step("sweep: every CLIP model x norm true,false, 5 epochs, as child runs of one parent",
         [*mlflow_run, "-e", "sweep", "-P", f"clips={clips}", "-P", f"ava_dir={ava_dir}",
          "-P", f"cache_dir={workdir / 'data' / 'cache'}", *training], env, workdir, timings)
    step("register: the best child by val_spearman -> models:/clip-aesthetics@champion",
         [*mlflow_run, "-e", "register"], env, workdir, timings)
    photos = sample_photos(ava_dir, demo_data / "photos")
    scores = demo_data / "scores.csv"
    step("score: a folder of images with the champion",
         [sys.executable, "-m", "clip_aesthetics", "score", str(photos), "--out", str(scores),
          "--gallery", str(scores.with_suffix(".html"))], env, workdir, timings)
    summary(workdir, scores, timings)


if __name__ == "__main__":
    main()
