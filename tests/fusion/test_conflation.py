"""Footprint conflation on the demo city: cadastre in the store vs a perturbed "OSM-like" copy derived here.

The copy is shifted 0.5-1.5 m, simplified, misses some buildings, merges two neighbours into one footprint, splits one
building in two and adds a few sheds. The ground truth of the demo city says which buildings exist.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely import affinity

from data_models import Building, Provenance
from twin.fusion.conflation import conflate, priority_of
from twin.pipeline.ingest import ingest_paths
from twin.store import Query, Store

OSM = "src-osm-extract"
PRIORITY = {"src-cadastre": 10, "osm-ingest": 5}
OSM_TIME = datetime(2024, 6, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def city_dir(city) -> Path:
    """The folder of the session's small demo city."""
    return city["dir"]


def _osm_like(cadastre: list[dict], seed: int = 42) -> tuple[list[Building], dict]:
    """A perturbed copy of the cadastre, and what was done to it."""
    rng = np.random.default_rng(seed)
    feats = sorted(cadastre, key=lambda f: f["properties"]["cadastre_id"])
    geoms = np.array([shapely.geometry.shape(f["geometry"]) for f in feats], dtype=object)
    ids = [f"bldg-{f['properties']['cadastre_id']}" for f in feats]
    simple = np.array([len(g.interiors) == 0 and len(g.exterior.coords) == 5 for g in geoms])
    # the merge: the closest pair of plain rectangles (1-10 m apart)
    tree = shapely.STRtree(geoms)
    a_idx, b_idx = tree.query(geoms, predicate="dwithin", distance=10.0)
    pairs = [(int(a), int(b)) for a, b in zip(a_idx, b_idx, strict=True) if a < b and simple[a] and simple[b]
             and shapely.distance(geoms[a], geoms[b]) > 1.0]
    ma, mb = min(pairs, key=lambda p: shapely.distance(geoms[p[0]], geoms[p[1]]))
    gap = shapely.distance(geoms[ma], geoms[mb]) / 2 + 0.2
    merged = shapely.union(geoms[ma].buffer(gap, join_style="mitre"), geoms[mb].buffer(gap, join_style="mitre"))
    merged = merged.buffer(-gap, join_style="mitre")
    # the split: the largest plain rectangle not in the merge, cut across its long axis
    areas = shapely.area(geoms)
    cand = [i for i in np.argsort(-areas) if simple[i] and i not in (ma, mb)]
    sp = int(cand[0])
    rect = shapely.minimum_rotated_rectangle(geoms[sp])
    c = np.asarray(rect.exterior.coords)[:4]
    e1, e2 = c[1] - c[0], c[2] - c[1]
    long_ = e1 if np.hypot(*e1) >= np.hypot(*e2) else e2
    mid = np.asarray(geoms[sp].centroid.coords[0])
    normal = np.array([-long_[1], long_[0]]) / np.hypot(*long_)
    cut = shapely.LineString([mid - normal * 500, mid + normal * 500]).buffer(0.3, cap_style="flat")
    halves = list(shapely.get_parts(shapely.difference(geoms[sp], cut)))
    assert len(halves) == 2
    # missing ones: 5 % of the rest
    rest = [i for i in range(len(geoms)) if i not in (ma, mb, sp)]
    missing = set(rng.choice(rest, size=len(rest) // 20, replace=False).tolist())
    prov = [Provenance(source_asset_id=OSM, acquired=OSM_TIME, method="osm-ingest", confidence=0.8)]
    out: list[Building] = []
    differing_use: list[str] = []
    n = 9_000_000
    for i in rest:
        if i in missing:
            continue
        ang = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.5, 1.5)
        g = affinity.translate(geoms[i], dist * np.cos(ang), dist * np.sin(ang)).simplify(0.5)
        use = feats[i]["properties"]["use"]
        if rng.random() < 0.1:
            use = "retail" if use != "retail" else "office"
            differing_use.append(ids[i])
        n += 1
        out.append(Building(id=f"osm-way-{n}", geometry=shapely.geometry.mapping(g), use=use,
                            storeys=int(rng.integers(2, 20)), attributes={"osm_id": n, "building": use},
                            provenance=prov))
    for k, g in enumerate([merged, *halves]):
        out.append(Building(id=f"osm-way-{8_000_000 + k}", geometry=shapely.geometry.mapping(g), provenance=prov))
    # sheds far (> 8 m) from every building
    union = shapely.union_all(geoms).buffer(8.0)
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    sheds = []
    while len(sheds) < 3:
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        shed = shapely.box(x, y, x + 3, y + 4)
        if not shed.intersects(union) and not any(shed.distance(s) < 8 for s in sheds):
            sheds.append(shed)
    for k, s in enumerate(sheds):
        out.append(Building(id=f"osm-way-{7_000_000 + k}", geometry=shapely.geometry.mapping(s), use="shed",
                            provenance=prov))
    facts = {"merged": sorted([ids[ma], ids[mb]]), "split": ids[sp], "missing": sorted(ids[i] for i in missing),
             "sheds": [f"osm-way-{7_000_000 + k}" for k in range(3)], "differing_use": differing_use,
             "halves": ["osm-way-8000001", "osm-way-8000002"], "merged_id": "osm-way-8000000"}
    return out, facts


@pytest.fixture(scope="module")
def scenario(city_dir: Path, tmp_path_factory) -> dict:
    store = Store.init(tmp_path_factory.mktemp("conflation_store") / "store", crs="EPSG:4548")
    cad = city_dir / "sources" / "cadastre" / "buildings.geojson"
    ingest_paths(store, [cad], acquired="2024-06-01T00:00:00+08:00")
    cadastre = json.loads(cad.read_text())["features"]
    incoming, facts = _osm_like(cadastre)
    existing = store.features(query=Query(types=["Building"]))
    r1 = conflate(existing, incoming, source_priority=PRIORITY)
    store.commit(r1.put, message="conflate OSM")
    return {"store": store, "incoming": incoming, "facts": facts, "r1": r1, "existing": existing, "n": len(cadastre),
            "truth": json.loads((city_dir / "truth" / "buildings.geojson").read_text())["features"]}


def test_every_true_building_is_exactly_one_entity(scenario: dict) -> None:
    store, facts = scenario["store"], scenario["facts"]
    rows = store.features(query=Query(types=["Building"]))
    assert len(rows) == scenario["n"] + len(facts["sheds"]) and scenario["n"] > 300
    geoms = np.array([shapely.geometry.shape(r["geometry"]) for r in rows], dtype=object)
    tree = shapely.STRtree(geoms)
    truth = [f for f in scenario["truth"] if f["properties"]["status"] != "demolished"]
    assert len(truth) == scenario["n"]
    for f in truth:
        t = shapely.geometry.shape(f["geometry"])
        hits = tree.query(t, predicate="intersects")
        good = [j for j in hits if shapely.area(shapely.intersection(t, geoms[j])) / shapely.area(
            shapely.union(t, geoms[j])) >= 0.5]
        assert len(good) == 1, f["properties"]["cadastre_id"]
        assert rows[good[0]]["id"] == f"bldg-{f['properties']['cadastre_id']}"
    assert {r["id"] for r in rows if r["id"].startswith("osm-")} == set(facts["sheds"])


def test_merge_and_split_are_reported_not_hidden(scenario: dict) -> None:
    r1, facts, store = scenario["r1"], scenario["facts"], scenario["store"]
    merges = [c for c in r1.conflicts if c["kind"] == "merge"]
    splits = [c for c in r1.conflicts if c["kind"] == "split"]
    assert len(merges) == 1 and merges[0]["existing"] == facts["merged"] and merges[0]["incoming"] == [
        facts["merged_id"]]
    assert len(splits) == 1 and splits[0]["existing"] == [facts["split"]] and splits[0]["incoming"] == facts["halves"]
    for eid in facts["merged"]:
        e = store.get(eid)
        assert "conflation:merge" in e["quality"]["errors"]
        assert [c["kind"] for c in e["attributes"]["conflicts"]] == ["merge"]
    e = store.get(facts["split"])
    assert "conflation:split" in e["quality"]["errors"] and e["attributes"]["conflicts"][0]["source"] == OSM
    for i in facts["halves"] + [facts["merged_id"]]:
        assert store.get(i) is None and i not in r1.matches
    assert not [c for c in r1.conflicts if c["kind"] in ("contained", "overlap")]


def test_matches_keep_ids_and_fuse_attributes_with_provenance(scenario: dict) -> None:
    r1, facts, store, existing = scenario["r1"], scenario["facts"], scenario["store"], scenario["existing"]
    n_matched = scenario["n"] - 3 - len(facts["missing"])
    assert len(r1.matches) == n_matched and len(set(r1.matches.values())) == n_matched
    assert all(v.startswith("bldg-") for v in r1.matches.values())
    assert sorted(r1.unmatched_existing) == facts["missing"]
    assert sorted(r1.created) == facts["sheds"]
    before = {e["id"]: e for e in existing}
    inc = {b.id: b for b in scenario["incoming"]}
    for osm_id, eid in list(r1.matches.items())[:60]:
        e = store.get(eid)
        # footprint from the cadastre (higher priority), exactly
        assert shapely.equals_exact(shapely.geometry.shape(e["geometry"]),
                                    shapely.geometry.shape(before[eid]["geometry"]), 1e-9)
        geo = [p for p in e["provenance"] if p["attribute"] == "geometry"]
        assert geo[0]["source_asset_id"] == "src-cadastre-buildings-geojson"
        assert geo[1]["source_asset_id"] == OSM and geo[1]["note"].startswith("iou=")
        # storeys only OSM has: taken, with OSM provenance
        assert e["storeys"] == inc[osm_id].storeys
        st = [p for p in e["provenance"] if p["attribute"] == "storeys"]
        assert [p["source_asset_id"] for p in st] == [OSM] and st[0]["confidence"] == 0.8
        use = [p["source_asset_id"] for p in e["provenance"] if p["attribute"] == "use"]
        assert e["use"] == before[eid]["use"]  # the cadastre wins disagreements
        if eid in facts["differing_use"]:
            assert use == ["src-cadastre-buildings-geojson"]
            assert "conflation:attribute" in e["quality"]["errors"]
        else:
            assert use == ["src-cadastre-buildings-geojson", OSM]  # agreement: both sources listed
    attr = [c for c in r1.conflicts if c["kind"] == "attribute"]
    assert sorted(c["entity"] for c in attr) == sorted(facts["differing_use"])


def test_second_run_is_stable(scenario: dict) -> None:
    store, r1 = scenario["store"], scenario["r1"]
    head = store.head()
    ids_before = {r["id"] for r in store.features(query=Query(types=["Building"]))}
    r2 = conflate(store.features(query=Query(types=["Building"])), scenario["incoming"], source_priority=PRIORITY)
    assert r2.put == [] and r2.created == []
    sheds = set(scenario["facts"]["sheds"])
    assert {k: v for k, v in r2.matches.items() if v not in sheds} == r1.matches
    assert all(r2.matches[s] == s for s in sheds)
    assert sorted(c["kind"] for c in r2.conflicts if c["kind"] != "attribute") == ["merge", "split"]
    assert store.commit(r2.put, message="again") is None and store.head() == head
    assert {r["id"] for r in store.features(query=Query(types=["Building"]))} == ids_before


def test_priority_decides_the_footprint_but_not_the_id(scenario: dict) -> None:
    existing = scenario["existing"]
    flipped = conflate(existing, scenario["incoming"], source_priority={"src-cadastre": 1, "osm-ingest": 9})
    inc = {b.id: b for b in scenario["incoming"]}
    put = {b.id: b for b in flipped.put}
    for osm_id, eid in list(flipped.matches.items())[:30]:
        b = put[eid]
        assert b.geometry == inc[osm_id].geometry
        assert b.provenance_for("geometry")[0].source_asset_id == OSM


def _b(bid: str, x: float, asset: str, when: datetime | None, box: tuple | None = None, **kw) -> Building:
    return Building(id=bid, geometry=shapely.geometry.mapping(shapely.box(*(box or (x, 0, x + 10, 8)))),
                    provenance=[Provenance(source_asset_id=asset, acquired=when, method="m-" + asset)], **kw)


def test_recency_breaks_priority_ties_and_unknown_sources_rank_zero() -> None:
    old, new = datetime(2020, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)
    ex = [_b("a", 0, "survey-2020", old, height=10.0, storeys=3).model_dump(mode="json")]
    r = conflate(ex, [_b("x", 0.3, "survey-2024", new, height=14.0, storeys=3)], source_priority={})
    (b,) = r.put
    assert b.id == "a" and b.height == 14.0  # same priority: the newer survey wins
    assert b.provenance_for("height")[0].source_asset_id == "survey-2024"
    # agreeing values list both surveys, the higher-ranked (newer) first
    assert [p.source_asset_id for p in b.provenance_for("storeys")] == ["survey-2024", "survey-2020"]
    assert b.geometry.to_shapely().bounds[0] == 0.3  # ... and gives the footprint
    r = conflate(ex, [_b("x", 0.3, "survey-2024", new, height=14.0)], source_priority={"survey-2020": 1})
    assert r.put[0].height == 10.0 and r.put[0].geometry.to_shapely().bounds[0] == 0.0
    assert priority_of(Provenance(source_asset_id="src-lidar-x", method="outline"), {"src-lidar": 3}) == 3
    assert priority_of(Provenance(source_asset_id="q", method="outline"), {"src-lidar": 3}) == 0


def test_contained_and_overlapping_incoming() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    ex = [_b("big", 0, "cad", t, box=(0, 0, 40, 30)).model_dump(mode="json")]
    annex = _b("annex", 0, "osm", t, box=(2, 2, 6, 6))
    edge = _b("edge", 0, "osm", t, box=(38, 10, 50, 20))
    r = conflate(ex, [annex, edge], source_priority={"cad": 2})
    kinds = {c["kind"]: c for c in r.conflicts}
    assert kinds["contained"]["incoming"] == ["annex"] and kinds["overlap"]["incoming"] == ["edge"]
    assert r.created == ["edge"]
    put = {b.id: b for b in r.put}
    assert put["big"].quality.errors == ["conflation:contained"]
    assert put["edge"].quality.errors == ["conflation:overlap"]
    # ids that collide with an unrelated existing entity get a stable suffix
    far = _b("big", 500, "osm", t)
    r2 = conflate(ex, [far], source_priority={})
    assert r2.created[0].startswith("big-") and r2.created == conflate(ex, [far]).created
