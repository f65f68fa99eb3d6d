"""GET /docs (Swagger UI) and GET /redoc (ReDoc), with the JavaScript, CSS and icon they load.

FastAPI's own pages load those from a CDN, so they are blank on a machine without internet
access. Here every asset comes from this server, out of the `fastapi-offline` package (pinned
in pyproject.toml and constraints.txt; it ships the swagger-ui-dist and ReDoc bundles FastAPI
otherwise fetches, 5.x and 2.x), and the pages name no other origin. The app turns FastAPI's
pages off (`docs_url=None`, `redoc_url=None` in api/app.py).

Public routes, limited per IP like the other public ones; the assets may be cached for an hour,
so reloading the page costs one request.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import TypedDict

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from api.deps import limit_anonymous

#: Where the asset routes live.
ASSET_PREFIX = "/docs/assets"
#: Each asset served: file name (in the package and in the URL) -> media type.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
ASSET_CACHE = "public, max-age=3600"

router = APIRouter(dependencies=[Depends(limit_anonymous)])


def asset_dir() -> Path:
    """The folder of the packaged Swagger UI and ReDoc files."""
    return Path(str(files("fastapi_offline") / "static"))


def _prefix(request: Request) -> str:
    """The path the app is mounted at behind a proxy (ASGI root_path), without a final '/'."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _asset_url(request: Request, name: str) -> str:
    return f"{_prefix(request)}{ASSET_PREFIX}/{name}"


class _Page(TypedDict):
    openapi_url: str
    title: str


def _page(request: Request, name: str) -> _Page:
    """What both pages take: where the OpenAPI document is, and the page's title."""
    openapi_url = f"{_prefix(request)}{request.app.openapi_url}"
    return {"openapi_url": openapi_url, "title": f"{request.app.title} - {name}"}


@router.get("/docs", include_in_schema=False)
def swagger_ui(request: Request) -> HTMLResponse:
    """The interactive API documentation (Swagger UI), loading only this server's assets."""
    return get_swagger_ui_html(
        **_page(request, "Swagger UI"),
        swagger_js_url=_asset_url(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset_url(request, "swagger-ui.css"),
        swagger_favicon_url=_asset_url(request, "favicon.png"),
        # No validator badge: it would send the document's URL to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc", include_in_schema=False)
def redoc(request: Request) -> HTMLResponse:
    """The API reference (ReDoc), loading only this server's assets (no web fonts)."""
    return get_redoc_html(
        **_page(request, "ReDoc"),
        redoc_js_url=_asset_url(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset_url(request, "favicon.png"),
        with_google_fonts=False,
    )


def _asset_endpoint(path: Path, media_type: str) -> Callable[[], FileResponse]:
    def asset() -> FileResponse:
        """One packaged documentation asset."""
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": ASSET_CACHE})

    return asset


def _add_asset_routes() -> None:
    """One GET route per asset, so the served files are exactly those listed in ASSETS."""
    for name, media_type in ASSETS.items():
        router.add_api_route(
            f"{ASSET_PREFIX}/{name}",
            _asset_endpoint(asset_dir() / name, media_type),
            methods=["GET"],
            include_in_schema=False,
            name=f"docs_asset_{name}",
        )


_add_asset_routes()
