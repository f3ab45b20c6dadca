"""Writing a benchmark's table into its documentation page between its markers.

The measured tables live in ``docs/`` (the README links to them): a section
``NAME`` sits between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in one
of the pages there (quality:smooth and quality:deblock in benchmarks.md,
quality:jpeg-files in jpeg.md, microscopy in microscopy.md), and the figures go
to ``docs/`` beside them.
"""

from __future__ import annotations

from pathlib import Path

DOCS = Path("docs")


def find_page(name: str, docs: Path = DOCS) -> Path | None:
    """The page under ``docs`` that holds section ``name``'s markers, each on a line of its own; or None."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    for page in sorted(docs.glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        if begin in lines and end in lines:
            return page
    return None


def write_section(name: str, text: str, page: Path | None = None) -> bool:
    """Put ``text`` between ``<!-- name:begin -->`` and ``<!-- name:end -->`` of ``page``.

    ``page`` defaults to the page under ``docs/`` that holds the markers.
    Returns False (and writes nothing) if no page holds them.
    """
    page = find_page(name) if page is None else page
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    body = page.read_text(encoding="utf-8") if page is not None and page.exists() else ""
    if begin not in body or end not in body:
        return False
    head, rest = body.split(begin, 1)
    page.write_text(head + begin + "\n" + text + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")
    return True
