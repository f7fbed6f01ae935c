"""The README and docs/: short front door, valid tables, links that resolve, examples that run as written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import tomllib

from search.study.parse import parse_spec

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[0] == "## Quick start" and "## Tests" in headings


def _cells(row: str) -> int:
    return len(re.split(r"(?<!\\)\|", row.strip().strip("|")))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_tables_render(page):
    lines = page.read_text().splitlines()
    fenced = False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("|") or (i and lines[i - 1].startswith("|")):
            continue
        # A table: a blank line before it, a separator under its header, every row as wide as the header.
        assert i == 0 or lines[i - 1].strip() == "", f"{page.name}:{i + 1}: a table needs a blank line before it"
        assert re.fullmatch(r"\|( *:?-+:? *\|)+", lines[i + 1].replace(" ", "")), f"{page.name}:{i + 2}"
        width = _cells(line)
        j = i + 1
        while j < len(lines) and lines[j].startswith("|"):
            assert _cells(lines[j]) == width, f"{page.name}:{j + 1}: {_cells(lines[j])} cells, the header has {width}"
            j += 1


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_links_resolve(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith("http"):
            continue
        assert (page.parent / target).exists(), f"{page.name}: {target}"
    headings = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-")
                for p in PAGES for h in re.findall(r"^#+ (.*)$", p.read_text(), re.MULTILINE)}
    for anchor in re.findall(r"\]\([^)\s]*#([\w\-]+)\)", text):
        assert anchor in headings, f"{page.name}: #{anchor}"


def test_the_readme_study_file_is_valid():
    (block,) = _blocks((ROOT / "README.md").read_text(), "toml")
    spec = parse_spec(tomllib.loads(block), source="README.md")
    assert spec.data.resample == "draw" and len(spec.seeds) == 100


@pytest.mark.slow
def test_the_python_api_example_runs_after_the_quick_start(tmp_path, monkeypatch):
    # The quick start's storage holds the study at 4000 epochs x 30 seeds; the example must not collide with it.
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(ROOT / "studies" / "seed-tutorial.toml", studies)
    monkeypatch.chdir(tmp_path)
    first, second = _blocks((ROOT / "README.md").read_text(), "python")
    spec = parse_spec(tomllib.loads((studies / "seed-tutorial.toml").read_text()), source="studies/seed-tutorial.toml")
    assert spec.storage.endswith("seed-tutorial.db")  # where the quick start stores it
    scope: dict = {}
    exec(compile(first.replace("epochs=200", "epochs=20"), "README.md", "exec"), scope)
    assert scope["report"].configurations_run == 3 and len(scope["table"]) == 3
    exec(compile(second, "README.md", "exec"), scope)
    assert (tmp_path / "mine.pdf").stat().st_size > 0
