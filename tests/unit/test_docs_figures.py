"""Every figure in README.md and docs/ names the command that makes it, and that command is in the
repository: each row of README's "Measured" table names a bench script, each "Measured" section
of docs/ names one, and every bench/ or tests/ path the docs name exists."""

from __future__ import annotations

import re

from tests.conftest import ROOT

_PATH = re.compile(r"\b((?:bench|tests)/[\w./-]+\.(?:py|md|sh|in))\b")
_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_bench_or_test_path_the_docs_name_exists():
    missing = {}
    for doc in _DOCS:
        for path in set(_PATH.findall(doc.read_text())):
            if not (ROOT / path).is_file():
                missing.setdefault(doc.name, []).append(path)
    assert not missing


def test_every_row_of_readmes_measured_table_names_its_command():
    section = (ROOT / "README.md").read_text().split("## Measured", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith(("| what", "| ---"))]
    assert rows
    for row in rows:
        command = row.rstrip(" |").rsplit(" | ", 1)[1]
        scripts = re.findall(r"python (bench/[\w/]+\.py)", command)
        assert scripts and all((ROOT / s).is_file() for s in scripts), row


def test_every_measured_section_of_the_docs_names_a_command():
    for doc in _DOCS:
        for section in re.split(r"\n(?=## )", doc.read_text()):
            heading = section.splitlines()[0]
            if heading.startswith("## ") and "easured" in heading:
                assert _PATH.search(section) or "make bench" in section, (doc.name, heading)


def test_no_doc_cites_a_figure_that_no_bench_prints():
    # docs/streaming.md cited "+1.7% instructions", a row that no bench prints any more.
    assert "instructions per request" not in (ROOT / "docs" / "streaming.md").read_text()
