"""The try-it page: `/` and its three static files, served from service/static (no build step).

The page loads nothing from elsewhere, and the Content-Security-Policy says so: it works offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.errors import NotFound

router = APIRouter(tags=["web"], include_in_schema=False)
STATIC = Path(__file__).resolve().parent.parent / "static"
_FILES = {"app.js": "text/javascript", "style.css": "text/css"}  # a fixed list: no path from the URL
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it: no clickjacking frame
    "Cache-Control": "no-cache",  # revalidate (ETag): a new deployment shows its own page
}


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    if name not in _FILES:
        raise NotFound(f"no static file {name!r}")
    return FileResponse(STATIC / name, media_type=f"{_FILES[name]}; charset=utf-8", headers=_HEADERS)
