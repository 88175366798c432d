"""The planner's question, end to end: a scenario adds a 100 m tower south of a residential block; sunlight on the
baseline and on the scenario; which buildings lose GB 50180 compliance because of the tower. Removing the tower
restores the baseline exactly. From Python (twin.sim), the CLI (twin scenario / twin sim) and HTTP (OWSLib)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
import rasterio

from data_models import Building
from tests.conftest import ROOT, TWIN, square
from twin.sim import engine, scenarios
from twin.store import Store

X0, Y0 = 448_000.0, 4_428_000.0  # EPSG:4548, Beijing
# coarse but honest: 10-min steps, windows every 6 m, no ground raster (tested on its own in test_sunlight.py)
PARAMS = {"step_min": 10, "window_spacing_m": 6, "ground": False}


def slab(i: int, x: float, y: float, w: float = 40.0, d: float = 12.0, h: float = 18.0) -> Building:
    ring = [[x, y], [x + w, y], [x + w, y + d], [x, y + d], [x, y]]
    return Building(id=f"slab-{i}", geometry={"type": "Polygon", "coordinates": [ring]}, height=h, storeys=6,
                    use="residential")


def block() -> list[Building]:
    """Two rows of three 6-storey slabs, 60 m apart north-south (far enough to pass on 大寒日 in Beijing)."""
    return [slab(3 * r + c, X0 + 55.0 * c, Y0 + 60.0 * r) for r in range(2) for c in range(3)]


TOWER = Building(id="tower", geometry=square(X0 + 45.0, Y0 - 100.0, 60.0), height=100.0, use="office")


@pytest.fixture
def city(tmp_path: Path) -> Store:
    s = Store.init(tmp_path / "store")
    s.commit(block(), message="a residential block")
    return s


def _passes(store: Store, run) -> dict[str, bool]:
    t = engine.result_table(store, run, "sunlight_buildings")
    return dict(zip(t["entity_id"].to_pylist(), t["passes"].to_pylist(), strict=True))


def test_tower_scenario_from_python(city: Store) -> None:
    base = engine.run(city, "sunlight", PARAMS)
    assert all(_passes(city, base).values()), "the block must pass without the tower"
    sc = scenarios.create(city, "tower", scenario_id="tower")
    scenarios.add_edit(city, "tower", {"kind": "add_building", "building": TOWER.model_dump(mode="json")})
    with_tower = engine.run(city, "sunlight", PARAMS, scenario="tower")
    assert with_tower.branch == sc.branch and with_tower.scenario_id == "tower"
    assert with_tower.reused_from == base.id  # incremental: only the windows whose sky the tower touches

    c = engine.compare(city, base.id, with_tower.id)
    b = c.entities["sunlight_buildings"]
    lost = b.filter(pc.and_(pc.equal(b["passes_a"], True), pc.equal(b["passes_b"], False)))
    lost_ids = set(lost["entity_id"].to_pylist())
    # the buildings that fail because of the tower stand north of it (its shadow on 大寒日 in Beijing is ~200 m long
    # at noon and sweeps from north-west to north-east)
    assert lost_ids and all(b.geometry.coordinates[0][0][1] > Y0 - 40.0 for b in block() if b.id in lost_ids)
    worst = {r["entity_id"]: r for r in b.to_pylist()}
    assert worst["slab-1"]["worst_hours_b"] < worst["slab-1"]["worst_hours_a"]  # straight north: loses its noon
    assert "tower" not in set(b["entity_id"].to_pylist())  # an office tower has no windows to judge
    w = c.entities["sunlight_windows"]
    lower = w.filter(pc.less(w["hours_cumulative_diff"], -1e-9))
    assert lower.num_rows > 0
    assert pc.max(w["hours_cumulative_diff"]).as_py() <= 1e-9  # a new building never adds sun
    # every window that lost sun stands north of the tower and faces east, south or west (north façades have no
    # sun to lose on 大寒日)
    tower_north = Y0 - 40.0
    assert pc.min(lower["y_b"]).as_py() > tower_north
    az = lower["azimuth_b"].to_numpy()
    assert ((az >= 90) & (az <= 270)).all() and (az == 180).any(), sorted(set(az.round().tolist()))
    full = engine.run(city, "sunlight", PARAMS, scenario="tower", reuse=False)
    assert _passes(city, full) == _passes(city, with_tower)  # the incremental run equals a full one

    # removing the tower restores the baseline exactly: same inputs, so the baseline run itself is reused
    scenarios.remove_edit(city, "tower", 0)
    again = engine.run(city, "sunlight", PARAMS, scenario="tower")
    assert again.id == base.id


def _twin(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TWIN_STORE": str(tmp / "store"), "COLUMNS": "200"}
    return subprocess.run([TWIN, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_tower_scenario_from_the_cli(city: Store, tmp_path: Path) -> None:
    p = [a for k, v in PARAMS.items() for a in ("-p", f"{k}={json.dumps(v)}")]
    base = json.loads(_twin(tmp_path, "sim", "run", "sunlight", *p, "--json").stdout)
    assert _twin(tmp_path, "scenario", "create", "tower", "--id", "tower").returncode == 0
    tower = tmp_path / "tower.geojson"
    tower.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "tower", "properties": {"height": 100.0, "use": "office"},
         "geometry": TOWER.geometry.model_dump(mode="json")}]}))
    r = _twin(tmp_path, "scenario", "edit", "tower", "--add-building", str(tower))
    assert r.returncode == 0, r.stderr
    r = _twin(tmp_path, "sim", "run", "sunlight", "--scenario", "tower", *p, "--json")
    assert r.returncode == 0, r.stderr
    scen = json.loads(r.stdout)
    r = _twin(tmp_path, "sim", "compare", base["id"], scen["id"], "--json")
    rows = json.loads(r.stdout)["sunlight_buildings"]
    assert {row["entity_id"] for row in rows if row["passes_a"] and not row["passes_b"]} == {"slab-2", "slab-5"}


def test_tower_scenario_over_http_with_owslib(city: Store, tmp_path: Path) -> None:
    """The same question from a GIS or notebook client: the scenario over /scenarios, both runs through OGC API
    Processes with OWSLib, and the buildings that fail because of the tower from /runs/{a}/compare/{b}."""
    import httpx
    from owslib.ogcapi.processes import Processes

    from tests.api.server import auth, serve

    analyst = auth(city.root, name="analyst", role="analyst")
    with serve(city.root, tmp_path / "serve") as srv, \
            httpx.Client(base_url=srv.base, timeout=120, headers=analyst) as api:
        r = api.post("/scenarios", json={"name": "tower", "id": "tower"})
        assert r.status_code == 201 and r.headers["location"].endswith("/scenarios/tower")
        r = api.post("/scenarios/tower/edits", json={"kind": "add_building",
                                                     "building": TOWER.model_dump(mode="json")})
        assert r.status_code == 201 and len(r.json()["edits"]) == 1
        p = Processes(srv.base, headers=analyst)
        assert "sunlight" in {x["id"] for x in p.processes()}
        assert "step_min" in p.process("sunlight")["inputs"]
        params = {**PARAMS, "ground": True, "ground_cell_m": 4.0}  # with the ground raster, for the GIS check
        doc = p.execute("sunlight", inputs=params)
        base = doc["run"]["value"]
        job = p.execute("sunlight", inputs={**params, "scenario": "tower"}, async_=True)
        deadline = time.time() + 120
        while (status := api.get(f"/jobs/{job['jobID']}").json())["status"] in ("accepted", "running"):
            assert time.time() < deadline, status
            time.sleep(0.2)
        assert status["status"] == "successful", status
        scen = p._request(path=f"jobs/{job['jobID']}/results")["run"]["value"]
        assert scen["branch"] == "scenario-tower" and scen["scenario_id"] == "tower"
        rows = api.get(f"/runs/{base['id']}/compare/{scen['id']}").json()["entities"]["sunlight_buildings"]
        assert {r["entity_id"] for r in rows if r["passes_a"] and not r["passes_b"]} == {"slab-2", "slab-5"}
        # what the viewer colours by: pass/fail per building id, with footprints for GIS
        fc = api.get(f"/runs/{scen['id']}/tables/sunlight_buildings", params={"f": "geojson"}).json()
        assert {f["id"]: f["properties"]["passes"] for f in fc["features"]}["slab-2"] is False
        # the ground hours as a COG, linked from the job results, opened by GDAL (rasterio) as a GIS would
        link = p._request(path=f"jobs/{job['jobID']}/results")["ground-hours"]
        assert link["href"].endswith(f"/runs/{scen['id']}/files/ground-hours") and "geotiff" in link["type"]
        grids = {}
        for run in (base, scen):
            r = api.get(f"/runs/{run['id']}/files/ground-hours")
            assert r.status_code == 200 and "cloud-optimized" in r.headers["content-type"]
            (tmp_path / f"{run['id']}.tif").write_bytes(r.content)
            with rasterio.open(tmp_path / f"{run['id']}.tif") as src:
                grids[run["id"]] = (src.read(1, masked=True), src.transform)
        (a, transform), (b, _) = grids[base["id"]], grids[scen["id"]]
        assert 0 <= a.min() and a.max() <= 8.0 + 1e-9 and a.mask.any()  # building footprints are nodata
        row, col = rasterio.transform.rowcol(transform, X0 + 75.0, Y0 - 20.0)  # between the tower and the block
        assert b[row, col] < a[row, col] - 1.0  # the tower's shadow
        assert api.get(f"/runs/{base['id']}/files/nope").status_code == 404
