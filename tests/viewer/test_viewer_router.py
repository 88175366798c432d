"""The /viewer/ router: our page, CesiumJS's prebuilt files from node_modules, media types, caching, traversal."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from twin.api.app import create_app
from twin.api.routers.viewer import CESIUM_ENV, cesium_dir


@pytest.fixture
def client(tmp_path: Path, monkeypatch) -> TestClient:
    monkeypatch.delenv(CESIUM_ENV, raising=False)
    from twin.store import Store

    Store.init(tmp_path / "store")
    return TestClient(create_app(tmp_path / "store"))


def _need_cesium() -> None:
    if cesium_dir() is None:
        pytest.skip("CesiumJS is not installed (make install runs npm ci)")


def test_page_and_own_files(client: TestClient) -> None:
    _need_cesium()
    r = client.get("/viewer", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/viewer/"
    page = client.get("/viewer/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "CESIUM_BASE_URL" in page.text and 'src="app.js"' in page.text
    assert "cesium.com" not in page.text and "http" not in page.text  # no CDN, no ion: every URL is relative
    js = client.get("/viewer/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    for ion in ("defaultAccessToken", "createWorldImagery", "createWorldTerrain", "IonResource", "cesium.com"):
        assert ion not in js.text  # nothing from Cesium ion
    assert client.get("/viewer/style.css").headers["content-type"].startswith("text/css")
    assert js.headers["cache-control"] == "no-cache" and "etag" in js.headers


def test_cesium_files_media_types_and_caching(client: TestClient) -> None:
    _need_cesium()
    root = cesium_dir()
    for rel, media in [("Cesium.js", "text/javascript"), ("index.js", "text/javascript"),
                       ("Widgets/widgets.css", "text/css"),
                       ("Assets/approximateTerrainHeights.json", "application/json")]:
        r = client.get(f"/viewer/cesium/{rel}", headers={"Accept-Encoding": "identity"})
        assert r.status_code == 200, rel
        assert r.headers["content-type"].startswith(media), (rel, r.headers["content-type"])
        assert r.headers["cache-control"] == "public, max-age=86400"
        assert int(r.headers["content-length"]) == (root / rel).stat().st_size
    worker = next((root / "Workers").glob("*.js")).name
    assert client.get(f"/viewer/cesium/Workers/{worker}").headers["content-type"].startswith("text/javascript")
    wasm = next(root.rglob("*.wasm"), None)
    if wasm is not None:
        rel = wasm.relative_to(root).as_posix()
        assert client.get(f"/viewer/cesium/{rel}").headers["content-type"] == "application/wasm"
    etag = client.get("/viewer/cesium/Cesium.js").headers["etag"]
    assert client.get("/viewer/cesium/Cesium.js", headers={"If-None-Match": etag}).status_code == 304


def test_gzip_when_accepted(client: TestClient) -> None:
    _need_cesium()
    size = (cesium_dir() / "index.js").stat().st_size
    plain = client.get("/viewer/cesium/index.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and len(plain.content) == size
    zipped = client.get("/viewer/cesium/index.js", headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["vary"] == "Accept-Encoding"
    assert int(zipped.headers["content-length"]) < size / 2 and zipped.content == plain.content  # httpx decodes
    assert zipped.headers["etag"] != plain.headers["etag"]
    again = client.get("/viewer/cesium/index.js", headers={"Accept-Encoding": "gzip",
                                                           "If-None-Match": zipped.headers["etag"]})
    assert again.status_code == 304
    png = next((cesium_dir() / "Assets").rglob("*.png")).relative_to(cesium_dir()).as_posix()
    assert "content-encoding" not in client.get(f"/viewer/cesium/{png}", headers={"Accept-Encoding": "gzip"}).headers


@pytest.mark.parametrize("path", [
    "/viewer/cesium/%2e%2e/%2e%2e/package.json", "/viewer/cesium/..%2f..%2fpackage.json",
    "/viewer/%2e%2e/routers/viewer.py", "/viewer/..%2frouters%2fviewer.py", "/viewer/cesium/%2fetc%2fpasswd",
    "/viewer/cesium/Workers", "/viewer/cesium/nope.js", "/viewer/nope.js", "/viewer/cesium/",
])
def test_traversal_and_missing_files_are_404(client: TestClient, path: str) -> None:
    _need_cesium()
    assert client.get(path).status_code == 404


def test_missing_cesium_is_a_503_page_naming_make_install(client: TestClient, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CESIUM_ENV, str(tmp_path / "no-cesium-here"))
    for path in ("/viewer/", "/viewer/cesium/Cesium.js"):
        r = client.get(path)
        assert r.status_code == 503 and "make install" in r.text and CESIUM_ENV in r.text
    assert client.get("/viewer/app.js").status_code == 200  # our own files do not depend on Cesium
    assert client.get("/health").status_code == 200


def test_cesium_dir_from_env(monkeypatch) -> None:
    _need_cesium()
    real = cesium_dir()
    monkeypatch.setenv(CESIUM_ENV, str(real))
    assert cesium_dir() == real


def test_openapi_declares_the_viewer_media_types(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    page = paths["/viewer/"]["get"]["responses"]
    assert list(page["200"]["content"]) == ["text/html"] and list(page["503"]["content"]) == ["text/html"]
    assert "content" not in page["304"]
    own = paths["/viewer/{path}"]["get"]["responses"]
    assert {"text/javascript", "text/css"} <= set(own["200"]["content"])
    assert "application/json" not in own["200"]["content"]
    cesium = paths["/viewer/cesium/{path}"]["get"]["responses"]
    assert {"text/javascript", "text/css", "application/json", "application/wasm", "image/png"} <= \
        set(cesium["200"]["content"])
    for responses in (own, cesium):
        schema = responses["404"]["content"]["application/json"]["schema"]
        assert schema["properties"]["detail"]["type"] == "string" and schema["required"] == ["detail"]


def test_a_missing_file_is_a_404_naming_it(client: TestClient) -> None:
    r = client.get("/viewer/nope.js")
    assert r.status_code == 404 and "nope.js" in r.json()["detail"]
