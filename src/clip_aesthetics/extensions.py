"""The extension tables: one name -> implementation mapping per kind of extension.

Each table lists its built-in entries as `"module:attribute"` references, imported only when an entry is used,
so the settings (the lowest layer) take their allowed values from the tables without importing torch,
transformers or Spark, and `--help` stays instant. Adding an extension is one entry here plus its own module;
nothing else names it. An installed package can add entries without editing this file, through the entry point
group `clip_aesthetics.<table>` (e.g. `clip_aesthetics.heads`), and code (a test, a notebook) through
`TABLE.register(name, entry)` or, for the length of a `with` block, `TABLE.registered(name, entry)`.

| table                | entry (see its module)                       | chosen by                               |
|----------------------|----------------------------------------------|-----------------------------------------|
| `HEADS`              | `heads.kinds.HeadKind`                       | `--head`, `--heads`, a saved model      |
| `BACKBONE_FAMILIES`  | `backbones.families.Family`                  | a checkpoint's config.json `model_type` |
| `SCORE_INPUTS`       | `scoring.samples.InputReader`                | an input's suffix (`score`)             |
| `SCORE_OUTPUTS`      | `scoring.outputs.OutputWriter`               | `--out`'s suffix (`score`)              |
| `LABELS_READERS`     | `data.tables.TableReader`                    | a labels table's suffix (`--labels`)    |
| `ENGINES`            | `engines.Engine`                             | `--engine`                              |
| `RUNTIMES`           | `scoring.runtime.Runtime`                    | `export --format`                       |
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any, Iterator


class Table:
    """An ordered name -> entry mapping whose built-in entries are imported on first use."""

    def __init__(self, what: str, group: str, builtin: dict[str, str]):
        self.what, self.group = what, group
        self._refs: dict[str, str] = dict(builtin)
        self._loaded: dict[str, Any] = {}
        self._plugins_read = False

    @property
    def a_what(self) -> str:
        return ("an " if self.what[0] in "aeiou" else "a ") + self.what

    def _read_plugins(self) -> None:
        if self._plugins_read:
            return
        self._plugins_read = True
        from importlib.metadata import entry_points

        for point in entry_points(group=f"clip_aesthetics.{self.group}"):
            self._refs.setdefault(point.name, point.value)

    def names(self) -> list[str]:
        self._read_plugins()
        return list(dict.fromkeys([*self._refs, *self._loaded]))

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def get(self, name: str) -> Any:
        """The entry called `name`; KeyError naming the table's entries when there is none."""
        if name not in self._loaded:
            if name not in self.names():
                raise KeyError(f"{name!r} is not {self.a_what}; known: {', '.join(self.names())}")
            module, _, attribute = self._refs[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), attribute)
        return self._loaded[name]

    def entries(self) -> Iterator[tuple[str, Any]]:
        """(name, entry) for every entry, importing them."""
        for name in self.names():
            yield name, self.get(name)

    def check(self, value: str, setting: str) -> str:
        """`value` when it names an entry, else ValueError in the settings' words."""
        if value not in self.names():
            raise ValueError(f"{setting}={value!r} is not {self.a_what}; expected one of {', '.join(self.names())}")
        return value

    def register(self, name: str, entry: Any) -> None:
        """Add (or replace) an entry: an object, or a `"module:attribute"` reference."""
        if isinstance(entry, str):
            self._refs[name] = entry
            self._loaded.pop(name, None)
        else:
            self._refs.pop(name, None)
            self._loaded[name] = entry

    def unregister(self, name: str) -> None:
        self._refs.pop(name, None)
        self._loaded.pop(name, None)

    @contextlib.contextmanager
    def registered(self, name: str, entry: Any):
        """The entry added for the length of a `with` block; what was there before comes back after it."""
        before = (self._refs.get(name), self._loaded.get(name))
        self.register(name, entry)
        try:
            yield entry
        finally:
            self.unregister(name)
            if before[0] is not None:
                self._refs[name] = before[0]
            if before[1] is not None:
                self._loaded[name] = before[1]


HEADS = Table("head kind", "heads", {
    "linear": "clip_aesthetics.heads.kinds:LINEAR",
    "mlp": "clip_aesthetics.heads.kinds:MLP",
    "ridge": "clip_aesthetics.heads.kinds:RIDGE",
    "chain": "clip_aesthetics.heads.chain:CHAIN",
    "distribution": "clip_aesthetics.heads.distribution:DISTRIBUTION",
    "pairwise": "clip_aesthetics.heads.pairwise:PAIRWISE",
})
# the built-in heads `--head` trains (chain: published heads only)
TRAINABLE_HEADS = ("linear", "mlp", "ridge", "distribution", "pairwise")

BACKBONE_FAMILIES = Table("backbone family", "backbones", {
    "clip": "clip_aesthetics.backbones.catalog:CLIP",
    "siglip": "clip_aesthetics.backbones.catalog:SIGLIP",
    "siglip2-naflex": "clip_aesthetics.backbones.catalog:SIGLIP2_NAFLEX",
    "dinov2": "clip_aesthetics.backbones.catalog:DINOV2",
})

SCORE_INPUTS = Table("score input format", "score_inputs", {
    "files": "clip_aesthetics.scoring.image_files:IMAGE_FILES",
    "shard": "clip_aesthetics.scoring.shards:SHARDS",
    "table": "clip_aesthetics.scoring.byte_tables:TABLES",
})

SCORE_OUTPUTS = Table("score output format", "score_outputs", {
    ".csv": "clip_aesthetics.scoring.outputs:CSV",
    ".parquet": "clip_aesthetics.scoring.outputs:PARQUET",
})

LABELS_READERS = Table("labels table format", "labels_readers", {
    "csv": "clip_aesthetics.data.tables:CSV",
    "tsv": "clip_aesthetics.data.tables:TSV",
    "parquet": "clip_aesthetics.data.tables:PARQUET",
    "jsonl": "clip_aesthetics.data.tables:JSONL",
})

ENGINES = Table("engine", "engines", {
    "local": "clip_aesthetics.engines.local:LOCAL",
    "spark": "clip_aesthetics.engines.spark:SPARK",
})

RUNTIMES = Table("export format", "runtimes", {
    "onnx": "clip_aesthetics.scoring.onnx_export:ONNX",
})
