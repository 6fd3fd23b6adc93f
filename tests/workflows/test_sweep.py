"""The nested sweep: one parent, a child per grid point, finished children reused, a killed sweep resumed."""

from pathlib import Path

import mlflow
import pytest

from clip_aesthetics.cli import app as cli
from clip_aesthetics.workflows import sweep as sweep_module
from clip_aesthetics.workflows.sweep import CHILDREN_TAG


def sweep_args(sample_ava, tiny_clip, tiny_clip_b, tmp_path):
    return ["sweep", "--clips", f"{tiny_clip},{tiny_clip_b}", "--norms", "true,false", "--ava-dir", str(sample_ava),
            "--cache-dir", str(tmp_path / "cache"), "--epochs", "4", "--lr", "0.003", "--batch-size", "16",
            "--num-workers", "0"]


def runs_by_kind():
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("clip-aesthetics").experiment_id
    runs = client.search_runs([experiment])
    parents = [r for r in runs if r.data.tags.get("clip_aesthetics.sweep") == "true"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_sweep_runs_the_grid_as_children_and_reuses_them(sample_ava, tiny_clip, tiny_clip_b, tmp_path,
                                                         tracking_uri, monkeypatch):
    embedded = []
    real_embed = sweep_module.embed_dataset
    monkeypatch.setattr(sweep_module, "embed_dataset", lambda *a, **k: embedded.append(a[2]) or real_embed(*a, **k))
    assert cli.main(sweep_args(sample_ava, tiny_clip, tiny_clip_b, tmp_path)) == 0
    assert [source.model_id for source in embedded] == [str(tiny_clip), str(tiny_clip_b)], \
        "each CLIP model is embedded once"
    parents, children = runs_by_kind()
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    assert {(c.data.params["clip"], c.data.params["norm"]) for c in children} == {
        (str(clip), norm) for clip in (tiny_clip, tiny_clip_b) for norm in ("true", "false")}
    assert {c.info.run_name for c in children} == {"tiny-a-normed", "tiny-a-raw", "tiny-b-normed", "tiny-b-raw"}
    best = max(children, key=lambda c: c.data.metrics["best_val_spearman"])
    assert parent.data.tags["best_run"] == best.info.run_id
    description = parent.data.tags["mlflow.note.content"]
    assert f"Best: **{best.info.run_name}**" in description and "| epoch | tiny-a-normed" in description
    (parent_input,) = parent.inputs.dataset_inputs  # the AVA table, once, with the children's digest
    assert parent_input.dataset.name.endswith("AVA.txt#all splits")
    assert {i.dataset.digest for c in children for i in c.inputs.dataset_inputs} == {parent_input.dataset.digest}
    table = mlflow.load_table("comparison/children.json", run_ids=[parent.info.run_id])
    assert sorted(table["run_name"]) == sorted(c.info.run_name for c in children)
    assert table["best_test_spearman"].notna().all()
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "comparison")}
    assert "comparison/test_spearman_by_epoch.png" in artifacts and "comparison/epoch_table.txt" in artifacts

    # The same sweep again trains nothing and links the same four children from a new parent.
    assert cli.main(sweep_args(sample_ava, tiny_clip, tiny_clip_b, tmp_path)) == 0
    parents, again = runs_by_kind()
    assert len(parents) == 2 and len(again) == 4, "no grid point was trained twice"
    newest = max(parents, key=lambda r: r.info.start_time)
    assert set(newest.data.tags[CHILDREN_TAG].split(",")) == {c.info.run_id for c in children}


def test_a_killed_sweep_completes_the_rest_when_restarted(sample_ava, tiny_clip, tiny_clip_b, tmp_path,
                                                          tracking_uri, monkeypatch):
    real_training = sweep_module.train_and_log
    calls = []

    def killed_on_second_child(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated kill")
        return real_training(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "train_and_log", killed_on_second_child)
    with pytest.raises(KeyboardInterrupt):
        cli.main(sweep_args(sample_ava, tiny_clip, tiny_clip_b, tmp_path))
    _, children = runs_by_kind()
    assert sum(c.info.status == "FINISHED" for c in children) == 1
    monkeypatch.setattr(sweep_module, "train_and_log", real_training)
    assert cli.main(sweep_args(sample_ava, tiny_clip, tiny_clip_b, tmp_path)) == 0
    _, children = runs_by_kind()
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(finished) == 4
    assert len({(c.data.params["clip"], c.data.params["norm"]) for c in finished}) == 4


def test_bad_sweep_list_is_refused_before_any_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sweep", "--norms", "true,maybe"]) == 2
    assert "--norms" in capsys.readouterr().err
    assert cli.main(["sweep", "--heads", "linear,cnn"]) == 2
    assert "'cnn' is not a head kind that can be trained; expected one of linear, mlp, ridge" in capsys.readouterr().err
    assert not Path("mlflow.db").exists()
