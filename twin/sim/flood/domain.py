"""The flood grid: terrain, walls, roughness, losses, rain, inflows and boundaries on one regular raster, from a
store state (the DTM product, the branch's buildings, land cover and roads) or from a user's own files (a DEM
GeoTIFF, footprints, roughness polygons, inflows, observation points).

File parameters are ``PATH`` or ``PATH:key=value[,key=value]`` (``roughness=roads.geojson:n=0.02``,
``inflow=inflow.geojson:q=19.7``); a feature's own property of that name wins over the suffix. Vector files are
read by GDAL (pyogrio) and reprojected to the grid's CRS; rasters are resampled onto the grid.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine

from twin.errors import BadInput
from twin.geo.crs import is_geographic
from twin.sim.base import split_file_param
from twin.sim.flood import tables
from twin.sim.flood.solver import CLOSED, FIXED, OPEN, SIDES, Boundary, Domain, Inflow

KINDS = {"closed": CLOSED, "open": OPEN, "fixed": FIXED}
MAX_CELLS = 60_000_000
NODATA_FILL_CELLS = 100  # holes up to this many cells across are filled from their edges (GDAL FillNodata)


@dataclass
class FileRef:
    """A file parameter: the path and its ``key=value`` options."""

    path: Path
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str, what: str) -> FileRef:
        opts: dict[str, Any] = {}
        path, tail = split_file_param(value)
        if tail:
            for part in tail.split(","):
                k, eq, v = part.partition("=")
                if not eq or not k.strip():
                    raise BadInput(f"{what}: bad option {part!r} in {value!r}; write PATH:key=value[,key=value]")
                try:
                    opts[k.strip()] = json.loads(v)
                except json.JSONDecodeError:
                    opts[k.strip()] = v.strip()
        p = Path(path).expanduser()
        if not p.exists():
            raise BadInput(f"{what}: no such file {str(p)!r}")
        return cls(p, opts)


@dataclass
class Grid:
    """The raster the flow runs on (row 0 north)."""

    transform: Affine
    shape: tuple[int, int]
    crs: str

    @property
    def dx(self) -> float:
        return float(self.transform.a)

    @property
    def bbox(self) -> list[float]:
        t, (h, w) = self.transform, self.shape
        return [t.c, t.f + t.e * h, t.c + t.a * w, t.f]

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y of every cell centre, (rows, cols) each."""
        h, w = self.shape
        t = self.transform
        cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        return t.c + t.a * cols, t.f + t.e * rows

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Flat index of the cells holding points (−1 outside the grid)."""
        t = self.transform
        c = np.floor((np.asarray(x) - t.c) / t.a).astype(np.int64)
        r = np.floor((np.asarray(y) - t.f) / t.e).astype(np.int64)
        h, w = self.shape
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        return np.where(ok, r * w + c, -1)

    def rasterize(self, shapes: list[tuple[Any, Any]], fill: Any = 0, dtype: str = "float64",
                  all_touched: bool = False) -> np.ndarray:
        from rasterio.features import rasterize

        if not shapes:
            return np.full(self.shape, fill, dtype=dtype)
        return rasterize(shapes, out_shape=self.shape, transform=self.transform, fill=fill, dtype=dtype,
                         all_touched=all_touched)


# ------------------------------------------------------------------------------------------------ terrain
def utm_of(lon: float, lat: float) -> str:
    """The WGS 84 / UTM zone of a position, as EPSG:326NN (north) or EPSG:327NN (south)."""
    zone = min(max(int((lon + 180.0) // 6.0) + 1, 1), 60)
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def file_crs(path: Path) -> str | None:
    """The CRS of a raster file (None when it has none, e.g. an ASCII grid without .prj)."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            return str(src.crs) if src.crs else None
    except rasterio.errors.RasterioIOError as exc:
        raise BadInput(f"dem: cannot read {str(path)!r} as a raster: {exc}") from None


def terrain(path: Path, resolution_m: float, crs: str | None, bbox: list[float] | None, fill_nodata: bool,
            what: str, warnings: list[str]) -> tuple[np.ndarray, Grid]:
    """The DEM resampled to ``resolution_m`` cells over its extent (or ``bbox``), holes filled or refused."""
    import rasterio
    from rasterio.fill import fillnodata
    from rasterio.warp import Resampling, reproject

    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise BadInput(f"{what}: cannot read {str(path)!r} as a raster: {exc}") from None
    with src:
        src_crs = str(src.crs) if src.crs else (crs or "")
        if not src_crs:
            raise BadInput(f"{what}: {path.name} has no CRS; pass its EPSG code (e.g. crs=EPSG:32650) or give "
                           "a GeoTIFF with one")
        res = abs(src.transform.a)
        if abs(abs(src.transform.e) - res) > 1e-6 * res or src.transform.b or src.transform.d:
            raise BadInput(f"{what}: {path.name} must have square, north-up pixels")
        dst_crs, bounds = src_crs, list(src.bounds)
        if is_geographic(src_crs):  # degrees (SRTM, Copernicus DEM): the flow needs metres, on UTM
            from rasterio.warp import transform_bounds

            dst_crs = utm_of((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)
            bounds = list(transform_bounds(src_crs, dst_crs, *bounds))
            res = res * 111_320.0 * math.cos(math.radians((src.bounds.bottom + src.bounds.top) / 2))
            warnings.append(f"{what}: {path.name} is in degrees ({src_crs}); the flow runs on {dst_crs} (UTM)")
        b = bounds if bbox is None else [max(bbox[0], bounds[0]), max(bbox[1], bounds[1]), min(bbox[2], bounds[2]),
                                         min(bbox[3], bounds[3])]
        if not (b[2] > b[0] and b[3] > b[1]):
            raise BadInput(f"bbox: {bbox} does not overlap the terrain {bounds}")
        if resolution_m * 4 < res - 1e-9:
            warnings.append(f"resolution_m: {resolution_m:g} m is more than 4× finer than the terrain's {res:g} m; "
                            "the terrain is resampled (bilinear), which adds no detail")
        w = max(1, int(round((b[2] - b[0]) / resolution_m)))
        h = max(1, int(round((b[3] - b[1]) / resolution_m)))
        if w * h > MAX_CELLS:
            raise BadInput(f"resolution_m: {resolution_m:g} m makes {w * h:,} cells (at most {MAX_CELLS:,}); "
                           "use a coarser resolution or a bbox")
        transform = Affine(resolution_m, 0, b[0], 0, -resolution_m, b[3])
        z = np.full((h, w), np.nan, np.float64)
        nodata = src.nodata
        data = src.read(1).astype(np.float64)
        if nodata is not None:
            data[data == nodata] = np.nan
        method = Resampling.average if resolution_m > res * 1.01 else Resampling.bilinear
        if dst_crs == src_crs and abs(resolution_m - res) < 1e-9 and abs((b[0] - src.bounds.left) / res % 1) < 1e-9:
            method = Resampling.nearest
        reproject(data, z, src_transform=src.transform, src_crs=src.crs or src_crs, dst_transform=transform,
                  dst_crs=dst_crs, resampling=method, src_nodata=np.nan, dst_nodata=np.nan)
    holes = ~np.isfinite(z)
    if holes.all():
        raise BadInput(f"{what}: {path.name} has no valid heights over the domain")
    if holes.any():
        if not fill_nodata:
            raise BadInput(f"{what}: {int(holes.sum()):,} cells have no height (NaN or nodata); pass "
                           "fill_nodata=true to fill them from their edges")
        filled = fillnodata(np.where(holes, 0, z), mask=(~holes).astype("uint8"),
                            max_search_distance=NODATA_FILL_CELLS)
        left = int((holes & (filled == 0)).sum())
        z = np.where(holes, filled, z)
        z[holes & (filled == 0)] = np.nan
        warnings.append(f"{what}: filled {int(holes.sum()) - left:,} cells without height from their edges"
                        + (f"; {left:,} beyond {NODATA_FILL_CELLS} cells from any height are left out" if left
                           else ""))
    return z, Grid(transform, (h, w), dst_crs)


# ------------------------------------------------------------------------------------------------ vector files
def read_features(ref: FileRef, crs: str, what: str) -> list[tuple[shapely.Geometry, dict[str, Any]]]:
    """(geometry in ``crs``, properties) of every feature of a vector file."""
    import pyogrio

    from twin.geo.crs import reproject as reproject_geoms

    try:
        meta, table = pyogrio.read_arrow(ref.path)
    except Exception as exc:  # noqa: BLE001 - GDAL's many errors: say which file and why
        raise BadInput(f"{what}: cannot read {str(ref.path)!r}: {exc}") from None
    geom_col = meta.get("geometry_name") or "wkb_geometry"
    names = [n for n in table.column_names if n != geom_col]
    geoms = shapely.from_wkb(table.column(geom_col).to_numpy(zero_copy_only=False))
    src = meta.get("crs") or crs
    if src and src != crs:
        geoms = np.asarray(reproject_geoms(list(geoms), src, crs), dtype=object)
    rows = table.select(names).to_pylist()
    out = [(g, r) for g, r in zip(geoms, rows, strict=True) if g is not None and not g.is_empty]
    if not out:
        raise BadInput(f"{what}: {ref.path.name} has no features with a geometry")
    return out


def number_of(props: dict[str, Any], ref: FileRef, key: str, what: str, default: float | None = None) -> float:
    v = props.get(key, ref.options.get(key, default))
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadInput(f"{what}: feature without a numeric {key!r} (give it in the file or as "
                       f"{ref.path.name}:{key}=VALUE)") from None
    if not math.isfinite(f) or f < 0:
        raise BadInput(f"{what}: {key} must be a number ≥ 0, got {v!r}")
    return f


def polygons_of(feats: list[tuple[shapely.Geometry, dict[str, Any]]], width_key: str = "width_m",
                default_width: float = 1.0) -> list[tuple[shapely.Geometry, dict[str, Any]]]:
    """Areas of features: polygons as they are, lines buffered by half their width, points by half a cell."""
    out = []
    for g, p in feats:
        if g.geom_type in ("Polygon", "MultiPolygon"):
            out.append((g, p))
        elif g.geom_type in ("LineString", "MultiLineString"):
            w = p.get(width_key)
            w = float(w) if isinstance(w, int | float) and w > 0 else default_width
            out.append((g.buffer(w / 2.0, cap_style="flat"), p))
    return out


def inflows_from(ref: FileRef, grid: Grid, active: np.ndarray, what: str = "inflow") -> list[Inflow]:
    """Inflows from points or polygons with a discharge ``q`` (m³/s) or a ``hydrograph`` ([[t_s, q], …]), or from a
    raster of inflow rates (m/s per cell, as Itzi's)."""
    if ref.path.suffix.lower() in (".tif", ".tiff", ".asc", ".vrt"):
        rate = raster_on(ref.path, grid, what)
        cells = np.flatnonzero((np.nan_to_num(rate) > 0).ravel() & active.ravel())
        if not len(cells):
            raise BadInput(f"{what}: {ref.path.name} has no positive inflow on the domain")
        v = rate.ravel()[cells] * grid.dx * grid.dx
        return [Inflow(cells, v / v.sum(), np.array([0.0]), np.array([float(v.sum())]))]
    out = []
    for g, p in read_features(ref, grid.crs, what):
        hydro = p.get("hydrograph", ref.options.get("hydrograph"))
        if isinstance(hydro, str):
            hydro = json.loads(hydro)
        if hydro:
            arr = np.asarray(hydro, np.float64)
            if arr.ndim != 2 or arr.shape[1] != 2 or (arr[:, 1] < 0).any() or (np.diff(arr[:, 0]) <= 0).any():
                raise BadInput(f"{what}: hydrograph must be [[t_s, q_m3s], …] with rising times and q ≥ 0")
            times, q = arr[:, 0], arr[:, 1]
        else:
            times, q = np.array([0.0]), np.array([number_of(p, ref, "q", what)])
        if g.geom_type in ("Point", "MultiPoint"):
            pts = shapely.get_coordinates(g)
            cells = grid.cell_of(pts[:, 0], pts[:, 1])
        else:
            mask = grid.rasterize([(g, 1)], dtype="uint8", all_touched=True).astype(bool)
            cells = np.flatnonzero(mask.ravel())
        cells = cells[(cells >= 0)]
        cells = cells[active.ravel()[cells]]
        if not len(cells):
            raise BadInput(f"{what}: a feature of {ref.path.name} lies off the domain or on walls only")
        out.append(Inflow(cells, np.full(len(cells), 1.0 / len(cells)), times, q))
    return out


def raster_on(path: Path, grid: Grid, what: str) -> np.ndarray:
    """A raster file's first band resampled onto the grid (NaN where it has none)."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    try:
        with rasterio.open(path) as src:
            data = src.read(1).astype(np.float64)
            if src.nodata is not None:
                data[data == src.nodata] = np.nan
            out = np.full(grid.shape, np.nan)
            reproject(data, out, src_transform=src.transform, src_crs=src.crs or grid.crs,
                      dst_transform=grid.transform, dst_crs=grid.crs, resampling=Resampling.nearest,
                      src_nodata=np.nan, dst_nodata=np.nan)
            return out
    except rasterio.errors.RasterioIOError as exc:
        raise BadInput(f"{what}: cannot read {str(path)!r} as a raster: {exc}") from None


def observation_points(path: Path, grid: Grid, crs: str | None = None) -> tuple[list[str], np.ndarray]:
    """Ids and flat cells of the observation points of a CSV (columns id, x, y in ``crs``, default the grid's:
    a geographic DEM's points are lon, lat)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise BadInput(f"points: cannot read {str(path)!r}: {exc}") from None
    if not rows or not {"x", "y"} <= set(rows[0]):
        raise BadInput(f"points: {path.name} needs a header with x and y (and id) columns")
    ids, xs, ys = [], [], []
    for k, r in enumerate(rows, start=2):
        try:
            xs.append(float(r["x"]))
            ys.append(float(r["y"]))
        except (TypeError, ValueError):
            raise BadInput(f"points: {path.name} line {k}: x and y must be numbers") from None
        ids.append(str(r.get("id") or f"p{k - 1}"))
    x, y = np.array(xs), np.array(ys)
    if crs and crs != grid.crs:
        from twin.geo.crs import transform_xy

        x, y = transform_xy(x, y, crs, grid.crs)
    cells = grid.cell_of(x, y)
    if (cells < 0).any():
        bad = [i for i, c in zip(ids, cells, strict=True) if c < 0]
        raise BadInput(f"points: {', '.join(bad[:5])} lie outside the domain {grid.bbox}")
    return ids, cells


# ------------------------------------------------------------------------------------------------ assembly
def boundary_of(spec: str | dict[str, str], level: float | None, shape: tuple[int, int]) -> Boundary:
    """A :class:`Boundary` from ``open`` / ``closed`` / ``fixed`` for every side or a dict per side (sides not
    named are closed); ``fixed`` needs ``boundary_level``."""
    per = dict.fromkeys(SIDES, spec) if isinstance(spec, str) else {s: "closed" for s in SIDES} | dict(spec)
    kinds = {}
    for side, kind in per.items():
        if side not in SIDES:
            raise BadInput(f"boundary: unknown side {side!r}; sides: {', '.join(SIDES)}")
        if kind not in KINDS:
            raise BadInput(f"boundary: {side}: {kind!r} is not one of {', '.join(KINDS)}")
        kinds[side] = KINDS[kind]
    if FIXED in kinds.values() and level is None:
        raise BadInput("boundary_level: a fixed boundary needs boundary_level (m)")
    return Boundary.uniform(shape, kinds, level if level is not None else 0.0)


def roof_weights(active: np.ndarray, walls: np.ndarray, rain_mask: np.ndarray, routed: bool) -> np.ndarray:
    """Rain multiplier per cell: the cell's own share of the rain area, plus (``routed``) the rain on the roofs
    whose nearest open cell it is (downpipes to the ground around the building)."""
    from scipy.ndimage import distance_transform_edt

    w = np.where(active, rain_mask, 0.0)
    if routed and walls.any() and active.any():
        _, (ri, ci) = distance_transform_edt(~active, return_indices=True)
        roof = walls & (rain_mask > 0)
        np.add.at(w, (ri[roof], ci[roof]), rain_mask[roof])
    return w


def assemble(z: np.ndarray, grid: Grid, walls: np.ndarray, classes: np.ndarray, manning_extra: np.ndarray,
             manning: dict[str, float], infiltration_mm_h: dict[str, float], drainage_m_s: np.ndarray,
             rain_mask: np.ndarray, rain_edges_s: np.ndarray, rain_rates: np.ndarray, boundary: Boundary,
             inflows: list[Inflow], routed_roofs: bool) -> Domain:
    """The solver's :class:`Domain`: ``classes`` indexes :data:`tables.CLASSES`; ``manning_extra`` (NaN where
    none) overrides the class's n."""
    active = np.isfinite(z) & ~walls
    n_by = np.array([manning[c] for c in tables.CLASSES])
    f_by = np.array([infiltration_mm_h[c] for c in tables.CLASSES]) / 3.6e6
    n = np.where(np.isfinite(manning_extra), manning_extra, n_by[classes])
    return Domain(z=np.where(np.isfinite(z), z, 0.0), dx=grid.dx, active=active, manning=n, loss_rate=f_by[classes],
                  drain_rate=np.where(active, drainage_m_s, 0.0),
                  rain_weight=roof_weights(active, walls & np.isfinite(z), rain_mask, routed_roofs),
                  rain_edges_s=rain_edges_s, rain_rates=rain_rates, boundary=boundary, inflows=inflows)
