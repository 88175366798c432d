"""The sunlight simulator's fast paths give the answers of the plain ones: vectorised window points, the scene cache,
the reachable-subset scene of incremental reruns and forked casting."""

from __future__ import annotations

import numpy as np

from tests.conftest import make_buildings
from tests.sim.test_sunlight import BEIJING, PARAMS, _small_city, _sorted
from twin.sim import engine
from twin.sim import sunlight as S
from twin.sim.raycast import Occluder
from twin.sim.scene import building_geom, cache_dir
from twin.sim.windows import building_windows, concat, window_points
from twin.store import Store


def test_window_points_equal_the_per_building_ones():
    gs, _, _ = _small_city()
    gs.append(building_geom({"id": "e", "geometry": {"type": "MultiPolygon", "coordinates": [
        [[[60, 0], [70, 0], [70, 7], [60, 7], [60, 0]]], [[[80, 0], [90.2, 0], [85, 9], [80, 0]]]]},
        "height": 13.0, "storeys": 3, "use": "residential"}, None, 3.0))
    w = window_points(gs, 3.0, 3.0, 0.9)
    ref = concat([building_windows(b, i, 3.0, 3.0, 0.9) for i, b in enumerate(gs) if b.residential])
    assert len(w) == len(ref) > 0  # no party walls in this city
    for f in ("building", "window_id", "storey", "facade", "xyz", "normal"):
        np.testing.assert_array_equal(getattr(w, f), getattr(ref, f), err_msg=f)


def test_reachable_subset_answers_as_the_whole_scene():
    gs, near, _ = _small_city()
    far = near.vertices + [3000.0, 0.0, 0.0]  # the same city again 3 km east: out of reach
    occ = Occluder(np.concatenate([near.vertices, far]),
                   np.concatenate([near.faces, near.faces + len(near.vertices)]))
    w = window_points(gs, 3.0, 3.0, 0.9)
    path = S.sun_path("2026-01-20", 8, 16, 10, *BEIJING)
    sel = np.flatnonzero(w.building == 0)  # building a's windows
    min_e = float(np.degrees(np.arcsin(path.dirs[path.up, 2].min())))
    keep = S.reachable(occ, w.xyz[sel], min_e)
    assert keep[:len(near.faces)].any() and not keep[len(near.faces):].any()
    sub = occ.subset(keep)
    np.testing.assert_array_equal(sub.origin, occ.origin)
    full, _ = S.lit_matrix(occ, w.xyz[sel], w.normal[sel], path.dirs, path.up, S.WINDOW_OFFSET_M)
    part, _ = S.lit_matrix(sub, w.xyz[sel], w.normal[sel], path.dirs, path.up, S.WINDOW_OFFSET_M)
    np.testing.assert_array_equal(full, part)


def test_forked_cast_equals_in_process(monkeypatch):
    gs, occ, _ = _small_city()
    w = window_points(gs, 3.0, 3.0, 0.9)
    path = S.sun_path("2026-01-20", 8, 16, 1, *BEIJING)
    sh = S.Shared(occ, None, path.dirs, path.up, path.minutes, 5.0)
    one, rays1, _ = S.cast(sh, "hours", w.xyz, w.normal, S.WINDOW_OFFSET_M, 1)
    monkeypatch.setattr(S, "PARALLEL_MIN_RAYS", 0)
    monkeypatch.setattr(S, "CHUNK_RAYS", 2000)
    two, rays2, _ = S.cast(sh, "hours", w.xyz, w.normal, S.WINDOW_OFFSET_M, 2)
    assert rays1 == rays2 > 0
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


def test_scene_cache_serves_a_rerun_with_the_same_results(tmp_path, monkeypatch):
    s = Store.init(tmp_path / "s")
    bs = make_buildings(9, spacing=25.0)
    s.commit(bs, message="nine")
    params = {**PARAMS, "ground": False}
    r1 = engine.run(s, "sunlight", params)
    packs = list(cache_dir(s.root).glob("buildings-*.npz"))
    assert len(packs) == 1
    read = []
    real = S.building_geom
    monkeypatch.setattr(S, "building_geom", lambda f, *a: read.append(f["id"]) or real(f, *a))
    r2 = engine.run(s, "sunlight", params, reuse=False)
    assert read == []  # every building from the cache
    a = _sorted(engine.result_table(s, r1, "sunlight_windows"), ["entity_id", "window_id"])
    b = _sorted(engine.result_table(s, r2, "sunlight_windows"), ["entity_id", "window_id"])
    assert a.equals(b)
    s.create_branch("taller")
    s.commit([bs[4].model_copy(update={"height": 58.0})], message="taller middle", branch="taller")
    engine.run(s, "sunlight", params, branch="taller")
    assert read == [bs[4].id]  # only the changed building is triangulated (its old version is cached)
    monkeypatch.setenv("TWIN_SUNLIGHT_CACHE", "off")
    r3 = engine.run(s, "sunlight", params, reuse=False)
    assert _sorted(engine.result_table(s, r3, "sunlight_windows"), ["entity_id", "window_id"]).equals(a)


def test_occluder_local_queries_match_the_plain_ones():
    _, occ, _ = _small_city()
    rng = np.random.default_rng(3)
    o = rng.uniform(-40, 60, (500, 3))
    o[:, 2] = rng.uniform(0.1, 30, 500)
    d = rng.normal(size=(500, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    got = occ.occluded_local(occ.local(o), np.ascontiguousarray(d, np.float32))
    np.testing.assert_array_equal(got, occ.occluded(o, d))
    assert not Occluder(np.zeros((0, 3)), np.zeros((0, 3), np.int64)).prepare().occluded_local(
        np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)).any()
