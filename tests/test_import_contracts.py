"""The custom import-linter contract: it names every import from outside the stdlib."""

from __future__ import annotations

import grimp

from tests.import_contracts import foreign_imports


def graph(*imports: tuple[str, str]) -> grimp.ImportGraph:
    built = grimp.ImportGraph()
    built.add_module("chat_domain")
    for importer, imported in imports:
        for module in (importer, imported):
            if not module.startswith("chat_domain"):
                built.add_module(module.split(".")[0], is_squashed=True)
        built.add_import(importer=importer, imported=imported, line_number=3, line_contents="")
    return built


def test_the_standard_library_and_the_package_itself_pass() -> None:
    domain = graph(
        ("chat_domain.entities", "dataclasses"),
        ("chat_domain.usecases", "asyncio"),
        ("chat_domain.usecases", "chat_domain.entities"),
        ("chat_domain.ports", "__future__"),
    )

    assert foreign_imports(domain, "chat_domain") == []


def test_a_third_party_or_project_import_is_named_with_its_line() -> None:
    domain = graph(
        ("chat_domain.entities", "dataclasses"),
        ("chat_domain.views", "pydantic"),
        ("chat_domain.usecases.rooms", "chat_adapters"),
    )

    assert foreign_imports(domain, "chat_domain") == [
        ("chat_domain.usecases.rooms", "chat_adapters", [3]),
        ("chat_domain.views", "pydantic", [3]),
    ]
