"""Scenarios (twin.sim.scenarios): records, edits with their derived data, replay on removal, diff.

Small synthetic stores: 16 residential buildings, two land covers and a road, with the standard layers published by
the real `twin build` layers step; one test copies the built demo town to check the incremental tile rebuild.
"""

from __future__ import annotations

import json
import shutil

import h3
import numpy as np
import pyarrow.compute as pc
import pytest
import shapely
from shapely.geometry import shape

from data_models import LandCover, Road
from tests.conftest import make_buildings, square
from twin.errors import BadInput, Conflict, NotFound
from twin.layers import buildings as blayers
from twin.layers.registry import TABLE, Layers
from twin.pipeline.build import build
from twin.sim import scenarios as S
from twin.store import SCENARIOS, Query, Store

X0, Y0 = 448_000.0, 4_428_000.0
NEW = {"id": "tower", "type": "Building", "geometry": square(X0 + 300, Y0 + 300, 20.0), "height": 45.0,
       "use": "residential", "roof_type": "gable"}


@pytest.fixture
def town(store: Store) -> Store:
    """A small town with the building and land-cover layers of `twin build`."""
    covers = [LandCover(id="lc-grass", geometry=square(X0 - 100, Y0 - 100, 600), cover_class="grass"),
              LandCover(id="lc-road", geometry=square(X0 + 500, Y0 - 100, 100), cover_class="road")]
    road = Road(id="road-1", geometry={"type": "LineString", "coordinates": [[X0, Y0 - 5], [X0 + 100, Y0 - 5]]})
    store.commit([*make_buildings(16), *covers, road], message="town")
    build(store, only=["layers"])
    return store


def _state(store: Store) -> tuple[int, str, dict[str, str]]:
    """What a failed edit must leave as it was: the latest version, the store's files, the scenario branches."""
    return (max((c.version for c in store.log()), default=0), store.content_digest(),
            {b.name: b.base_version for b in store.branches()})


def _finest(store: Store, name: str, branch: str, as_of=None) -> dict[int, float]:
    """cell -> value of a layer at its finest resolution."""
    t = Layers(store).query(name, branch=branch, as_of=as_of)
    return dict(zip(t["cell"].to_pylist(), t["value"].to_pylist(), strict=True))


def _full_volume(store: Store, branch: str) -> dict[int, float]:
    """The building-volume layer recomputed from every standing building of a branch."""
    bs = [b for b in store.features(branch, query=Query(types=["Building"])) if blayers.is_standing(b)]
    g = np.asarray([shape(b["geometry"]) for b in bs], dtype=object)
    t = blayers.volume_values(g, np.asarray([b["height"] for b in bs]), store.crs)
    return dict(zip(t["cell"].to_pylist(), t["value"].to_pylist(), strict=True))


# ---------------------------------------------------------------------------------------------------- records
def test_create_list_get(town: Store) -> None:
    head = town.head()
    sc = S.create(town, "New tower", description="a tower by the park", author="ana")
    assert (sc.id, sc.branch, sc.base_branch, sc.base_version, sc.edits) == \
        ("new-tower", "scenario-new-tower", "main", head, [])
    assert town.branch(sc.branch).base_version == head
    assert S.get(town, "new-tower") == sc
    again = S.create(town, "New tower")  # same name: the next free id
    assert again.id == "new-tower-2"
    assert [s.id for s in S.list_scenarios(town)] == ["new-tower", "new-tower-2"]
    rows = town.features(sc.branch, query=Query(collection=SCENARIOS))
    assert [r["id"] for r in rows] == ["new-tower"]  # the record lives on its own branch only
    with pytest.raises(NotFound, match="'nope'.*new-tower, new-tower-2"):
        S.get(town, "nope")


def test_create_at_a_version(town: Store) -> None:
    first = town.log()[-1].version
    sc = S.create(town, "old", base_version=first)
    assert sc.base_version == first
    assert sorted(town.digests(sc.branch)) == sorted(town.digests("main", first))


def test_create_refusals_leave_the_store_unchanged(town: Store, monkeypatch) -> None:
    S.create(town, "a", scenario_id="taken")
    before = _state(town)
    with pytest.raises(Conflict, match="'taken' exists"):
        S.create(town, "b", scenario_id="taken")
    with pytest.raises(NotFound, match="'nobranch'"):
        S.create(town, "b", base_branch="nobranch")
    with pytest.raises(BadInput, match="id: bad scenario id 'Bad Id'"):
        S.create(town, "b", scenario_id="Bad Id")
    with pytest.raises(BadInput, match="name"):
        S.create(town, "  ")
    assert _state(town) == before
    monkeypatch.setenv("TWIN_FAULT", "after_segment:raise")  # the record's commit fails
    with pytest.raises(RuntimeError, match="injected fault"):
        S.create(town, "c", scenario_id="fails")
    monkeypatch.delenv("TWIN_FAULT")
    assert "scenario-fails" not in {b.name for b in town.branches()}  # no branch left behind
    assert _state(town)[2] == before[2]


# ---------------------------------------------------------------------------------------------------- buildings
def test_add_building_gets_solids_and_layers(town: Store) -> None:
    sc = S.create(town, "tower")
    base_volume = _finest(town, "building-volume", "main")
    sc = S.add_edit(town, sc.id, {"kind": "add_building", "building": NEW})
    assert [e.kind for e in sc.edits] == ["add_building"]
    assert S.get(town, sc.id).edits == sc.edits  # the record was committed with the edit
    b = town.get("tower", sc.branch)
    assert town.get("tower", "main") is None
    assert sorted(b["lods"]) == ["1.2", "1.3", "2.2"]
    fp = shape(NEW["geometry"])
    for lod in ("1.2", "1.3"):
        v = np.asarray(b["lods"][lod]["vertices"])
        assert np.allclose(v[:, :2].min(axis=0), fp.bounds[:2]) and np.allclose(v[:, :2].max(axis=0), fp.bounds[2:])
        assert (v[:, 2].min(), v[:, 2].max()) == (0.0, 45.0)
    roof = np.asarray(b["lods"]["2.2"]["vertices"])
    assert roof[:, 2].max() == pytest.approx(45.0) and len(b["lods"]["2.2"]["boundaries"][0]) == 7  # gable: 7 faces
    assert "lod22_parametric_roof" in b["quality"]["flags"]
    # the layers changed only in the cells the footprint overlaps, and equal a full recompute everywhere
    touched = set(blayers.touched_cells([fp], town.crs).tolist())
    after = _finest(town, "building-volume", sc.branch)
    changed = {c for c in after.keys() | base_volume.keys() if after.get(c) != base_volume.get(c)}
    assert changed and changed <= touched
    full = _full_volume(town, sc.branch)
    assert after.keys() == full.keys()
    assert all(after[c] == pytest.approx(full[c], rel=1e-9, abs=1e-6) for c in full)
    assert sum(after.values()) - sum(base_volume.values()) == pytest.approx(20 * 20 * 45.0, rel=1e-6)
    coarse = Layers(town).query("building-volume", branch=sc.branch, res=8)  # rolled up
    assert sum(coarse["value"].to_pylist()) == pytest.approx(sum(after.values()), rel=1e-9)
    people = _finest(town, "population", sc.branch)
    assert sum(people.values()) - sum(_finest(town, "population", "main").values()) == \
        pytest.approx(400 * 15 / blayers.M2_PER_PERSON, rel=1e-6)


def test_roof_types_and_ground(town: Store) -> None:
    sc = S.create(town, "roofs")
    ell = {"type": "Polygon", "coordinates": [[[X0 + 400, Y0], [X0 + 440, Y0], [X0 + 440, Y0 + 10], [X0 + 410, Y0 + 10],
                                               [X0 + 410, Y0 + 40], [X0 + 400, Y0 + 40], [X0 + 400, Y0]]]}
    for bid, geom, roof in (("flat", square(X0 + 300, Y0, 10), "flat"), ("ell", ell, "hip"),
                            ("noroof", square(X0 + 330, Y0, 10), None)):
        body = {"id": bid, "type": "Building", "geometry": geom, "height": 12.0, "attributes": {"ground_z": 40.0}}
        S.add_edit(town, sc.id, {"kind": "add_building", "building": {**body, **({"roof_type": roof} if roof else {})}})
    flat, ell_b, plain = (town.get(i, sc.branch) for i in ("flat", "ell", "noroof"))
    assert flat["lods"]["2.2"] == flat["lods"]["1.2"]  # flat roof: the LoD1 prism
    assert "2.2" not in ell_b["lods"] and {"lod22_none", "complex_footprint"} <= set(ell_b["quality"]["flags"])
    assert sorted(plain["lods"]) == ["1.2", "1.3"]
    z = np.asarray(flat["lods"]["1.2"]["vertices"])[:, 2]
    assert (z.min(), z.max()) == (40.0, 52.0) and flat["quality"]["base_z_source"] == "attributes.ground_z"


def test_ground_from_the_dtm_product(town: Store, tmp_path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    from data_models import SourceAsset

    path = tmp_path / "dtm.tif"
    with rasterio.open(path, "w", driver="GTiff", width=100, height=100, count=1, dtype="float32",
                       crs=town.crs, transform=from_origin(X0 - 100, Y0 + 500, 10, 10)) as ds:
        ds.write(np.full((1, 100, 100), 37.5, np.float32))
    town.commit([SourceAsset(id="prd-dtm", kind="product", path=str(path), crs=town.crs, checksum="0" * 64,
                             size_bytes=path.stat().st_size)], message="dtm")
    sc = S.create(town, "on terrain")
    S.add_edit(town, sc.id, {"kind": "add_building", "building": NEW})
    b = town.get("tower", sc.branch)
    z = np.asarray(b["lods"]["1.2"]["vertices"])[:, 2]
    assert (z.min(), z.max()) == (37.5, 82.5) and b["quality"]["base_z_source"] == "prd-dtm"


def test_modify_and_remove_building(town: Store) -> None:
    sc = S.create(town, "changes")
    base_volume = _finest(town, "building-volume", "main")
    S.add_edit(town, sc.id, {"kind": "modify_building", "building_id": "b000003", "height": 40.0, "use": "office"})
    b = town.get("b000003", sc.branch)
    assert (b["height"], b["use"]) == (40.0, "office")
    assert np.asarray(b["lods"]["1.2"]["vertices"])[:, 2].max() == 40.0
    S.add_edit(town, sc.id, {"kind": "remove_building", "building_id": "b000004"})
    assert town.get("b000004", sc.branch) is None and town.get("b000004", "main") is not None
    after = _finest(town, "building-volume", sc.branch)
    full = _full_volume(town, sc.branch)
    assert after.keys() == full.keys() and all(after[c] == pytest.approx(full[c], abs=1e-6) for c in full)
    assert sum(after.values()) - sum(base_volume.values()) == pytest.approx(100 * (40 - 13) - 100 * 14, rel=1e-6)
    d = S.diff(town, sc.id)
    rows = {r["id"]: r for r in d.entity_rows()}
    assert rows["b000003"]["change"] == "changed"
    assert rows["b000003"]["changes"]["height"] == {"base": 13.0, "scenario": 40.0}
    assert rows["b000003"]["changes"]["use"] == {"base": "residential", "scenario": "office"}
    assert rows["b000004"]["change"] == "removed" and set(rows) == {"b000003", "b000004"}


def test_edits_that_cannot_apply_leave_the_store_unchanged(town: Store) -> None:
    sc = S.create(town, "refusals")
    S.add_edit(town, sc.id, {"kind": "remove_building", "building_id": "b000001"})
    S.add_edit(town, sc.id, {"kind": "close_road", "road_id": "road-1"})
    before = _state(town)
    cases = [
        ({"kind": "add_building", "building": {**NEW, "id": "b000002"}}, Conflict, "'b000002' exists already"),
        ({"kind": "remove_building", "building_id": "b000001"}, Conflict, "'b000001' is already removed"),
        ({"kind": "remove_building", "building_id": "ghost"}, NotFound, "'ghost'"),
        ({"kind": "modify_building", "building_id": "ghost", "height": 3}, NotFound, "'ghost'"),
        ({"kind": "modify_building", "building_id": "road-1", "height": 3}, BadInput, "'road-1' is a Road"),
        ({"kind": "close_road", "road_id": "road-1"}, Conflict, "closed already"),
        ({"kind": "close_road", "road_id": "nowhere"}, NotFound, "'nowhere'"),
        ({"kind": "modify_building", "building_id": "b000002"}, BadInput, "changes nothing"),
        ({"kind": "teleport"}, BadInput, "edit teleport"),
        ({"kind": "change_land_cover", "new_class": "grass", "geometry": square(X0, Y0, 20_000)}, BadInput,
         "too large"),
        ({"kind": "add_building", "building": {**NEW, "height": 5000}}, BadInput, "above 1000 m"),
        ({"kind": "add_building", "building": {**NEW, "height": -1}}, BadInput, "height"),
        ({"kind": "change_land_cover", "new_class": "grass", "geometry": {"type": "Polygon", "coordinates": [
            [[X0, Y0], [X0 + 10, Y0 + 10], [X0 + 10, Y0], [X0, Y0 + 10], [X0, Y0]]]}}, BadInput, "invalid"),
    ]
    for edit, error, message in cases:
        with pytest.raises(error, match=message):
            S.add_edit(town, sc.id, edit)
    with pytest.raises(NotFound, match="'ghost-scenario'"):
        S.add_edit(town, "ghost-scenario", {"kind": "remove_building", "building_id": "b000005"})
    with pytest.raises(NotFound, match="no edit 7"):
        S.remove_edit(town, sc.id, 7)
    assert _state(town) == before
    assert len(S.get(town, sc.id).edits) == 2


# ---------------------------------------------------------------------------------------------------- replay
def test_removing_edits_restores_the_base_exactly(town: Store) -> None:
    sc = S.create(town, "undo")
    base_digests = town.digests("main", sc.base_version)
    S.add_edit(town, sc.id, {"kind": "add_building", "building": NEW})
    S.add_edit(town, sc.id, {"kind": "remove_building", "building_id": "b000005"})
    S.add_edit(town, sc.id, {"kind": "change_land_cover", "geometry": square(X0, Y0, 200), "new_class": "impervious"})
    two = town.digests(sc.branch)
    sc = S.remove_edit(town, sc.id, 1)  # the remaining two replayed from the base
    assert [e.kind for e in sc.edits] == ["add_building", "change_land_cover"]
    now = town.digests(sc.branch)
    assert town.get("b000005", sc.branch) is not None and now["b000005"] == base_digests["b000005"]
    assert {k for k in now.keys() | two.keys() if now.get(k) != two.get(k)} == {"b000005"}
    full = _full_volume(town, sc.branch)
    after = _finest(town, "building-volume", sc.branch)
    assert all(after[c] == pytest.approx(full[c], abs=1e-6) for c in full) and after.keys() == full.keys()
    S.remove_edit(town, sc.id, 1)
    sc = S.remove_edit(town, sc.id, 0)
    assert sc.edits == [] and S.get(town, sc.id).edits == []
    assert town.digests(sc.branch) == base_digests  # every town object as on the base
    for name in ("building-volume", "population", "impervious-fraction"):
        for res in (8, 11):
            t = Layers(town).query(name, res=res, branch=sc.branch, compare_branch="main",
                                   compare_as_of=sc.base_version)
            assert t.num_rows and pc.all(pc.equal(t["value"], t["other"])).as_py(), (name, res)
    assert S.diff(town, sc.id).entities == [] and S.diff(town, sc.id).cell_table().num_rows == 0


# ---------------------------------------------------------------------------------------------------- others
def test_change_land_cover(town: Store) -> None:
    sc = S.create(town, "paving")
    area = square(X0, Y0, 200)
    base = _finest(town, "impervious-fraction", "main")
    S.add_edit(town, sc.id, {"kind": "change_land_cover", "geometry": area, "new_class": "impervious"})
    grass = shape(town.get("lc-grass", sc.branch)["geometry"])
    assert grass.intersection(shape(area)).area < 1e-6  # cut out of the area
    assert grass.area == pytest.approx(600 * 600 - 200 * 200)
    [new] = [c for c in town.features(sc.branch, query=Query(types=["LandCover"]))
             if c["attributes"].get("scenario") == sc.id]
    assert new["id"].startswith("lc-paving-")
    assert new["cover_class"] == "impervious" and shape(new["geometry"]).equals(shape(area))
    after = _finest(town, "impervious-fraction", sc.branch)
    hexes = {c: shapely.Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(h3.int_to_str(c))]) for c in after}
    from twin.geo.crs import reproject

    area_ll = reproject(shape(area), town.crs, "EPSG:4326")
    inside = [c for c, h in hexes.items() if area_ll.contains(h)]
    outside = [c for c, h in hexes.items() if not area_ll.intersects(h)]
    assert inside and all(after[c] == pytest.approx(1.0) and base[c] == pytest.approx(0.0) for c in inside)
    assert all(after[c] == base[c] for c in outside)  # untouched cells keep their values


def test_close_road_and_recorded_events(town: Store) -> None:
    sc = S.create(town, "storm")
    S.add_edit(town, sc.id, {"kind": "close_road", "road_id": "road-1"})
    r = town.get("road-1", sc.branch)
    assert r["closed"] is True and r["attributes"]["closed"] is True and town.get("road-1", "main")["closed"] is False
    before = town.digests(sc.branch)
    sc = S.add_edit(town, sc.id, {"kind": "rainfall_event", "intensity_mm_h": 60, "duration_min": 30})
    sc = S.add_edit(town, sc.id, {"kind": "demand_change", "zone_id": "z1", "factor": 1.2})
    assert town.digests(sc.branch) == before  # recorded only
    assert [e.kind for e in S.get(town, sc.id).edits] == ["close_road", "rainfall_event", "demand_change"]
    assert S.get(town, sc.id).edits[1].total_depth_mm() == pytest.approx(30.0)


def test_diff_rows_and_geojson(town: Store) -> None:
    sc = S.create(town, "diffs")
    S.add_edit(town, sc.id, {"kind": "add_building", "building": NEW})
    S.add_edit(town, sc.id, {"kind": "modify_building", "building_id": "b000000", "roof_type": "flat",
                             "storeys": 4})
    d = S.diff(town, sc.id)
    rows = {r["id"]: r for r in d.entity_rows()}
    assert rows["tower"]["change"] == "added"
    assert rows["b000000"]["changes"]["roof_type"] == {"base": "unknown", "scenario": "flat"}
    assert rows["b000000"]["changes"]["storeys"] == {"base": None, "scenario": 4}
    assert "lods" in rows["b000000"]["fields"]
    cells = d.cell_table()
    assert set(cells["layer"].to_pylist()) == {"building-volume", "population"}  # no land cover edit
    vol = cells.filter(pc.equal(cells["layer"], "building-volume"))
    assert sum(vol["difference"].to_pylist()) == pytest.approx(20 * 20 * 45.0, rel=1e-6)
    assert all(h3.is_valid_cell(c) and h3.get_resolution(c) == 11 for c in vol["cell"].to_pylist())
    gj = json.loads(json.dumps(d.to_geojson()))
    assert gj["type"] == "FeatureCollection"
    kinds = [f["properties"]["feature"] for f in gj["features"]]
    assert kinds.count("entity") == 2 and kinds.count("cell") == cells.num_rows
    tower = next(f for f in gj["features"] if f["id"] == "tower")
    poly = shapely.geometry.shape(tower["geometry"])
    assert poly.is_valid and 116 < poly.centroid.x < 118 and 39 < poly.centroid.y < 41  # WGS84 lon/lat
    for f in gj["features"]:
        if f["properties"]["feature"] == "cell":
            ring = f["geometry"]["coordinates"][0]
            assert ring[0] == ring[-1] and len(ring) >= 6
    csv = d.to_csv().splitlines()
    assert csv[0] == "kind,id,change,field,base,scenario,difference"
    assert "Building,b000000,changed,storeys,,4," in csv
    only = S.diff(town, sc.id, layers=["population"])
    assert set(only.cells) == {"population"}
    with pytest.raises(NotFound, match="'nope'"):
        S.diff(town, sc.id, layers=["nope"])


def test_layers_of_a_scenario_are_atomic_with_the_record(town: Store) -> None:
    sc = S.create(town, "atomic")
    S.add_edit(town, sc.id, {"kind": "add_building", "building": NEW})
    last = town.log(sc.branch)[0]
    changed = {(c["collection"], c["id"]) for c in town.changelog(last.version)}
    assert ("city", "tower") in changed and ("scenarios", sc.id) in changed
    assert "building-volume" in town.table_assets(TABLE, sc.branch, last.version)
    assert town.log(sc.branch)[1].version < last.version and len(town.log(sc.branch, with_base=False)) == 2


@pytest.mark.slow
def test_tiles_rebuilt_incrementally(built_city, tmp_path) -> None:
    from twin.pipeline import scenarios as P
    from twin.tiles.cache import TileCache

    root = tmp_path / "store"
    shutil.copytree(built_city["store"], root)
    s = Store(root)
    first = P.create(s, "tiles", tiles=TileCache(s))
    assert first.tiles is not None and first.tiles.encoded == first.tiles.tiles - first.tiles.reused
    some = s.features(first.scenario.branch, query=Query(types=["Building"], limit=1))[0]
    fp = shape(some["geometry"])
    x, y = fp.bounds[2] + 3, fp.bounds[1]
    building = {"id": "scn-new", "type": "Building", "geometry": square(x, y, 8.0), "height": 20.0}
    after = P.edit(s, "tiles", {"kind": "add_building", "building": building}, tiles=TileCache(s))
    assert after.tiles is not None and after.tiles.tiles >= first.tiles.tiles
    assert 1 <= after.tiles.encoded < after.tiles.tiles  # only the tiles showing the new building
    doc = json.loads((root / "tiles" / "buildings" / after.tiles.path.split("/")[-1]).read_text())
    assert doc["asset"]["tilesetVersion"] == f"{first.scenario.branch}@{after.version}"
