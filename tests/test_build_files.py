"""Every Python source is owned by a Pants target, so `pants test/check ::` sees it all.

Pants is not part of the pip tool chain CI runs (scripts/pants runs it on demand), so this
checks what `pants tailor --check` would: each directory holding Python files has a BUILD
file with the target type that owns them under Pants' default source globs.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("packages", "apps", "tests", "loadtests")
SKIP_PARTS = {"__pycache__", ".venv", "node_modules", "var", ".mypy_cache", ".ruff_cache"}


def _owner(py: Path) -> str:
    name = py.name
    if name == "conftest.py":
        return "python_test_utils"
    if name.startswith("test_") or name.endswith("_test.py") or name == "tests.py":
        return "python_tests"
    return "python_sources"


def _python_files() -> list[Path]:
    files: list[Path] = []
    for top in SOURCE_DIRS:
        for py in (ROOT / top).rglob("*.py"):
            if not SKIP_PARTS.intersection(py.relative_to(ROOT).parts):
                files.append(py)
    return files


def test_every_python_file_is_owned_by_a_target() -> None:
    unowned = []
    for py in _python_files():
        build = py.parent / "BUILD"
        targets = (
            set(re.findall(r"^\s*(\w+)\(", build.read_text(), re.M)) if build.exists() else set()
        )
        if _owner(py) not in targets:
            unowned.append(
                f"{py.relative_to(ROOT)} needs {_owner(py)}() in {build.relative_to(ROOT)}"
            )
    assert not unowned, "\n".join(unowned)


def test_source_roots_cover_every_package_and_app() -> None:
    pants = (ROOT / "pants.toml").read_text()
    assert '"/packages/*"' in pants and '"/apps/*"' in pants
    for group in ("packages", "apps"):
        for root in (ROOT / group).iterdir():
            if root.is_dir():
                packages = [p for p in root.iterdir() if (p / "__init__.py").exists()]
                assert packages, f"{root} is a source root without a Python package"


def test_domain_may_not_depend_on_anything_else() -> None:
    rules = (ROOT / "packages/domain/BUILD").read_text()
    assert "__dependencies_rules__" in rules


def test_pants_runs_each_tool_at_its_locked_version() -> None:
    """pants.toml names pytest's and mypy's versions (Pants 2.17 has no way to read them from
    requirements/lock.txt without a lockfile of its own): they must be the locked ones."""
    locked = dict(
        re.findall(r"^([a-z0-9-]+)==(\S+)", (ROOT / "requirements/lock.txt").read_text(), re.M)
    )
    pants = (ROOT / "pants.toml").read_text()
    named = re.findall(r'"([a-z0-9-]+)==([^"]+)"', pants)
    assert {name for name, _ in named} == {"pytest", "pytest-asyncio", "pytest-timeout", "mypy"}
    assert [(name, locked.get(name)) for name, _ in named] == named
