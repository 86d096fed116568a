"""The layout rules hold: imports flow one way, only the wiring builds parts, modules stay small.

guide ← delivery ← scheduler ← web ← wiring ← cli ← run.py (DESIGN.md). These tests read the
source with `ast`, so a new import that breaks a rule fails here, with the file and line.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Lower layers first; a folder may import only folders before it in this list (and itself).
LAYERS = ("guide", "delivery", "scheduler", "web", "wiring", "cli")
# Where building a concrete part is allowed: the wiring, the command line, and run.py.
BUILDERS = {"wiring", "cli", "run"}
# The classes that stand for a choice of implementation; only BUILDERS may construct them.
CONCRETE = {
    "Store.open",
    "SMTPTransport",
    "MaildirTransport",
    "MemoryTransport",
    "ProcessTransport",
    "MessageFactory",
    "Composer",
    "DKIMSigner",
    "Dispatcher",
    "LessonLibrary",
    "AsyncIOScheduler",
    "WebContext",
}
# Constructions outside the builders that are an implementation detail, not a choice.
ALLOWED = {
    # The sender child process exists to run the smtp transport on a second core.
    ("delivery/transports/process_child.py", "SMTPTransport"),
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


@dataclass(frozen=True)
class Import:
    """One import of a module of ours."""

    source: Path
    line: int
    target: str  # dotted module name


def our_files() -> list[Path]:
    """Every Python file of the service (not tests, bench or migrations' generated code)."""
    files = [REPO / "run.py"]
    for folder in LAYERS:
        if (REPO / folder).is_dir():
            files += sorted((REPO / folder).rglob("*.py"))
    return files


def folder_of(path: Path) -> str:
    """The top-level folder of `path` ("run" for run.py)."""
    relative = path.relative_to(REPO)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def module_of(path: Path) -> str:
    """The dotted module name of `path`."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[Import]:
    """The imports of our own modules in `path`, including those under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in LAYERS:
                found.append(Import(path, node.lineno, name))
    return found


def test_the_rules_see_every_folder() -> None:
    folders = {folder_of(path) for path in our_files()}
    assert {"guide", "delivery", "scheduler", "web", "wiring", "cli", "run"} <= folders
    assert sum(len(imports_of(path)) for path in our_files()) > 50


def test_imports_only_point_down_the_layers() -> None:
    rank = {folder: i for i, folder in enumerate(LAYERS)}
    rank["run"] = len(LAYERS)
    wrong = [
        f"{imp.source.relative_to(REPO)}:{imp.line}: imports {imp.target}"
        for path in our_files()
        for imp in imports_of(path)
        if rank[imp.target.split(".")[0]] > rank[folder_of(path)]
    ]
    assert wrong == []


def test_guide_imports_nothing_else_of_ours() -> None:
    wrong = [
        f"{imp.source.relative_to(REPO)}:{imp.line}: imports {imp.target}"
        for path in our_files()
        if folder_of(path) == "guide"
        for imp in imports_of(path)
        if not imp.target.startswith("guide")
    ]
    assert wrong == []


def test_no_import_cycle_between_folders() -> None:
    # Modules as nodes; an edge for each import across folders. A cycle through two folders
    # would show as a path back to the start.
    modules = {module_of(path): path for path in our_files()}
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for imp in imports_of(path):
            target = imp.target
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target in modules and target != name:
                edges[name].add(target)
    cycles = []
    for start in modules:
        stack, seen = [(start, [start])], {start}
        while stack:
            node, trail = stack.pop()
            for nxt in edges[node]:
                if nxt == start and len({m.split(".")[0] for m in trail}) > 1:
                    cycles.append(" → ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert cycles == []


def constructions(path: Path) -> list[tuple[int, str]]:
    """Calls in `path` that construct one of the CONCRETE parts."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = ""
        if isinstance(func, ast.Name):
            name = func.id
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            name = f"{func.value.id}.{func.attr}"
        if name in CONCRETE:
            found.append((node.lineno, name))
    return found


def classes_defined(path: Path) -> set[str]:
    """The names of the classes `path` defines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}


def test_only_the_wiring_and_cli_choose_concrete_classes() -> None:
    wrong = [
        f"{path.relative_to(REPO)}:{line}: constructs {name}"
        for path in our_files()
        if folder_of(path) not in BUILDERS
        for line, name in constructions(path)
        # A module may make instances of its own classes (a classmethod constructor, say).
        if name.split(".")[0] not in classes_defined(path)
        and (str(path.relative_to(REPO)), name) not in ALLOWED
    ]
    assert wrong == []
    assert any(constructions(path) for path in our_files() if folder_of(path) == "wiring")


def test_the_construction_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("transport = SMTPTransport(config)\nstore = await Store.open(url)\n")
    assert constructions(sample) == [(1, "SMTPTransport"), (2, "Store.open")]


@pytest.mark.parametrize("path", our_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_modules_and_functions_stay_readable(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{lines} lines: split this module"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []
