"""Ports for time and identity, so use cases stay deterministic under test."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime


class Clock(ABC):
    @abstractmethod
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class IdGenerator(ABC):
    @abstractmethod
    def new_id(self) -> str:
        """A fresh unique id."""

    @abstractmethod
    def stable_id(self, *parts: str) -> str:
        """The same id for the same parts, every time and on every node (idempotency keys)."""
