"""Serving tilesets: media types, strong ETags and 304s, gzip, Cache-Control, 404s with reasons, path traversal
refused, the OpenAPI description — in process (TestClient) and through real uvicorn workers building a cold cache at
once; a tileset missing from the store is built once, into the server's cache directory, never into the store."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_serve import _wait
from tests.conftest import ROOT, TWIN
from tests.tiles.conftest import copy_store
from tests.tiles.helpers_tiles import walk
from twin.api.app import create_app
from twin.store import Store
from twin.tiles.cache import server_cache_dir

SECRET = b"twin-store"  # in STORE.json: a traversal that reached it would show this


@pytest.fixture(scope="module")
def served(city_tiles, tmp_path_factory) -> dict:
    root = copy_store(city_tiles["root"], tmp_path_factory.mktemp("tiles_api") / "store")
    client = TestClient(create_app(root))
    doc = client.get("/tiles/main/latest/buildings/tileset.json").json()
    glb = next(t["content"]["uri"] for t, *_ in walk(doc["root"]) if "content" in t)
    terrain = client.get("/tiles/main/latest/terrain/tileset.json").json()
    imp = terrain["root"]["implicitTiling"]
    return {"root": root, "client": client, "glb": glb, "version": city_tiles["version"],
            "subtree": imp["subtrees"]["uri"].format(level=0, x=0, y=0),
            "terrain_glb": terrain["root"]["content"]["uri"].format(level=0, x=0, y=0)}


def test_media_types_cache_control_and_gzip(served) -> None:
    c, v = served["client"], served["version"]
    r = c.get("/tiles/main/latest/buildings/tileset.json", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.headers["content-encoding"] == "gzip" and r.headers["cache-control"] == "no-cache"
    assert r.json()["asset"]["tilesetVersion"] == f"main@{v}"
    r = c.get(f"/tiles/main/{v}/buildings/tileset.json")
    assert r.status_code == 200 and "max-age" in r.headers["cache-control"]
    r = c.get(f"/tiles/main/{v}/buildings/{served['glb']}", headers={"Accept-Encoding": "identity"})
    assert r.headers["content-type"] == "model/gltf-binary" and "content-encoding" not in r.headers
    assert r.content[:4] == b"glTF" and r.content == (served["root"] / "tiles/buildings" / served["glb"]).read_bytes()
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    r = c.get(f"/tiles/main/latest/terrain/{served['subtree']}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert r.content[:4] == b"subt"
    r = c.get(f"/tiles/main/latest/terrain/{served['terrain_glb']}", headers={"Accept-Encoding": "gzip, br"})
    assert r.headers["content-type"] == "model/gltf-binary" and r.headers["content-encoding"] == "gzip"
    assert r.headers["cache-control"].endswith("immutable")  # digest in the path: safe under latest too
    r = c.get(f"/tiles/main/latest/terrain/{served['terrain_glb']}", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in r.headers


def test_strong_etags_and_if_none_match(served) -> None:
    c = served["client"]
    url = f"/tiles/main/latest/buildings/{served['glb']}"
    plain = c.get(url, headers={"Accept-Encoding": "identity"})
    zipped = c.get(url, headers={"Accept-Encoding": "gzip"})
    tag = plain.headers["etag"]
    assert tag.startswith('"') and not tag.startswith("W/") and zipped.headers["etag"] != tag
    for t in (tag, zipped.headers["etag"], f'"x", W/{tag}', "*"):
        r = c.get(url, headers={"If-None-Match": t, "Accept-Encoding": "gzip"})
        assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == zipped.headers["etag"]
    assert c.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    ts = c.get("/tiles/main/latest/buildings/tileset.json")
    assert c.get("/tiles/main/latest/buildings/tileset.json",
                 headers={"If-None-Match": ts.headers["etag"]}).status_code == 304


@pytest.mark.parametrize("url", [
    "/tiles/nope/latest/buildings/tileset.json",
    "/tiles/main/999/buildings/tileset.json",
    "/tiles/main/abc/buildings/tileset.json",
    "/tiles/main/-1/buildings/tileset.json",
    "/tiles/main/latest/roads/tileset.json",
    "/tiles/main/latest/buildings/content/ab/abababababababababab.glb",
    "/tiles/main/latest/buildings/..%2F..%2F..%2FSTORE.json",
    "/tiles/main/latest/buildings/%2e%2e/%2e%2e/%2e%2e/STORE.json",
    "/tiles/main/latest/buildings/content/%2e%2e/%2e%2e/%2e%2e/STORE.json",
    "/tiles/main/latest/buildings/%2Fetc%2Fpasswd",
    "/tiles/main/latest/buildings/content%5C..%5C..%5CSTORE.json",
    "/tiles/main/latest/terrain/..%2F..%2FSTORE.json",
    "/tiles/main/latest/terrain/0123456789abcdef01234567/..%2F..%2F..%2FSTORE.json",
    "/tiles/main/latest/terrain/%00.glb",
    "/tiles/main/latest/buildings/.lock",
])
def test_bad_requests_are_404_with_a_reason_never_a_file_outside(served, url) -> None:
    r = served["client"].get(url)
    assert r.status_code in (400, 404), (url, r.status_code)
    assert SECRET not in r.content and r.json()["detail"]


def test_empty_store_serves_an_empty_buildings_tileset_and_explains_missing_terrain(tmp_path) -> None:
    c = TestClient(create_app(Store.init(tmp_path / "store").root))
    doc = c.get("/tiles/main/latest/buildings/tileset.json").json()
    assert doc["asset"]["version"] == "1.1" and "children" not in doc["root"] and "content" not in doc["root"]
    r = c.get("/tiles/main/latest/terrain/tileset.json")
    assert r.status_code == 404 and "no terrain" in r.json()["detail"]
    r = c.get("/tiles/main/latest/pointcloud/tileset.json")
    assert r.status_code == 404 and "point" in r.json()["detail"]


def _raw_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """One request with the path sent exactly as given (no client-side dot-segment removal)."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    con.request("GET", path, headers=headers or {})
    r = con.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    con.close()
    return out


def test_real_uvicorn_workers_build_a_cold_cache_once_and_serve_it(built_city, tmp_path, free_port) -> None:
    import shutil

    root, cache = tmp_path / "store", tmp_path / "cache"
    shutil.copytree(built_city["store"], root, ignore=shutil.ignore_patterns("tiles"))
    env = {**os.environ, "TWIN_STORE": str(root), "TWIN_CACHE_DIR": str(cache)}
    server = subprocess.Popen([TWIN, "serve", "--port", str(free_port), "--workers", "2"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{free_port}"
    try:
        _wait(base + "/health", server)
        urls = ["/tiles/main/latest/buildings/tileset.json", "/tiles/main/latest/terrain/tileset.json"] * 3
        with ThreadPoolExecutor(6) as pool:
            got = list(pool.map(lambda u: _raw_get(free_port, u, {"Accept-Encoding": "gzip", **built_city["admin"]}),
                                urls))
        assert all(s == 200 and h["content-encoding"] == "gzip" for s, h, _ in got)
        bodies = [gzip.decompress(b) for _, _, b in got]
        assert bodies[0] == bodies[2] == bodies[4] and bodies[1] == bodies[3] == bodies[5]
        doc = json.loads(bodies[0])
        built = server_cache_dir(Store(root), cache)[0]
        assert not (root / "tiles").exists()  # built into the server's cache directory, never into the store
        assert len(list((built / "buildings").glob("*.tileset.json"))) == 1
        assert len(list((built / "terrain").glob("*.json"))) == 1
        assert not list(cache.rglob("*.tmp"))  # no torn or left-over files
        glb = next(t["content"]["uri"] for t, *_ in walk(doc["root"]) if "content" in t)
        status, headers, body = _raw_get(free_port, f"/tiles/main/latest/buildings/{glb}", built_city["admin"])
        assert status == 200 and headers["content-type"] == "model/gltf-binary" and body[:4] == b"glTF"
        status, _, body = _raw_get(free_port, f"/tiles/main/latest/buildings/{glb}",
                                   {"If-None-Match": headers["etag"], **built_city["admin"]})
        assert status == 304 and body == b""
        for path in ("/tiles/main/latest/buildings/../../../STORE.json",
                     "/tiles/main/latest/buildings/content/../../../../STORE.json",
                     "/tiles/main/latest/terrain/%2e%2e/%2e%2e/STORE.json"):
            status, _, body = _raw_get(free_port, path)
            assert status in (400, 404) and SECRET not in body, path
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_cli_builds_ahead_and_reports(city_tiles, tmp_path) -> None:
    root = copy_store(city_tiles["root"], tmp_path / "store")
    r = subprocess.run([TWIN, "tiles", "build", "--store", str(root), "--only", "buildings", "--version",
                        str(city_tiles["version"])], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "buildings:" in r.stdout and Path(root / "tiles" / "buildings").is_dir()
    r = subprocess.run([TWIN, "tiles", "build", "--store", str(root), "--only", "roads"], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert r.returncode != 0 and "roads" in (r.stdout + r.stderr)


def test_cli_builds_into_the_store_and_a_server_reads_it_from_there(built_city, tmp_path, monkeypatch) -> None:
    import shutil

    root, cache = tmp_path / "store", tmp_path / "cache"
    shutil.copytree(built_city["store"], root, ignore=shutil.ignore_patterns("tiles"))
    r = subprocess.run([TWIN, "tiles", "build", "--store", str(root), "--only", "buildings", "--only", "terrain"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert len(list((root / "tiles" / "buildings").glob("*.tileset.json"))) == 1
    assert len(list((root / "tiles" / "terrain").glob("*.json"))) == 1
    monkeypatch.setenv("TWIN_CACHE_DIR", str(cache))
    c = TestClient(create_app(root))
    for kind in ("buildings", "terrain"):
        r = c.get(f"/tiles/main/latest/{kind}/tileset.json")
        assert r.status_code == 200 and r.json()["asset"]["version"] == "1.1"
    doc = c.get("/tiles/main/latest/buildings/tileset.json").json()
    glb = next(t["content"]["uri"] for t, *_ in walk(doc["root"]) if "content" in t)
    assert c.get(f"/tiles/main/latest/buildings/{glb}").content == (root / "tiles/buildings" / glb).read_bytes()
    assert not cache.exists() or not any(p.name in ("buildings", "terrain") for p in cache.rglob("*"))  # read only


def test_concurrent_first_requests_build_a_tileset_once(built_city, tmp_path, caplog, monkeypatch) -> None:
    import logging
    import shutil

    root, cache = tmp_path / "store", tmp_path / "cache"
    shutil.copytree(built_city["store"], root, ignore=shutil.ignore_patterns("tiles"))
    monkeypatch.setenv("TWIN_CACHE_DIR", str(cache))
    client = TestClient(create_app(root), headers=built_city["admin"])  # the full view (a cache of its own)
    caplog.set_level(logging.INFO, logger="twin.tiles")
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: client.get("/tiles/main/latest/terrain/tileset.json"), range(8)))
    assert [r.status_code for r in got] == [200] * 8
    assert len({r.content for r in got}) == 1 and len({r.headers["etag"] for r in got}) == 1
    builds = [r.getMessage() for r in caplog.records if r.getMessage().startswith("built the terrain tileset")]
    assert len(builds) == 1, builds  # one build; seven requests waited for it
    built = server_cache_dir(Store(root), cache)[0]
    assert len(list((built / "terrain").glob("*.json"))) == 1 and not list(cache.rglob("*.tmp"))
    assert not (root / "tiles").exists()


def test_openapi_declares_tile_media_types_and_error_bodies(served) -> None:
    paths = served["client"].get("/openapi.json").json()["paths"]
    ts = paths["/tiles/{branch}/{version}/{tileset}/tileset.json"]["get"]["responses"]
    assert list(ts["200"]["content"]) == ["application/json"] and "content" not in ts["304"]
    f = paths["/tiles/{branch}/{version}/{tileset}/{path}"]["get"]["responses"]
    assert {"model/gltf-binary", "application/octet-stream"} <= set(f["200"]["content"])
    assert f["200"]["content"]["model/gltf-binary"]["schema"] == {"type": "string", "format": "binary"}
    for responses in (ts, f):
        for code in ("404", "503"):
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema["properties"]["detail"]["type"] == "string" and schema["required"] == ["detail"]
