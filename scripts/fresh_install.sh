#!/usr/bin/env bash
# The napari hub user's path, on a built wheel: a fresh virtual environment, torch (CPU build, pinned, first),
# then napari[all] and the wheel; npe2 validates the installed plugin and a real viewer opens every widget
# and sample (scripts/open_installed.py, under Xvfb). Run by `make dist-check`.
#   bash scripts/fresh_install.sh dist/napari_dip_l0-*.whl
set -euo pipefail
wheel=$(realpath "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
TORCH_PIN=${TORCH_PIN:-torch==2.13.0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/env"
py="$work/env/bin/python"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet "$TORCH_PIN"
"$py" -m pip install --quiet "napari[all]" "$wheel"
cd "$work"  # nothing imported from the source tree
"$work/env/bin/npe2" validate napari-dip-l0 --imports
"$work/env/bin/npe2" list --format compact | grep napari-dip-l0
xvfb-run -a -s "-screen 0 1280x1024x24" "$py" "$root/scripts/open_installed.py"
