"""The package layout is the data flow: each stage imports only earlier stages, and no module imports
itself back through others (docs/design-notes.md, "Layout").

Every import counts, at module level or inside a function: an import deferred to keep a quick command
fast is still a dependency, and a cycle hidden inside a function is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers.paths import ROOT

# Earliest first. `bench` is the package's own __init__ (its version); `errors` and `units` are leaves
# that every stage may use; `cli` is the last stage, which nothing imports.
STAGES = ("bench", "errors", "units", "config", "estimate", "records", "launch", "weights", "backends", "trackers",
          "evals", "scenarios", "verdicts", "jobs", "serve", "report", "calibration", "cli")
TOP_LEVEL_MODULES_AT_MOST = 6


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The bench modules `path` imports (a name imported from a package counts as its submodule when it is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "bench"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "bench":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _path_of(sub) is not None else node.module)
    return found


def _path_of(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _stage(module: str) -> int:
    parts = module.split(".")
    return STAGES.index(parts[1] if len(parts) > 1 else "bench")


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted((ROOT / "bench").rglob("*.py"))}


def test_every_module_belongs_to_a_stage():
    assert [m for m in _graph() if (m.split(".") + [""])[1] not in STAGES and m != "bench"] == []


def test_no_module_imports_a_later_stage():
    upward = [f"{module} -> {dep}" for module, deps in _graph().items() for dep in deps if _stage(dep) > _stage(module)]
    assert upward == []


def test_no_import_cycle():
    graph = _graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for dep in sorted(graph.get(module, ())):
            if dep != module and (cycle := visit(dep, path + [module])):
                return cycle
        done.add(module)
        return None

    cycles = [cycle for module in sorted(graph) if (cycle := visit(module, []))]
    assert cycles == []


def test_the_top_level_stays_small():
    top = sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= TOP_LEVEL_MODULES_AT_MOST, top
