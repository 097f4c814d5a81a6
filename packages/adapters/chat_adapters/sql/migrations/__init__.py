"""Alembic migrations of the chat schema (a package so that it ships with the wheel)."""
