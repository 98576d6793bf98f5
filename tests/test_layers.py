"""The layers, checked from the source: data <- trainer <- cluster <- the CLI, imports pointing down only.

chorus/errors.py, files.py and versions.py are the utilities every layer shares: they import no chorus module.
"""
from __future__ import annotations

import ast

import pytest
from tests_support import REPO

UTILITIES = ("errors", "files", "versions")
# folder -> what its modules may not import (module prefixes)
FORBIDDEN = {
    "data": ("chorus.trainer", "chorus.cluster", "chorus.cli", "ray"),
    "trainer": ("chorus.cluster", "chorus.cli", "ray"),
    "cluster": ("chorus.cli",),
}


def imports(path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def _hits(found: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in found if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_point_down_only(folder):
    bad = {str(p.relative_to(REPO)): hits for p in sorted((REPO / folder).glob("*.py"))
           if (hits := _hits(imports(p), FORBIDDEN[folder]))}
    assert not bad, bad


def test_shared_utilities_import_no_chorus_module():
    for name in UTILITIES:
        path = REPO / "chorus" / f"{name}.py"
        assert not _hits(imports(path), ("chorus",)), path


def test_the_checker_sees_function_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from chorus.cluster import jobs\n    import ray.tune\n")
    assert _hits(imports(f), FORBIDDEN["data"]) == ["chorus.cluster", "chorus.cluster.jobs", "ray.tune"]
