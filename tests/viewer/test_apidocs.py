"""/docs (Swagger UI) and /redoc (ReDoc) from npm packages: our pages, local files only, media types, caching,
traversal, the 503 page when a package is missing, and nothing of it in the OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from twin.api.app import create_app
from twin.api.routers.apidocs import REDOC_ENV, SWAGGER_ENV, redoc_dir, swagger_dir


@pytest.fixture
def client(tmp_path: Path, monkeypatch) -> TestClient:
    monkeypatch.delenv(SWAGGER_ENV, raising=False)
    monkeypatch.delenv(REDOC_ENV, raising=False)
    from twin.store import Store

    Store.init(tmp_path / "store")
    return TestClient(create_app(tmp_path / "store"))


def _need(found: Path | None, what: str) -> None:
    if found is None:
        pytest.skip(f"{what} is not installed (make install runs npm ci)")


def _urls(page: str) -> list[str]:
    return re.findall(r'(?:src|href|url|spec-url)\s*[=:]\s*["\']([^"\']+)["\']', page)


def test_swagger_ui_page_loads_only_our_files(client: TestClient) -> None:
    _need(swagger_dir(), "Swagger UI")
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"
    urls = _urls(r.text)
    assert "/openapi.json" in urls and "/docs/assets/swagger-ui-bundle.js" in urls, urls
    assert all(u.startswith("/") for u in urls), urls  # no CDN: every URL is our server's
    assert "cdn" not in r.text and "validatorUrl\": null" in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "img-src 'self' data: blob:" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]  # the set-up script by its hash
    for u in urls:
        got = client.get(u)
        assert got.status_code == 200, u


def test_redoc_page_loads_only_our_files(client: TestClient) -> None:
    _need(redoc_dir(), "ReDoc")
    r = client.get("/redoc")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = _urls(r.text)
    assert "/redoc/assets/redoc.standalone.js" in urls and "/openapi.json" in urls, urls
    assert all(u.startswith("/") for u in urls) and "fonts.googleapis" not in r.text
    assert "img-src 'self' data: blob:" in r.headers["content-security-policy"]  # ReDoc's CDN logo is refused


@pytest.mark.parametrize(("path", "media"), [
    ("/docs/assets/swagger-ui-bundle.js", "text/javascript"), ("/docs/assets/swagger-ui.css", "text/css"),
    ("/docs/assets/favicon-32x32.png", "image/png"), ("/redoc/assets/redoc.standalone.js", "text/javascript"),
])
def test_assets_media_types_and_caching(client: TestClient, path: str, media: str) -> None:
    _need(swagger_dir() if path.startswith("/docs") else redoc_dir(), path)
    r = client.get(path, headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.headers["content-type"].startswith(media)
    assert r.headers["cache-control"] == "public, max-age=86400" and "etag" in r.headers
    assert client.get(path, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    if media != "image/png":
        zipped = client.get(path, headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip" and zipped.content == r.content


@pytest.mark.parametrize("path", [
    "/docs/assets/%2e%2e/package.json", "/docs/assets/..%2fpackage.json", "/docs/assets/%2fetc%2fpasswd",
    "/docs/assets/index.html", "/docs/assets/package.json", "/docs/assets/nope.js", "/docs/assets/",
    "/redoc/assets/%2e%2e/package.json", "/redoc/assets/nope.js",
])
def test_traversal_and_other_files_are_404(client: TestClient, path: str) -> None:
    _need(swagger_dir(), "Swagger UI")
    _need(redoc_dir(), "ReDoc")
    assert client.get(path).status_code == 404


def test_missing_packages_are_a_503_page_naming_make_install(client: TestClient, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SWAGGER_ENV, str(tmp_path / "none"))
    monkeypatch.setenv(REDOC_ENV, str(tmp_path / "none"))
    for path, env in (("/docs", SWAGGER_ENV), ("/docs/assets/swagger-ui-bundle.js", SWAGGER_ENV),
                      ("/redoc", REDOC_ENV), ("/redoc/assets/redoc.standalone.js", REDOC_ENV)):
        r = client.get(path)
        assert r.status_code == 503 and "make install" in r.text and env in r.text, path
        assert r.headers["retry-after"] == "3600"
    assert client.get("/openapi.json").status_code == 200


def test_package_dirs_from_env(monkeypatch) -> None:
    _need(swagger_dir(), "Swagger UI")
    _need(redoc_dir(), "ReDoc")
    real_swagger, real_redoc = swagger_dir(), redoc_dir()
    monkeypatch.setenv(SWAGGER_ENV, str(real_swagger))
    monkeypatch.setenv(REDOC_ENV, str(real_redoc))
    assert swagger_dir() == real_swagger and redoc_dir() == real_redoc


def test_docs_routes_are_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]
    assert "/health" in paths and "/viewer/" in paths


def test_pages_follow_the_public_prefix(tmp_path: Path) -> None:
    """Behind a proxy under a path (TWIN_PUBLIC_URL with a path), the pages load their files and the document from
    under that path."""
    _need(swagger_dir(), "Swagger UI")
    _need(redoc_dir(), "ReDoc")
    from twin.config import Settings
    from twin.store import Store

    Store.init(tmp_path / "store")
    client = TestClient(create_app(tmp_path / "store", Settings(public_url="http://example.org/api")))
    for path in ("/docs", "/redoc"):
        urls = _urls(client.get(path).text)
        assert urls and all(u.startswith("/api/") for u in urls), urls
    assert client.get("/api/docs/assets/swagger-ui.css").status_code == 200
