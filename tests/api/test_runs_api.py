"""`/runs` over real HTTP: recorded runs, their result tables (JSON, CSV, GeoJSON with WGS84 footprints) and the
comparison of two runs, on a store where the test volume simulator ran on main and on a branch."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from tests.api.server import serve
from tests.conftest import ROOT, make_buildings
from tests.sim.volume_sim import VolumeSimulator
from twin.sim import engine
from twin.store import Store


@pytest.fixture(scope="module")
def runs_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs_api")
    s = Store.init(tmp / "store")
    s.commit(make_buildings(4), message="four buildings")
    s.create_branch("plan", "main")
    s.commit([make_buildings(4)[1].model_copy(update={"height": 40.0})], message="taller", branch="plan")
    engine.register(VolumeSimulator())
    try:
        a = engine.run(s, "test-volume", {"factor": 1})
        b = engine.run(s, "test-volume", {"factor": 1}, branch="plan")
    finally:
        engine._REGISTRY.pop(VolumeSimulator.name, None)
    env = {"TWIN_SIMULATORS": "tests.sim.volume_sim:VolumeSimulator", "PYTHONPATH": str(ROOT)}
    with serve(tmp / "store", tmp, env=env) as srv:
        yield srv, a, b


def test_runs_list_get_and_tables(runs_server):
    srv, a, b = runs_server
    with httpx.Client(base_url=srv.base, timeout=30) as c:
        listed = c.get("/runs").json()
        assert {r["id"] for r in listed} == {a.id, b.id}
        assert [r["id"] for r in c.get("/runs", params={"branch": "plan"}).json()][0] == b.id
        got = c.get(f"/runs/{a.id}").json()
        assert got["status"] == "succeeded" and got["tables"] == ["test_volume_buildings"]
        rows = c.get(f"/runs/{a.id}/tables/test_volume_buildings").json()
        assert sorted(r["entity_id"] for r in rows) == [f"b{i:06d}" for i in range(4)]
        assert next(r for r in rows if r["entity_id"] == "b000001")["volume"] == pytest.approx(100 * 11)
        one = c.get(f"/runs/{b.id}/tables/test_volume_buildings", params={"entity_id": "b000001"}).json()
        assert len(one) == 1 and one[0]["volume"] == pytest.approx(100 * 40)
        text = c.get(f"/runs/{a.id}/tables/test_volume_buildings", params={"f": "csv"}).text
        assert len(list(csv.DictReader(io.StringIO(text)))) == 4
        fc = c.get(f"/runs/{a.id}/tables/test_volume_buildings", params={"f": "geojson"}).json()
        lon, lat = fc["features"][0]["geometry"]["coordinates"][0][0]
        assert 116 < lon < 118 and 39 < lat < 41  # EPSG:4548 footprints in Beijing, as WGS84
        cmp = c.get(f"/runs/{a.id}/compare/{b.id}").json()
        changed = cmp["entities"]["test_volume_buildings"]
        assert [r["entity_id"] for r in changed] == ["b000001"] and changed[0]["status"] == "changed"
        assert changed[0]["volume_diff"] == pytest.approx(100 * (40 - 11))
        assert sum(r["difference"] for r in cmp["cells"]["test-volume-cells"]) == pytest.approx(100 * (40 - 11))


def test_runs_errors(runs_server):
    srv, a, _ = runs_server
    with httpx.Client(base_url=srv.base, timeout=30) as c:
        r = c.get("/runs/run-000000000000")
        assert r.status_code == 404 and "unknown run" in r.json()["detail"]
        r = c.get(f"/runs/{a.id}/tables/nope")
        assert r.status_code == 404 and "test_volume_buildings" in r.json()["detail"]
        assert c.get(f"/runs/{a.id}/tables/test_volume_buildings", params={"f": "xml"}).status_code == 400
        assert c.get("/runs", params={"limit": 0}).status_code == 400
