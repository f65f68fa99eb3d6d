"""The documentation pages work without internet access: /docs (Swagger UI) and /redoc name
only this server's URLs, and each asset they load is served here with its media type."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

#: The media type each kind of asset must be served with.
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def page_urls(html: str) -> list[str]:
    """Every URL an HTML page of the docs loads: src/href/spec-url attributes and the
    Swagger UI `url:` of the OpenAPI document."""
    attributes = re.findall(r'\b(?:src|href|spec-url)="([^"]*)"', html)
    scripted = re.findall(r"\burl: '([^']*)'", html)
    return attributes + scripted


@pytest.mark.parametrize(("page", "expected"), [("/docs", 4), ("/redoc", 3)])
def test_docs_page_loads_only_same_origin_assets(
    client: TestClient, page: str, expected: int
) -> None:
    """The page is HTML whose every URL is a path on this server (no scheme, no host, no
    protocol-relative '//'), no other origin is named anywhere in it, and each asset it
    loads answers 200 with the media type of its kind."""
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html, "the page names another origin"
    urls = page_urls(html)
    assert len(urls) == expected, urls
    for url in urls:
        parts = urlsplit(url)
        assert url.startswith("/") and not url.startswith("//"), url
        assert not parts.scheme and not parts.netloc, url
    assert "/openapi.json" in urls
    for url in urls:
        if url == "/openapi.json":
            continue
        asset = client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rfind(".") :]
        assert asset.headers["content-type"].startswith(MEDIA_TYPES[suffix]), (url, asset.headers)
        assert len(asset.content) > 0


def test_swagger_ui_assets_are_the_bundles_it_needs(client: TestClient) -> None:
    """The JavaScript served is the Swagger UI bundle (it defines SwaggerUIBundle, which the
    page calls), and the OpenAPI document it reads is there."""
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text
    assert client.get("/openapi.json").json()["info"]["title"] == "Supaflow"


def test_unknown_asset_is_not_found(client: TestClient) -> None:
    """Only the listed files are served: another name under the assets path is a 404."""
    assert client.get("/docs/assets/../../pyproject.toml").status_code == 404
    assert client.get("/docs/assets/index.html").status_code == 404
