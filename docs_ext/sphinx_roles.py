"""A griffe extension for the docs build: Sphinx cross-reference roles as code.

The docstrings follow numpydoc as scikit-image writes them, with Sphinx roles
(``:func:`.layout.robust_range```); mkdocstrings renders Markdown, where such a
role would show as raw text. Each role becomes inline code of its target
(``~`` keeps the last name only, a leading ``.`` is dropped).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|obj|exc|const):`([^`]+)`")


def _code(match: re.Match) -> str:
    target = match.group(1).strip()
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target.lstrip('.')}`"


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring before it is parsed."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
