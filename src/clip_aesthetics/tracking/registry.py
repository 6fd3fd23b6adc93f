"""A logged model -> a registered version with tags, a description and an alias: the one registration path of
`register`, `import-head` and `export`, with what differs between them as parameters (which earlier version is the
same one, and the alias policy), and the descriptions their versions carry.

Alias policies: `elect` (register: `champion` is the best version by a metric, the oldest among equals; a new
version that is not is the `challenger`), `if_none` (import-head: `champion` when the name has none yet), `fixed`
(export: its weights' alias, float32 or int8, moved to the new version). Registering what is already registered
(the same run; the same head file on the same backbone) creates nothing new. Safe under concurrency, also against a
remote tracking server where no local lock helps: it converges after the fact (of two versions of the same thing
the oldest stays and the other is deleted by its writer; `champion` is recomputed until no new version appears).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from clip_aesthetics.heads.metrics import ranking_key
from clip_aesthetics.scoring.uris import model_of_version
from clip_aesthetics.tracking.selection import RegistryError

CHAMPION, CHALLENGER = "champion", "challenger"
# What decides an embedding besides the weights (backbones.describe), copied from the run onto each version.
BACKBONE_RECORD = ("backbone_family", "embedding_kind", "embedding_dim", "input_size", "activation", "processor_digest",
                   "max_num_patches")

MODEL_DESCRIPTION = (
    "Predicts the aesthetic score of an image on the scale of the ratings it was trained on (AVA: 1-10, the mean "
    "of photographers' votes; each version's `score_range` tag and description say which), from a frozen "
    "backbone's image embedding and a regression head. Each version carries its backbone's vision "
    "weights and image processor and applies exactly the training run's preprocessing. Call it with "
    "`mlflow.pyfunc.load_model(\"models:/NAME@champion\").predict(pd.DataFrame({\"image\": [jpeg_bytes]}))` or "
    "serve it and POST `{\"dataframe_records\": [{\"image\": \"<base64>\"}]}`; each row gets `score` (1-10) "
    "and `error` (why an image could not be scored). `champion` is the best version by the metric `register` "
    "was given (validation Spearman unless stated; for errors such as val_mse, the lowest)."
)


@dataclass(frozen=True)
class AliasPolicy:
    kind: str  # elect | if_none | fixed
    metric: str = ""  # elect: what "best" means
    alias: str = ""  # fixed: the alias


@dataclass
class Registration:
    version: str
    alias: str  # the version's aliases after it, comma-separated ("" when none)
    created: bool  # False when the same thing was registered before
    model_id: str = ""  # the logged model the version was made from


def quoted(value: str) -> str:
    """A string literal for an MLflow filter (which has no escapes: the quote must not occur inside)."""
    quote = "'" if "'" not in value else '"'
    if quote in value:
        raise RegistryError(f"{value!r} holds both quote characters; MLflow's filters cannot express it")
    return f"{quote}{value}{quote}"


def versions_of(client: MlflowClient, name: str, same: Callable | None = None) -> list:
    """The versions of `name` (those `same` accepts), oldest first; none for a name not registered yet."""
    try:
        versions = client.search_model_versions(f"name = {quoted(name)}")
    except MlflowException:
        return []
    return sorted((v for v in versions if same is None or same(v)), key=lambda v: int(v.version))


def register_version(name: str, make: Callable[[], tuple[str, dict, str]], policy: AliasPolicy,
                     same: Callable | None = None) -> Registration:
    """Register a new version of `name` from what `make()` gives (model URI, tags, description), called only when no
    version that `same` accepts exists already; then the alias `policy` says."""
    client = MlflowClient()
    existing = versions_of(client, name, same) if same is not None else []
    if existing:
        version, model_id, created = str(existing[0].version), model_of_version(existing[0]), False
    else:
        uri, tags, description = make()
        made = mlflow.register_model(uri, name, tags=tags)
        version, model_id, created = str(made.version), model_of_version(made), True
        first = versions_of(client, name, same)[0] if same is not None else made
        if str(first.version) != version:  # another writer registered the same thing first: theirs stays
            client.delete_model_version(name, version)
            version, created = str(first.version), False
        else:
            client.update_model_version(name, version, description=description)
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=MODEL_DESCRIPTION.replace("NAME", name))
    return Registration(version, _alias(client, name, version, created, policy), created, model_id)


def _alias(client: MlflowClient, name: str, version: str, created: bool, policy: AliasPolicy) -> str:
    if policy.kind == "elect":
        if elect_champion(client, name, policy.metric) == version:
            return CHAMPION
        if created:
            client.set_registered_model_alias(name, CHALLENGER, version)
            return CHALLENGER
    elif policy.kind == "if_none" and created and CHAMPION not in client.get_registered_model(name).aliases:
        client.set_registered_model_alias(name, CHAMPION, version)
    elif policy.kind == "fixed" and created:
        client.set_registered_model_alias(name, policy.alias, version)
    return ",".join(a for a, v in client.get_registered_model(name).aliases.items() if str(v) == version)


def elect_champion(client: MlflowClient, name: str, metric: str) -> str | None:
    """Point `champion` at the best version by `metric` (the oldest among equals); repeat while versions appear."""
    best = None
    for _ in range(5):
        versions = versions_of(client, name)
        scored = [(ranking_key(_number(v.tags.get(metric)), metric), -int(v.version), str(v.version))
                  for v in versions]
        scored = [row for row in scored if row[0][0]]  # a version without a defined value never wins
        if not scored:
            return None
        best = max(scored)[2]
        if str(client.get_registered_model(name).aliases.get(CHAMPION)) != best:
            client.set_registered_model_alias(name, CHAMPION, best)
        if {v.version for v in versions_of(client, name)} == {v.version for v in versions}:
            return best
    return best


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def version_info(name: str, version: str):
    return MlflowClient().get_model_version(name, version)


def add_to_version(name: str, version: str, tags: dict[str, str], sentence: str) -> None:
    """More tags on a registered version, and a sentence after its description (a measurement made after it)."""
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    described = client.get_model_version(name, version).description or ""
    client.update_model_version(name, version, description=f"{described} {sentence}".strip())
