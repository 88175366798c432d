"""The traffic simulator: the road graph of a real OSM city, runs on the demo city (closed road, demand changes)
and the TNTP study from the CLI."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TWIN, shared_data
from twin.errors import BadInput
from twin.sim import engine, scenarios
from twin.sim.traffic import network as rn
from twin.sim.traffic import tntp
from twin.store import Store


@pytest.fixture(scope="module")
def aguascalientes() -> list[dict]:
    from twin.sources.base import ReadContext
    from twin.sources.osm import read

    path = shared_data("osm") / "aguascalientes_osmnx.osm.pbf"
    got = read(ReadContext(path=path, store_crs="EPSG:6372", asset_id="src-osm"))
    return [e.model_dump(mode="json") for e in got.entities if e.type == "Road"]


def _undirected_length(net: rn.RoadNetwork) -> float:
    """Each stretch of road once, whichever directions it has."""
    seen = {}
    for k in range(len(net)):
        key = (min(net.init[k], net.term[k]), max(net.init[k], net.term[k]), round(float(net.length_m[k]), 3))
        seen[key] = net.length_m[k]
    return float(sum(seen.values()))


def test_osm_road_graph(aguascalientes: list[dict]) -> None:
    """SOURCE.md's checks on Aguascalientes: after cleaning one strongly connected component; shortest paths agree
    with networkx's Dijkstra on random pairs; before the component cut, the edges' length is the drivable roads'
    length within 1 %; footways and private roads are out; a one-way street has one direction only."""
    import networkx as nx
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra
    from shapely.geometry import shape

    net = rn.build(aguascalientes)
    g = net.graph()
    assert nx.number_strongly_connected_components(g) == 1 and g.number_of_nodes() == net.nodes > 500
    rep = net.report
    assert rep["left_out"]["class footway"] > 0 and rep["left_out"]["access=private"] > 0
    assert rep["dropped_junctions"] > 0 and rep["dropped_road_count"] > 0  # parts cut off by the extract's edge
    # shortest paths: the compiled search on the link arrays against networkx on the model
    order = np.lexsort((net.length_m, net.term, net.init))  # parallel links: the shorter (csr would add them)
    first = np.r_[True, (np.diff(net.init[order]) != 0) | (np.diff(net.term[order]) != 0)]
    k = order[first]
    m = csr_matrix((net.length_m[k], (net.init[k], net.term[k])), shape=(net.nodes, net.nodes))
    rng = np.random.default_rng(1)
    src = rng.choice(net.nodes, 20, replace=False)
    dst = rng.choice(net.nodes, 20, replace=False)
    ours = dijkstra(m, indices=src)
    simple = nx.DiGraph()
    for u, v, d in g.edges(data=True):  # parallel links: the shorter
        if not simple.has_edge(u, v) or simple[u][v]["length"] > d["length"]:
            simple.add_edge(u, v, length=d["length"])
    for i, s in enumerate(src):
        for t in dst:
            assert ours[i, t] == pytest.approx(nx.dijkstra_path_length(simple, int(s), int(t), "length"), rel=1e-9)
    # length: every drivable road's length is in the uncut graph once
    whole = rn.build(aguascalientes, largest_component=False)
    kept = [r for r in aguascalientes if rn._drivable(r, rn.class_defaults()) is None]
    roads_m = sum(shape(r["geometry"]).length for r in kept)
    assert _undirected_length(whole) == pytest.approx(roads_m, rel=0.01)
    assert whole.report["merged_pieces"] > 0  # turn-free junctions merged
    # one-way streets: one link per stretch
    oneway = {i for i, r in enumerate(net.road_ids) if next(x for x in aguascalientes if x["id"] == r).get("oneway")}
    one = [k for k in range(len(net)) if all(r in oneway for r, _, _ in net.pieces[k])]
    pairs = {(int(net.init[k]), int(net.term[k])) for k in range(len(net))}
    assert one and sum((int(net.term[k]), int(net.init[k])) in pairs for k in one) < 0.1 * len(one)


def test_crossings_are_junctions_unless_a_bridge() -> None:
    """Lines drawn without shared vertices meet where they cross at the same level; a bridge passes over."""
    def road(i: str, coords: list, **attrs) -> dict:
        return {"id": i, "road_class": "residential", "geometry": {"type": "LineString", "coordinates": coords},
                "attributes": attrs}

    flat = rn.build([road("a", [[0, 0], [200, 0]]), road("b", [[100, -100], [100, 100]])])
    assert flat.nodes == 5 and len(flat) == 8  # the crossing splits both streets: 4 stretches, 2 ways each
    bridge = rn.build([road("a", [[0, 0], [200, 0]]), road("b", [[100, -100], [100, 100]], bridge="yes")],
                      largest_component=False)
    assert bridge.nodes == 4 and len(bridge) == 4
    with pytest.raises(BadInput, match="no drivable roads"):
        rn.build([{**road("f", [[0, 0], [1, 1]]), "road_class": "footway"}])


@pytest.fixture(scope="module")
def traffic_store(built_city, tmp_path_factory) -> Store:
    root = tmp_path_factory.mktemp("traffic") / "store"
    shutil.copytree(built_city["store"], root)
    return Store(root)


PARAMS = {"hours": [8], "zone_res": 9}


def _roads(store: Store, run) -> dict[str, dict]:
    t = engine.result_table(store, run, "traffic_roads").to_pylist()
    return {r["entity_id"]: r for r in t}


def test_a_closed_road_sends_its_traffic_elsewhere(traffic_store: Store) -> None:
    """The analyst's question: close the busiest road on a scenario; it carries nothing, other roads carry more,
    and the hour's vehicle-hours do not fall; the comparison lists the change per road; the zones' trips add up."""
    s = traffic_store
    base = engine.run(s, "traffic", PARAMS)
    assert base.status.value == "succeeded" and set(base.tables) == {"traffic_roads", "traffic_zones"}
    roads = _roads(s, base)
    assert roads and all(r["hour"] == 8 for r in roads.values())
    busiest = max(roads.values(), key=lambda r: r["volume"])
    assert busiest["volume"] > 0 and busiest["time_s"] >= busiest["free_time_s"] > 0
    zones = engine.result_table(s, base, "traffic_zones").to_pylist()
    assert sum(z["trips_out"] for z in zones) == pytest.approx(base.summary["per_hour"][0]["trips"], rel=1e-6)
    assert base.summary["per_hour"][0]["gap"] <= 1e-6
    scenarios.create(s, "closed", scenario_id="closed")
    scenarios.add_edit(s, "closed", {"kind": "close_road", "road_id": busiest["entity_id"]})
    plan = engine.run(s, "traffic", PARAMS, scenario="closed")
    after = _roads(s, plan)
    assert busiest["entity_id"] not in after  # removed from the network: no row, no flow
    assert plan.summary["network"]["left_out"]["closed"] == 1
    assert plan.summary["vehicle_hours"] >= base.summary["vehicle_hours"] * 0.999
    c = engine.compare(s, base.id, plan.id).entities["traffic_roads"].to_pylist()
    by = {r["entity_id"]: r for r in c}
    assert by[busiest["entity_id"]]["status"] == "removed"
    assert max(r["volume_diff"] or 0 for r in c) > 0  # the traffic went elsewhere


def test_demand_scales(traffic_store: Store) -> None:
    """Demand × 0 gives zero volumes; × 2 raises the vehicle-hours by more than double (congestion); a
    demand_change edit over the whole city does the same as the factor."""
    s = traffic_store
    zero = engine.run(s, "traffic", {**PARAMS, "demand_factor": 0.0})
    one = engine.run(s, "traffic", PARAMS)
    two = engine.run(s, "traffic", {**PARAMS, "demand_factor": 2.0})
    assert all(r["volume"] == 0 for r in _roads(s, zero).values()) and zero.summary["vehicle_hours"] == 0
    assert two.summary["vehicle_hours"] > 2 * one.summary["vehicle_hours"] > 0
    x0, y0, x1, y1 = _roads_bbox(s)
    area = {"type": "Polygon", "coordinates": [[[x0 - 1e3, y0 - 1e3], [x1 + 1e3, y0 - 1e3], [x1 + 1e3, y1 + 1e3],
                                                [x0 - 1e3, y1 + 1e3], [x0 - 1e3, y0 - 1e3]]]}
    scenarios.create(s, "double", scenario_id="double")
    scenarios.add_edit(s, "double", {"kind": "demand_change", "geometry": area, "factor": np.sqrt(2.0)})
    edit = engine.run(s, "traffic", PARAMS, scenario="double")
    # trips between zones scale by the factor of both ends: √2 × √2
    assert edit.summary["trips_per_day"] == pytest.approx(two.summary["trips_per_day"], rel=1e-9)


def _roads_bbox(s: Store) -> tuple[float, float, float, float]:
    import shapely
    from shapely.geometry import shape

    from twin.store import Query

    geoms = [shape(r["geometry"]) for r in s.features("main", query=Query(types=["Road"]))]
    return tuple(shapely.total_bounds(np.asarray(geoms, dtype=object)))


def test_tntp_study_from_the_cli(tmp_path: Path) -> None:
    """`twin sim run traffic -p tntp_net=… -p tntp_trips=… -p gap=1e-6 --out DIR` with no store: link flows as
    CSV (init, term, volume, time) within 0.5 % of the best-known Sioux Falls flows, and the objective, gap and
    iterations as JSON."""
    folder = shared_data("traffic/SiouxFalls")
    out = tmp_path / "out"
    r = subprocess.run([TWIN, "sim", "run", "traffic", "-p", f"tntp_net={folder / 'SiouxFalls_net.tntp'}",
                        "-p", f"tntp_trips={folder / 'SiouxFalls_trips.tntp'}", "-p", "gap=1e-6", "--out",
                        str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = list(csv.DictReader((out / "traffic_links.csv").open()))
    assert {"init", "term", "volume", "time"} <= set(rows[0]) and len(rows) == 76
    ref = tntp.read_flow(folder / "SiouxFalls_flow.tntp")
    vol = np.array([float(x["volume"]) for x in rows])
    busy = ref["volume"] > 100
    assert np.abs(vol[busy] / ref["volume"][busy] - 1).max() < 0.005
    result = json.loads((out / "assignment.json").read_text())
    assert result["gap"] <= 1e-6 and result["iterations"] >= 1
    assert result["objective"] == pytest.approx(4_231_335.29, rel=1e-5)


def test_tntp_bad_input(tmp_path: Path) -> None:
    """Demand between zones with no path is reported (pairs and trips), never silently dropped; a trips file with
    zones the network lacks names the file and line; the two TNTP files go together."""
    folder = shared_data("traffic/Braess-Example")
    trips = tmp_path / "back_trips.tntp"
    trips.write_text("<NUMBER OF ZONES> 2\n<TOTAL OD FLOW> 9.0\n<END OF METADATA>\n\nOrigin 1\n 2 : 6.0;\n"
                     "Origin 2\n 1 : 3.0;\n")
    s = Store.init(tmp_path / "store", "EPSG:3857")
    from data_models import SourceKind
    from twin.catalog.assets import describe

    s.commit([describe(trips, SourceKind.product, {"role": "study input"}, acquired=None, classification="public")],
             message="study", author="t")
    r = engine.run(s, "traffic", {"tntp_net": str(folder / "Braess_net.tntp"), "tntp_trips": str(trips)})
    assert r.summary["trips"] == 9.0
    assert any("2→1" in w and "3 trips dropped" in w for w in r.summary["warnings"]), r.summary["warnings"]
    bad = tmp_path / "bad_trips.tntp"
    bad.write_text("<NUMBER OF ZONES> 2\n<END OF METADATA>\nOrigin 1\n 7 : 6.0;\n")
    with pytest.raises(BadInput, match=r"bad_trips.tntp line 4"):
        engine.run(s, "traffic", {"tntp_net": str(folder / "Braess_net.tntp"), "tntp_trips": str(bad)})
    with pytest.raises(engine.BadParameters, match="go together"):
        engine.run(s, "traffic", {"tntp_net": str(folder / "Braess_net.tntp")})


def test_flooded_roads_are_closed(traffic_store: Store) -> None:
    """Roads a flood run marks impassable are left out of the network (``flood_run``), and the run's key follows
    that flood run."""
    s = traffic_store
    flood = engine.run(s, "flood", {"rain_mm_h": 150, "rain_duration_min": 30, "duration_s": 2400,
                                    "resolution_m": 10.0, "impassable_m": 0.05})
    wet = {r["entity_id"] for r in engine.result_table(s, flood, "flood_roads").to_pylist() if r["impassable"]}
    assert wet
    run = engine.run(s, "traffic", {**PARAMS, "flood_run": flood.id})
    assert run.summary["flooded_roads"] == len(wet)
    assert not wet & set(_roads(s, run))  # no flow on a flooded road
    with pytest.raises(engine.BadParameters, match="not a flood run"):
        engine.run(s, "traffic", {**PARAMS, "flood_run": run.id})


def test_zones_from_a_polygon_file(traffic_store: Store, tmp_path: Path) -> None:
    """``zones=FILE:id=FIELD``: a user's two districts (GeoJSON, lon/lat) are the zones, named by their field."""
    from twin.geo.crs import transform_xy

    x0, y0, x1, y1 = _roads_bbox(traffic_store)
    xm = (x0 + x1) / 2
    feats = []
    for name, (a, b) in (("west", (x0 - 500, xm)), ("east", (xm, x1 + 500))):
        xs, ys = [a, b, b, a, a], [y0 - 500, y0 - 500, y1 + 500, y1 + 500, y0 - 500]
        lon, lat = transform_xy(np.array(xs), np.array(ys), traffic_store.crs, "EPSG:4326")
        feats.append({"type": "Feature", "properties": {"district": name},
                      "geometry": {"type": "Polygon", "coordinates": [list(map(list, zip(lon, lat, strict=True)))]}})
    path = tmp_path / "districts.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    run = engine.run(traffic_store, "traffic", {"hours": [8], "zones": f"{path}:id=district"})
    zones = engine.result_table(traffic_store, run, "traffic_zones").to_pylist()
    assert {z["entity_id"] for z in zones} == {"west", "east"} and run.summary["zones"] == 2
    assert all(z["trips_out"] > 0 and z["mean_time_min"] > 0 for z in zones)
    with pytest.raises(BadInput, match="no field 'name'"):
        engine.run(traffic_store, "traffic", {"hours": [8], "zones": f"{path}:id=name"})


@pytest.mark.parametrize("row, message", [
    ("1 9 1 100 50 0.02 1 0 0 1 ;", "line 6: link 1→9 has a node id outside 1..4"),
    ("1 4 1 100 -5 0.02 1 0 0 1 ;", "line 6: link 1→4 has a negative free-flow time"),
    ("1 4 -1 100 5 0.02 1 0 0 1 ;", "capacity ≤ 0"),
])
def test_tntp_bad_links_name_the_line(tmp_path: Path, row: str, message: str) -> None:
    """A link with a node out of range, a negative free-flow time or capacity: an error naming file and line."""
    path = tmp_path / "bad_net.tntp"
    path.write_text("<NUMBER OF ZONES> 2\n<NUMBER OF NODES> 4\n<FIRST THRU NODE> 1\n<END OF METADATA>\n"
                    f"1 3 1 100 5 0.02 1 0 0 1 ;\n{row}\n")
    with pytest.raises(BadInput, match=message):
        tntp.read_net(path)
