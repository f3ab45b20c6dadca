# Two entry points for a fresh Linux machine: `make demo` and `make test`.
# Both create .venv, install the CPU build of torch first (a bare `torch`
# requirement can pull a multi-GB CUDA build), then this package.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0
SYSTEM_DEPS := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 \
	libxcb-image0 libxcb-shape0 libxcb-xfixes0 libxcb-cursor0 libgl1 libegl1 libxkbcommon-x11-0 libdbus-1-3 \
	libfontconfig1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test docs system-deps venv clean screenshot dist-check

$(VENV)/.installed: pyproject.toml napari.yaml hatch_build.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e ".[testing]"
	touch $@

venv: $(VENV)/.installed

# Xvfb and the X/GL libraries Qt needs, for napari's tests without a screen.
system-deps:
	@if ! command -v Xvfb >/dev/null || ! command -v xauth >/dev/null || ! ldconfig -p | grep -q libxkbcommon-x11; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(SYSTEM_DEPS); fi

# With a display: napari opens with a sample loaded and the DIP-ℓ0 widget docked.
# Headless: the CLI demo writes demo-output/side_by_side.png.
demo: venv
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then $(VENV)/bin/dip-l0 gui; \
	else $(VENV)/bin/dip-l0 demo -o demo-output; fi

screenshot: venv system-deps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/screenshot.py docs/widget.png

test: venv system-deps
	$(PY) -m pytest

# Release checks (.ci/run and the GitHub workflow): build the sdist and wheel, twine check --strict, the
# wheel's contents, npe2 validate, the workflow linters, and the hub user's path: napari[all] plus the
# wheel in a fresh environment, opening every widget and sample under Xvfb.
dist-check: venv system-deps
	$(PY) -m pip install --quiet build twine check-jsonschema zizmor
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*
	$(PY) scripts/check_wheel.py dist/*.whl
	$(VENV)/bin/npe2 validate napari-dip-l0 --imports
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(VENV)/bin/zizmor --offline --config .github/zizmor.yml .github/workflows
	PYTHON=$(PYTHON) TORCH_PIN=$(TORCH_PIN) bash scripts/fresh_install.sh dist/*.whl

# The documentation site (docs/ and the API reference from the docstrings) into site/; any warning fails it.
$(VENV)/.docs-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[testing,docs]"
	touch $@

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) demo-output .pytest_cache dist site
