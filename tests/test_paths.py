"""Every repository path named in the docs and comments exists, so that a reader sent to a file finds it."""
from __future__ import annotations

import re

from tests_support import REPO

# Top-level folders of this repository; a token such as `cluster/aws.yaml` or `docker/Dockerfile` names a file.
FOLDERS = ("benchmarks", "chorus", "cluster", "configs", "data", "docker", "docs", "scripts", "tests", "trainer")
PATH = re.compile(r"(?<![\w./~$-])((?:" + "|".join(FOLDERS)
                  + r")/(?:[\w.-]+/)*(?:[\w-][\w.-]*\.[A-Za-z]\w*|Dockerfile))(?![\w/])")
SUFFIXES = (".py", ".yaml", ".yml", ".sh", ".md", ".toml")
SKIP_DIRS = {".git", ".venv", ".cache", "runs", "results", "build", "dist", "__pycache__", ".pytest_cache"}
# Paths that are examples of what a user or a run writes, not files of this repository (none named today).
OUTPUTS: set[str] = set()


def _files():
    for path in sorted(REPO.rglob("*")):
        rel = path.relative_to(REPO)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix in SUFFIXES or path.name == "Dockerfile" or rel.as_posix() == ".ci/run":
            yield rel, path


def named_paths() -> list[tuple[str, int, str]]:
    """(file, line number, path) for each repository path named in a doc or a source file."""
    found = []
    for rel, path in _files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for m in PATH.finditer(line):
                found.append((rel.as_posix(), n, m.group(1).rstrip(".")))
    return found


def test_the_pattern_finds_paths_and_ignores_others():
    line = "see cluster/aws.yaml, `docker/Dockerfile` and scripts/test.sh; not runs/x.yaml nor ~/data/a.mid"
    assert [m.group(1) for m in PATH.finditer(line)] == ["cluster/aws.yaml", "docker/Dockerfile", "scripts/test.sh"]


def test_every_named_repository_path_exists():
    found = named_paths()
    assert any(p == "configs/lab.yaml" for _, _, p in found)  # the scan reads the README
    missing = [f"{f}:{n}: {p}" for f, n, p in found if p not in OUTPUTS and not (REPO / p).exists()]
    assert not missing, "named but not in the repository:\n" + "\n".join(missing)
