"""The flood simulator through the engine: a 100 mm / 1 h storm on the demo city (water only where it can collect,
never in buildings, the same bits twice, the mass balance), a "sponge city" scenario against the baseline, the
depth layer the viewer animates, bad input, and a standalone study from the CLI with the user's own files."""

from __future__ import annotations

import csv
import heapq
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from shapely.geometry import box, mapping, shape

from tests.conftest import ROOT, TWIN, shared_data
from twin.errors import BadInput
from twin.sim import engine, scenarios
from twin.sim.base import BadParameters
from twin.store import ASSETS, Query, Store

STORM = {"rain_mm_h": 100.0, "rain_duration_min": 60.0, "resolution_m": 4.0}


@pytest.fixture(scope="module")
def flood_city(built_city, tmp_path_factory) -> dict:
    """A copy of the demo store (runs commit), its 100 mm / 1 h baseline run twice, and a sponge-city scenario."""
    root = tmp_path_factory.mktemp("flood") / "store"
    shutil.copytree(built_city["store"], root)
    s = Store(root)
    a = engine.run(s, "flood", STORM)
    b = engine.run(s, "flood", STORM, reuse=False)
    return {"store": s, "a": a, "b": b}


def _raster(s: Store, run, name: str) -> tuple[np.ndarray, rasterio.Affine]:
    path, _ = engine.result_file(s, run, name)
    with rasterio.open(path) as src:
        return src.read(1, masked=True).astype(np.float64).filled(np.nan), src.transform


def _filled(z: np.ndarray, walls: np.ndarray) -> np.ndarray:
    """Depressions filled (priority flood from the edges, Barnes et al. 2014), walls as infinitely high: the level
    still water would reach in every pit."""
    h, w = z.shape
    z = np.where(walls, np.inf, z)
    out = z.copy()
    done = np.zeros(z.shape, bool)
    heap = []
    for r in range(h):
        for c in range(w):
            if (r in (0, h - 1) or c in (0, w - 1)) and np.isfinite(z[r, c]):
                heapq.heappush(heap, (z[r, c], r, c))
                done[r, c] = True
    while heap:
        level, r, c = heapq.heappop(heap)
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and not done[rr, cc] and np.isfinite(z[rr, cc]):
                done[rr, cc] = True
                out[rr, cc] = max(z[rr, cc], level)
                heapq.heappush(heap, (out[rr, cc], rr, cc))
    return out


def test_storm_on_the_demo_city(flood_city) -> None:
    """100 mm in an hour: deep water only in the DTM's pits (and against walls), none inside a footprint, the
    balance closed, and a second run identical bit for bit."""
    s, a, b = flood_city["store"], flood_city["a"], flood_city["b"]
    assert a.status.value == "succeeded" and a.id != b.id
    mb = a.summary["mass_balance"]
    cells = a.summary["grid"]["active_cells"] + a.summary["grid"]["wall_cells"]
    assert mb["rain_m3"] == pytest.approx(0.1 * cells * 16.0, rel=1e-9)  # roofs' rain is routed, none is lost
    assert abs(mb["error_pct"]) < 0.1 and mb["outflow_m3"] > 0 and mb["infiltration_m3"] > 0
    depth, t = _raster(s, a, "max-depth")
    # buildings: every footprint cell is a wall (no value); the table has every building
    feats = s.features(query=Query(types=["Building"]))
    from rasterio.features import rasterize

    inside = rasterize([(shape(f["geometry"]), 1) for f in feats], out_shape=depth.shape, transform=t).astype(bool)
    assert inside.sum() > 1000 and np.isnan(depth[inside]).all()
    rows = engine.result_table(s, a, "flood_buildings").to_pylist()
    assert len(rows) == len(feats) and {r["risk_class"] for r in rows} <= {"none", "low", "medium", "high"}
    # where water collects: the DTM on the same grid, its pits filled with walls as dams
    dtm = s.get("prd-dtm", collection=ASSETS)
    with rasterio.open(s.asset_path(dtm)) as src:
        from rasterio.warp import Resampling, reproject

        z = np.full(depth.shape, np.nan)
        reproject(src.read(1).astype(np.float64), z, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=t, dst_crs=src.crs, resampling=Resampling.average, src_nodata=src.nodata,
                  dst_nodata=np.nan)
    pit = _filled(z, inside) - z
    interior = np.zeros(depth.shape, bool)
    interior[10:-10, 10:-10] = True  # 40 m in from the open edges, where the edge's outflow law decides
    deep = (np.nan_to_num(depth) > 0.2) & interior
    assert deep.sum() > 20
    assert (pit[deep] > 0.05).mean() > 0.9, (pit[deep] > 0.05).mean()  # deep water sits in pits
    slopes = ~inside & (pit == 0) & interior
    assert np.nanpercentile(depth[slopes], 90) < 0.1  # and runs off everywhere else
    # the same inputs: the same bits
    for name in ("max-depth", "max-velocity", "time-of-max-depth", "max-stage"):
        x, y = _raster(s, a, name)[0], _raster(s, b, name)[0]
        assert np.array_equal(x, y, equal_nan=True), name
    for table in ("flood_buildings", "flood_roads"):
        ta, tb = engine.result_table(s, a, table), engine.result_table(s, b, table)
        assert ta.drop_columns(["run_id"]).equals(tb.drop_columns(["run_id"])), table
    assert a.summary["mass_balance"] == b.summary["mass_balance"]


def test_depth_layer_for_the_time_slider(flood_city) -> None:
    """Depth per H3 cell every 5 minutes (res 11 and roll-ups), and the max-depth layer."""
    from twin.layers.registry import Layers

    s, b = flood_city["store"], flood_city["b"]
    reg = Layers(s)
    spec = reg.spec("flood-depth")  # the latest run's
    assert spec.time_bucket == "5min" and spec.resolutions == [9, 10, 11] and b.id in spec.lineage
    t = reg.query("flood-depth", res=9)
    times = sorted(set(t["t"].to_pylist()))
    assert len(times) == 5400 // 300 + 1  # t = 0 … 90 min
    assert all((b - a_).total_seconds() == 300 for a_, b in zip(times, times[1:], strict=False))
    per_t = {}
    for row in t.to_pylist():
        per_t.setdefault(row["t"], []).append(row["value"])
    means = [np.mean(per_t[k]) for k in times]
    assert means[0] < 1e-3 < 0.01 < max(means) and int(np.argmax(means)) <= 13  # rises with the rain, then drains
    mx = reg.query("flood-max-depth", res=11)
    assert mx.num_rows > 100 and min(mx["value"].to_pylist()) >= 0


def test_sponge_city_scenario_against_the_baseline(flood_city) -> None:
    """A park where the lowest-lying pit is, and a building taken away: less water there, the building gone from
    the per-building table, and the difference per cell and per building from `compare`."""
    s, base = flood_city["store"], flood_city["a"]
    depth, t = _raster(s, base, "max-depth")
    r, c = np.unravel_index(np.nanargmax(depth), depth.shape)
    x, y = t @ (c + 0.5, r + 0.5)
    park = box(x - 60, y - 60, x + 60, y + 60)
    gone = next(row for row in engine.result_table(s, base, "flood_buildings").to_pylist())["entity_id"]
    scenarios.create(s, "sponge", scenario_id="sponge")
    scenarios.add_edit(s, "sponge", {"kind": "change_land_cover", "geometry": mapping(park), "new_class": "grass"})
    scenarios.add_edit(s, "sponge", {"kind": "remove_building", "building_id": gone})
    plan = engine.run(s, "flood", {**STORM, "infiltration_mm_h": {"grass": 60.0}}, scenario="sponge")
    base2 = engine.run(s, "flood", {**STORM, "infiltration_mm_h": {"grass": 60.0}})
    assert plan.summary["mass_balance"]["infiltration_m3"] > base2.summary["mass_balance"]["infiltration_m3"]
    diff = engine.compare(s, base2.id, plan.id)
    b = {row["entity_id"]: row for row in diff.entities["flood_buildings"].to_pylist()}
    assert b[gone]["status"] == "removed"
    assert any(row["status"] == "changed" for row in b.values())
    cells = diff.cells["flood-max-depth"]
    assert cells.num_rows > 100 and min(cells["difference"].to_pylist()) < -0.01  # the park holds less water
    d_plan = _raster(s, plan, "max-depth")[0]
    d_base = _raster(s, base2, "max-depth")[0]
    assert np.nanmax(d_plan[r - 2:r + 3, c - 2:c + 3]) < np.nanmax(d_base[r - 2:r + 3, c - 2:c + 3])


def test_bad_input_names_the_parameter(flood_city, tmp_path) -> None:
    s = flood_city["store"]
    with pytest.raises(BadParameters, match="rain_mm_h"):
        engine.run(s, "flood", {"rain_mm_h": -5})
    with pytest.raises(BadParameters, match="rain_mm_h, design_storm"):
        engine.run(s, "flood", {"rain_mm_h": 5, "design_storm": "beijing"})
    with pytest.raises(BadParameters, match="no water"):
        engine.run(s, "flood", {"resolution_m": 8})
    with pytest.raises(BadParameters, match="duration_s, resolution_m"):
        engine.run(s, "flood", {"rain_mm_h": 50, "resolution_m": 0.25, "duration_s": 7 * 86400})
    before = s.head()
    # absurd rain and a grid 5× finer than the 1 m DTM: warnings, on a small box and a short run
    x0, y0 = flood_city["a"].summary["grid"]["bbox"][:2]
    r = engine.run(s, "flood", {"rain_mm_h": 800, "rain_duration_min": 1, "resolution_m": 0.2, "duration_s": 30,
                                "bbox": [x0 + 100, y0 + 100, x0 + 130, y0 + 130]})
    text = " ".join(r.summary["warnings"])
    assert "800 mm/h" in text and "resolution_m: 0.2 m is more than 4× finer" in text
    assert s.head() == before + 1  # the run and its results: one commit
    # terrain with a hole: filled and said, or refused
    from rasterio.transform import from_origin

    z = np.full((20, 20), 10.0, np.float32)
    z[5:8, 5:8] = -9999.0
    with rasterio.open(tmp_path / "holes.tif", "w", driver="GTiff", width=20, height=20, count=1, dtype="float32",
                       crs="EPSG:4548", transform=from_origin(x0, y0 + 40, 2, 2), nodata=-9999.0) as dst:
        dst.write(z, 1)
    with pytest.raises(BadInput, match="9 cells have no height.*fill_nodata=true"):
        engine.run(s, "flood", {"dem": str(tmp_path / "holes.tif"), "rain_mm_h": 10, "fill_nodata": False})
    r = engine.run(s, "flood", {"dem": str(tmp_path / "holes.tif"), "rain_mm_h": 10, "duration_s": 60})
    assert any("filled 9 cells" in w for w in r.summary["warnings"])
    # a DEM in degrees runs on its UTM zone (the observation points stay in lon, lat)
    with rasterio.open(tmp_path / "lonlat.tif", "w", driver="GTiff", width=30, height=30, count=1, dtype="float32",
                       crs="EPSG:4326", transform=from_origin(116.40, 39.91, 0.00002, 0.00002)) as dst:
        dst.write(np.fromfunction(lambda r, c: 50.0 - 0.01 * c, (30, 30), dtype=np.float32), 1)
    (tmp_path / "obs.csv").write_text("id,x,y\nmid,116.4003,39.9097\n")
    r = engine.run(s, "flood", {"dem": str(tmp_path / "lonlat.tif"), "rain_mm_h": 50, "duration_s": 60,
                                "resolution_m": 1.0, "points": str(tmp_path / "obs.csv")})
    assert r.summary["grid"]["crs"] == "EPSG:32650" and any("(UTM)" in w for w in r.summary["warnings"])
    assert abs(r.summary["grid"]["cols"] - 51) <= 1  # 30 × 0.00002° of longitude at 39.9° N ≈ 51 m
    # a branch without terrain
    empty = Store.init(tmp_path / "empty")
    from tests.conftest import make_buildings

    empty.commit(make_buildings(2), message="two buildings")
    with pytest.raises(BadInput, match="twin build"):
        engine.run(empty, "flood", {"rain_mm_h": 50})
    assert not empty.features(query=Query(collection=ASSETS))  # no result was committed


# ------------------------------------------------------------------------------------------------ standalone studies
def _twin(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TWIN_STORE": str(cwd / "no-store"), "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    return subprocess.run([TWIN, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_macdonald_study_without_a_store(tmp_path) -> None:
    """`twin sim run flood -p dem=… --out DIR` with no store: Itzi's MacDonald inputs as they come (an ASCII DEM
    without CRS, an inflow raster), the COGs and the stage series at the axis points, whose last values match the
    analytic steady surface."""
    folder = shared_data("flood/macdonald_analytic") / "without_rain"
    pts = json.loads((folder / "axis_points.json").read_text())["features"]
    with open(tmp_path / "obs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "x", "y"])
        for p in pts:
            w.writerow([p["properties"]["cat"], *p["geometry"]["coordinates"][:2]])
    out = tmp_path / "out"
    r = _twin(tmp_path, "sim", "run", "flood", "-p", f"dem={folder / 'dem.asc'}", "-p", "crs=EPSG:32650",
              "-p", f"inflow={folder / 'q.asc'}", "-p", "resolution_m=5", "-p", 'boundary={"east": "open"}',
              "-p", "n_default=0.033", "-p", "duration_s=1200", "-p", f"points={tmp_path / 'obs.csv'}",
              "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "standalone study" in r.stdout
    for name in ("max-depth", "max-stage", "max-velocity", "time-of-max-depth"):
        with rasterio.open(out / f"{name}.tif") as src:
            assert src.shape == (3, 200) and src.crs.to_epsg() == 32650
    rows = list(csv.DictReader(open(out / "flood_points.csv")))
    last = max(float(row["t_s"]) for row in rows)
    stage = {row["entity_id"]: float(row["stage_m"]) for row in rows if float(row["t_s"]) == last}
    exact = [float(row["wse"]) for row in csv.DictReader(open(folder / "mcdo_norain.csv"))]
    mae = np.mean([abs(stage[str(k + 1)] - exact[k]) for k in range(200)])
    assert last == 1200 and mae < 0.03, mae
    run = json.loads((out / "run.json").read_text())
    assert abs(run["summary"]["mass_balance"]["error_pct"]) < 1e-6


def test_cli_study_with_footprints_roughness_and_inflow(tmp_path) -> None:
    """The issue's command on a user's GeoTIFF: footprints from GeoJSON are walls (dry), a roughness polygon with
    n from the file name's option, an inflow polygon with q = 19.7 m³/s (its volume delivered), open edges."""
    from rasterio.transform import from_origin

    n, dx, x0, y0 = 100, 2.0, 500000.0, 4400000.0
    yy, xx = np.mgrid[0:n, 0:n]
    z = 50.0 - 0.02 * xx * dx + 0.01 * np.abs(yy - n / 2) * dx
    z[40:44, 40:44] = np.nan  # a hole, filled and said
    profile = {"driver": "GTiff", "width": n, "height": n, "count": 1, "dtype": "float32", "crs": "EPSG:32650",
               "transform": from_origin(x0, y0 + n * dx, dx, dx), "nodata": -9999.0}
    with rasterio.open(tmp_path / "dem.tif", "w", **profile) as dst:
        dst.write(np.where(np.isfinite(z), z, -9999.0).astype("float32"), 1)
    house = box(x0 + 100, y0 + 80, x0 + 120, y0 + 120)
    fc = lambda feats: {"type": "FeatureCollection", "features": feats}  # noqa: E731
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32650"}}
    (tmp_path / "houses.geojson").write_text(json.dumps({**fc([{"type": "Feature", "properties": {"id": "h1"},
                                                                "geometry": mapping(house)}]), "crs": crs}))
    (tmp_path / "roads.geojson").write_text(json.dumps({**fc([{"type": "Feature", "properties": {}, "geometry":
                                                               mapping(box(x0, y0 + 96, x0 + 200, y0 + 104))}]),
                                                        "crs": crs}))
    (tmp_path / "inflow.geojson").write_text(json.dumps({**fc([{"type": "Feature", "properties": {}, "geometry":
                                                                mapping(box(x0, y0 + 90, x0 + 4, y0 + 110))}]),
                                                         "crs": crs}))
    with open(tmp_path / "obs.csv", "w") as f:
        f.write("id,x,y\nupstream,500020,4400100\ndownstream,500180,4400100\n")
    out = tmp_path / "out"
    r = _twin(tmp_path, "sim", "run", "flood", "-p", "dem=dem.tif", "-p", "buildings=houses.geojson",
              "-p", "roughness=roads.geojson:n=0.02", "-p", "n_default=0.04", "-p", "inflow=inflow.geojson:q=19.7",
              "-p", "duration_s=1000", "-p", "boundary=open", "-p", "points=obs.csv", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    run = json.loads((out / "run.json").read_text())
    mb = run["summary"]["mass_balance"]
    assert mb["inflow_m3"] == pytest.approx(19.7 * 1000, rel=1e-9) and mb["rain_m3"] == 0
    assert abs(mb["error_pct"]) < 1e-6
    assert any("filled 16 cells" in w for w in run["summary"]["warnings"])
    with rasterio.open(out / "max-depth.tif") as src:
        d = src.read(1, masked=True).filled(np.nan)
    assert np.isnan(d[40:60, 50:60]).all()  # the house is a wall
    assert np.nanmax(d[40:60, 45:50]) > 0.05  # the water banks up in front of it
    rows = list(csv.DictReader(open(out / "flood_points.csv")))
    assert {row["entity_id"] for row in rows} == {"upstream", "downstream"}
    assert max(float(row["depth_m"]) for row in rows if row["entity_id"] == "downstream") > 0
    with rasterio.open(out / "max-stage.tif") as src:
        assert src.crs.to_epsg() == 32650


def test_rain_from_the_scenario_and_a_design_storm(flood_city) -> None:
    """A scenario's rainfall event is the rain of a run without rain parameters, and part of its key (a new event
    is a new run); a Beijing 100-year design storm gives the formula's depth."""
    s = flood_city["store"]
    scenarios.create(s, "storm", scenario_id="storm")
    scenarios.add_edit(s, "storm", {"kind": "rainfall_event", "intensity_mm_h": 60.0, "duration_min": 20.0,
                                    "hyetograph": [20.0, 60.0, 40.0]})
    quick = {"resolution_m": 8.0, "duration_s": 1800.0}
    r = engine.run(s, "flood", quick, scenario="storm")
    assert r.summary["rain"].startswith("the scenario's 1 rainfall event")
    assert r.summary["rain_mm"] == pytest.approx((20 + 60 + 40) / 3 * 20 / 60, abs=1e-3)
    assert engine.run(s, "flood", quick, scenario="storm").id == r.id  # reused: same key
    scenarios.add_edit(s, "storm", {"kind": "rainfall_event", "intensity_mm_h": 30.0, "duration_min": 10.0})
    r2 = engine.run(s, "flood", quick, scenario="storm")
    assert r2.id != r.id and r2.summary["rain_mm"] == pytest.approx(r.summary["rain_mm"] + 5.0, abs=1e-3)
    d = engine.run(s, "flood", {**quick, "design_storm": "beijing", "return_period_years": 100})
    from twin.sim.flood import storms

    depth = storms.BEIJING.depth_mm(60.0, 100.0)
    assert d.summary["rain_mm"] == pytest.approx(depth, abs=1e-3) and 90 < depth < 100
    assert "Chicago design storm (beijing)" in d.summary["rain"]


def test_rain_area_and_drainage_areas(flood_city, tmp_path) -> None:
    """A rainfall event over the west half rains half the water (roofs' rain routed, none lost); sewers of a
    drainage polygon take water there only."""
    s = flood_city["store"]
    x0, y0, x1, y1 = flood_city["a"].summary["grid"]["bbox"]
    west = box(x0, y0, (x0 + x1) / 2, y1)
    scenarios.create(s, "west", scenario_id="west")
    scenarios.add_edit(s, "west", {"kind": "rainfall_event", "intensity_mm_h": 60.0, "duration_min": 10.0,
                                   "area": mapping(west)})
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4548"}}
    (tmp_path / "sewers.geojson").write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": [
        {"type": "Feature", "properties": {"mm_h": 30}, "geometry": mapping(west)}]}))
    r = engine.run(s, "flood", {"resolution_m": 8.0, "duration_s": 1200.0,
                                "drainage": f"{tmp_path / 'sewers.geojson'}"}, scenario="west")
    mb = r.summary["mass_balance"]
    full = 0.010 * (x1 - x0) * (y1 - y0)  # 10 mm over the whole domain
    assert mb["rain_m3"] == pytest.approx(full / 2, rel=0.02)
    assert mb["drainage_m3"] > 0.05 * mb["rain_m3"] and abs(mb["error_pct"]) < 1e-6
    depth, t = _raster(s, r, "max-depth")
    east = np.zeros(depth.shape, bool)
    east[:, depth.shape[1] // 2 + 10:] = True
    assert np.nanmax(depth[east]) < np.nanmax(depth[~east])  # the east got only what ran over from the west
