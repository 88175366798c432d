"""The planner's traffic question over HTTP: close the busiest road on a scenario, run the AM peak on the baseline
and the scenario through OGC API Processes with OWSLib, and read where the traffic went (per road, as GeoJSON for
GIS, and the difference) and how much longer trips got; a TNTP study of the study folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from tests.api.server import auth, serve
from tests.conftest import shared_data

AM = {"hours": [8], "zone_res": 9}


def test_closed_road_over_http(built_city, tmp_path: Path) -> None:
    from owslib.ogcapi.processes import Processes

    shutil.copytree(built_city["store"], tmp_path / "store")
    analyst = auth(tmp_path / "store", name="analyst", role="analyst")
    study = tmp_path / "study"
    study.mkdir()
    sf = shared_data("traffic/SiouxFalls")
    for name in ("SiouxFalls_net.tntp", "SiouxFalls_trips.tntp"):
        shutil.copyfile(sf / name, study / name)
    with serve(tmp_path / "store", tmp_path / "serve", {"TWIN_STUDY_DIR": str(study)}) as srv, \
            httpx.Client(base_url=srv.base, timeout=180, headers=analyst) as api:
        p = Processes(srv.base, headers=analyst)
        assert {"hours", "gap", "method", "tntp_net"} <= set(p.process("traffic")["inputs"])
        base = p.execute("traffic", inputs=AM)["run"]["value"]
        assert base["status"] == "succeeded" and base["summary"]["hours"] == [8]
        roads = api.get(f"/runs/{base['id']}/tables/traffic_roads").json()
        busiest = max(roads, key=lambda r: r["volume"])
        assert api.post("/scenarios", json={"name": "closed road", "id": "closed"}).status_code == 201
        r = api.post("/scenarios/closed/edits", json={"kind": "close_road", "road_id": busiest["entity_id"]})
        assert r.status_code == 201, r.text
        plan = p.execute("traffic", inputs={**AM, "scenario": "closed"})["run"]["value"]
        assert plan["branch"] == "scenario-closed"
        cmp = api.get(f"/runs/{base['id']}/compare/{plan['id']}").json()
        assert cmp["totals"]["vehicle_hours"]["diff"] == plan["summary"]["vehicle_hours"] - base["summary"][
            "vehicle_hours"]
        rows = cmp["entities"]["traffic_roads"]
        closed = next(x for x in rows if x["entity_id"] == busiest["entity_id"])
        assert closed["status"] == "removed"
        assert max(x["volume_diff"] or 0 for x in rows) > 0  # its traffic went elsewhere
        zones = {run["id"]: api.get(f"/runs/{run['id']}/tables/traffic_zones").json() for run in (base, plan)}
        mean = {k: sum(z["mean_time_min"] * z["trips_out"] for z in v if z["trips_out"]) /
                sum(z["trips_out"] for z in v) for k, v in zones.items()}
        assert mean[plan["id"]] >= mean[base["id"]] * 0.999  # trips do not get shorter
        fc = api.get(f"/runs/{plan['id']}/tables/traffic_roads", params={"f": "geojson"}).json()
        assert fc["features"] and fc["features"][0]["geometry"]["type"] in ("LineString", "MultiLineString")
        cells = api.get("/layers/traffic-load/cells", params={"branch": "scenario-closed", "format": "json"}).json()
        assert cells and all(c["value"] >= 0 for c in cells)
        # a TNTP study named relative to TWIN_STUDY_DIR
        run = p.execute("traffic", inputs={"tntp_net": "SiouxFalls_net.tntp", "tntp_trips": "SiouxFalls_trips.tntp",
                                           "gap": 1e-8})["run"]["value"]
        assert run["summary"]["gap"] <= 1e-8 and run["summary"]["trips"] == 360_600
        r = api.post("/processes/traffic/execution", json={"inputs": {"tntp_net": "/etc/hostname",
                                                                      "tntp_trips": "SiouxFalls_trips.tntp"}})
        assert r.status_code == 400 and "not a file of the study folder" in r.text, r.text
