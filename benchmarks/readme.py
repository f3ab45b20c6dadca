"""Writing a benchmark's table into its documentation page between its markers.

The measured tables live in ``docs/`` (the README links to them): each section
``NAME`` sits between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in the
page that :data:`PAGES` names, and the figures go to ``docs/`` beside them.
"""

from __future__ import annotations

from pathlib import Path

DOCS = Path("docs")
PAGES = {
    "quality:smooth": DOCS / "benchmarks.md",
    "quality:deblock": DOCS / "benchmarks.md",
    "quality:jpeg-files": DOCS / "jpeg.md",
    "microscopy": DOCS / "microscopy.md",
}


def write_section(name: str, text: str, page: Path | None = None) -> bool:
    """Put ``text`` between ``<!-- name:begin -->`` and ``<!-- name:end -->`` of ``page``.

    ``page`` defaults to the section's page in :data:`PAGES`. Returns False (and
    writes nothing) if the page or its markers are missing.
    """
    page = PAGES[name] if page is None else page
    if not page.exists():
        return False
    body = page.read_text()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in body or end not in body:
        return False
    head, rest = body.split(begin, 1)
    page.write_text(head + begin + "\n" + text + "\n" + end + rest.split(end, 1)[1])
    return True
