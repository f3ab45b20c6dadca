"""Writing a benchmark's table into README.md between its markers."""

from __future__ import annotations

from pathlib import Path


def write_section(name: str, text: str, readme: Path = Path("README.md")) -> bool:
    """Put ``text`` between ``<!-- name:begin -->`` and ``<!-- name:end -->``; False if the markers are missing."""
    body = readme.read_text()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in body or end not in body:
        return False
    head, rest = body.split(begin, 1)
    readme.write_text(head + begin + "\n" + text + "\n" + end + rest.split(end, 1)[1])
    return True
