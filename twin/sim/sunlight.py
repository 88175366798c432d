"""The sunlight-hours (日照) simulator: hours of sun at every window of every residential building and on the ground,
on a standard day, judged against GB 50180-2018 Table 4.0.9. See docs/sunlight.md.

The sun (:mod:`twin.sim.sun`) is sampled at the middle of every ``step_min`` step of the effective window (true solar
time); each sample stands for its step. A window point is lit at a sample when the sun is above the horizon, in front
of its façade and the ray toward it reaches the sky past every building and the terrain (:mod:`twin.sim.scene`,
Embree occlusion queries in :mod:`twin.sim.raycast`). Cumulative hours add the lit segments at least
``min_segment_min`` long; continuous hours are the longest segment.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, Field, model_validator

from data_models import TERRAIN_PRODUCT_IDS, LayerSpec
from twin.errors import BadInput
from twin.sim import gb50180, sun
from twin.sim.base import ASSET_PREFIX, BadParameters, Outputs, ProductFile, RunContext
from twin.sim.raycast import Occluder, merge
from twin.sim.scene import (
    BuildingCache,
    BuildingGeom,
    Scene,
    Terrain,
    build_scene,
    building_geom,
    cache_dir,
    cached_terrain,
    terrain_key,
)
from twin.sim.windows import WindowPoints, window_points

DTM_ASSET = TERRAIN_PRODUCT_IDS["dtm"]
BUILDING_TYPES = ("Building", "BuildingPart")
WINDOW_OFFSET_M = 0.02  # rays leave a window this far out along the façade normal
GROUND_OFFSET_M = 0.05  # and a ground cell this far above the terrain
FRONT_EPS = 1e-9  # the sun is in front of a façade when dot(normal, sun) exceeds this
CHUNK_RAYS = 400_000  # rays per task: a chunk takes well under half a second, so progress runs at ≥ 2 Hz
PARALLEL_MIN_RAYS = 2_000_000  # fewer rays than this are cast in the calling process (forking a pool costs ~0.1 s)
SUBSET_MAX_SHARE = 0.2  # an incremental rerun casting fewer points than this share casts on a reachable subset
MAX_GROUND_CELLS = 20_000_000
LAYER_RES = [9, 10, 11]
SITE_ROUND_DEG = 0.01  # the default site is rounded so that editing a building does not move the sun


def _bad(message: str) -> BadInput:
    """A :class:`~twin.sim.base.BadParameters` (a :class:`~twin.errors.BadInput`) for parameters that validate one
    by one but cannot be used here (polar night, too many cells); the message names the parameter."""
    return BadParameters(message)


class Parameters(BaseModel):
    """Sunlight parameters; defaults are Beijing's: climate zone II, a large city → 大寒日, 2 h, 8:00-16:00."""

    model_config = {"extra": "forbid"}

    standard_day: Literal["dahan", "dongzhi"] | None = Field(
        default=None, description="dahan (大寒日) or dongzhi (冬至日); default: the day GB 50180 Table 4.0.9 sets "
                                  "for climate_zone and city_population_10k")
    year: int = Field(default=2026, ge=1900, le=2100, description="year of the standard day (fixed for "
                                                                    "reproducible runs)")
    date: _dt.date | None = Field(default=None, description="an explicit date (YYYY-MM-DD) overriding the "
                                                            "standard day")
    climate_zone: Literal["I", "II", "III", "IV", "V", "VI", "VII"] = Field(
        default="II", description="building climate zone (GB 50178), I..VII")
    city_population_10k: float = Field(default=2185.0, ge=0, description="city population in 万 (10,000): "
                                                                          ">= 50 is a large city")
    required_hours: float | None = Field(default=None, gt=0, le=24, description="override the required hours")
    window_start_tst: float | None = Field(default=None, ge=0, le=24, description="override the window start "
                                                                                  "(true solar time, hours)")
    window_end_tst: float | None = Field(default=None, ge=0, le=24, description="override the window end "
                                                                                "(true solar time, hours)")
    step_min: float = Field(default=1.0, gt=0, le=60, description="time step, minutes")
    min_segment_min: float = Field(default=5.0, ge=0, description="cumulative hours ignore lit segments shorter "
                                                                  "than this (5 min is common in Chinese sunlight "
                                                                  "software)")
    window_spacing_m: float = Field(default=3.0, gt=0, description="spacing of window points along a façade")
    storey_height_m: float = Field(default=3.0, gt=0, description="storey height where storeys are not given")
    sill_height_m: float = Field(default=0.9, ge=0, description="windowsill height above the storey floor")
    ground: bool = Field(default=True, description="compute the ground sunlight hours raster and layer")
    ground_cell_m: float = Field(default=2.0, ge=0.25, le=100, description="ground raster cell size, metres")
    ground_margin_m: float = Field(default=30.0, ge=0, description="ground raster margin around the buildings")
    lat: float | None = Field(default=None, ge=-90, le=90, description="site latitude (default: the centre of "
                                                                       "the buildings, rounded to 0.01°)")
    lon: float | None = Field(default=None, ge=-180, le=180, description="site longitude (default: as lat)")

    @model_validator(mode="after")
    def _check(self) -> Parameters:
        """A window that ends before it starts, or a site given half, is an error naming the parameter."""
        req = resolve(self)
        if req.start_tst >= req.end_tst:
            raise ValueError(f"window_start_tst: the window {req.start_tst} h must start before its end "
                             f"{req.end_tst} h (window_end_tst)")
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat, lon: give both or neither")
        return self


@dataclass
class Resolved:
    """The day, required hours and window that the parameters come to."""

    day_kind: str
    date: _dt.date
    hours: float
    start_tst: float
    end_tst: float


def resolve(p: Parameters) -> Resolved:
    """GB 50180 Table 4.0.9 for the zone and city size, then the explicit overrides (day, date, hours, window)."""
    req = gb50180.requirement(p.climate_zone, p.city_population_10k)
    kind = p.standard_day or req.day
    start, end = gb50180.WINDOWS[kind] if p.standard_day and p.standard_day != req.day else (req.start_tst,
                                                                                               req.end_tst)
    hours = req.hours if p.required_hours is None else p.required_hours
    if p.date is not None:
        day = p.date
    else:
        days = sun.standard_days(p.year)
        day = days.dahan if kind == "dahan" else days.dongzhi
    start = start if p.window_start_tst is None else p.window_start_tst
    end = end if p.window_end_tst is None else p.window_end_tst
    return Resolved(kind, day, float(hours), float(start), float(end))


# ------------------------------------------------------------------------------------------------ the sun's path
@dataclass
class SunPath:
    """The sun over the window: UTC instants (step middles), step lengths (min), unit vectors (grid x, y, up)."""

    times: np.ndarray
    minutes: np.ndarray
    dirs: np.ndarray
    elevation: np.ndarray

    @property
    def up(self) -> np.ndarray:
        """Samples with the sun above the horizon."""
        return self.elevation > 0


def time_steps(day: Any, start_tst: float, end_tst: float, step_min: float, lon: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """UTC instants at the middle of every step of a true-solar-time window, and each step's length (minutes;
    the last one is shorter when the step does not divide the window)."""
    if not end_tst > start_tst:
        raise _bad(f"window_start_tst: {start_tst} h is not before window_end_tst {end_tst} h")
    if not step_min > 0:
        raise _bad(f"step_min: must be > 0, got {step_min}")
    span = (end_tst - start_tst) * 60.0
    n = max(1, math.ceil(span / step_min - 1e-9))
    edges = np.minimum(np.arange(n + 1) * step_min, span)
    mids = start_tst + (edges[:-1] + edges[1:]) / 120.0
    return sun.clock_from_true_solar(day, mids, lon), np.diff(edges)


def sun_path(day: Any, start_tst: float, end_tst: float, step_min: float, lat: float, lon: float,
             crs: str | None = None) -> SunPath:
    """The sun's vectors in the store CRS (grid north corrected by the meridian convergence) over the window."""
    times, minutes = time_steps(day, start_tst, end_tst, step_min, lon)
    pos = sun.solar_position(times, lat, lon)
    north = float(sun.true_north_bearing(crs, lon, lat)) if crs else 0.0
    return SunPath(times, minutes, sun.sun_vectors(pos.zenith, pos.azimuth, north), np.asarray(pos.elevation))


# ------------------------------------------------------------------------------------------------ counting
def facing(normals: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(n, m) dot products of normals (n, 3) and sun vectors (m, 3), without BLAS: OpenBLAS threads spin in every
    forked worker and took the other core (two workers cast no faster than one)."""
    return normals[:, :1] * dirs[:, 0] + normals[:, 1:2] * dirs[:, 1] + normals[:, 2:3] * dirs[:, 2]


def lit_matrix(occluder: Occluder, points: np.ndarray, normals: np.ndarray, dirs: np.ndarray, up: np.ndarray,
               offset: float) -> tuple[np.ndarray, int]:
    """(n, m) lit samples of n points over m sun vectors, and the number of rays cast (only those with the sun up
    and in front of the surface are cast). Every step of every point goes to Embree in one call: the offset origins
    are converted to the local float32 frame once per point and gathered per ray with the directions."""
    front = (facing(normals, dirs) > FRONT_EPS) & up[None, :]
    flat = np.flatnonzero(front)
    if not len(flat):
        return front, 0
    i, j = np.divmod(flat, front.shape[1])
    o = np.take(occluder.local(points + normals * offset), i, axis=0)  # take: 3× faster than o[i] on rows
    d = np.take(np.ascontiguousarray(dirs, dtype=np.float32), j, axis=0)
    front.reshape(-1)[flat[occluder.occluded_local(o, d)]] = False
    return front, len(flat)


def segment_hours(lit: np.ndarray, minutes: np.ndarray, min_segment_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``lit`` (n, m): cumulative hours (lit segments ≥ ``min_segment_min``) and the longest segment."""
    n, m = lit.shape
    if n == 0:
        return np.zeros(0), np.zeros(0)
    flat = lit.ravel()
    starts = flat & ~np.concatenate([np.zeros((n, 1), bool), lit[:, :-1]], axis=1).ravel()
    seg = np.cumsum(starts)[flat] - 1
    if not len(seg):
        return np.zeros(n), np.zeros(n)
    rows = np.repeat(np.arange(n), m)[flat]
    dur = np.bincount(seg, weights=np.tile(minutes, n)[flat])
    seg_row = np.zeros(len(dur), np.int64)
    seg_row[seg] = rows
    keep = dur >= min_segment_min - 1e-9
    cum = np.bincount(seg_row, weights=np.where(keep, dur, 0.0), minlength=n)
    cont = np.zeros(n)
    np.maximum.at(cont, seg_row, dur)
    return cum / 60.0, cont / 60.0


@dataclass
class Shared:
    """What every casting task reads: the scene, the changed geometry (incremental runs) and the sun's path."""

    scene: Occluder
    changed: Occluder | None
    dirs: np.ndarray
    up: np.ndarray
    minutes: np.ndarray
    min_segment_min: float


def _task(kind: str, points: np.ndarray, normals: np.ndarray, offset: float) -> tuple[Any, ...]:
    """One chunk: ``hours`` → (cumulative h, continuous h, rays); ``touch`` → (touches changed geometry, rays)."""
    from twin.compute import shared

    s: Shared = shared()
    if kind == "touch":
        assert s.changed is not None
        lit, rays = lit_matrix(s.changed, points, normals, s.dirs, s.up, offset)
        front = (facing(normals, s.dirs) > FRONT_EPS) & s.up[None, :]
        return (front & ~lit).any(axis=1), rays
    lit, rays = lit_matrix(s.scene, points, normals, s.dirs, s.up, offset)
    cum, cont = segment_hours(lit, s.minutes, s.min_segment_min)
    return cum, cont, rays


def cast(shared: Shared, kind: str, points: np.ndarray, normals: np.ndarray, offset: float,
         workers: int | None, report: Callable[[float], None] | None = None) -> tuple[list[np.ndarray], int, float]:
    """Run ``kind`` tasks over chunks of points on the one executor; the per-point outputs, rays cast, seconds."""
    from twin.compute import executor

    n = len(points)
    t0 = time.perf_counter()
    if n == 0:
        empty = [np.zeros(0, bool)] if kind == "touch" else [np.zeros(0), np.zeros(0)]
        return empty, 0, 0.0
    per_point = max(1, int(shared.up.sum()))
    size = max(1, CHUNK_RAYS // per_point)
    bounds = list(range(0, n, size)) + [n]
    chunks = list(zip(bounds[:-1], bounds[1:], strict=True))
    est = n * per_point // (1 if kind == "hours" else 2)
    w = workers if est >= PARALLEL_MIN_RAYS else 1
    # the BVHs are built here, once: forked workers inherit them (and the sun's path) instead of rebuilding
    occ = shared.scene if kind == "hours" else shared.changed
    if occ is not None:
        occ.prepare()
    outs: list[tuple[Any, ...]] = []

    def progress(done: int, total: int | None) -> None:
        if report is not None:
            report(done / max(total or len(chunks), 1))

    with executor(w, tasks=len(chunks), start="fork", shared=shared) as ex:
        outs = list(ex.map(_task, [kind] * len(chunks), [points[a:b] for a, b in chunks],
                           [normals[a:b] for a, b in chunks], [offset] * len(chunks), progress=progress,
                           max_in_flight=4 * max(ex.workers, 1)))
    rays = int(sum(o[-1] for o in outs))
    cols = [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]) - 1)]
    return cols, rays, time.perf_counter() - t0


def could_touch(points: np.ndarray, boxes: np.ndarray, min_elevation_deg: float) -> np.ndarray:
    """Points that a ray toward the sun (elevation ≥ ``min_elevation_deg``) could carry into one of the boxes
    (k, 6): a box is out of reach when its top is below the point or it lies farther away than the ray climbs."""
    if not len(boxes) or not len(points):
        return np.zeros(len(points), bool)
    tan_e = math.tan(math.radians(max(min_elevation_deg, 0.01)))
    out = np.zeros(len(points), bool)
    for b in boxes:
        dx = np.maximum(np.maximum(b[0] - points[:, 0], points[:, 0] - b[3]), 0.0)
        dy = np.maximum(np.maximum(b[1] - points[:, 1], points[:, 1] - b[4]), 0.0)
        out |= (points[:, 2] < b[5]) & (np.hypot(dx, dy) * tan_e <= b[5] - points[:, 2] + 1.0)
    return out


def reachable(occluder: Occluder, points: np.ndarray, min_elevation_deg: float, group_m: float = 200.0
              ) -> np.ndarray:
    """Faces of ``occluder`` that a ray from one of ``points`` toward the sun (elevation ≥ ``min_elevation_deg``)
    could hit: the test of :func:`could_touch` turned round (a face is out of reach of a group of points when its
    top is lower than the ray from the group's lowest point climbs over the distance between their boxes). Points
    are grouped on a ``group_m`` grid so that a few scattered windows do not widen one box over the whole city.
    A scene of these faces answers every such ray as the whole scene does (same origin, so the same float32)."""
    faces = occluder.faces
    if not len(points) or not len(faces):
        return np.zeros(len(faces), bool)
    tan_e = math.tan(math.radians(max(min_elevation_deg, 0.01)))
    v = occluder.vertices
    lo = np.minimum(np.minimum(v[faces[:, 0]], v[faces[:, 1]]), v[faces[:, 2]])
    hi = np.maximum(np.maximum(v[faces[:, 0]], v[faces[:, 1]]), v[faces[:, 2]])

    def near(b: np.ndarray, idx: np.ndarray) -> np.ndarray:  # b: (minx, miny, minz, maxx, maxy)
        dx = np.maximum(np.maximum(lo[idx, 0] - b[3], b[0] - hi[idx, 0]), 0.0)
        dy = np.maximum(np.maximum(lo[idx, 1] - b[4], b[1] - hi[idx, 1]), 0.0)
        return np.hypot(dx, dy) * tan_e <= hi[idx, 2] - b[2] + 1.0

    def box(p: np.ndarray) -> np.ndarray:
        return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 2].min(), p[:, 0].max(), p[:, 1].max()])

    cand = np.flatnonzero(near(box(points), np.arange(len(faces))))
    cell = np.floor(points[:, :2] / group_m).astype(np.int64)
    _, group = np.unique(cell, axis=0, return_inverse=True)
    keep = np.zeros(len(faces), bool)
    for g in range(int(group.max()) + 1):
        c = cand[~keep[cand]]
        keep[c[near(box(points[group.ravel() == g]), c)]] = True
    return keep


# ------------------------------------------------------------------------------------------------ the ground
@dataclass
class GroundGrid:
    """The ground raster: transform, shape, the valid cells' flat indices and their points (x, y, z)."""

    transform: Any
    shape: tuple[int, int]
    cells: np.ndarray
    points: np.ndarray


def ground_grid(buildings: list[BuildingGeom], terrain: Terrain | None, cell: float, margin: float,
                default_ground: float) -> GroundGrid:
    """Cells over the buildings' extent plus ``margin`` (snapped to multiples of ``cell``); cells whose centre lies
    in a footprint, or off the terrain, are left out."""
    from affine import Affine
    from rasterio.features import rasterize

    b = np.array([p.bounds for g in buildings for p in g.polygons])
    x0 = math.floor((b[:, 0].min() - margin) / cell) * cell
    y1 = math.ceil((b[:, 3].max() + margin) / cell) * cell
    w = max(1, math.ceil((b[:, 2].max() + margin - x0) / cell))
    h = max(1, math.ceil((y1 - b[:, 1].min() + margin) / cell))
    if w * h > MAX_GROUND_CELLS:
        raise _bad(f"ground_cell_m: {cell} m makes {w * h:,} ground cells (at most {MAX_GROUND_CELLS:,});"
                            " use a larger cell or ground=false")
    transform = Affine(cell, 0.0, x0, 0.0, -cell, y1)
    inside = rasterize([(p, 1) for g in buildings for p in g.polygons], out_shape=(h, w), transform=transform,
                       fill=0, dtype="uint8").astype(bool)
    rr, cc = np.nonzero(~inside)
    x = x0 + (cc + 0.5) * cell
    y = y1 - (rr + 0.5) * cell
    z = terrain.height_at(np.column_stack([x, y])) if terrain is not None else np.full(len(x), default_ground)
    ok = np.isfinite(z)
    flat = (rr * w + cc)[ok]
    return GroundGrid(transform, (h, w), flat, np.column_stack([x[ok], y[ok], z[ok]]))


# ------------------------------------------------------------------------------------------------ the simulator
def _site(p: Parameters, buildings: list[BuildingGeom], crs: str) -> tuple[float, float]:
    """The site (lat, lon): the parameters', else the centre of the buildings' extent rounded to 0.01°."""
    if p.lat is not None and p.lon is not None:
        return float(p.lat), float(p.lon)
    from twin.geo.crs import transform_xy

    b = np.array([poly.bounds for g in buildings for poly in g.polygons])
    lon, lat = transform_xy(np.array([(b[:, 0].min() + b[:, 2].max()) / 2]),
                            np.array([(b[:, 1].min() + b[:, 3].max()) / 2]), crs, "EPSG:4326")
    r = 1.0 / SITE_ROUND_DEG
    return round(float(lat[0]) * r) / r, round(float(lon[0]) * r) / r


def _terrain(ctx: RunContext, cache: Path | None = None) -> tuple[Terrain | None, str]:
    """The DTM product of the run's store state as a mesh (from the scene cache when it has it) and its cache key,
    or (None, "") when the store has none."""
    from twin.store import ASSETS

    asset = ctx.store.get(DTM_ASSET, ctx.branch, ctx.version, collection=ASSETS)
    if asset is None:
        return None, ""
    path = ctx.store.asset_path(asset)
    if not path.exists():
        return None, ""
    key = terrain_key(asset.get("checksum"), path)
    return cached_terrain(path, key, cache), key


def scene_cache(ctx: RunContext) -> Path | None:
    """The scene cache folder of the run's store (None when ``TWIN_SUNLIGHT_CACHE=off``)."""
    if os.environ.get("TWIN_SUNLIGHT_CACHE", "").strip().lower() in ("off", "0", "none"):
        return None
    return cache_dir(ctx.store.root)


def cached_geoms(ctx: RunContext, branch: str, version: int, terrain: Terrain | None, terrain_key: str,
                 storey_height_m: float, ids: list[str] | None = None, cache: Path | None = None,
                 tick: Callable[[float], None] | None = None) -> list[BuildingGeom]:
    """The buildings (and parts) at a store state in id order, as :func:`geoms` makes them: those whose entity
    digest is in the scene cache are taken from it, only the others are read and triangulated (then cached)."""
    from twin.store import Query

    q = Query(types=list(BUILDING_TYPES), ids=ids)
    digests = ctx.store.digests(branch, version, q)
    bc = BuildingCache(cache, terrain_key, storey_height_m)
    got = {i: bc.get(d) for i, d in digests.items()}
    missing = sorted(i for i, g in got.items() if g is False)
    if missing:
        feats = ctx.store.features(branch, version, Query(types=list(BUILDING_TYPES), ids=missing))
        t = time.perf_counter()
        for k, f in enumerate(feats):
            g = building_geom(f, terrain, storey_height_m)
            got[f["id"]] = g
            bc.put(digests[f["id"]], g)
            if tick is not None and time.perf_counter() - t > 0.3:
                tick(k / max(len(feats), 1))
                t = time.perf_counter()
        bc.save(digests)
    return [g for i in sorted(got) if isinstance(g := got[i], BuildingGeom)]


def geoms(features: list[dict[str, Any]], terrain: Terrain | None, storey_height_m: float,
          tick: Callable[[float], None] | None = None) -> list[BuildingGeom]:
    """Buildings (and parts) as :class:`BuildingGeom`, those with neither a solid nor a height left out."""
    out = []
    t = time.perf_counter()
    for i, f in enumerate(features):
        g = building_geom(f, terrain, storey_height_m)
        if g is not None:
            out.append(g)
        if tick is not None and time.perf_counter() - t > 0.3:
            tick(i / max(len(features), 1))
            t = time.perf_counter()
    return out


def window_table(scene: Scene, w: WindowPoints, cum: np.ndarray, cont: np.ndarray, required: float) -> pa.Table:
    """The ``sunlight_windows`` rows."""
    ids = np.asarray(scene.ids, dtype=object)
    return pa.table({
        "entity_id": pa.array(ids[w.building].tolist() if len(w) else [], pa.string()),
        "window_id": pa.array(w.window_id.tolist(), pa.string()),
        "storey": pa.array(w.storey, pa.int32()), "facade": pa.array(w.facade, pa.int32()),
        "x": pa.array(w.xyz[:, 0]), "y": pa.array(w.xyz[:, 1]), "z": pa.array(w.xyz[:, 2]),
        "azimuth": pa.array(np.round(w.azimuth, 6)),
        "hours_cumulative": pa.array(cum, pa.float64()), "hours_continuous": pa.array(cont, pa.float64()),
        "compliant": pa.array(cum >= required - 1e-9),
    })


def building_table(scene: Scene, w: WindowPoints, cum: np.ndarray, required: float, sun_side: np.ndarray
                   ) -> pa.Table:
    """The ``sunlight_buildings`` rows: per residential building its windows, the worst sun-side ground-storey
    window, the share of compliant windows, and ``passes`` (every sun-side ground-storey window complies)."""
    n = len(scene.buildings)
    resid = np.array([b.residential for b in scene.buildings], bool)
    ok = cum >= required - 1e-9
    count = np.bincount(w.building, minlength=n)
    good = np.bincount(w.building, weights=ok.astype(float), minlength=n)
    judged = (w.storey == 0) & sun_side
    worst = np.full(n, np.inf)
    np.minimum.at(worst, w.building[judged], cum[judged])
    fails = np.bincount(w.building[judged], weights=(~ok[judged]).astype(float), minlength=n)
    has = np.bincount(w.building[judged], minlength=n) > 0
    idx = np.flatnonzero(resid)
    return pa.table({
        "entity_id": pa.array([scene.buildings[i].id for i in idx], pa.string()),
        "windows": pa.array(count[idx], pa.int64()),
        "worst_hours": pa.array(np.where(np.isfinite(worst[idx]), worst[idx], np.nan)),
        "compliant_share": pa.array(np.where(count[idx] > 0, good[idx] / np.maximum(count[idx], 1), 0.0)),
        "passes": pa.array(has[idx] & (fails[idx] == 0)),
        "required_hours": pa.array(np.full(len(idx), required)),
    })


class SunlightSimulator:
    """Sunlight hours (日照) of windows and ground on a standard day, against GB 50180-2018."""

    name: ClassVar[str] = "sunlight"
    title: ClassVar[str] = "Sunlight hours (日照分析)"
    description: ClassVar[str] = (
        "Hours of direct sun at every window of the residential buildings (one point per storey at the windowsill, "
        "every window_spacing_m along each façade) and on the ground, on 大寒日 or 冬至日 in true solar time, "
        "against GB 50180-2018 Table 4.0.9; ray casting over the buildings' solids and the terrain.")
    version: ClassVar[str] = "1"
    Parameters: ClassVar[type[BaseModel]] = Parameters
    reads: ClassVar[tuple[str, ...]] = (*BUILDING_TYPES, f"{ASSET_PREFIX}{DTM_ASSET}")
    writes: ClassVar[dict[str, str]] = {
        "sunlight_windows": "per window: cumulative and continuous hours of sun, compliant",
        "sunlight_buildings": "per residential building: windows, worst sun-side ground-storey hours, compliant "
                              "share, passes",
        "sunlight-ground-hours": "H3 layer: mean hours of sun on the ground",
        "ground-hours": "COG: hours of sun per ground cell",
    }
    keys: ClassVar[dict[str, tuple[str, ...]]] = {"sunlight_windows": ("entity_id", "window_id"),
                                                  "sunlight_buildings": ("entity_id",)}

    def run(self, ctx: RunContext) -> Outputs:
        """Build the scene, cast the windows' and the ground's rays (only the affected ones on an incremental
        rerun), and return the tables, the ground raster and its layer."""
        return _Run(ctx).run()


class _Run:
    """One run's state (kept out of the simulator, which is a registered singleton)."""

    def __init__(self, ctx: RunContext) -> None:
        """Resolve the parameters."""
        self.ctx = ctx
        self.p: Parameters = ctx.params
        self.req = resolve(self.p)
        self.rays = 0
        self.cast_s = 0.0

    def progress(self, lo: float, hi: float, message: str) -> Callable[[float], None]:
        """A callback mapping a stage's fraction onto [lo, hi] of the run."""
        return lambda f: self.ctx.progress(lo + (hi - lo) * f, message)

    def run(self) -> Any:
        """The whole run."""
        ctx, p = self.ctx, self.p
        with ctx.stage("scene"):
            ctx.progress(0.0, "reading buildings")
            self.cache = scene_cache(ctx)
            terrain, self.terrain_key = _terrain(ctx, self.cache)
            buildings = cached_geoms(ctx, ctx.branch, ctx.version, terrain, self.terrain_key, p.storey_height_m,
                                     cache=self.cache, tick=self.progress(0.0, 0.08, "building the scene"))
            if not buildings:
                raise BadInput("sunlight: the store has no buildings with a height or a solid at this version")
            scene = build_scene(buildings, terrain)
            lat, lon = _site(p, buildings, ctx.store.crs)
            path = sun_path(self.req.date, self.req.start_tst, self.req.end_tst, p.step_min, lat, lon,
                            ctx.store.crs)
            if not path.up.any():
                raise _bad(f"lat: at latitude {lat}° the sun stays below the horizon from "
                                    f"{self.req.start_tst} h to {self.req.end_tst} h on {self.req.date} (polar night)")
            windows = window_points(buildings, p.window_spacing_m, p.storey_height_m, p.sill_height_m)
        changed_occ, reuse = self._incremental(scene, terrain, lat, lon)
        shared = Shared(scene.occluder, changed_occ, path.dirs, path.up, path.minutes, p.min_segment_min)
        with ctx.stage("windows"):
            cum, cont, recomputed = self._points(shared, reuse, "windows", windows.xyz, windows.normal,
                                                 WINDOW_OFFSET_M, self._previous_windows(scene, windows), 0.1, 0.6)
        noon = path.dirs[int(np.argmax(path.elevation)), :2]
        sun_side = windows.normal[:, :2] @ noon > 0
        tables = {"sunlight_windows": window_table(scene, windows, cum, cont, self.req.hours),
                  "sunlight_buildings": building_table(scene, windows, cum, self.req.hours, sun_side)}
        out = Outputs(tables=tables)
        ground_cells = ground_recomputed = 0
        if p.ground:
            with ctx.stage("ground"):
                grid = ground_grid(buildings, terrain, p.ground_cell_m, p.ground_margin_m,
                                   float(np.median([b.base_z for b in buildings])) if terrain is None else 0.0)
                up = np.tile([0.0, 0.0, 1.0], (len(grid.cells), 1))
                g_cum, _, ground_recomputed = self._points(shared, reuse, "ground", grid.points, up,
                                                           GROUND_OFFSET_M, self._previous_ground(grid), 0.6, 0.95)
                ground_cells = len(grid.cells)
                self._ground_outputs(out, grid, g_cum)
        b = tables["sunlight_buildings"]
        out.summary = {
            "buildings": b.num_rows, "windows": len(windows),
            "failing_buildings": int(b.num_rows - sum(b["passes"].to_pylist())),
            "rays_cast": self.rays, "rays_per_s": round(self.rays / self.cast_s) if self.cast_s > 0 else 0,
            "recomputed_windows": int(recomputed), "ground_cells": ground_cells,
            "recomputed_ground_cells": int(ground_recomputed), "mode": "incremental" if reuse else "full",
            "site": [lat, lon], "day": self.req.date.isoformat(), "standard_day": self.req.day_kind,
            "required_hours": self.req.hours, "window_tst": [self.req.start_tst, self.req.end_tst],
            "triangles": scene.occluder.n_triangles, "time_steps": len(path.times),
        }
        if reuse:
            out.reused_from = ctx.previous.run.id  # type: ignore[union-attr]
        return out

    # -------------------------------------------------------------------------------------- incremental reruns
    def _incremental(self, scene: Scene, terrain: Terrain | None, lat: float, lon: float
                     ) -> tuple[Occluder | None, bool]:
        """The occluder of the changed buildings (old and new geometry) when an incremental rerun is possible."""
        prev = self.ctx.previous
        if prev is None or any(c.startswith(ASSET_PREFIX) for c in prev.changed):
            return None, False
        if prev.run.summary.get("site") != [lat, lon]:
            return None, False
        self.changed = set(prev.changed)
        old_g = cached_geoms(self.ctx, prev.run.branch, prev.run.version, terrain, self.terrain_key,
                             self.p.storey_height_m, ids=sorted(self.changed), cache=self.cache)
        new_g = [b for b in scene.buildings if b.id in self.changed]
        v, f, _ = merge([(b.vertices, b.faces) for b in old_g + new_g])
        self.changed_boxes = np.array([b.bounds3d() for b in old_g + new_g]).reshape(-1, 6)
        return Occluder(v, f, origin=scene.occluder.origin), True

    def _previous_windows(self, scene: Scene, w: WindowPoints) -> tuple[np.ndarray, np.ndarray] | None:
        """(index of the previous row or −1, previous cumulative and continuous hours) per window, when reusing."""
        prev = self.ctx.previous
        if prev is None:
            return None
        try:
            t = prev.table(self.ctx.store, "sunlight_windows")
        except Exception:  # noqa: BLE001 - a previous run without the table: recompute everything
            return None
        key = {(e, k): i for i, (e, k) in enumerate(zip(t["entity_id"].to_pylist(), t["window_id"].to_pylist(),
                                                        strict=True))}
        ids = scene.ids
        idx = np.array([key.get((ids[b], k), -1) for b, k in zip(w.building, w.window_id, strict=True)], np.int64)
        changed = getattr(self, "changed", set())
        idx[np.array([ids[b] in changed for b in w.building], bool)] = -1
        vals = np.column_stack([t["hours_cumulative"].to_numpy(), t["hours_continuous"].to_numpy()])
        return idx, vals

    def _previous_ground(self, grid: GroundGrid) -> tuple[np.ndarray, np.ndarray] | None:
        """Per valid ground cell: its index into the previous run's raster (same grid) or −1, and those values."""
        prev = self.ctx.previous
        if prev is None:
            return None
        import rasterio

        from twin.store import ASSETS

        asset = self.ctx.store.get(f"{prev.run.id}-ground-hours", prev.branch, prev.version, collection=ASSETS)
        if asset is None:
            return None
        with rasterio.open(self.ctx.store.asset_path(asset)) as src:
            if src.shape != grid.shape or tuple(src.transform)[:6] != tuple(grid.transform)[:6]:
                return None
            old = src.read(1, masked=True).astype(np.float64).filled(np.nan).ravel()
        idx = np.where(np.isfinite(old[grid.cells]), grid.cells, -1)
        return idx, np.column_stack([old, old])

    @staticmethod
    def min_elevation(shared: Shared) -> float:
        """The sun's lowest elevation above the horizon over the window, degrees."""
        return float(np.degrees(np.arcsin(np.clip(shared.dirs[shared.up, 2].min(), -1, 1))))

    def _points(self, shared: Shared, reuse: bool, what: str, points: np.ndarray, normals: np.ndarray,
                offset: float, previous: tuple[np.ndarray, np.ndarray] | None, lo: float, hi: float
                ) -> tuple[np.ndarray, np.ndarray, int]:
        """Hours for a point set; on an incremental rerun, only points without a previous value or whose rays can
        reach the changed geometry are cast, the rest are copied. Returns cumulative, continuous, recomputed."""
        n = len(points)
        todo = np.ones(n, bool)
        cum, cont = np.zeros(n), np.zeros(n)
        if reuse and previous is not None:
            idx, vals = previous
            have = idx >= 0
            near = have & could_touch(points, self.changed_boxes, self.min_elevation(shared))
            touch = np.zeros(n, bool)
            if near.any():
                (hit,), rays, s = cast(shared, "touch", points[near], normals[near], offset, self.ctx.workers,
                                       self.progress(lo, lo + 0.2 * (hi - lo), f"{what}: finding affected points"))
                touch[near] = hit
                self.rays, self.cast_s = self.rays + rays, self.cast_s + s
            todo = ~have | touch
            cum[~todo], cont[~todo] = vals[idx[~todo], 0], vals[idx[~todo], 1]
            lo = lo + 0.2 * (hi - lo)
        sel = np.flatnonzero(todo)
        if reuse and len(sel) < SUBSET_MAX_SHARE * n:  # a few points: a scene of the triangles they can reach
            keep = reachable(shared.scene, points[sel], self.min_elevation(shared))
            shared = dataclasses.replace(shared, scene=shared.scene.subset(keep))
        (c, k), rays, s = cast(shared, "hours", points[sel], normals[sel], offset, self.ctx.workers,
                               self.progress(lo, hi, f"{what}: casting rays"))
        cum[sel], cont[sel] = c, k
        self.rays, self.cast_s = self.rays + rays, self.cast_s + s
        return cum, cont, len(sel)

    def _ground_outputs(self, out: Any, grid: GroundGrid, hours: np.ndarray) -> None:
        """The ground-hours COG and its H3 layer."""
        from twin.layers.rasters import raster_values
        from twin.reality3d.terrain import write_cog

        h, w = grid.shape
        band = np.full(h * w, np.nan, np.float32)
        band[grid.cells] = hours
        band = band.reshape(h, w)
        crs = self.ctx.store.crs
        path = write_cog(self.ctx.workdir / "ground-hours.tif", band, grid.transform, crs)
        t = grid.transform
        bbox = [t.c, t.f + t.e * h, t.c + t.a * w, t.f]
        out.files.append(ProductFile(name="ground-hours", path=path, crs=crs, bbox=bbox,
                                     description=f"hours of sun per {self.p.ground_cell_m} m ground cell on "
                                                 f"{self.req.date} ({gb50180.DAY_NAMES.get(self.req.day_kind)})",
                                     properties={"unit": "h", "day": self.req.date.isoformat()}))
        values = raster_values(np.ma.masked_invalid(band.astype(np.float64)), t, crs, max(LAYER_RES))
        if values.num_rows:
            out.layers.append((LayerSpec(
                name="sunlight-ground-hours", variable="sunlight_hours", unit="h", aggregation="area_weighted_mean",
                resolutions=LAYER_RES, description=f"mean hours of direct sun on the ground on {self.req.date} "
                                                   f"({self.req.start_tst:g}-{self.req.end_tst:g} h true solar time)"),
                values))
