"""Every relative link in the repository's Markdown resolves inside the repository.

A clone has nothing beside it: a link to ``../shared/...`` or to a file that moved is a
dead end for the reader, so it fails here instead.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP_PARTS = {".venv", "node_modules", "var", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
# [text](target) and ![alt](target), not inside inline code; the target up to a space or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#+\s+(.*)$", re.M)


def _markdown_files() -> list[Path]:
    return [
        path
        for path in ROOT.rglob("*.md")
        if not SKIP_PARTS.intersection(path.relative_to(ROOT).parts)
    ]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks are not links
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def test_every_relative_link_resolves_inside_the_repository() -> None:
    broken = []
    for path in _markdown_files():
        for target in _links(path):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL (http:, mailto:) or an anchor of this page
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve()
            where = f"{path.relative_to(ROOT)}: ({target})"
            if ROOT not in resolved.parents and resolved != ROOT:
                broken.append(f"{where} points outside the repository")
            elif not resolved.exists():
                broken.append(f"{where} does not exist")
            elif anchor and resolved.suffix == ".md":
                anchors = {_anchor(h) for h in HEADING.findall(resolved.read_text())}
                if anchor not in anchors:
                    broken.append(f"{where} names no heading of {file_part}")
    assert not broken, "\n".join(broken)


def test_same_page_anchors_resolve() -> None:
    broken = []
    for path in _markdown_files():
        anchors = {_anchor(h) for h in HEADING.findall(path.read_text())}
        for target in _links(path):
            if target.startswith("#") and target[1:] not in anchors:
                broken.append(f"{path.relative_to(ROOT)}: ({target}) names no heading")
    assert not broken, "\n".join(broken)
