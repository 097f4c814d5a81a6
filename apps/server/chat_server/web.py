"""The web chat client at ``/`` (static files, no build step)."""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, send_from_directory

STATIC_DIR = Path(__file__).parent / "static"
blueprint = Blueprint("web", __name__, static_folder=str(STATIC_DIR), static_url_path="/static")


@blueprint.get("/")
async def index() -> Response:
    return await send_from_directory(STATIC_DIR, "index.html")
