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


# ---------------------------------------------------------------- the docs: links, the front page, dated prose
README_MAX_LINES = 300  # the README is a front page; reference goes to docs/, measurements to benchmarks/results/
CELL_MAX_CHARS = 200
# [text](target) and [text](target "title"); images too. Targets with a scheme (https:, mailto:) are not ours.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b(?!-\w)")  # a date, but not a results file's name
DATED_WORDS = re.compile(r"\b(today|today's|tonight|yesterday|this (morning|afternoon|evening)"
                         r"|the (morning|afternoon|evening) of)\b", re.IGNORECASE)


def _docs() -> list:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
            *sorted((REPO / "benchmarks" / "results").glob("*.md"))]


def _prose(path) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((n, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in _prose(path):
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            found.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return found


def links(path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link in a Markdown file, code blocks and spans left out."""
    found = []
    for n, line in _prose(path):
        for m in LINK.finditer(re.sub(r"`[^`]*`(?!\])", "", line)):
            target = m.group(1)
            if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                found.append((n, target))
    return found


def test_slugs_and_links_are_read_as_github_reads_them(tmp_path):
    assert slug("3. Up, search, results, down") == "3-up-search-results-down"
    assert slug("Training on your own MIDI files or `.npy`") == "training-on-your-own-midi-files-or-npy"
    page = tmp_path / "page.md"
    page.write_text('see [a](guide/a.md#x), ![b](b.png "t"), [web](https://example.com) and `[c](not/a/link.md)`\n'
                    "```\n[d](in/a/fence.md)\n```\n# A heading\n## A heading\n")
    assert [t for _, t in links(page)] == ["guide/a.md#x", "b.png"]
    assert anchors(page) == {"a-heading", "a-heading-1"}


def test_every_relative_link_in_the_docs_resolves():
    broken = []
    for doc in _docs():
        for n, target in links(doc):
            file, _, anchor = target.partition("#")
            dest = (doc.parent / file).resolve() if file else doc
            where = f"{doc.relative_to(REPO)}:{n}: {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where} (no heading #{anchor} in {dest.name})")
    assert any(doc.name == "README.md" for doc in _docs()) and (REPO / "docs").is_dir()
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_is_a_front_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move reference text to docs/"
    text = "\n".join(lines)
    for command in ("scripts/up.sh", "scripts/test.sh"):  # the two commands
        assert command in text, command


def test_table_cells_stay_short():
    cells = [f"{doc.relative_to(REPO)}:{n}: a cell of {len(cell.strip())} characters"
            for doc in _docs() for n, line in _prose(doc) if line.lstrip().startswith("|")
            for cell in re.sub(r"`[^`]*`", lambda m: m.group(0).replace("|", "/"), line).strip().strip("|").split("|")
            if len(cell.strip()) > CELL_MAX_CHARS]
    assert not cells, f"table cells over {CELL_MAX_CHARS} characters:\n" + "\n".join(cells)


def test_no_dated_prose_outside_benchmarks_results():
    """Dated measurements live in benchmarks/results/YYYY-MM-DD-<topic>.md; README, docs and config comments link
    to them and carry no dates or 'this evening' of their own (a date that begins a file's name is a name)."""
    dated = []
    sources = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "configs").glob("*.yaml"))]
    for path in sources:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if DATE.search(line) or DATED_WORDS.search(line):
                dated.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not dated, "dated prose (move it to benchmarks/results/):\n" + "\n".join(dated)


def test_results_files_are_dated_and_say_how_to_rerun():
    for path in sorted((REPO / "benchmarks" / "results").glob("*.md")):
        assert re.fullmatch(r"20\d\d-\d\d-\d\d-[a-z0-9-]+\.md", path.name), path.name
        text = path.read_text()
        assert path.name[:10] in text.splitlines()[0], f"{path.name}: the title line gives the date"
        assert "Machine" in text and "Rerun" in text, f"{path.name}: say the machine and the rerun command"
