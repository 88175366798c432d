"""The sunlight simulator: GB 50180 table and parameter errors, shadows and hours against closed forms computed from
sun.py's positions, Embree against trimesh's pure-Python intersector, true solar time against clock time, and the
engine path (tables, layer, file, reuse, an incremental rerun equal to a full one)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import shapely
import trimesh

from data_models import Building, Solid
from tests.conftest import make_buildings, square
from twin.layers.registry import Layers
from twin.sim import engine, gb50180, sun
from twin.sim import sunlight as S
from twin.sim.raycast import Occluder, merge
from twin.sim.scene import building_geom, extrude, solid_mesh
from twin.sim.windows import window_points
from twin.store import ASSETS, Store

BEIJING = (39.9, 116.4)
CRS = "EPSG:4548"


# ------------------------------------------------------------------------------------------------ parameters
@pytest.mark.parametrize(("zone", "pop", "day", "hours"), [
    ("I", 60, "dahan", 2), ("II", 2185, "dahan", 2), ("III", 50, "dahan", 2), ("VII", 49.9, "dahan", 3),
    ("II", 10, "dahan", 3), ("IV", 500, "dahan", 3), ("IV", 20, "dongzhi", 1), ("V", 900, "dongzhi", 1),
    ("VI", 5, "dongzhi", 1),
])
def test_gb50180_table(zone, pop, day, hours):
    r = gb50180.requirement(zone, pop)
    assert (r.day, r.hours) == (day, hours)
    assert (r.start_tst, r.end_tst) == ((8.0, 16.0) if day == "dahan" else (9.0, 15.0))
    p = S.resolve(S.Parameters(climate_zone=zone, city_population_10k=pop))
    days = sun.standard_days(2026)
    assert p.date == (days.dahan if day == "dahan" else days.dongzhi)
    assert (p.hours, p.start_tst, p.end_tst) == (hours, r.start_tst, r.end_tst)


def test_defaults_are_beijing_and_overrides_apply():
    r = S.resolve(S.Parameters())
    assert (r.day_kind, r.date, r.hours, r.start_tst, r.end_tst) == ("dahan", dt.date(2026, 1, 20), 2.0, 8.0, 16.0)
    r = S.resolve(S.Parameters(standard_day="dongzhi", year=2026))
    assert (r.date, r.start_tst, r.end_tst) == (dt.date(2026, 12, 22), 9.0, 15.0)  # 冬至 2026 falls on 12-22
    r = S.resolve(S.Parameters(date="2025-03-01", required_hours=1.5, window_start_tst=9, window_end_tst=15.5))
    assert (r.date, r.hours, r.start_tst, r.end_tst) == (dt.date(2025, 3, 1), 1.5, 9.0, 15.5)


@pytest.mark.parametrize(("params", "name"), [
    ({"step_min": 0}, "step_min"), ({"step_min": -1}, "step_min"), ({"step_min": 61}, "step_min"),
    ({"date": "2026-02-30"}, "date"), ({"window_start_tst": 16, "window_end_tst": 9}, "window_start_tst"),
    ({"window_start_tst": 12, "window_end_tst": 12}, "window_start_tst"), ({"year": 1800}, "year"),
    ({"climate_zone": "VIII"}, "climate_zone"), ({"lat": 40}, "lat"), ({"ground_cell_m": 0}, "ground_cell_m"),
])
def test_bad_parameters_name_the_parameter(params, name):
    with pytest.raises(engine.BadParameters, match=name):
        engine.parameters(engine.get("sunlight"), params)


def test_polar_night_is_an_error_naming_lat(tmp_path):
    s = Store.init(tmp_path / "s")
    s.commit(make_buildings(1), message="one")
    with pytest.raises(engine.BadParameters, match="lat: .*polar night"):
        engine.run(s, "sunlight", {"lat": 80.0, "lon": 116.4, "step_min": 30, "ground": False})


# ------------------------------------------------------------------------------------------------ shadows
def _box(x0=0.0, y0=0.0, size=10.0, h=20.0, z0=0.0) -> Occluder:
    v, f = extrude([shapely.box(x0, y0, x0 + size, y0 + size)], z0, z0 + h)
    return Occluder(v, f)


def test_shadow_length_is_height_over_tan_elevation():
    """A thin 20 m pole: a ground point just inside its predicted shadow tip is shaded, just beyond it lit."""
    h, half = 20.0, 0.1
    occ = _box(-half, -half, 2 * half, h)
    path = S.sun_path("2026-01-20", 8, 16, 15, *BEIJING)
    tips = sun.shadow_vectors(90 - path.elevation, np.degrees(np.arctan2(path.dirs[:, 0], path.dirs[:, 1])))
    unit = tips / np.linalg.norm(tips, axis=1, keepdims=True)
    z0 = S.GROUND_OFFSET_M
    length = (h - z0) / np.tan(np.radians(path.elevation))
    up = np.tile([0.0, 0.0, 1.0], (len(unit), 1))
    inside = np.column_stack([unit * (length - 0.3)[:, None], np.full(len(unit), z0)])
    outside = np.column_stack([unit * (length + 0.3)[:, None], np.full(len(unit), z0)])
    assert occ.occluded(inside, path.dirs).all()
    assert not occ.occluded(outside, path.dirs).any()
    assert not occ.occluded(inside + up * (h + 1), path.dirs).any()  # above the pole: nothing in the way
    assert (length > 30).all() and (length < 200).all()  # winter sun: long shadows


def _closed_form_lit(p: np.ndarray, normal: np.ndarray, times: np.ndarray, box: tuple, h: float) -> np.ndarray:
    """Slab test of the ray toward the sun against the box, in plain geometry: lit when the sun is up, in front
    and the horizontal line to the sun misses the footprint or clears its top."""
    pos = sun.solar_position(times, *BEIJING)
    d = sun.sun_vectors(pos.zenith, pos.azimuth)
    horiz = np.hypot(d[:, 0], d[:, 1])
    u = d[:, :2] / horiz[:, None]
    tan_e = d[:, 2] / horiz
    with np.errstate(divide="ignore", invalid="ignore"):
        t0s, t1s = [], []
        for k, (lo, hi) in enumerate([(box[0], box[2]), (box[1], box[3])]):
            a, b = (lo - p[k]) / u[:, k], (hi - p[k]) / u[:, k]
            t0s.append(np.minimum(a, b))
            t1s.append(np.maximum(a, b))
    t0, t1 = np.maximum(*t0s), np.minimum(*t1s)
    enter = np.maximum(t0, 0.0)
    blocked = (t1 > enter) & (p[2] + enter * tan_e < h)
    return (pos.elevation > 0) & (d @ normal > 0) & ~blocked


@pytest.mark.parametrize(("point", "normal"), [((5.0, 25.0, 0.9), (0.0, -1.0, 0.0)),
                                               ((-8.0, 30.0, 3.9), (0.0, -1.0, 0.0)),
                                               ((20.0, 28.0, 0.05), (0.0, 0.0, 1.0))])
def test_hours_north_of_a_box_match_the_closed_form(point, normal):
    """Sun hours of a point north of a 10 × 10 × 20 m box: the ray caster at 5-minute steps against the slab test
    evaluated every 10 s; within one step."""
    h = 20.0
    occ = _box(h=h)
    p, n = np.array(point), np.array(normal)
    path = S.sun_path("2026-01-20", 8, 16, 5, *BEIJING)
    lit, rays = S.lit_matrix(occ, p[None, :], n[None, :], path.dirs, path.up, 0.0)
    cum, cont = S.segment_hours(lit, path.minutes, 0.0)
    fine = sun.clock_from_true_solar("2026-01-20", 8 + (np.arange(2880) + 0.5) / 360.0, BEIJING[1])
    ref = _closed_form_lit(p, n, fine, (0, 0, 10, 10), h)
    ref_hours = ref.sum() * 10 / 3600
    assert abs(cum[0] - ref_hours) <= 5 / 60 + 1e-9
    assert 0 < ref_hours < 8  # the box does shade the point for a while, and does not shade it all day
    assert 0 < rays <= len(path.times)


def test_segments_count_cumulative_and_continuous_hours():
    lit = np.array([[1, 1, 0, 1, 0, 0, 1, 1, 1, 1], [0] * 10, [1] * 10], bool)
    cum, cont = S.segment_hours(lit, np.full(10, 2.0), min_segment_min=4.0)
    np.testing.assert_allclose(cum * 60, [4 + 8, 0, 20])  # the lone 2-minute segment does not count
    np.testing.assert_allclose(cont * 60, [8, 0, 20])


def test_true_solar_time_not_clock_time():
    """Beijing, 大寒日: true solar time runs ~25 min behind Beijing time. An unobstructed east façade gets sun from
    the window's start until true noon: 4 h in true solar time, ~4.4 h if the window were taken in clock time."""
    day, step = "2026-01-20", 1.0
    occ = Occluder(np.zeros((0, 3)), np.zeros((0, 3), np.int64))
    tst = S.sun_path(day, 8, 16, step, *BEIJING, CRS)
    noon = sun.clock_from_true_solar(day, [12.0], BEIJING[1])[0]
    offset_min = (noon - np.datetime64(f"{day}T04:00:00")) / np.timedelta64(60, "s")
    assert 24.5 < offset_min < 26.0  # 12:00 true solar time is about 12:25 Beijing time
    # 8:00-16:00 Beijing time (UTC+8) is 0:00-8:00 UTC; step middles as in the simulator
    clock_times = np.datetime64(f"{day}T00:00:30", "us") + np.arange(480) * np.timedelta64(60, "s")
    pos = sun.solar_position(clock_times, *BEIJING)
    north = float(sun.true_north_bearing(CRS, BEIJING[1], BEIJING[0]))
    clock_dirs = sun.sun_vectors(pos.zenith, pos.azimuth, north)
    pts = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    normals = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])  # grid east and west; grid north is 0.4° off true
    lit_t, _ = S.lit_matrix(occ, pts, normals, tst.dirs, tst.up, 0.0)
    lit_c, _ = S.lit_matrix(occ, pts, normals, clock_dirs, pos.elevation > 0, 0.0)
    h_t = S.segment_hours(lit_t, tst.minutes, 0)[0]
    h_c = S.segment_hours(lit_c, np.ones(480), 0)[0]
    np.testing.assert_allclose(h_t, [4.0, 4.0], atol=2 * step / 60)  # (a 0.4° grid rotation is ~1.6 min)
    assert h_c[0] - h_t[0] > 0.35 and h_t[1] - h_c[1] > 0.35  # the clock window is shifted by ~25 min


# ------------------------------------------------------------------------------------------------ ray casting
def _small_city() -> tuple[list, Occluder, trimesh.Trimesh]:
    feats = [
        {"id": "a", "geometry": square(0, 0, 12), "height": 18.0, "use": "residential"},
        {"id": "b", "geometry": square(0, 30, 12), "height": 30.0, "use": "Residential"},
        {"id": "c", "geometry": {"type": "Polygon", "coordinates": [[[25, 0], [45, 0], [45, 8], [33, 8], [33, 20],
                                                                     [25, 20], [25, 0]]]},
         "height": 24.0, "attributes": {"use": "residential"}},
        {"id": "d", "geometry": square(-30, 10, 8), "height": 40.0, "use": "office",
         "attributes": {"ground_z": 2.0}},
    ]
    gs = [building_geom(f, None, 3.0) for f in feats]
    v, f, _ = merge([(g.vertices, g.faces) for g in gs])
    return gs, Occluder(v, f), trimesh.Trimesh(v, f, process=False)


class _EveryTriangle:
    """A broad phase for trimesh's ray_triangle_id that offers every triangle to every ray (pure brute force; the
    rtree package it would otherwise build one with is not installed)."""

    def __init__(self, mesh: trimesh.Trimesh) -> None:
        self.bounds = np.asarray(mesh.bounds).ravel()
        self.n = len(mesh.faces)

    def intersection(self, bounds) -> range:
        return range(self.n)


def _brute_force_any(mesh: trimesh.Trimesh, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """trimesh's pure-Python ray/triangle test (plane intersection and barycentric coordinates) on every pair."""
    _, ray, _ = trimesh.ray.ray_triangle.ray_triangle_id(mesh.triangles, o, d, tree=_EveryTriangle(mesh),
                                                         multiple_hits=False)
    hit = np.zeros(len(o), bool)
    hit[ray] = True
    return hit


def test_embree_agrees_with_trimesh_brute_force():
    gs, occ, mesh = _small_city()
    w = window_points(gs, 3.0, 3.0, 0.9)
    path = S.sun_path("2026-01-20", 8, 16, 20, *BEIJING)
    rng = np.random.default_rng(5)
    i = rng.integers(0, len(w), 3000)
    j = rng.integers(0, len(path.times), 3000)
    o = w.xyz[i] + w.normal[i] * S.WINDOW_OFFSET_M
    d = path.dirs[j]
    ref = _brute_force_any(mesh, o, d)
    got = occ.occluded(o, d)
    assert 0.1 < ref.mean() < 0.9  # a real mix of hits and misses
    np.testing.assert_array_equal(got, ref)
    # random rays in all directions from the ground too
    o2 = np.column_stack([rng.uniform(-40, 60, 2000), rng.uniform(-20, 60, 2000), np.full(2000, 0.05)])
    d2 = rng.normal(size=(2000, 3))
    d2[:, 2] = np.abs(d2[:, 2])
    d2 /= np.linalg.norm(d2, axis=1, keepdims=True)
    inside = shapely.contains_xy(shapely.union_all([p for g in gs for p in g.polygons]), o2[:, 0], o2[:, 1])
    o2, d2 = o2[~inside], d2[~inside]
    np.testing.assert_array_equal(occ.occluded(o2, d2), _brute_force_any(mesh, o2, d2))


def test_scene_geometry_windows_and_solids():
    gs, _, mesh = _small_city()
    a, b, c, d = gs
    assert (a.base_z, a.height, a.storeys, a.residential) == (0.0, 18.0, 6, True)
    assert b.residential and not d.residential and d.base_z == 2.0
    # walls and a roof: the lateral area and the roof area of the L-shaped footprint
    fp = c.polygons[0]
    area = trimesh.Trimesh(c.vertices, c.faces, process=False).area
    assert area == pytest.approx(fp.length * 24.0 + fp.area)
    w = window_points(gs, 3.0, 3.0, 0.9)
    assert set(np.unique(w.building)) == {0, 1, 2}  # the office has no windows
    wa = w.take(np.flatnonzero(w.building == 0))
    assert len(wa) == 4 * 4 * 6  # 12 m façades: 4 points each, 6 storeys
    np.testing.assert_allclose(sorted(set(np.round(wa.xyz[:, 2], 6))), 0.9 + 3 * np.arange(6))
    assert sorted(set(np.round(wa.azimuth))) == [0, 90, 180, 270]
    south = wa.take(np.flatnonzero(np.round(wa.azimuth) == 180))
    np.testing.assert_allclose(sorted(set(south.xyz[:, 0])), [1.5, 4.5, 7.5, 10.5])
    np.testing.assert_allclose(south.xyz[:, 1], 0.0)
    # a LoD2.2 solid wins over the footprint: a 10 × 10 house with walls to 6 m and a gable to 9 m
    solid = Solid(vertices=[[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0], [0, 0, 6], [10, 0, 6], [10, 10, 6],
                            [0, 10, 6], [0, 5, 9], [10, 5, 9]],
                  boundaries=[[[[0, 3, 2, 1]], [[0, 1, 5, 4]], [[1, 2, 6, 9, 5]], [[2, 3, 7, 6]], [[3, 0, 4, 8, 7]],
                               [[4, 5, 9, 8]], [[6, 7, 8, 9]]]])
    house = Building(id="h", geometry=square(0, 0, 10), height=9.0, use="residential", lods={"2.2": solid})
    g = building_geom(house.model_dump(mode="json"), None, 3.0)
    assert g.source == "lod2.2" and g.storeys == 3 and g.base_z == 0.0
    v, f = solid_mesh(solid.model_dump(mode="json"))
    tm = trimesh.Trimesh(v, f, process=False)
    slope = np.hypot(5, 3) * 10
    assert tm.area == pytest.approx(100 + 2 * 60 + 2 * (60 + 15) + 2 * slope)
    assert abs(tm.volume) == pytest.approx(600 + 150)  # a closed solid: the box plus the prism


def test_party_walls_have_no_windows():
    feats = [{"id": "l", "geometry": square(0, 0, 10), "height": 9.0, "use": "residential"},
             {"id": "r", "geometry": square(10, 0, 10), "height": 9.0, "use": "residential"}]
    gs = [building_geom(f, None, 3.0) for f in feats]
    w = window_points(gs, 2.5, 3.0, 0.9)
    assert len(w) == 2 * 3 * 4 * 3  # three free façades × 4 points × 3 storeys each
    assert not np.any(np.isclose(w.xyz[:, 0], 10.0))


# ------------------------------------------------------------------------------------------------ the engine
PARAMS = {"step_min": 15, "ground_cell_m": 4, "ground_margin_m": 20, "min_segment_min": 0}


def _sorted(t: pa.Table, keys: list[str]) -> pa.Table:
    return t.drop_columns(["run_id"]).sort_by([(k, "ascending") for k in keys])


def test_engine_run_reuse_and_incremental_equals_full(tmp_path):
    s = Store.init(tmp_path / "s")
    bs = make_buildings(9, spacing=25.0)
    s.commit(bs, message="nine")
    r1 = engine.run(s, "sunlight", PARAMS)
    assert r1.status.value == "succeeded" and r1.summary["mode"] == "full"
    win = engine.result_table(s, r1, "sunlight_windows")
    bld = engine.result_table(s, r1, "sunlight_buildings")
    assert win.num_rows == r1.summary["windows"] > 0 and bld.num_rows == 9
    assert set(win["entity_id"].to_pylist()) == {b.id for b in bs}
    assert r1.summary["rays_cast"] > 0 and r1.summary["rays_per_s"] > 0
    # the southern row sees open sky to the south: its south ground-floor windows get sun, so it passes
    south_row = {b.id for b in bs[:3]}
    passes = dict(zip(bld["entity_id"].to_pylist(), bld["passes"].to_pylist(), strict=True))
    assert all(passes[i] for i in south_row)
    cum = np.asarray(win["hours_cumulative"])
    assert (cum >= 0).all() and (cum <= 8).all() and cum.max() > 4 and cum.min() == 0  # north faces: none
    np.testing.assert_array_equal(np.asarray(win["compliant"]), cum >= 2.0)
    layers = {sp.name for sp in Layers(s).list("main")}
    assert "sunlight-ground-hours" in layers
    vals = Layers(s).query("sunlight-ground-hours", res=11)
    assert vals.num_rows > 0 and 0 <= min(vals["value"].to_pylist()) and max(vals["value"].to_pylist()) <= 8
    asset = s.get(f"{r1.id}-ground-hours", collection=ASSETS)
    with rasterio.open(s.asset_path(asset)) as src:
        g1 = src.read(1, masked=True)
        assert src.crs is not None and g1.mask.any() and (~g1.mask).sum() == r1.summary["ground_cells"]

    assert engine.run(s, "sunlight", PARAMS).id == r1.id  # same inputs: reused

    s.create_branch("taller")
    s.commit([bs[4].model_copy(update={"height": 58.0})], message="taller middle", branch="taller")
    inc = engine.run(s, "sunlight", PARAMS, branch="taller")
    full = engine.run(s, "sunlight", PARAMS, branch="taller", reuse=False)
    assert inc.summary["mode"] == "incremental" and inc.reused_from == r1.id and full.summary["mode"] == "full"
    assert inc.summary["recomputed_windows"] < full.summary["recomputed_windows"] == full.summary["windows"]
    assert inc.summary["recomputed_ground_cells"] < full.summary["ground_cells"]
    for name, keys in (("sunlight_windows", ["entity_id", "window_id"]), ("sunlight_buildings", ["entity_id"])):
        a = _sorted(engine.result_table(s, inc, name), keys)
        b = _sorted(engine.result_table(s, full, name), keys)
        assert a.equals(b), name
    before = _sorted(engine.result_table(s, r1, "sunlight_windows"), ["entity_id", "window_id"])
    assert not before.equals(_sorted(engine.result_table(s, full, "sunlight_windows"), ["entity_id", "window_id"]))
    grids = []
    for r in (inc, full):
        with rasterio.open(s.asset_path(s.get(f"{r.id}-ground-hours", "taller", collection=ASSETS))) as src:
            grids.append(src.read(1))
    np.testing.assert_array_equal(grids[0], grids[1])
