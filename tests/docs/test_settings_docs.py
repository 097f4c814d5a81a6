"""docs/configuration.md and .env.example are the Settings class, written out."""

from __future__ import annotations

from pathlib import Path

from chat_bootstrap.settings import Settings
from chat_bootstrap.settings_docs import env_example, settings_table

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "run `.venv/bin/python -m chat_bootstrap.settings_docs` from the repository root"


def test_every_setting_says_what_it_is() -> None:
    missing = [name for name, info in Settings.model_fields.items() if not info.description]
    assert not missing, f"give these settings a Field(description=...): {missing}"


def test_the_settings_table_is_current() -> None:
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == settings_table(), f"docs/configuration.md is stale: {REGENERATE}"


def test_the_env_example_is_current() -> None:
    current = (ROOT / ".env.example").read_text()
    assert current == env_example(), f".env.example is stale: {REGENERATE}"
