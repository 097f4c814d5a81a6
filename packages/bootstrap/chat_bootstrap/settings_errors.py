"""Configuration mistakes told in one line each, naming the variable and a good value.

An operator reads these at start-up with nothing else to go on: each line says which
``CHAT_*`` variable is wrong, what is wrong with its value, and what a valid value looks
like. A variable that looks like ours but is not (a typo) is refused too, with the
closest name, because a silently ignored setting is the hardest mistake to find.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from chat_bootstrap.settings import ENV_PREFIX, Settings, variable

# Variables with our prefix that are not settings: read by the tests and the Locust harness.
NOT_SETTINGS_PREFIXES = ("CHAT_TEST_", "CHAT_LOCUST_")


class ConfigurationError(Exception):
    """The configuration cannot be used; ``problems`` has one line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> Settings:
    """Settings from the environment and ``env_file``, or ``ConfigurationError``."""
    environ = os.environ if environ is None else environ
    names = list(environ)
    if env_file is not None and Path(env_file).is_file():
        names += _dotenv_names(Path(env_file))
    problems = unknown_variables(names)
    try:
        settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems += describe(exc)
    if problems:
        raise ConfigurationError(problems)
    return settings


def unknown_variables(names: Iterable[str]) -> list[str]:
    """A line for each ``CHAT_*`` name that no setting has, with the closest valid name."""
    known = [variable(field) for field in Settings.model_fields]
    problems = []
    for name in sorted(set(names)):
        if not name.startswith(ENV_PREFIX) or name.startswith(NOT_SETTINGS_PREFIXES):
            continue
        if name.upper() in known:
            continue
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; see docs/configuration.md"
        problems.append(f"{name} is not a setting{hint}")
    return problems


def describe(error: ValidationError) -> list[str]:
    """One line per validation error: the variable, its value's problem, a good value."""
    lines = []
    for item in error.errors(include_url=False):
        location = [str(part) for part in item["loc"]]
        message = item["msg"].removeprefix("Value error, ")
        if not location:  # a rule across settings: its message names the variables
            lines.append(message)
            continue
        field = location[0]
        info = Settings.model_fields.get(field)
        shown = _shown(item.get("input"), secret=field in ("secret_key", "webhook_secret"))
        example = f" (for example {variable(field)}={example_value(info)})" if info else ""
        lines.append(f"{variable(field)}={shown}: {_plain(message)}{example}")
    return lines


def _plain(message: str) -> str:
    """pydantic's wording, made to read as a sentence about the value."""
    message = message[0].lower() + message[1:] if message else message
    return (
        message.replace("input should be", "must be")
        .replace("greater than or equal to", "at least")
        .replace("less than or equal to", "at most")
        .replace("greater than", "more than")
        .replace("less than", "less than")
    )


def _shown(value: Any, secret: bool) -> str:
    if secret:
        return "<hidden>"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def example_value(info: FieldInfo) -> str:
    extra = info.json_schema_extra
    if isinstance(extra, dict) and "example" in extra:
        return str(extra["example"])
    default = info.get_default(call_default_factory=True)
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def _dotenv_names(path: Path) -> list[str]:
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        names.append(line.split("=", 1)[0].removeprefix("export ").strip())
    return names
