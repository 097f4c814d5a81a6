"""One lock for every install: it covers pyproject.toml, and every installer uses it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements/lock.txt"


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in [*project["dependencies"], *extras["test"], *extras["load"]]]


def pinned() -> dict[str, list[tuple[str, Requirement]]]:
    """Package -> its (version, marker-carrying line) pins; one per marker range."""
    pins: dict[str, list[tuple[str, Requirement]]] = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (version,) = (spec.version for spec in req.specifier)
            pins.setdefault(canonicalize_name(req.name), []).append((version, req))
    return pins


def test_every_declared_dependency_is_pinned_within_its_bounds() -> None:
    pins, here = pinned(), default_environment()
    stale = []
    for req in declared():
        if req.marker is not None and not req.marker.evaluate(here):
            continue
        versions = [v for v, pin in pins.get(canonicalize_name(req.name), []) if _applies(pin)]
        if not versions or not all(req.specifier.contains(v, prereleases=True) for v in versions):
            stale.append(f"{req} (locked: {versions or 'nothing'})")
    assert not stale, f"requirements/lock.txt is stale; run scripts/lock: {stale}"


def test_bootstrap_and_image_install_with_the_lock_on_the_python_ci_tests() -> None:
    constraint = "--constraint requirements/lock.txt"
    assert constraint in (ROOT / "scripts/bootstrap").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert constraint in dockerfile
    image_python = re.search(r"^FROM python:(\d+\.\d+)", dockerfile, re.M)
    assert image_python is not None
    # The Python CI checks types for and runs the tests on (.ci/run: the machine's 3.11).
    checked = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert image_python.group(1) == checked["python_version"], (
        "the image runs a Python CI does not test"
    )


def _applies(pin: Requirement) -> bool:
    return pin.marker is None or pin.marker.evaluate(default_environment())
