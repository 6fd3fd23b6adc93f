"""The package's import graph, read from the source (imports inside functions included): no cycles, and no private
name taken from another module. A cycle means two modules cannot be understood, tested or moved apart."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "clip_aesthetics"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, list[tuple[str, str]]]:
    """module -> [(imported module, imported name or '')], within the package."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    found = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".") if package else []
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                elif node.module and node.module.startswith("clip_aesthetics"):
                    target = node.module.removeprefix("clip_aesthetics").lstrip(".")
                else:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}".strip(".")
                    edges.append((sub, "") if sub in modules else (target, alias.name))
            elif isinstance(node, ast.Import):
                edges += [(a.name.removeprefix("clip_aesthetics").lstrip("."), "") for a in node.names
                          if a.name.startswith("clip_aesthetics.")]
        found[name] = [(t, n) for t, n in edges if t in modules and t != name]
    return found


def test_no_import_cycles():
    graph = {m: {t for t, _ in edges} for m, edges in imports().items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_private_name_is_taken_from_another_module():
    taken = [f"{module} takes {target}.{name}" for module, edges in imports().items() for target, name in edges
             if name.startswith("_")]
    assert taken == []


def test_the_graph_reader_sees_function_level_imports():
    graph = imports()
    assert any(t == "extensions" for t, _ in graph["heads.head"]), \
        "heads.head imports extensions inside build_head: the reader must see it"


# Lowest first: a module may import from its own layer and the ones before it, never from a later one.
LAYERS = [
    # imported by everything; extensions names its entries' modules as "module:attribute" text, imported on use
    ("errors", "environment", "extensions", "settings", "atomic", "digests"),
    ("images",), ("data",), ("backbones",), ("embedding",), ("heads",), ("reports",), ("scoring",), ("engines",),
    ("tracking",), ("workflows",), ("cli",),
    # entry points: `python -m`, and what MLflow runs to load a model
    ("__main__", "scorer", "scorer_entry", "onnx_entry"),
]


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    found = [k for k, names in enumerate(LAYERS) if top in names]
    assert found, f"{module}: not in any layer of tests/test_imports.py's LAYERS (add its package there)"
    return found[0]


def test_imports_run_one_way_lower_never_imports_higher():
    upward = [f"{module} imports {target}" for module, edges in imports().items() if module
              for target, _ in edges if layer_of(target) > layer_of(module)]
    assert upward == [], "layers, lowest first: " + " < ".join("/".join(names) for names in LAYERS)


# Where each table's entries live: an entry is code of the layer it extends.
TABLE_HOMES = {"HEADS": "heads", "BACKBONE_FAMILIES": "backbones", "SCORE_INPUTS": "scoring",
               "SCORE_OUTPUTS": "scoring", "LABELS_READERS": "data", "ENGINES": "engines", "RUNTIMES": "scoring"}


def test_every_built_in_table_entry_is_defined_in_the_package_it_extends():
    from clip_aesthetics import extensions

    tables = {name: value for name, value in vars(extensions).items() if isinstance(value, extensions.Table)}
    assert set(tables) == set(TABLE_HOMES)
    for name, table in tables.items():
        for entry, ref in table._refs.items():
            module = ref.partition(":")[0].removeprefix("clip_aesthetics.")
            assert module.split(".")[0] == TABLE_HOMES[name], f"{name}[{entry!r}] = {ref}"
            assert table.get(entry) is not None


def modules_importing(library: str) -> set[str]:
    """Modules of the package whose source imports `library` anywhere (at the top or inside a function)."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(name == library or name.startswith(library + ".") for name in names):
                found.add(module_name(path))
    return found


def test_mlflow_is_imported_only_by_the_tracking_edge_and_the_model_formats():
    # the model formats: a scorer's files logged and loaded as a pyfunc, its requests, its URIs, its bundled copy
    model_formats = {"scoring.model", "scoring.onnx_model", "scoring.requests", "scoring.uris", "scoring.bundle"}
    importers = modules_importing("mlflow")
    assert {"tracking.runs", "tracking.registry", "scoring.model"} <= importers, "the scan found too little"
    stray = sorted(m for m in importers if m.split(".")[0] != "tracking" and m not in model_formats)
    assert stray == [], "MLflow belongs to tracking/ and the model formats in scoring/ (workflows go through them)"


def test_tracking_imports_neither_torch_nor_transformers():
    """The MLflow edge logs and registers what others computed: bundling weights is the model format's."""
    for library in ("torch", "transformers"):
        assert sorted(m for m in modules_importing(library) if m.split(".")[0] == "tracking") == [], library


def test_transformers_is_imported_only_by_the_backbones_package():
    importers = modules_importing("transformers")
    assert importers, "the scan found no importer of transformers at all"
    assert sorted(m for m in importers if m.split(".")[0] != "backbones") == []


def test_no_module_is_over_300_lines():
    # a module a newcomer reads in one sitting; split by concern past this (settings/, cli/commands.py show how)
    long = {module_name(p) or "__init__": n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 300}
    assert long == {}
