"""Check a built wheel's contents (run by `make dist-check`; exit status 1 with the reasons on failure).

The wheel must hold the plugin manifest in the package, identical to the
top-level napari.yaml and named by the napari.manifest entry point; every
module and sample file the manifest and the sample code use; the sample
files' licence notes; and nothing from tests/, benchmarks/, scripts/ or docs/.

    python scripts/check_wheel.py dist/napari_dip_l0-*.whl
"""

from __future__ import annotations

import configparser
import sys
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "napari_dip_l0"


def problems(wheel: Path) -> list[str]:
    found: list[str] = []
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        manifest_name = f"{PACKAGE}/napari.yaml"
        if manifest_name not in names:
            return [f"{manifest_name} is missing"]
        shipped = z.read(manifest_name)
        if shipped != (ROOT / "napari.yaml").read_bytes():
            found.append(f"{manifest_name} differs from the top-level napari.yaml")
        entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        if entry_points is None:
            found.append("no entry_points.txt")
        else:
            parser = configparser.ConfigParser()
            parser.read_string(z.read(entry_points).decode())
            value = parser.get("napari.manifest", "napari-dip-l0", fallback=None)
            if value != f"{PACKAGE}:napari.yaml":
                found.append(f"napari.manifest entry point is {value!r}, not '{PACKAGE}:napari.yaml'")
            if parser.get("console_scripts", "dip-l0", fallback=None) != f"{PACKAGE}.cli:main":
                found.append("the dip-l0 console script is missing")
        manifest = yaml.safe_load(shipped)
        for command in manifest["contributions"]["commands"]:
            module = command["python_name"].split(":")[0].replace(".", "/")
            if f"{module}.py" not in names and f"{module}/__init__.py" not in names:
                found.append(f"{command['id']}: module {module} is not in the wheel")
        samples = sorted(p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / PACKAGE / "samples").iterdir())
        found += [f"sample file {s} is missing" for s in samples if s not in names]
        for name in sorted(names):
            top = name.split("/")[0]
            if top in ("tests", "benchmarks", "scripts", "docs") or "/tests/" in name or name.endswith(".pyc"):
                found.append(f"{name} should not be in the wheel")
            elif not (top == PACKAGE or top.endswith(".dist-info")):
                found.append(f"{name} is outside the package")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    wheel = Path(argv[0])
    found = problems(wheel)
    for line in found:
        print(f"check_wheel: {wheel.name}: {line}", file=sys.stderr)
    if not found:
        print(f"check_wheel: {wheel.name}: manifest, modules and samples present; no tests or benchmarks")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
