"""The analyst's flood question over HTTP: a 100-year Beijing design storm on the baseline and on a "sponge city"
scenario (a park and permeable paving) through OGC API Processes with OWSLib, the flooded buildings and roads of
each and their difference from /runs, the max-depth COG opened by GDAL, and the depth layer the viewer animates."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import rasterio
from shapely.geometry import box, mapping

from tests.api.server import auth, serve
from tests.conftest import shared_data

STORM = {"design_storm": "beijing", "return_period_years": 100, "resolution_m": 8.0}


def test_sponge_city_over_http(built_city, tmp_path: Path) -> None:
    from owslib.ogcapi.processes import Processes

    shutil.copytree(built_city["store"], tmp_path / "store")
    analyst = auth(tmp_path / "store", name="analyst", role="analyst")
    study = tmp_path / "study"  # the only folder whose files a caller may name
    study.mkdir()
    mcdo = shared_data("flood/macdonald_analytic") / "without_rain"
    for name in ("dem.asc", "q.asc"):
        shutil.copyfile(mcdo / name, study / name)
    with serve(tmp_path / "store", tmp_path / "serve", {"TWIN_STUDY_DIR": str(study)}) as srv, \
            httpx.Client(base_url=srv.base, timeout=180, headers=analyst) as api:
        p = Processes(srv.base, headers=analyst)
        assert "flood" in {x["id"] for x in p.processes()}
        inputs = p.process("flood")["inputs"]
        assert {"design_storm", "resolution_m", "dem", "boundary"} <= set(inputs)
        base = p.execute("flood", inputs=STORM)["run"]["value"]
        assert base["status"] == "succeeded" and base["summary"]["rain_mm"] > 90
        x0, y0, x1, y1 = base["summary"]["grid"]["bbox"]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        r = api.post("/scenarios", json={"name": "sponge city", "id": "sponge"})
        assert r.status_code == 201
        for geom, cls in ((box(cx - 150, cy - 150, cx + 150, cy + 150), "grass"),  # a park
                          (box(x0, y0, x1, y0 + 100), "bare")):  # permeable paving along the south
            r = api.post("/scenarios/sponge/edits", json={"kind": "change_land_cover", "geometry": mapping(geom),
                                                          "new_class": cls})
            assert r.status_code == 201, r.text
        plan = p.execute("flood", inputs={**STORM, "scenario": "sponge"})["run"]["value"]
        assert plan["branch"] == "scenario-sponge"
        infil = [run["summary"]["mass_balance"]["infiltration_m3"] for run in (base, plan)]
        assert infil[1] > infil[0]
        cmp = api.get(f"/runs/{base['id']}/compare/{plan['id']}").json()
        assert {"flood_buildings", "flood_roads"} <= set(cmp["entities"])
        cells = cmp["cells"]["flood-max-depth"]
        assert min(c["difference"] for c in cells) < 0  # somewhere the sponge holds the water back
        # flooded buildings and roads of each, as GIS reads them
        for run in (base, plan):
            fc = api.get(f"/runs/{run['id']}/tables/flood_buildings", params={"f": "geojson"}).json()
            assert fc["features"] and {"max_depth_m", "risk_class"} <= set(fc["features"][0]["properties"])
            roads = api.get(f"/runs/{run['id']}/tables/flood_roads").json()
            assert roads and all(isinstance(r["impassable"], bool) for r in roads)
        r = api.get(f"/runs/{plan['id']}/files/max-depth")
        assert r.status_code == 200
        (tmp_path / "max-depth.tif").write_bytes(r.content)
        with rasterio.open(tmp_path / "max-depth.tif") as src:
            d = src.read(1, masked=True)
            assert src.res == (8.0, 8.0) and d.mask.any() and float(d.max()) > 0.05  # walls are nodata
        # the viewer's time slider: the depth layer per 5-minute bucket
        spec = api.get("/layers/flood-depth", params={"branch": "scenario-sponge"}).json()
        assert spec["time_bucket"] == "5min"
        rows = api.get("/layers/flood-depth/cells", params={"branch": "scenario-sponge", "res": 9,
                                                            "format": "json"}).json()
        times = sorted({row["t"] for row in rows})
        assert len(times) >= 12 and np.mean([row["value"] for row in rows]) > 0
        # a study's files: named relative to TWIN_STUDY_DIR, nothing else of the server's
        study_inputs = {"dem": "dem.asc", "crs": "EPSG:32650", "inflow": "q.asc", "resolution_m": 5,
                        "boundary": {"east": "open"}, "n_default": 0.033, "duration_s": 600}
        run = p.execute("flood", inputs=study_inputs)["run"]["value"]
        assert run["summary"]["grid"]["rows"] == 3 and run["summary"]["mass_balance"]["inflow_m3"] > 0
        for bad in ("/etc/hostname", "../store/STORE.json", "missing.tif"):
            r = api.post("/processes/flood/execution", json={"inputs": {**study_inputs, "dem": bad}})
            assert r.status_code == 400 and "not a file of the study folder" in r.text, r.text
