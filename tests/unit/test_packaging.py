"""Package metadata says what is true: the Pythons CI runs, the license file, one version."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli on 3.10
    import tomli as tomllib

from dt_exporter._version import __version__

REPO = Path(__file__).resolve().parents[2]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _ci_pythons() -> list[str]:
    match = re.search(r"^PYTHONS=\(([^)]*)\)$", (REPO / ".ci" / "run").read_text(), re.M)
    assert match, ".ci/run has no PYTHONS=(...) line"
    return match.group(1).split()


def test_classifiers_list_exactly_the_pythons_ci_runs() -> None:
    """The `Programming Language :: Python :: 3.x` classifiers are .ci/run's PYTHONS, and
    requires-python starts at the oldest of them."""
    classifiers = _pyproject()["classifiers"]
    minors = [c.rsplit(" :: ", 1)[1] for c in classifiers
              if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert minors == _ci_pythons()
    assert _pyproject()["requires-python"] == f">={minors[0]}"


def test_the_running_python_is_one_ci_runs() -> None:
    """The suite runs only on a Python the classifiers promise (a new minor is added to both)."""
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in _ci_pythons()


def test_license_file_is_the_apache_2_text_pyproject_names() -> None:
    """pyproject says Apache-2.0 and ships LICENSE; LICENSE is the Apache License 2.0, whole."""
    project = _pyproject()
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text
    assert "9. Accepting Warranty or Additional Liability." in text


def test_one_version_everywhere() -> None:
    """The installed distribution's version is dt_exporter/_version.py's (pyproject reads it
    from there), and the changelog has a section for it."""
    assert _pyproject()["dynamic"] == ["version"]
    assert importlib.metadata.version("dt_exporter") == __version__
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[{re.escape(__version__)}\]", changelog, re.M)
