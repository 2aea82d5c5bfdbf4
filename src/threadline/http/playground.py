"""The playground: a static page at `/` and its files under `/static/`, served as they are (no build)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from litestar import get
from litestar.response import File
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

STATIC_DIR = Path(str(resources.files("threadline") / "static"))


@get("/", include_in_schema=False, cache_control=None)
async def playground() -> File:
    return File(
        STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", content_disposition_type="inline"
    )


def playground_routes() -> list[ControllerRouterHandler]:
    static = create_static_files_router(
        path="/static", directories=[STATIC_DIR], include_in_schema=False, name="static"
    )
    return [playground, static]
