"""The packages stand in layers: each imports only the ones below it, so there is no import
circle and a contract never depends on what builds on it (../shared/DESIGN.md, "The shape")."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = [
    ("core",),
    ("results",),
    ("meters",),
    ("workloads",),
    ("methods",),
    ("training",),
    ("launchers",),
    ("estimates",),
    ("suites",),
    ("reports",),
    ("benchmarks",),
    ("harness",),
]
"""Lowest first; packages on one line are peers and must not import each other."""
LEVEL = {package: level for level, packages in enumerate(LAYERS) for package in packages}


def _ours(name: str) -> str | None:
    top = name.split(".")[0]
    return top if top in LEVEL else None


def imports_of(path: Path) -> set[str]:
    """The packages of ours a module imports, anywhere in it (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {_ours(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(_ours(node.module))
    return found - {None}


def modules():
    for package in LEVEL:
        paths = [REPO / f"{package}.py"] if (REPO / f"{package}.py").exists() else sorted((REPO / package).rglob("*.py"))
        yield from ((package, path) for path in paths)


def test_every_package_of_ours_has_a_layer():
    loose = {path.stem for path in REPO.glob("*.py")} - set(LEVEL)
    folders = {path.parent.name for path in REPO.glob("*/__init__.py")} - set(LEVEL) - {"tests"}
    assert not loose and not folders, f"put them in a layer: {sorted(loose | folders)}"


@pytest.mark.parametrize("package, path", list(modules()), ids=lambda value: str(value).removeprefix(str(REPO) + "/"))
def test_a_module_imports_only_its_own_package_and_those_below(package, path):
    above = {other for other in imports_of(path) if other != package and LEVEL[other] >= LEVEL[package]}
    assert not above, f"{path.relative_to(REPO)} ({package}, layer {LEVEL[package]}) imports {sorted(above)}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports."""
    known = {_module_name(path) for _, path in modules()}
    graph = {}
    for _, path in modules():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                submodules = [f"{node.module}.{alias.name}" for alias in node.names]
                # `from package import submodule` needs the submodule, not what the package's
                # __init__ defines.
                names = [name for name in submodules if name in known] or [node.module]
            edges |= {name for name in names if name in known}
        graph[_module_name(path)] = edges - {_module_name(path)}
    return graph


def test_no_module_imports_itself_around_a_circle():
    graph = module_graph()
    circles = []

    def visit(module, path):
        for imported in graph[module]:
            if imported in path:
                circles.append(path[path.index(imported):] + [imported])
            elif imported not in finished:
                visit(imported, path + [imported])
        finished.add(module)

    finished: set[str] = set()
    for module in graph:
        if module not in finished:
            visit(module, [module])
    assert not circles, " | ".join(" -> ".join(circle) for circle in circles[:5])
