"""Build hook: the plugin manifest, kept at the top level, goes into the package of every wheel.

``napari.yaml`` lives beside pyproject.toml (our layout rule), while napari
finds it through the entry point ``napari_dip_l0:napari.yaml``, in the
package's folder. A symlink would break on Windows checkouts and some
sdists, and ``force-include`` alone misses editable installs (which import
the package from ``src/``). So: a regular wheel gets the file by
force-include; an editable one gets a copy written into ``src/napari_dip_l0``
(git-ignored; ``make venv`` reinstalls when napari.yaml changes, and the
test suite refreshes the copy, see tests/conftest.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

MANIFEST = "napari.yaml"
IN_PACKAGE = "napari_dip_l0/napari.yaml"


def copy_manifest(root: str | Path) -> Path:
    """Write the top-level manifest into the source package (for editable installs and source-tree runs)."""
    root = Path(root)
    target = root / "src" / IN_PACKAGE
    if not target.exists() or target.read_bytes() != (root / MANIFEST).read_bytes():
        shutil.copyfile(root / MANIFEST, target)
    return target


class ManifestHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return
        if version == "editable":
            copy_manifest(self.root)
        else:
            build_data["force_include"][str(Path(self.root) / MANIFEST)] = IN_PACKAGE
