"""LoD1.2 / LoD1.3 reconstruction scored against the demo city's truth, and on real Delft AHN3 data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from tests.conftest import shared_data
from twin.demo.roofs import ROOF_CODES, local_uv, roof_height
from twin.reality3d.buildings import BuildingPoints, building_points
from twin.reality3d.lod1 import Lod1Result, reconstruct_lod1
from twin.reality3d.validity import validate_solid


@pytest.fixture(scope="session")
def lod1_city(city_buildings: dict) -> dict:
    """The demo city's buildings reconstructed once at LoD1.2/1.3."""
    return {**city_buildings, "results": [reconstruct_lod1(bp) for bp in city_buildings["points"]]}


def truth_p70_height(t: dict, step: float = 0.25) -> float:
    """70th percentile of the true roof height above ground, sampled on a grid over the parts' analytic roofs."""
    heights = []
    for p in t["parts"]:
        poly = shape(p["geometry"])
        minx, miny, maxx, maxy = poly.bounds
        gx, gy = np.meshgrid(np.arange(minx + step / 2, maxx, step), np.arange(miny + step / 2, maxy, step))
        gx, gy = gx.ravel(), gy.ravel()
        inside = shapely.contains_xy(poly, gx, gy)
        fr = p["frame"]
        u, v = local_uv(gx[inside], gy[inside], fr["cx"], fr["cy"], np.radians(fr["angle_deg"]))
        code = ROOF_CODES[p["roof_type"]]
        rise = p["ridge_height"] - p["eave_height"]
        heights.append(roof_height(u, v, fr["half_length"], fr["half_width"], code, p["eave_height"], rise))
    return float(np.percentile(np.concatenate(heights), 70))


def _flat_parts(t: dict) -> bool:
    return all(p["roof_type"] == "flat" for p in t["parts"])


def test_every_existing_building_is_reconstructed_and_valid(lod1_city: dict) -> None:
    res: list[Lod1Result] = lod1_city["results"]
    done = [r for r in res if "1.2" in r.lods]
    assert len(done) == len(res), [r.flags for r in res if "1.2" not in r.lods][:5]
    for r in done:
        assert set(r.lods) == {"1.2", "1.3"}
        assert r.quality.valid is True, r.quality.errors
        for solid in r.lods.values():
            ok, errors = validate_solid(solid)
            assert ok, errors
        assert set(r.quality.rmse) == {"1.2", "1.3"}
        assert r.quality.rmse["1.3"] <= r.quality.rmse["1.2"] + 1e-9
        assert r.quality.point_density > 5 and r.quality.nodata_fraction < 0.1


def test_lod12_heights_match_the_truth(lod1_city: dict) -> None:
    flat_err, p70_err = [], []
    for t, r in zip(lod1_city["truth"], lod1_city["results"], strict=True):
        p70_err.append(r.height - truth_p70_height(t))
        if t["roof_type"] == "flat":
            flat_err.append(r.height - t["roof_max_height"])
    flat_mae, p70_mae = float(np.median(np.abs(flat_err))), float(np.median(np.abs(p70_err)))
    print(f"\nLoD1.2 height median |error|: flat roofs vs roof_max_height {flat_mae:.3f} m (n={len(flat_err)}); "
          f"all roofs vs truth p70 roof height {p70_mae:.3f} m (n={len(p70_err)})")
    assert len(flat_err) >= 5
    assert flat_mae <= 0.3
    assert p70_mae <= 0.3


def test_lod13_splits_parts_of_different_heights_and_keeps_volume(lod1_city: dict) -> None:
    found, vol_err, multi = [], [], 0
    all_within = 0
    for t, r in zip(lod1_city["truth"], lod1_city["results"], strict=True):
        rel = r.volumes["1.3"] / t["volume_m3"] - 1
        all_within += abs(rel) <= 0.05
        if t["n_parts"] < 2 or not _flat_parts(t):
            continue
        multi += 1
        distinct = len({round(p["eave_height"] / 1.5) for p in t["parts"]})  # part heights ≥ ~1.5 m apart
        found.append((distinct, len(r.parts)))
        vol_err.append(rel)
    share = all_within / len(lod1_city["results"])
    print(f"\nflat multi-part buildings: {multi}; (distinct heights, LoD1.3 parts): {found}; "
          f"LoD1.3 volume errors {[round(v, 4) for v in vol_err]}; share of all buildings within 5 %: {share:.2f}")
    assert multi >= 3
    for distinct, parts in found:
        assert parts == distinct
    assert max(abs(v) for v in vol_err) <= 0.05


def test_too_few_points_are_flagged_not_invented() -> None:
    fp = shapely.box(0, 0, 10, 10)
    e = np.zeros(0)
    r = reconstruct_lod1(BuildingPoints(fp, e, e, e, e, e, e))
    assert r.lods == {} and "too_few_points" in r.flags and r.roof_z is None
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 10, 5), rng.uniform(0, 10, 5)
    r = reconstruct_lod1(BuildingPoints(fp, x, y, np.full(5, 20.0), e, e, e))
    assert r.lods == {} and "too_few_points" in r.flags
    x, y = rng.uniform(0, 10, 500), rng.uniform(0, 10, 500)
    r = reconstruct_lod1(BuildingPoints(fp, x, y, np.full(500, 20.0), e, e, e))
    assert r.lods == {} and "no_ground_points" in r.flags


def test_synthetic_podium_and_tower_split_at_lod13() -> None:
    rng = np.random.default_rng(1)
    fp = shapely.box(0, 0, 40, 30)
    tower = shapely.box(5, 5, 20, 20)
    x, y = rng.uniform(0, 40, 12_000), rng.uniform(0, 30, 12_000)
    z = np.where(shapely.contains_xy(tower, x, y), 60.0, 12.0) + rng.normal(0, 0.04, len(x))
    ring = fp.buffer(4).difference(fp)
    gx, gy = rng.uniform(-4, 44, 3000), rng.uniform(-4, 34, 3000)
    k = shapely.contains_xy(ring, gx, gy)
    r = reconstruct_lod1(BuildingPoints(fp, x, y, z, gx[k], gy[k], rng.normal(2.0, 0.03, k.sum())))
    assert r.quality.valid, r.quality.errors
    assert len(r.parts) == 2
    truth = tower.area * 58 + (fp.area - tower.area) * 10
    assert r.volumes["1.3"] == pytest.approx(truth, rel=0.03)
    assert r.quality.rmse["1.3"] < r.quality.rmse["1.2"] / 3  # only points at the stepped border miss


def test_delft_strip_buildings(tmp_path: Path) -> None:
    import pyogrio

    root = shared_data("lidar/delft_ahn3")
    laz = root / "delft_ahn3_part2.laz"
    df = pyogrio.read_dataframe(root / "bgt" / "bgt_pand.sqlite")
    geoms = [g for g in df.geometry]
    bps = building_points(geoms, [laz], crs="EPSG:28992", las_crs="EPSG:28992")
    res = [reconstruct_lod1(bp) for bp in bps]
    strip = shapely.box(85000.0, 447412.8, 85072.3, 447641.3)
    covered = [i for i, g in enumerate(geoms) if strip.buffer(-0.5).contains(g)]
    outside = [i for i, g in enumerate(geoms) if not strip.intersects(g)]
    assert covered and outside
    for i in covered:
        r = res[i]
        assert set(r.lods) == {"1.2", "1.3"}, (i, r.flags)
        assert r.quality.valid, r.quality.errors
        assert 2.0 < r.height < 40.0
        assert r.quality.rmse["1.2"] >= 0 and r.quality.point_density > 1
    for i in outside:
        assert res[i].lods == {} and "too_few_points" in res[i].flags and "no_points" in res[i].flags
    split = sum(len(res[i].parts) > 1 for i in covered)
    print(f"\nDelft: {len(covered)} covered footprints reconstructed, {split} split at LoD1.3; "
          f"{len(outside)} without points flagged; heights "
          f"{[round(res[i].height, 1) for i in covered]}")
