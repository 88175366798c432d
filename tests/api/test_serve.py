"""The API over real HTTP: `twin serve` sees commits made by another process without a restart."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, TWIN
from tests.helpers_geojson import write_buildings_geojson


def _wait(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url} not up after {timeout} s")


def test_server_sees_new_versions_from_another_process(tmp_path: Path, free_port: int) -> None:
    store = tmp_path / "store"
    env = {**os.environ, "TWIN_STORE": str(store), "TWIN_AUTHOR": "tester"}
    run = lambda *a: subprocess.run([TWIN, *a], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)  # noqa: E731
    assert run("init").returncode == 0
    r = run("ingest", str(write_buildings_geojson(tmp_path / "v1" / "buildings.geojson", 20)))
    assert r.returncode == 0, r.stderr
    server = subprocess.Popen([TWIN, "serve", "--port", str(free_port)], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{free_port}"
    try:
        _wait(base + "/health", server)
        assert httpx.get(base + "/health").json()["store_version"] == 1
        latest = httpx.get(base + "/commits/latest").json()
        assert latest["version"] == 1 and latest["author"] == "tester" and latest["changes"]["added"] == 21
        # a second process writes while the server runs: an updated delivery of the same file
        r = run("ingest", str(write_buildings_geojson(tmp_path / "v1" / "buildings.geojson", 25)))
        assert r.returncode == 0, r.stderr
        latest = httpx.get(base + "/commits/latest").json()
        assert latest["version"] == 2
        assert latest["changes"] == {"added": 5, "modified": 1, "removed": 0}  # 5 buildings + new asset version
        page = httpx.get(base + "/?f=html")
        assert page.status_code == 200 and "version <b>2</b>" in page.text and "25 city objects" in page.text
        changes = httpx.get(base + "/commits/2/changes").json()
        assert {c["id"] for c in changes if c["collection"] == "city"} == {f"bldg-C{i:04d}" for i in range(20, 25)}
        hist = httpx.get(base + "/entities/bldg-C0000/history").json()
        assert hist[0]["_store"]["version"] == 1 and hist[0]["use"] == "residential"
        assert httpx.get(base + "/entities/nope/history").status_code == 404
        rec = httpx.get(base + "/entities/bldg-C0021").json()
        assert rec["provenance"][0]["source_asset_id"] == "src-v1-buildings-geojson"
        assert httpx.get(base + "/entities/bldg-C0021?as_of=1").status_code == 404
        cat = httpx.get(base + "/assets").json()
        assert [a["asset_version"] for a in cat] == [2] and len(cat[0]["checksum"]) == 64
        assert httpx.get(base + "/commits/latest?branch=nope").status_code == 404
        assert httpx.get(base + "/openapi.json").json()["info"]["title"] == "twin"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_several_worker_processes_serve_one_store(tmp_path: Path, free_port: int) -> None:
    store = tmp_path / "store"
    env = {**os.environ, "TWIN_STORE": str(store)}
    assert subprocess.run([TWIN, "init"], env=env, cwd=ROOT, capture_output=True).returncode == 0
    subprocess.run([TWIN, "ingest", str(write_buildings_geojson(tmp_path / "a" / "b.geojson", 3))], env=env,
                   cwd=ROOT, capture_output=True, check=True)
    server = subprocess.Popen([TWIN, "serve", "--port", str(free_port), "--workers", "2"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{free_port}"
    try:
        _wait(base + "/health", server)
        assert {httpx.get(base + "/health").json()["store_version"] for _ in range(10)} == {1}
        subprocess.run([TWIN, "ingest", str(write_buildings_geojson(tmp_path / "a" / "b.geojson", 4))], env=env,
                       cwd=ROOT, capture_output=True, check=True)
        assert {httpx.get(base + "/health").json()["store_version"] for _ in range(10)} == {2}
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=15)
