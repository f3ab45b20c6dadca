"""Release plumbing: the workflow in step with .ci/run and the Makefile, the metadata the napari hub reads,
the citation, and the manifest inside a built wheel."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text(encoding="utf-8"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


def _runs(job: str) -> str:
    return "\n".join(step.get("run", "") for step in WORKFLOW["jobs"][job]["steps"])


def _uses(job: str) -> list[str]:
    return [step["uses"].split("@")[0] for step in WORKFLOW["jobs"][job]["steps"] if "uses" in step]


def test_ci_runs_the_release_checks_and_the_readme_test_command():
    lines = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines() if ln.strip().startswith("make")]
    assert [ln.split("#")[0].strip() for ln in lines] == ["make dist-check", "make test", "make docs"]
    assert re.search(r"^test: .*\n\t\$\(PY\) -m pytest$", MAKEFILE, re.MULTILINE)
    for step in ("-m build", "twine check --strict", "scripts/check_wheel.py", "npe2 validate",
                 "check-jsonschema --builtin-schema vendor.github-workflows", "zizmor", "scripts/fresh_install.sh"):
        assert step in MAKEFILE.split("dist-check:")[1], step


def test_workflow_runs_the_same_commands_on_every_platform_and_python_claimed():
    matrix = WORKFLOW["jobs"]["test"]["strategy"]["matrix"]
    assert set(matrix["platform"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
    claimed = sorted(c.rsplit(" ", 1)[1] for c in PYPROJECT["project"]["classifiers"]
                     if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert sorted(matrix["python-version"]) == claimed
    assert claimed[0] == PYPROJECT["project"]["requires-python"].removeprefix(">=")
    runs = _runs("test")
    assert "python -m pytest" in runs.splitlines()[-1] or runs.rstrip().endswith("python -m pytest")
    torch_pin = re.search(r"^TORCH_PIN \?= (\S+)$", MAKEFILE, re.MULTILINE).group(1)
    assert f"pip install {torch_pin} --index-url https://download.pytorch.org/whl/cpu" in runs
    assert "pyvista/setup-headless-display-action" in _uses("test")  # a virtual display for the GUI tests
    assert "make dist-check" in _runs("package") and "make docs" in _runs("package")


def test_workflow_publishes_on_a_tag_by_trusted_publishing():
    on = WORKFLOW.get("on", WORKFLOW.get(True))  # YAML 1.1 reads a bare `on` as True
    assert on["push"]["tags"] == ["v*"]
    deploy = WORKFLOW["jobs"]["deploy"]
    assert set(deploy["needs"]) == {"test", "package"}
    assert deploy["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert deploy["permissions"] == {"id-token": "write"}
    assert "pypa/gh-action-pypi-publish" in _uses("deploy")
    assert "python -m build" in _runs("deploy") and "twine check --strict" in _runs("deploy")


def test_hub_metadata_and_citation():
    project = PYPROJECT["project"]
    assert "version" in project["dynamic"] and PYPROJECT["tool"]["hatch"]["version"]["source"] == "vcs"
    assert {"Bug Tracker", "Documentation", "Source Code", "User Support"} <= set(project["urls"])
    assert "Framework :: napari" in project["classifiers"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert "2601.13400" in citation["preferred-citation"]["url"]
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert not (ROOT / "src/napari_dip_l0/napari.yaml").is_symlink()


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="builds from a git checkout")
def test_built_wheel_holds_the_manifest(tmp_path):
    """The wheel carries napari.yaml inside the package, without a symlink (hatch_build.py)."""
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path),
                          str(ROOT)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    [wheel] = tmp_path.glob("napari_dip_l0-*.whl")
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from check_wheel import problems
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert problems(wheel) == []
    with zipfile.ZipFile(wheel) as z:
        assert z.read("napari_dip_l0/napari.yaml") == (ROOT / "napari.yaml").read_bytes()
