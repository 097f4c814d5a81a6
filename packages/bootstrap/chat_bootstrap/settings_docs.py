"""docs/configuration.md and .env.example, generated from the Settings class.

Run ``python -m chat_bootstrap.settings_docs`` from the repository root after adding or
changing a setting; ``tests/docs/test_settings_docs.py`` fails while either file is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic.fields import FieldInfo

from chat_bootstrap.settings import Settings, variable
from chat_bootstrap.settings_errors import example_value

TABLE_HEADER = """# Configuration

Every setting is an environment variable (a `.env` file in the working directory is read
too; [`.env.example`](../.env.example) lists them all). A variable that starts with `CHAT_`
but is not below is refused at start-up with the closest valid name, and every bad value
is reported as one line naming the variable and a valid example; `chat config` prints the
effective configuration with secrets masked.

This page is generated from `packages/bootstrap/chat_bootstrap/settings.py` by
`python -m chat_bootstrap.settings_docs`; a test fails when it is stale.

| variable | default | meaning |
| --- | --- | --- |
"""


def _default(info: FieldInfo) -> str:
    default = info.get_default(call_default_factory=True)
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, list):
        return "empty" if not default else f"`{','.join(default)}`"
    return f"`{default}`"


def settings_table() -> str:
    rows = [
        f"| `{variable(name)}` | {_default(info)} | {info.description or ''} |"
        for name, info in Settings.model_fields.items()
    ]
    return TABLE_HEADER + "\n".join(rows) + "\n"


def env_example() -> str:
    lines = [
        "# Every setting of the chat backend, with its default (commented out).",
        "# Copy to .env and uncomment what you change. Generated from settings.py by",
        "# `python -m chat_bootstrap.settings_docs`; docs/configuration.md says more.",
        "",
    ]
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        lines.append(f"# {info.description or ''}")
        if default is None or default == []:
            lines.append(f"# {variable(name)}={example_value(info)}")
        else:
            shown = str(default).lower() if isinstance(default, bool) else str(default)
            lines.append(f"# {variable(name)}={shown}")
        lines.append("")
    return "\n".join(lines)


def main(root: Path = Path(".")) -> None:
    (root / "docs" / "configuration.md").write_text(settings_table())
    (root / ".env.example").write_text(env_example())
    print("wrote docs/configuration.md and .env.example", file=sys.stderr)


if __name__ == "__main__":
    main()
