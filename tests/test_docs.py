"""Every ```python block of the documentation's guide pages runs as written.

Guide pages are all ``docs/**/*.md`` except the API reference (``docs/api/``, generated from
docstrings) and the two reference tables ``docs/architecture.md`` and ``docs/benchmarks.md``.
The blocks of one page run in order in one shared namespace (a page reads as one script), with a
fresh temporary directory as the working directory that holds copies of ``models/`` and
``samplers/``, so that ``models/fm_moons.yaml`` resolves as it does from the repository root and
files the guides write (checkpoints, samples) land in the temporary directory.

A block preceded by the line ``<!-- skip-test -->`` (blank lines allowed in between) is not run;
the marker is meant for the rare block that needs a GPU, several processes or minutes of work.
Each page prints how many blocks it ran and skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOT_GUIDES = {"architecture.md", "benchmarks.md"}
SKIP_MARKER = "<!-- skip-test -->"

# A fenced block that opens at the start of a line with exactly ```python and closes with ```.
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class CodeBlock:
    """One ```python block of a page: its 1-based number and first line, its source, whether skipped."""

    number: int
    line: int
    source: str
    skipped: bool


def guide_pages() -> list[Path]:
    """The guide pages, relative to ``docs/``, sorted."""
    pages = []
    for path in sorted(DOCS.rglob("*.md")):
        rel = path.relative_to(DOCS)
        if rel.parts[0] == "api" or rel.as_posix() in NOT_GUIDES:
            continue
        pages.append(rel)
    return pages


def code_blocks(text: str) -> list[CodeBlock]:
    """The page's ```python blocks in order, with the skip marker resolved."""
    blocks = []
    for number, match in enumerate(_FENCE.finditer(text), start=1):
        before = text[: match.start()].rstrip().splitlines()
        skipped = bool(before) and before[-1].strip() == SKIP_MARKER
        line = text.count("\n", 0, match.start()) + 2  # first line of code, 1-based
        blocks.append(CodeBlock(number, line, match.group(1), skipped))
    return blocks


def test_guide_pages_exist_and_the_marker_is_only_used_before_python_blocks() -> None:
    pages = guide_pages()
    assert len(pages) >= 10, pages
    for rel in pages:
        text = (DOCS / rel).read_text()
        markers = text.count(SKIP_MARKER)
        marked = sum(block.skipped for block in code_blocks(text))
        assert markers == marked, f"docs/{rel}: {markers - marked} '{SKIP_MARKER}' marker(s) not directly before a ```python block"


def test_code_block_extraction_handles_markers_and_other_languages() -> None:
    text = "intro\n```bash\nmake docs\n```\n<!-- skip-test -->\n\n```python\nslow()\n```\n```python\nx = 1\n```\n"
    blocks = code_blocks(text)
    assert [(b.number, b.skipped, b.source) for b in blocks] == [(1, True, "slow()\n"), (2, False, "x = 1\n")]
    assert blocks[1].line == 11


@pytest.mark.parametrize("page", guide_pages(), ids=lambda rel: rel.as_posix())
def test_guide_code_blocks_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = code_blocks((DOCS / page).read_text())
    for folder in ("models", "samplers"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    for block in blocks:
        if block.skipped:
            continue
        code = compile(block.source, f"docs/{page.as_posix()}:block{block.number}", "exec")
        try:
            exec(code, namespace)
        except BaseException as exc:  # SystemExit too: a guide must not exit the interpreter
            detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
            pytest.fail(
                f"docs/{page.as_posix()}: python block {block.number} of {len(blocks)} (line {block.line}) "
                f"failed: {type(exc).__name__}: {exc}\n{detail}",
                pytrace=False,
            )
        ran += 1
    skipped = sum(block.skipped for block in blocks)
    with capsys.disabled():
        print(f"\n  docs/{page.as_posix()}: {ran} python blocks executed, {skipped} skipped", end="")
    assert ran + skipped == len(blocks)
    assert os.getcwd() == str(tmp_path), "a guide block changed the working directory"
