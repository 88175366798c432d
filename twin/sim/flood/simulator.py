"""The ``flood`` simulator: a pluvial (or fluvial) flood on any branch or scenario, from the terrain, buildings, land
cover and roads twin derives, or from a user's own DEM and files. See docs/flood.md.

A run builds the grid (:mod:`twin.sim.flood.domain`), runs the flow (:mod:`twin.sim.flood.solver`) and returns:
COGs of max depth, max velocity, time of max depth and max water level; an H3 layer of depth every
``layer_step_min`` (res 11 and roll-ups, so the viewer's time slider animates it) and one of max depth; per building
the max depth along its footprint and a risk class; per road the max depth and whether it is impassable (the traffic
simulator closes those); stage time series at observation points; and the mass balance in the run's summary.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import shapely
from pydantic import BaseModel, Field, field_validator, model_validator
from shapely.geometry import shape

from data_models import TERRAIN_PRODUCT_IDS, LayerSpec, RainfallEvent
from twin.catalog.assets import sha256_file
from twin.errors import BadInput
from twin.sim.base import ASSET_PREFIX, BadParameters, Outputs, ProductFile, RunContext
from twin.sim.flood import domain as dom
from twin.sim.flood import storms, tables
from twin.sim.flood.solver import G, Numerics, TimeStepTooSmall, simulate

DTM_ASSET = TERRAIN_PRODUCT_IDS["dtm"]
LAYER_RES = [9, 10, 11]
RISK_CLASSES = ("none", "low", "medium", "high")
ROAD_WIDTH_M = {"motorway": 24.0, "trunk": 20.0, "primary": 16.0, "secondary": 12.0, "tertiary": 9.0,
                "residential": 7.0, "service": 4.0, "footway": 2.0, "cycleway": 2.0, "path": 1.5}
DEFAULT_ROAD_WIDTH_M = 7.0
DEFAULT_START = datetime(2012, 7, 21, 2, 0, tzinfo=UTC)  # 10:00 Beijing time, the onset of the 7·21 storm
WARN_RAIN_MM_H = 500.0
MAX_CELL_UPDATES = 2e12  # ~14 h at 40 M cell updates/s: a run that would take longer is refused up front
FILE_PARAMS = ("dem", "buildings", "roughness", "inflow", "points", "drainage")


class Parameters(BaseModel):
    """Flood parameters. Rain comes from ``rain_mm_h``, ``hyetograph_mm_h`` or ``design_storm`` (one of them),
    else from the scenario's rainfall events."""

    model_config = {"extra": "forbid"}

    resolution_m: float = Field(default=2.0, gt=0, le=100, description="grid cell size, metres")
    duration_s: float | None = Field(default=None, gt=0, le=7 * 86400, description="simulated time, seconds "
                                     "(default: the rain's duration + 30 min)")
    scheme: Literal["inertial", "swe"] = Field(default="inertial", description="inertial (local-inertial, Bates "
                                               "2010) or swe (full shallow-water equations, Godunov HLL)")
    rain_mm_h: float | None = Field(default=None, ge=0, description="uniform rain intensity, mm/h")
    rain_duration_min: float = Field(default=60.0, gt=0, le=10080, description="duration of rain_mm_h, minutes")
    hyetograph_mm_h: list[float] | None = Field(default=None, min_length=1, description="rain intensities (mm/h) "
                                                "over equal steps of hyetograph_step_min")
    hyetograph_step_min: float = Field(default=5.0, gt=0, description="step of hyetograph_mm_h, minutes")
    design_storm: str | dict[str, float] | None = Field(
        default=None, description="a Chicago design storm from a storm-intensity formula: a preset (beijing) or "
                                  "{a1 (mm/min), c, b, n}")
    return_period_years: float = Field(default=100.0, gt=0, description="design storm return period, years")
    storm_duration_min: float = Field(default=60.0, gt=0, description="design storm duration, minutes")
    storm_step_min: float = Field(default=5.0, gt=0, description="design storm step, minutes")
    storm_peak: float = Field(default=0.4, gt=0, lt=1, description="design storm peak position (share of the "
                                                                   "duration)")
    start: datetime | None = Field(default=None, description="time of the run's start (layer time stamps; "
                                                             "default: the rainfall event's, else 2012-07-21T02:00Z)")
    drainage_mm_h: float = Field(default=0.0, ge=0, description="sewer capacity everywhere, mm/h (removed while "
                                                                "there is water)")
    drainage: str | None = Field(default=None, description="polygons with their own sewer capacity: "
                                                           "FILE[:mm_h=30] (or a mm_h property)")
    manning: dict[str, float] | None = Field(default=None, description="Manning n per land-cover class, "
                                                                       "overriding the defaults")
    infiltration_mm_h: dict[str, float] | None = Field(default=None, description="loss rate per land-cover "
                                                                                 "class, mm/h")
    n_default: float | None = Field(default=None, gt=0, le=1, description="Manning n of every cell no roughness "
                                                                          "polygon covers (instead of land cover)")
    crs: str | None = Field(default=None, description="the CRS of a dem file that has none (an ASCII grid "
                                                      "without .prj), e.g. EPSG:32650")
    dem: str | None = Field(default=None, description="a DEM GeoTIFF instead of the branch's DTM (a standalone "
                                                      "study: buildings and land cover only from files)")
    buildings: str | None = Field(default=None, description="building footprints (a vector file) as walls, "
                                                            "instead of the branch's")
    roughness: str | None = Field(default=None, description="Manning n polygons: FILE[:n=0.02] (or an n "
                                                            "property)")
    inflow: str | None = Field(default=None, description="inflows: FILE[:q=19.7] points or polygons with q "
                                                         "(m³/s) or a hydrograph [[t_s, q], …], or a raster of "
                                                         "m/s per cell")
    points: str | None = Field(default=None, description="observation points CSV (id, x, y): stage time series")
    points_step_s: float = Field(default=60.0, gt=0, description="time step of the observation series, seconds")
    boundary: str | dict[str, str] = Field(default="open", description="open, closed or fixed for every edge, or "
                                           "per side {north, south, west, east} (others closed)")
    boundary_level: float | None = Field(default=None, description="water level of fixed boundaries, m")
    bbox: list[float] | None = Field(default=None, min_length=4, max_length=4, description="domain [minx, miny, "
                                     "maxx, maxy] in the grid's CRS (default: the terrain's extent)")
    water_bodies: Literal["full", "empty"] = Field(default="full", description="water bodies start full to "
                                                   "their spill level (the lowest terrain on their outline) or dry")
    fill_nodata: bool = Field(default=True, description="fill terrain holes from their edges (false: refuse)")
    roof_runoff: Literal["adjacent", "none"] = Field(default="adjacent", description="rain on roofs goes to the "
                                                     "nearest open cell (downpipes) or is not modelled")
    thresholds_m: list[float] = Field(default=[0.15, 0.3, 0.5], min_length=3, max_length=3,
                                      description="depths at a building's edge from which it is at low, medium, "
                                                  "high risk")
    impassable_m: float = Field(default=0.3, gt=0, description="a road deeper than this is impassable")
    layer_step_min: float = Field(default=5.0, gt=0, le=1440, description="time step of the depth layer, minutes")
    layer_min_depth_m: float = Field(default=0.01, ge=0, description="the depth layer keeps cells whose mean "
                                                                     "depth reaches this at some step")
    dt_min_s: float = Field(default=1e-3, gt=0, description="the run fails when the CFL step falls below this")

    @field_validator("thresholds_m")
    @classmethod
    def _rising(cls, v: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(v, v[1:], strict=False)) or v[0] <= 0:
            raise ValueError("thresholds must be positive and rising, e.g. [0.15, 0.3, 0.5]")
        return v

    @model_validator(mode="after")
    def _one_rain(self) -> Parameters:
        given = [k for k in ("rain_mm_h", "hyetograph_mm_h", "design_storm") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"{', '.join(given)}: give one source of rain")
        if self.hyetograph_mm_h is not None and min(self.hyetograph_mm_h) < 0:
            raise ValueError("hyetograph_mm_h: intensities must be ≥ 0")
        return self


@dataclass
class Rain:
    """Piecewise-constant rain: step edges (s), intensities (m/s), its area (None: everywhere), where it came
    from, and the clock time of t = 0."""

    edges_s: np.ndarray
    rates: np.ndarray
    area: shapely.Geometry | None
    source: str
    start: datetime

    @property
    def duration_s(self) -> float:
        return float(self.edges_s[-1]) if len(self.edges_s) else 0.0

    @property
    def depth_mm(self) -> float:
        return float((np.diff(self.edges_s) * self.rates).sum() * 1000.0)


def _series(step_s: float, mm_h: list[float], offset_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    edges = offset_s + step_s * np.arange(len(mm_h) + 1)
    return edges, np.asarray(mm_h, np.float64) / 3.6e6


def scenario_record(store: Any, branch: str, version: int) -> dict[str, Any] | None:
    """The record of the scenario whose branch this is (None on a plain branch)."""
    from twin.store import SCENARIOS, Query

    for r in store.features(branch, version, Query(collection=SCENARIOS)):
        if r.get("branch") == branch:
            r.pop("_store", None)
            return r
    return None


def scenario_events(ctx: RunContext) -> list[RainfallEvent]:
    """The rainfall events of the scenario whose branch this run is on (none on a plain branch)."""
    from data_models import Scenario

    r = scenario_record(ctx.store, ctx.branch, ctx.version)
    return [] if r is None else [e for e in Scenario.model_validate(r).edits if isinstance(e, RainfallEvent)]


def start_of(p: Parameters) -> datetime | None:
    """The ``start`` parameter as an aware UTC time (a naive one is read as UTC)."""
    if p.start is None:
        return None
    return p.start.astimezone(UTC) if p.start.tzinfo else p.start.replace(tzinfo=UTC)


def rain_of(p: Parameters, events: list[RainfallEvent], warnings: list[str]) -> Rain | None:
    """The run's rain: its parameters', else the scenario's events (laid on one clock), else None."""
    start = start_of(p)
    if p.rain_mm_h is not None or p.hyetograph_mm_h is not None or p.design_storm is not None:
        if events:
            warnings.append(f"the scenario's {len(events)} rainfall event(s) are not used: the run's parameters "
                            "give the rain")
        if p.rain_mm_h is not None:
            e, r = _series(p.rain_duration_min * 60, [p.rain_mm_h])
            src = f"uniform {p.rain_mm_h:g} mm/h for {p.rain_duration_min:g} min"
        elif p.hyetograph_mm_h is not None:
            e, r = _series(p.hyetograph_step_min * 60, p.hyetograph_mm_h)
            src = f"hyetograph of {len(p.hyetograph_mm_h)} × {p.hyetograph_step_min:g} min"
        else:
            try:
                ds = storms.design_storm(p.design_storm, p.return_period_years, p.storm_duration_min,
                                         step_min=p.storm_step_min, peak=p.storm_peak)
            except ValueError as exc:
                raise BadParameters(f"design_storm: {exc}") from None
            e, r = _series(p.storm_step_min * 60, ds["hyetograph"])
            src = (f"Chicago design storm ({ds['formula']['name']}), {p.return_period_years:g}-year, "
                   f"{p.storm_duration_min:g} min, {ds['depth_mm']:.1f} mm")
        return Rain(e, r, None, src, start or DEFAULT_START)
    if not events:
        return None
    starts = [ev.start for ev in events if ev.start is not None]
    t0 = min(starts) if starts else (start or DEFAULT_START)
    areas = {json.dumps(ev.area.model_dump(), sort_keys=True) if ev.area else None for ev in events}
    if len(areas) > 1:
        raise BadInput(f"flood: the scenario has {len(events)} rainfall events over different areas; a run takes "
                       "one rain area (remove or merge the events)")
    parts = []
    for ev in events:
        off = (ev.start - t0).total_seconds() if ev.start is not None else 0.0
        parts.append(_series(ev.step_min * 60, ev.hyetograph or [ev.intensity_mm_h], off))
    edges = np.unique(np.concatenate([e for e, _ in parts] + [[0.0]]))
    rates = np.zeros(len(edges) - 1)
    mids = 0.5 * (edges[:-1] + edges[1:])
    for e, r in parts:
        k = np.searchsorted(e, mids, side="right") - 1
        inside = (k >= 0) & (k < len(r))
        rates[inside] += r[k[inside]]
    ev0 = events[0]
    area = shape(ev0.area.model_dump()) if ev0.area is not None else None
    src = f"the scenario's {len(events)} rainfall event(s), {float((np.diff(edges) * rates).sum() * 1000):.1f} mm"
    return Rain(edges, rates, area, src, start or t0)


class FloodSimulator:
    """Pluvial flooding: 2-D shallow water over the terrain with buildings, land cover, drainage and rain."""

    name: ClassVar[str] = "flood"
    title: ClassVar[str] = "Pluvial flood (2-D shallow water)"
    description: ClassVar[str] = (
        "Rain (uniform, a hyetograph, a Chicago design storm or the scenario's rainfall event) on the DTM with "
        "building footprints as walls, Manning roughness and infiltration from land cover, sewer drainage, inflows "
        "and open / closed / fixed-level edges; the local-inertial scheme (or the full shallow-water equations). "
        "Max depth, velocity, time of max depth and water level as COGs, depth every 5 min as an H3 layer, per "
        "building and per road the max depth and risk, and the mass balance.")
    version: ClassVar[str] = "1"
    Parameters: ClassVar[type[BaseModel]] = Parameters
    reads: ClassVar[tuple[str, ...]] = ("Building", "LandCover", "Road", f"{ASSET_PREFIX}{DTM_ASSET}")
    writes: ClassVar[dict[str, str]] = {
        "flood_buildings": "per building: max depth along its footprint edge, risk class",
        "flood_roads": "per road: max depth, impassable, share of its cells deeper than impassable_m",
        "flood_points": "per observation point and time: depth and water level",
        "flood-depth": "H3 layer: mean water depth per cell every layer_step_min",
        "flood-max-depth": "H3 layer: mean of the max water depth per cell",
        "max-depth": "COG: max water depth, m", "max-velocity": "COG: max flow speed, m/s",
        "time-of-max-depth": "COG: time of the max depth, s from the start", "max-stage": "COG: max water level, m",
    }
    file_parameters: ClassVar[tuple[str, ...]] = FILE_PARAMS  # over HTTP, only files of TWIN_STUDY_DIR
    keys: ClassVar[dict[str, tuple[str, ...]]] = {"flood_buildings": ("entity_id",), "flood_roads": ("entity_id",),
                                                  "flood_points": ("entity_id", "t_s")}

    def standalone(self, params: Parameters) -> tuple[str, list[Any]] | None:
        """A study that needs no store (a ``dem`` file): its CRS (the file's, else ``crs``) and the DEM to record."""
        if not params.dem:
            return None
        path = dom.FileRef.parse(params.dem, "dem").path
        crs = dom.file_crs(path) or params.crs
        if not crs:
            raise BadInput("crs: the DEM file has no CRS; pass its EPSG code, e.g. -p crs=EPSG:32650")
        return crs, [path]

    def extra_inputs(self, store: Any, branch: str, version: int, params: Parameters) -> dict[str, str]:
        """Digests of what the run reads besides entities and assets: the user's files and the scenario's rain."""
        out = {}
        for key in FILE_PARAMS:
            value = getattr(params, key)
            if value:
                ref = dom.FileRef.parse(value, key)
                out[f"file:{key}"] = sha256_file(ref.path)
        r = scenario_record(store, branch, version)
        if r is not None:
            rain = [e for e in r.get("edits", []) if e.get("kind") == "rainfall_event"]
            out["scenario:rain"] = hashlib.sha256(json.dumps(rain, sort_keys=True, default=str).encode()).hexdigest()
        return out

    def run(self, ctx: RunContext) -> Outputs:
        return _Run(ctx).run()


class _Run:
    """One run's state (the simulator is a registered singleton)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.p: Parameters = ctx.params
        self.warnings: list[str] = []

    # ------------------------------------------------------------------------------------------ inputs
    def _terrain(self) -> tuple[np.ndarray, dom.Grid]:
        p, ctx = self.p, self.ctx
        if p.dem:
            ref = dom.FileRef.parse(p.dem, "dem")
            return dom.terrain(ref.path, p.resolution_m, p.crs or ctx.store.crs, p.bbox, p.fill_nodata, "dem",
                               self.warnings)
        from twin.store import ASSETS

        asset = ctx.store.get(DTM_ASSET, ctx.branch, ctx.version, collection=ASSETS)
        path = ctx.store.asset_path(asset) if asset is not None else None
        if path is None or not path.exists():
            raise BadInput(f"flood: branch {ctx.branch!r} has no terrain (the DTM product {DTM_ASSET}) at version "
                           f"{ctx.version}; run `twin build` (its terrain step, from LiDAR) first, or pass -p dem=FILE")
        return dom.terrain(path, p.resolution_m, ctx.store.crs, p.bbox, p.fill_nodata, "DTM", self.warnings)

    def _features(self, types: list[str]) -> list[dict[str, Any]]:
        from twin.store import Query

        return self.ctx.store.features(self.ctx.branch, self.ctx.version, Query(types=types))

    def _buildings(self, grid: dom.Grid) -> tuple[list[str], list[shapely.Geometry]]:
        """Ids and footprints of the walls: the buildings file's, else the branch's (none in a DEM study)."""
        p = self.p
        if p.buildings:
            ref = dom.FileRef.parse(p.buildings, "buildings")
            feats = [(g, q) for g, q in dom.read_features(ref, grid.crs, "buildings")
                     if g.geom_type in ("Polygon", "MultiPolygon")]
            if not feats:
                raise BadInput(f"buildings: {ref.path.name} has no polygons")
            ids = [str(q.get("id") or q.get("fid") or f"building-{i + 1}") for i, (_, q) in enumerate(feats)]
            return ids, [g for g, _ in feats]
        if p.dem:
            return [], []
        ids, geoms = [], []
        for f in self._features(["Building"]):
            if f.get("geometry"):
                g = shape(f["geometry"])
                if g.geom_type in ("Polygon", "MultiPolygon") and not g.is_empty:
                    ids.append(f["id"])
                    geoms.append(g.buffer(0) if not g.is_valid else g)
        return ids, geoms

    def _roads(self) -> tuple[list[str], list[shapely.Geometry]]:
        if self.p.dem:
            return [], []
        ids, geoms = [], []
        for f in self._features(["Road"]):
            if not f.get("geometry"):
                continue
            g = shape(f["geometry"])
            w = f.get("width_m") or ROAD_WIDTH_M.get(str(f.get("road_class") or ""), DEFAULT_ROAD_WIDTH_M)
            area = g.buffer(float(w) / 2.0, cap_style="flat") if g.geom_type.endswith("LineString") else g
            if not area.is_empty:
                ids.append(f["id"])
                geoms.append(area)
        return ids, geoms

    def _classes(self, grid: dom.Grid, roads: list[shapely.Geometry]) -> np.ndarray:
        """Land-cover class index per cell (:data:`tables.CLASSES`): the branch's polygons, roads on top."""
        index = {c: i for i, c in enumerate(tables.CLASSES)}
        shapes: list[tuple[Any, int]] = []
        if not self.p.dem:
            for f in self._features(["LandCover"]):
                if f.get("geometry") and f.get("cover_class") in index:
                    shapes.append((shape(f["geometry"]), index[f["cover_class"]]))
        shapes += [(g, index["road"]) for g in roads]
        return grid.rasterize(shapes, fill=index[tables.DEFAULT_CLASS], dtype="uint8").astype(np.int64)

    def _manning_extra(self, grid: dom.Grid) -> np.ndarray:
        p = self.p
        extra = np.full(grid.shape, np.nan if p.n_default is None else p.n_default)
        if p.roughness:
            ref = dom.FileRef.parse(p.roughness, "roughness")
            feats = dom.polygons_of(dom.read_features(ref, grid.crs, "roughness"))
            shapes = [(g, dom.number_of(q, ref, "n", "roughness")) for g, q in feats]
            if not shapes:
                raise BadInput(f"roughness: {ref.path.name} has no polygons or lines")
            r = grid.rasterize(shapes, fill=np.nan)
            extra = np.where(np.isfinite(r), r, extra)
        return extra

    def _drainage(self, grid: dom.Grid) -> np.ndarray:
        p = self.p
        d = np.full(grid.shape, p.drainage_mm_h)
        if p.drainage:
            ref = dom.FileRef.parse(p.drainage, "drainage")
            feats = dom.polygons_of(dom.read_features(ref, grid.crs, "drainage"))
            r = grid.rasterize([(g, dom.number_of(q, ref, "mm_h", "drainage")) for g, q in feats], fill=np.nan)
            d = np.where(np.isfinite(r), r, d)
        return d / 3.6e6

    def _water_bodies(self, grid: dom.Grid, z: np.ndarray, active: np.ndarray) -> np.ndarray | None:
        """Initial water: each ``WaterBody`` of the branch full to its spill level (the lowest terrain on its
        outline), so a lake is not taken for a flood; ``water_bodies=empty`` starts them dry."""
        if self.p.water_bodies == "empty" or self.p.dem:
            return None
        h0 = np.zeros(grid.shape)
        for f in self._features(["WaterBody"]):
            if not f.get("geometry"):
                continue
            g = shape(f["geometry"])
            if g.geom_type not in ("Polygon", "MultiPolygon") or g.is_empty:
                continue
            inside = grid.rasterize([(g, 1)], dtype="uint8").astype(bool) & active
            ring = grid.rasterize([(g.boundary, 1)], dtype="uint8", all_touched=True).astype(bool)
            ring &= np.isfinite(z)
            if inside.any() and ring.any():
                level = float(np.nanmin(z[ring]))
                h0 = np.where(inside, np.maximum(h0, level - np.where(inside, z, level)), h0)
        return h0 if h0.any() else None

    # ------------------------------------------------------------------------------------------ the run
    def run(self) -> Outputs:
        ctx, p = self.ctx, self.p
        with ctx.stage("domain"):
            ctx.progress(0.0, "building the grid")
            rain = rain_of(p, scenario_events(ctx) if not p.dem else [], self.warnings)
            if rain is None and not p.inflow:
                raise BadParameters("flood: no water: give rain_mm_h, hyetograph_mm_h or design_storm, add a "
                                    "rainfall_event to the scenario, or give an inflow")
            if rain is None:
                rain = Rain(np.array([0.0, 1.0]), np.zeros(1), None, "none", start_of(p) or DEFAULT_START)
            peak = float(rain.rates.max(initial=0.0) * 3.6e6)
            if peak > WARN_RAIN_MM_H:
                self.warnings.append(f"rain: a peak of {peak:g} mm/h is above {WARN_RAIN_MM_H:g} mm/h (the world "
                                     "record for an hour is about 300 mm); check the units")
            duration = p.duration_s or (rain.duration_s + 1800.0 if rain.rates.any() else 3600.0)
            z, grid = self._terrain()
            ids, footprints = self._buildings(grid)
            road_ids, road_areas = self._roads()
            labels = grid.rasterize([(g, i + 1) for i, g in enumerate(footprints)], fill=0, dtype="int32")
            walls = labels > 0
            classes = self._classes(grid, road_areas)
            try:
                manning = tables.merged(tables.MANNING, p.manning, "manning")
                infil = tables.merged(tables.INFILTRATION_MM_H, p.infiltration_mm_h, "infiltration_mm_h")
            except ValueError as exc:
                raise BadParameters(str(exc)) from None
            mask = np.ones(grid.shape) if rain.area is None else grid.rasterize([(rain.area, 1.0)], fill=0.0)
            boundary = dom.boundary_of(p.boundary, p.boundary_level, grid.shape)
            active = np.isfinite(z) & ~walls
            inflows = dom.inflows_from(dom.FileRef.parse(p.inflow, "inflow"), grid, active) if p.inflow else []
            d = dom.assemble(z, grid, walls, classes, self._manning_extra(grid), manning, infil,
                             self._drainage(grid), mask, rain.edges_s, rain.rates, boundary, inflows,
                             p.roof_runoff == "adjacent")
            d.h0 = self._water_bodies(grid, z, d.active)
            pts = None
            if p.points:
                src_crs = dom.file_crs(dom.FileRef.parse(p.dem, "dem").path) if p.dem else None
                pts = dom.observation_points(dom.FileRef.parse(p.points, "points").path, grid, src_crs)
            self._check_cost(d, rain, duration)
        rec = _Recorder(self, grid, d, rain, pts)
        with ctx.stage("flow"):
            try:
                res = simulate(d, duration, Numerics(scheme=p.scheme, dt_min_s=p.dt_min_s), record_s=rec.step_s,
                               on_record=rec, progress=lambda f: ctx.progress(0.05 + 0.85 * f, "flow"),
                               threads=ctx.workers)
            except TimeStepTooSmall as exc:
                raise BadParameters(f"resolution_m, dt_min_s: {exc}") from None
        with ctx.stage("outputs"):
            ctx.progress(0.92, "writing results")
            out = Outputs()
            self._files(out, grid, d, res)
            rec.layers(out)
            out.tables["flood_buildings"] = self._building_table(ids, footprints, labels, d, grid, res.max_depth)
            out.tables["flood_roads"] = self._road_table(road_ids, road_areas, grid, d, res.max_depth)
            if pts is not None:
                out.tables["flood_points"] = rec.points_table()
        b = out.tables["flood_buildings"]
        risk = {c: 0 for c in RISK_CLASSES}
        for c in b["risk_class"].to_pylist():
            risk[c] += 1
        roads = out.tables["flood_roads"]
        wet = res.max_depth[d.active]
        out.summary = {
            "mass_balance": {k: float(v) if k == "error_pct" else round(float(v), 6) + 0.0
                             for k, v in res.balance.items()},
            "rain": rain.source, "rain_mm": round(rain.depth_mm, 3), "duration_s": duration, "scheme": p.scheme,
            "grid": {"resolution_m": grid.dx, "rows": grid.shape[0], "cols": grid.shape[1], "crs": grid.crs,
                     "bbox": grid.bbox, "active_cells": int(d.active.sum()), "wall_cells": int(walls.sum())},
            "steps": res.steps, "dt_min_s": round(res.dt_min_s, 6), "dt_mean_s": round(res.dt_mean_s, 6),
            "cell_updates_per_s": round(res.cell_updates_per_s), "flow_s": round(res.wall_s, 3),
            "max_depth_m": round(float(wet.max(initial=0.0)), 4),
            "flooded_area_m2": float((wet >= p.thresholds_m[0]).sum() * grid.dx ** 2),
            "buildings": b.num_rows, "buildings_at_risk": {k: v for k, v in risk.items() if k != "none"},
            "roads": roads.num_rows, "impassable_roads": int(sum(roads["impassable"].to_pylist())),
            "start": rain.start.isoformat(), "warnings": self.warnings,
        }
        ctx.progress(1.0, "done")
        return out

    def _check_cost(self, d: Any, rain: Rain, duration: float) -> None:
        """Refuse up front a run whose steps would take far too long: the CFL step over water as deep as all the
        rain and inflow piled up in a tenth of the domain, or 1 m."""
        cells = int(d.active.sum())
        if not cells:
            raise BadInput("flood: the domain has no open cell (all walls or without terrain)")
        vol = rain.depth_mm / 1000.0 * cells * d.dx ** 2 + sum(f.q_m3s.max() * duration for f in d.inflows)
        h = max(1.0, vol / (0.1 * cells * d.dx ** 2))
        steps = duration / min(0.7 * d.dx / math.sqrt(G * h), 5.0)
        if steps * d.z.size > MAX_CELL_UPDATES:
            raise BadParameters(f"duration_s, resolution_m: about {steps:,.0f} steps over {d.z.size:,} cells "
                                f"({steps * d.z.size:.2g} cell updates, at most {MAX_CELL_UPDATES:.0e}); use a "
                                "coarser resolution_m, a bbox or a shorter duration_s")

    # ------------------------------------------------------------------------------------------ outputs
    def _files(self, out: Outputs, grid: dom.Grid, d: Any, res: Any) -> None:
        from twin.reality3d.terrain import write_cog

        act = d.active
        wet = res.max_depth > 0
        rasters = {
            "max-depth": (np.where(act, res.max_depth, np.nan), "m", "max water depth"),
            "max-velocity": (np.where(act, res.max_speed, np.nan), "m/s", "max flow speed"),
            "time-of-max-depth": (np.where(act & wet, res.time_of_max_s, np.nan), "s",
                                  "time of the max depth, seconds from the start"),
            "max-stage": (np.where(act & wet, d.z + res.max_depth, np.nan), "m", "max water level"),
        }
        for name, (band, unit, what) in rasters.items():
            path = write_cog(self.ctx.workdir / f"{name}.tif", band, grid.transform, grid.crs)
            out.files.append(ProductFile(name=name, path=path, crs=grid.crs, bbox=grid.bbox,
                                         description=f"{what} ({unit}) on {grid.dx:g} m cells",
                                         properties={"unit": unit}))

    def _building_table(self, ids: list[str], footprints: list[shapely.Geometry], labels: np.ndarray, d: Any,
                        grid: dom.Grid, max_depth: np.ndarray) -> pa.Table:
        """Per building the max depth on the open cells around its footprint (its wall cells' 8 neighbours; a
        footprint too small to hold a cell centre takes the cells it touches) and its risk class."""
        n = len(ids)
        best = np.zeros(n)
        edge = np.zeros(n, np.int64)
        act = d.active
        md = np.where(act, max_depth, 0.0)
        h, w = labels.shape
        pad = np.pad(labels, 1)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if di == 0 and dj == 0:
                    continue
                nb = pad[1 + di:1 + di + h, 1 + dj:1 + dj + w]
                sel = act & (nb > 0)
                np.maximum.at(best, nb[sel] - 1, md[sel])
                np.add.at(edge, nb[sel] - 1, 1)
        small = np.flatnonzero(np.bincount(labels.ravel(), minlength=n + 1)[1:] == 0)
        for k in small:
            m = grid.rasterize([(footprints[k], 1)], dtype="uint8", all_touched=True).astype(bool) & act
            if m.any():
                best[k] = md[m].max()
                edge[k] = int(m.sum())
        level = np.searchsorted(np.asarray(self.p.thresholds_m), best, side="right")
        return pa.table({"entity_id": pa.array(ids, pa.string()), "max_depth_m": pa.array(np.round(best, 4)),
                         "risk_class": pa.array([RISK_CLASSES[i] for i in level], pa.string()),
                         "risk_level": pa.array(level, pa.int8()), "edge_cells": pa.array(edge, pa.int64())})

    def _road_table(self, ids: list[str], areas: list[shapely.Geometry], grid: dom.Grid, d: Any,
                    max_depth: np.ndarray) -> pa.Table:
        """Per road the max depth over the open cells its carriageway touches, impassable above impassable_m."""
        from rasterio.features import geometry_mask

        md = np.where(d.active, max_depth, np.nan)
        best, share = np.zeros(len(ids)), np.zeros(len(ids))
        h, w = grid.shape
        for k, g in enumerate(areas):
            x0, y0, x1, y1 = g.bounds
            t = grid.transform
            c0, r0 = max(math.floor((x0 - t.c) / t.a) - 1, 0), max(math.floor((y1 - t.f) / t.e) - 1, 0)
            c1, r1 = min(math.ceil((x1 - t.c) / t.a) + 1, w), min(math.ceil((y0 - t.f) / t.e) + 1, h)
            if c1 <= c0 or r1 <= r0:
                continue
            inside = ~geometry_mask([g], out_shape=(r1 - r0, c1 - c0), transform=t @ t.translation(c0, r0),
                                    all_touched=True)
            vals = md[r0:r1, c0:c1][inside]
            vals = vals[np.isfinite(vals)]
            if len(vals):
                best[k] = vals.max()
                share[k] = float((vals > self.p.impassable_m).mean())
        return pa.table({"entity_id": pa.array(ids, pa.string()), "max_depth_m": pa.array(np.round(best, 4)),
                         "impassable": pa.array(best > self.p.impassable_m),
                         "impassable_share": pa.array(np.round(share, 4))})


class _Recorder:
    """Collects, while the flow runs, the mean depth per H3 cell every layer step and the observation series."""

    def __init__(self, run: _Run, grid: dom.Grid, d: Any, rain: Rain, points: tuple[list[str], np.ndarray] | None
                 ) -> None:
        from twin.geo.crs import transform_xy
        from twin.layers.h3index import latlng_to_cells

        p = run.p
        self.run, self.grid, self.rain, self.points = run, grid, rain, points
        self.layer_s = p.layer_step_min * 60.0
        self.step_s = math.gcd(int(round(self.layer_s * 1000)), int(round(p.points_step_s * 1000))) / 1000.0 \
            if points is not None else self.layer_s
        x, y = grid.centres()
        self.open = np.flatnonzero(d.active.ravel())
        lng, lat = transform_xy(x.ravel()[self.open], y.ravel()[self.open], grid.crs, "EPSG:4326")
        self.cells, self.inv = np.unique(latlng_to_cells(lat, lng, max(LAYER_RES)), return_inverse=True)
        self.count = np.bincount(self.inv, minlength=len(self.cells)).astype(np.float64)
        self.times: list[float] = []
        self.means: list[np.ndarray] = []
        self.z = d.z.ravel()
        self.series: list[tuple[float, np.ndarray]] = []
        self.max_mean = np.zeros(len(self.cells))

    def __call__(self, t: float, h: np.ndarray) -> None:
        flat = h.ravel()
        if self.points is not None and self._on(t, self.run.p.points_step_s):
            self.series.append((t, flat[self.points[1]].copy()))
        if self._on(t, self.layer_s):
            m = np.bincount(self.inv, weights=flat[self.open], minlength=len(self.cells)) / self.count
            self.times.append(t)
            self.means.append(m.astype(np.float32))

    @staticmethod
    def _on(t: float, step: float) -> bool:
        k = t / step
        return abs(k - round(k)) < 1e-6

    def layers(self, out: Outputs) -> None:
        """The time layer (cells wet at some step) and the max-depth layer (every cell of the domain)."""
        from twin.layers.values import make_values

        res = max(LAYER_RES)
        area = self.grid.dx ** 2
        if not self.means:
            return
        stack = np.vstack(self.means)
        keep = np.flatnonzero(stack.max(axis=0) >= self.run.p.layer_min_depth_m)
        start = np.datetime64(self.rain.start.astimezone(UTC).replace(tzinfo=None), "us")
        if len(keep):
            k = len(self.times)
            t = np.repeat(np.array([start + np.timedelta64(int(round(s * 1e6)), "us") for s in self.times]),
                          len(keep))
            vals = make_values(np.tile(self.cells[keep], k), res, stack[:, keep].ravel().astype(np.float64), t=t,
                               count=np.tile(self.count[keep], k).astype(np.int64),
                               weight=np.tile(self.count[keep] * area, k))
            step = f"{self.run.p.layer_step_min:g}min"
            out.layers.append((LayerSpec(
                name="flood-depth", variable="water_depth", unit="m", aggregation="area_weighted_mean",
                resolutions=LAYER_RES, time_bucket=step,
                description=f"mean water depth per cell every {step} ({self.rain.source})"), vals))
        mx = stack.max(axis=0).astype(np.float64)
        out.layers.append((LayerSpec(
            name="flood-max-depth", variable="max_water_depth", unit="m", aggregation="area_weighted_mean",
            resolutions=LAYER_RES, description=f"mean over the cell of the largest depth at the layer steps "
                                               f"({self.rain.source})"),
            make_values(self.cells, res, mx, count=self.count.astype(np.int64), weight=self.count * area)))

    def points_table(self) -> pa.Table:
        assert self.points is not None
        ids, cells = self.points
        n = len(self.series)
        t = np.repeat([s for s, _ in self.series], len(ids))
        depth = np.concatenate([v for _, v in self.series]) if n else np.zeros(0)
        stage = depth + np.tile(self.z[cells], n)
        when = [(self.rain.start + timedelta(seconds=float(s))).isoformat() for s in t]
        return pa.table({"entity_id": pa.array(np.tile(ids, n).tolist(), pa.string()), "t_s": pa.array(t),
                         "time": pa.array(when, pa.string()), "depth_m": pa.array(np.round(depth, 5)),
                         "stage_m": pa.array(np.round(stage, 5))})
