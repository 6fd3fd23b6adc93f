"""Settings: bad values refused before any work, env overrides, MLproject and conda.yaml kept in step."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from clip_aesthetics.cli import app as cli
from clip_aesthetics.cli import mlproject
from clip_aesthetics.settings import BackboneSettings, TrainSettings

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--norm", "maybe", ["--norm", "maybe", "boolean"]),
        ("--epochs", "0", ["--epochs", "greater than 0"]),
        ("--lr", "-1", ["--lr", "greater than 0"]),
        ("--clip", "b99", ["--clip", "b16, b32", "local folder"]),
        ("--split", "random", ["--split", "'seed' or 'official'"]),
        ("--head", "transformer", ["--head", "expected one of linear, mlp, ridge"]),
    ],
)
def test_bad_value_is_refused_with_the_parameter_and_accepted_values(flag, value, words, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["main", flag, value, "--ava-dir", str(tmp_path / "nowhere")]) == 2
    message = capsys.readouterr().err
    for word in words:
        assert word in message
    assert not (tmp_path / "mlflow.db").exists(), "no run may start when a parameter is bad"


def test_unknown_flag_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--learning-rate", "0.1"])
    assert exit_info.value.code == 2
    assert "--learning-rate" in capsys.readouterr().err


def test_environment_overrides_defaults(monkeypatch):
    monkeypatch.setenv("CLIP_AESTHETICS_EPOCHS", "7")
    monkeypatch.setenv("CLIP_AESTHETICS_CLIP", "b32")
    assert TrainSettings().epochs == 7
    assert BackboneSettings().clip == "b32"


def test_clip_accepts_aliases_hub_ids_and_local_folders(tiny_clip):
    for value in ("b16", "b32", "openai/clip-vit-large-patch14", str(tiny_clip)):
        assert BackboneSettings(clip=value).clip == value


def test_mlproject_and_the_parameter_reference_are_generated_from_the_settings():
    regenerate = "run `python -m clip_aesthetics.cli.mlproject --write`"
    assert (ROOT / "MLproject").read_text() == mlproject.render(), regenerate
    page = (ROOT / "docs" / "parameters.md").read_text()
    assert mlproject.with_reference_tables(page) == page, "run `python -m clip_aesthetics.cli.mlproject --write`"
    assert "| `val_fraction` | 0.05 |" in page


def test_mlproject_parameters_map_one_to_one_onto_cli_flags():
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    for entry, body in spec["entry_points"].items():
        flags = re.findall(r"--([\w-]+) \{(\w+)\}", body["command"])
        positional = set(re.findall(r"(?<!\S)\{(\w+)\}", body["command"])) - {name for _, name in flags}
        assert {name for _, name in flags} | positional == set(body["parameters"]), entry
        assert positional == {"score": {"inputs"}, "import_head": {"path"}}.get(entry, set()), entry
        assert all(flag == name.replace("_", "-") for flag, name in flags), entry
    main = spec["entry_points"]["main"]["parameters"]
    assert main["clip"]["default"] == "b16" and main["epochs"]["default"] == 5
    assert main["lr"]["default"] == 1e-4 and main["batch_size"]["default"] == 32 and main["seed"]["default"] == 42


def test_conda_yaml_pins_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())["dependencies"]
    pip_list = next(item["pip"] for item in conda if isinstance(item, dict))
    assert sorted(project) == sorted(pip_list)
    assert all("==" in requirement for requirement in project), "every dependency is pinned"


def test_engine_spark_without_pyspark_or_java_is_one_line(monkeypatch, capsys, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_pyspark(name, *args, **kwargs):
        if name.startswith("pyspark"):
            raise ImportError("No module named 'pyspark'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyspark)
    assert cli.main(["score", str(tmp_path), "--engine", "spark"]) == 2
    assert "engine=spark needs pyspark: pip install -e '.[spark]'" in capsys.readouterr().err
    monkeypatch.setattr(builtins, "__import__", real_import)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert cli.main(["score", str(tmp_path), "--engine", "spark"]) == 2
    assert "engine=spark needs Java 17" in capsys.readouterr().err


SUBCOMMANDS = ["main", "embed", "train", "sweep", "register", "score", "sample-data"]
# What must not be imported to answer --help or refuse a flag: each takes seconds to import.
HEAVY = ("torch", "mlflow", "transformers", "pandas", "scipy", "pyspark")


@pytest.mark.parametrize("args", [["--help"], *([name, "--help"] for name in SUBCOMMANDS),
                                  *([name, "--no-such-flag"] for name in SUBCOMMANDS),
                                  ["main", "--norm", "maybe"], ["register", "--metric", "val_foo"]])
def test_help_and_argument_errors_load_nothing_heavy(args, tmp_path):
    import json
    import subprocess
    import sys

    code = ("import json, sys\nfrom clip_aesthetics.cli import app as cli\ntry:\n    cli.main(sys.argv[1:])\n"
            "except SystemExit:\n    pass\n"
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], done.stdout + done.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_boolean_flags_work_alone_negated_and_with_a_value():
    assert cli.with_explicit_booleans(["sample-data", "--traps"]) == ["sample-data", "--traps", "true"]
    made = cli.with_explicit_booleans(["sample-data", "--traps", "--seed", "1"])
    assert made[:3] == ["sample-data", "--traps", "true"]
    assert cli.with_explicit_booleans(["main", "--no-norm"]) == ["main", "--norm", "false"]
    assert cli.with_explicit_booleans(["main", "--norm", "false"]) == ["main", "--norm", "false"]
    assert cli.with_explicit_booleans(["main", "--norm=false"]) == ["main", "--norm=false"]


def test_sample_data_traps_flag_alone(tmp_path, capsys):
    assert cli.main(["sample-data", "--out", str(tmp_path / "s"), "--n-images", "12", "--traps"]) == 0
    assert len(list((tmp_path / "s" / "ava" / "image").iterdir())) > 12, "the trap files were written too"


def test_a_bad_boolean_lists_the_accepted_values(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["main", "--norm", "maybe"]) == 2
    assert "accepted: true or false" in capsys.readouterr().err


def test_train_offers_only_the_flags_it_uses(capsys):
    for name, expected in (("train", False), ("main", True)):
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        text = capsys.readouterr().out
        for flag in ("--engine", "--num-workers", "--shard-size", "--embed-batch-size"):
            assert (flag in text) == expected, (name, flag)
        assert "--cache-dir" in text and "--precision" in text


def test_backbone_is_accepted_as_another_name_for_clip(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["main", "--backbone", "b99", "--ava-dir", str(tmp_path)]) == 2
    assert "--clip='b99'" in capsys.readouterr().err
    assert cli.main(["sweep", "--backbones=b16,b99", "--ava-dir", str(tmp_path)]) == 2
    assert "clip='b99' is not one of" in capsys.readouterr().err
