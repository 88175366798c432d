"""Ground sunlight hours on real terrain (Old Town Alexandria, VA: 2 m lidar DSM, 84 footprints; see
../shared/data/terrain_alexandria/SOURCE.md) from the simulator's ray caster against a plain horizon-angle
computation on the DSM raster.

The simulator's side takes the DSM as its surface (buildings and trees as they were measured), meshed the way the
simulator meshes a DTM (:func:`twin.sim.scene.load_terrain`), and casts Embree rays from each ground cell toward the
sun. The reference marches along the sun's azimuth from the cell centre in 0.75 m steps over the raster, takes the
largest elevation angle of the DSM profile (the raster read as a surface through its cell corners, bilinearly:
nearest-cell sampling would make every roof edge a cliff one cell further out than any mesh through the corners
puts it, and disagreed on 39 % of cells), and calls the cell lit when the sun is higher. Both at 15-minute steps
on 大寒日 2026, 8:00-16:00 true solar time, on a sample of non-building cells."""

from __future__ import annotations

import json

import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize

from tests.conftest import shared_data
from twin.geo.crs import transform_xy
from twin.sim import sunlight as S
from twin.sim.scene import load_terrain

STEP_MIN = 15.0
N_CELLS = 1500


def _corner_surface(dsm: np.ndarray):
    """The DSM as a continuous surface: heights at the cell corners (the mean of the up to four cells that meet
    there), interpolated bilinearly; so a building's edge is a one-cell ramp, as in any mesh through the corners."""
    from scipy.interpolate import RegularGridInterpolator

    p = np.pad(dsm, 1, mode="edge")
    nodes = 0.25 * (p[:-1, :-1] + p[:-1, 1:] + p[1:, :-1] + p[1:, 1:])
    h, w = nodes.shape
    return RegularGridInterpolator((np.arange(h), np.arange(w)), nodes, bounds_error=False, fill_value=-np.inf)


def _horizon_lit(dsm: np.ndarray, transform, x0: np.ndarray, y0: np.ndarray, dirs: np.ndarray, up: np.ndarray,
                 step_m: float = 0.75) -> np.ndarray:
    """(cells, steps): the sun above the largest elevation angle of the DSM profile along its azimuth, marching
    ``step_m`` at a time from (x0, y0) to the raster's edge."""
    surface = _corner_surface(dsm)
    cell = transform.a

    def z_at(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # corner-grid coordinates: row = (top - y) / cell
        return surface(np.stack([(transform.f - y) / cell, (x - transform.c) / cell], axis=-1))

    z0 = z_at(x0, y0) + S.GROUND_OFFSET_M
    lowest = np.min(dirs[up, 2] / np.hypot(dirs[up, 0], dirs[up, 1]))  # no profile point farther can rise above
    reach = (np.nanmax(dsm) - z0.min()) / lowest
    dist = np.arange(step_m, min(reach, np.hypot(*dsm.shape) * cell) + step_m, step_m)
    lit = np.zeros((len(x0), len(dirs)), bool)
    for j in np.flatnonzero(up):
        horiz = np.hypot(dirs[j, 0], dirs[j, 1])
        ux, uy, tan_e = dirs[j, 0] / horiz, dirs[j, 1] / horiz, dirs[j, 2] / horiz
        z = z_at(x0[:, None] + ux * dist[None, :], y0[:, None] + uy * dist[None, :])
        lit[:, j] = tan_e > np.max((z - z0[:, None]) / dist[None, :], axis=1)  # tangent of the horizon angle
    return lit


def test_ground_hours_match_a_horizon_computation_on_the_dsm():
    folder = shared_data("terrain_alexandria")
    with rasterio.open(folder / "dsm.tif") as src:
        dsm = src.read(1, masked=True).astype(np.float64).filled(np.nan)
        transform, crs = src.transform, str(src.crs)
    feats = json.loads((folder / "buildings.geojson").read_text())["features"]
    polys = []
    for f in feats:
        g = shapely.geometry.shape(f["geometry"])
        polys.append(shapely.transform(g, lambda xy: np.column_stack(transform_xy(xy[:, 0], xy[:, 1], "EPSG:4326",
                                                                                    crs))))
    footprint = rasterize([(p, 1) for p in polys], out_shape=dsm.shape, transform=transform, fill=0,
                          dtype="uint8").astype(bool)
    with rasterio.open(folder / "hag.tif") as src:
        hag = src.read(1)
    assert 0.05 < footprint.mean() < 0.5  # the footprints landed on the raster (CRS84 → UTM 18N)
    assert np.median(hag[footprint]) > 5
    # ground cells: off the 84 footprints and on bare ground (the raster holds more buildings than the footprint
    # file, and trees): height above ground under 0.5 m
    ok = ~footprint & np.isfinite(dsm) & (hag < 0.5)
    rng = np.random.default_rng(11)
    rows, cols = np.nonzero(ok)
    pick = rng.choice(len(rows), N_CELLS, replace=False)
    rows, cols = rows[pick], cols[pick]

    terrain = load_terrain(folder / "dsm.tif")
    x = transform.c + (cols + 0.5) * transform.a
    y = transform.f - (rows + 0.5) * transform.a
    lon, lat = transform_xy(np.array([x.mean()]), np.array([y.mean()]), crs, "EPSG:4326")
    path = S.sun_path("2026-01-20", 8, 16, STEP_MIN, float(lat[0]), float(lon[0]), crs)
    assert path.up.all()

    z = terrain.height_at(np.column_stack([x, y]))
    pts = np.column_stack([x, y, z])
    normals = np.tile([0.0, 0.0, 1.0], (len(pts), 1))
    lit, rays = S.lit_matrix(terrain.occluder, pts, normals, path.dirs, path.up, S.GROUND_OFFSET_M)
    hours, _ = S.segment_hours(lit, path.minutes, 0.0)

    ref_lit = _horizon_lit(dsm, transform, x, y, path.dirs, path.up)
    ref_hours, _ = S.segment_hours(ref_lit, path.minutes, 0.0)

    assert rays == len(pts) * len(path.times)
    agree = np.abs(hours - ref_hours) <= STEP_MIN / 60 + 1e-9
    assert agree.mean() >= 0.95, f"{agree.mean():.3f} of cells within one step"
    # a real mix: cells in the shade of the buildings for part of the day, and open ones
    assert (ref_hours < 4).mean() > 0.1 and (ref_hours > 7.5).mean() > 0.1
    assert abs(np.mean(hours) - np.mean(ref_hours)) < 0.1
