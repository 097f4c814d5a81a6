"""A contract type for import-linter: a package imports the standard library and itself only.

import-linter's own contracts forbid listed modules; the domain's rule is about every
module not listed anywhere (a new third-party import must break it), so it needs a
contract of its own. Registered in pyproject.toml's ``[tool.importlinter]``.
"""

from __future__ import annotations

import sys
from typing import Any

from importlinter import Contract, ContractCheck, fields, output


def foreign_imports(graph: Any, package: str) -> list[tuple[str, str, list[int]]]:
    """(importer, imported, line numbers) for each import by ``package`` of a module that
    is neither in the standard library nor in ``package``."""
    found = []
    for importer in sorted({package, *graph.find_descendants(package)}):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            top = imported.split(".")[0]
            if top == package or top in sys.stdlib_module_names:
                continue
            details = graph.get_import_details(importer=importer, imported=imported)
            found.append((importer, imported, [d["line_number"] for d in details]))
    return found


class StandardLibraryOnlyContract(Contract):
    """Each of ``source_modules`` (top-level packages) imports only the standard library
    and itself. Needs ``include_external_packages = true``, so third-party imports are
    in the graph."""

    type_name = "stdlib_only"

    source_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: Any, verbose: bool) -> ContractCheck:
        found = [f for package in self.source_modules for f in foreign_imports(graph, package)]
        return ContractCheck(kept=not found, metadata={"foreign": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, imported, lines in check.metadata["foreign"]:
            where = ", ".join(f"l.{n}" for n in lines)
            output.print_error(f"{importer} imports {imported} ({where})", bold=False)
        output.new_line()
