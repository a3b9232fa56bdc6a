"""The layers import one way (docs/architecture.md): the serving code never imports the training
package or the evaluations, the evaluations never import the training package, and the
recipe's stages do not import each other in a circle. Read from the source, every import
statement (also the ones inside functions, which run later but still bind the layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "starcoder_ls"


def module_name(path: Path) -> str:
    if path.is_relative_to(PACKAGE):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    else:  # models/ and kernels/ install as starcoder_ls.models and starcoder_ls.kernels
        parts = ("starcoder_ls", *path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("starcoder_ls")}


SOURCES = {
    module_name(path): imports_of(path)
    for folder in (PACKAGE, ROOT / "models", ROOT / "kernels")
    for path in folder.rglob("*.py")
}


def under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


SERVING = [
    name
    for name in SOURCES
    if not under(name, "starcoder_ls.recipe", "starcoder_ls.evaluation", "starcoder_ls.cli")
]


@pytest.mark.parametrize(
    ("importers", "forbidden"),
    [
        (SERVING, ("starcoder_ls.recipe", "starcoder_ls.evaluation")),
        (
            [n for n in SOURCES if under(n, "starcoder_ls.evaluation")],
            ("starcoder_ls.recipe",),
        ),
    ],
    ids=["serving code", "evaluation"],
)
def test_lower_layers_do_not_import_higher_ones(
    importers: list[str], forbidden: tuple[str, ...]
) -> None:
    assert importers
    wrong = sorted(
        f"{name} imports {target}"
        for name in importers
        for target in SOURCES[name]
        if under(target, *forbidden)
    )
    assert not wrong, wrong


def test_the_recipe_stages_import_each_other_without_a_circle() -> None:
    recipe = {n for n in SOURCES if under(n, "starcoder_ls.recipe") and n != "starcoder_ls.recipe"}
    graph = {
        name: {t if t in recipe else t.rsplit(".", 1)[0] for t in SOURCES[name]} & recipe - {name}
        for name in recipe
    }
    # Depth-first search for a back edge: any cycle, whatever its length.
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            pytest.fail(" -> ".join(cycle))
