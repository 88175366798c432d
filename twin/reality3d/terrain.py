"""Terrain products from point clouds: DTM, DSM and nDSM rasters (Cloud-Optimized GeoTIFF) and a terrain mesh.

Gridding reuses :func:`twin.lidar.grids.grid_lidar` (DSM = highest point per cell, DTM = mean ground point per
cell, gaps filled by inverse-distance inpainting). Files whose ground classes are not trustworthy (see
:func:`twin.reality3d.ground.trusts_existing`) get their DTM from the SMRF ground filter instead.

Rasters hold metres in ``z``; ``x``/``y`` follow :func:`twin.sources.points.iter_points` (metres of the CRS
plane); a file in feet is written back in its CRS units (the transform is scaled by ``1 / xy_m``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyproj
import rasterio
from affine import Affine

from twin.geo.crs import normalise
from twin.lidar.grids import grid_lidar
from twin.reality3d import ground as gf
from twin.sources import pointcloud, points

NODATA = -9999.0


@dataclass
class Terrain:
    """DTM, DSM and nDSM (float32, metres) on one north-up grid, with the class fractions used for vegetation."""

    transform: Affine
    crs: str | None
    xy_m: float  # metres per CRS unit of the grid's x/y (1.0 unless the CRS is in feet)
    dtm: np.ndarray
    dsm: np.ndarray
    ndsm: np.ndarray
    count: np.ndarray  # points per cell
    ground_count: np.ndarray  # ground points per cell (after the filter when it ran)
    veg_fraction: np.ndarray
    building_fraction: np.ndarray
    ground_method: str = "classes"  # 'classes' (the files' own) or 'smrf'
    meta: dict = field(default_factory=dict)

    @property
    def cell(self) -> float:
        return abs(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the grid, metres of the CRS plane."""
        h, w = self.dtm.shape
        t = self.transform
        return t.c, t.f + h * t.e, t.c + w * t.a, t.f

    def crs_transform(self) -> Affine:
        """The grid transform in the CRS's own units (differs from ``transform`` only for CRSs in feet)."""
        return Affine.scale(1.0 / self.xy_m) @ self.transform if self.xy_m != 1.0 else self.transform


def _bounds(paths: Sequence[Path], crs: str | None, to_crs: str | None) -> tuple[float, float, float, float]:
    if to_crs is None:
        return gf.bounds_m(paths, crs)
    boxes = []
    dst = pointcloud.parse_user_crs(to_crs, paths[0])
    f = pointcloud.xy_unit_m(dst) or 1.0
    for p in paths:
        info = pointcloud.header_info(p, crs)
        b = info["bbox"]
        t = pyproj.Transformer.from_crs(points.crs_of(p, crs), dst, always_xy=True)
        xs, ys = t.transform(np.array([b[0], b[2], b[0], b[2]]), np.array([b[1], b[1], b[3], b[3]]))
        boxes.append([min(xs) * f, min(ys) * f, max(xs) * f, max(ys) * f])
    a = np.asarray(boxes)
    return float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 2].max()), float(a[:, 3].max())


def _filtered_dtm(paths: Sequence[Path], transform: Affine, shape: tuple[int, int], crs: str | None,
                  to_crs: str | None, chunk: int, ground_kwargs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mean elevation of SMRF ground points per cell, gaps inpainted; and the ground count per cell."""
    n = shape[0] * shape[1]
    gsum, gcnt = np.zeros(n), np.zeros(n, np.int64)
    flags = gf.classify_ground(paths, crs=crs, use_existing=False, chunk=chunk, **ground_kwargs)
    for p in paths:
        for c in points.iter_points(p, chunk, crs=crs, to_crs=to_crs):
            g = next(flags)
            idx, ok = gf.cell_index(transform, shape, c["x"], c["y"])
            ok &= g
            gcnt += np.bincount(idx[ok], minlength=n)
            gsum += np.bincount(idx[ok], weights=c["z"][ok], minlength=n)
    has = gcnt > 0
    mean = np.where(has, gsum / np.maximum(gcnt, 1), 0.0).reshape(shape)
    return gf.fill_grid(mean, has.reshape(shape)).astype(np.float32), gcnt.reshape(shape).astype(np.int32)


def build_terrain(paths: Path | str | Iterable[Path | str], *, resolution: float = 1.0, crs: str | None = None,
                  to_crs: str | None = None, bounds: Sequence[float] | None = None,
                  use_existing: gf.UseExisting = "auto", ground_kwargs: dict | None = None,
                  chunk: int = pointcloud.CHUNK) -> Terrain:
    """DTM, DSM and nDSM of point-cloud files at ``resolution`` metres over ``bounds`` (default: the files' extent).

    ``crs`` declares the files' CRS when their header has none; ``to_crs`` reprojects into another CRS. Ground comes
    from the files' classes when trusted (``use_existing``), else from the SMRF filter (``ground_kwargs``).
    """
    ps = gf._as_paths(paths)
    transform, shape = gf.grid_for(bounds if bounds is not None else _bounds(ps, crs, to_crs), resolution)
    grids = grid_lidar(ps, transform, shape, grid_crs=to_crs, points_crs=crs, chunk=chunk)
    out_crs = pyproj.CRS.from_user_input(to_crs) if to_crs else points.crs_of(ps[0], crs)
    xy_m = pointcloud.xy_unit_m(out_crs) or 1.0
    dtm, gcount, method = grids.dtm, grids.ground_count, "classes"
    if not gf.trusts_existing(ps, use_existing, crs):
        kw = {"cell": max(resolution, 1.0), **(ground_kwargs or {})}
        dtm, gcount = _filtered_dtm(ps, transform, shape, crs, to_crs, chunk, kw)
        method = "smrf"
    dsm = np.maximum(grids.dsm, dtm).astype(np.float32)  # a surface never below the terrain
    return Terrain(
        transform=transform, crs=normalise(out_crs), xy_m=xy_m, dtm=dtm.astype(np.float32), dsm=dsm,
        ndsm=np.maximum(dsm - dtm, 0.0).astype(np.float32), count=grids.count, ground_count=gcount,
        veg_fraction=grids.veg_fraction, building_fraction=grids.building_fraction, ground_method=method,
        meta={"density": grids.density, "nodata_fraction": float(np.mean(gcount == 0))},
    )


def write_cog(path: Path | str, array: np.ndarray, transform: Affine, crs: str | None, *,
              nodata: float = NODATA) -> Path:
    """Write one float32 band as a Cloud-Optimized GeoTIFF (DEFLATE, 256 px tiles, overviews), NaN as nodata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.where(np.isfinite(array), array, nodata).astype(np.float32)
    profile = {
        "driver": "COG", "width": data.shape[1], "height": data.shape[0], "count": 1, "dtype": "float32",
        "transform": transform, "crs": crs, "nodata": nodata, "compress": "DEFLATE", "predictor": 3,
        "blocksize": 256, "overview_resampling": "average",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def write_terrain(terrain: Terrain, out_dir: Path | str, prefix: str = "") -> dict[str, Path]:
    """Write ``dtm.tif``, ``dsm.tif`` and ``ndsm.tif`` (COG, float32, CRS and nodata set) into ``out_dir``."""
    out = Path(out_dir)
    t = terrain.crs_transform()
    return {name: write_cog(out / f"{prefix}{name}.tif", getattr(terrain, name), t, terrain.crs)
            for name in ("dtm", "dsm", "ndsm")}


# ---------------------------------------------------------------------------------------------------- mesh


@dataclass
class TerrainMesh:
    """A triangulated terrain: vertices (n, 3) float64 x, y, z and triangles (m, 3) int64, counter-clockwise."""

    vertices: np.ndarray
    triangles: np.ndarray
    stride: int = 1

    def write_obj(self, path: Path | str) -> Path:
        """Write the mesh as Wavefront OBJ (1-based faces), millimetre precision."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="ascii") as f:
            f.write(f"# twin terrain mesh: {len(self.vertices)} vertices, {len(self.triangles)} triangles\n")
            np.savetxt(f, self.vertices, fmt="v %.3f %.3f %.3f")
            np.savetxt(f, self.triangles + 1, fmt="f %d %d %d")
        return path


def _nodes(dtm: np.ndarray) -> np.ndarray:
    """Elevation at the cell corners: mean of the (up to four) cells meeting there."""
    p = np.pad(dtm.astype(np.float64), 1, mode="edge")
    return 0.25 * (p[:-1, :-1] + p[:-1, 1:] + p[1:, :-1] + p[1:, 1:])


def _keep(n: int, stride: int) -> np.ndarray:
    idx = np.arange(0, n, stride)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def _interp_axis(n: int, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    j = np.clip(np.searchsorted(keep, np.arange(n), side="right") - 1, 0, len(keep) - 2)
    span = np.maximum(keep[j + 1] - keep[j], 1)
    return j, (np.arange(n) - keep[j]) / span


def _max_error(nodes: np.ndarray, stride: int) -> float:
    """Largest vertical difference between the full node grid and its bilinear reconstruction at ``stride``."""
    kr, kc = _keep(nodes.shape[0], stride), _keep(nodes.shape[1], stride)
    if len(kr) < 2 or len(kc) < 2:
        return float("inf")
    sub = nodes[np.ix_(kr, kc)]
    jr, fr = _interp_axis(nodes.shape[0], kr)
    jc, fc = _interp_axis(nodes.shape[1], kc)
    fr, fc = fr[:, None], fc[None, :]
    rec = ((sub[np.ix_(jr, jc)] * (1 - fc) + sub[np.ix_(jr, jc + 1)] * fc) * (1 - fr)
           + (sub[np.ix_(jr + 1, jc)] * (1 - fc) + sub[np.ix_(jr + 1, jc + 1)] * fc) * fr)
    return float(np.max(np.abs(rec - nodes)))


def terrain_mesh(dtm: np.ndarray, transform: Affine, *, stride: int | None = None,
                 max_error: float | None = 0.25) -> TerrainMesh:
    """Regular-grid triangulation of a DTM over its full extent (vertices at cell corners, two triangles per quad).

    ``stride`` keeps every n-th corner (the last row/column always kept); without it the largest power-of-two
    stride whose bilinear reconstruction stays within ``max_error`` metres of every corner is chosen.
    """
    nodes = _nodes(dtm)
    if stride is None:
        stride = 1
        if max_error is not None:
            while stride * 2 < max(nodes.shape) and _max_error(nodes, stride * 2) <= max_error:
                stride *= 2
    kr, kc = _keep(nodes.shape[0], max(int(stride), 1)), _keep(nodes.shape[1], max(int(stride), 1))
    rr, cc = np.meshgrid(kr, kc, indexing="ij")
    x = transform.c + cc * transform.a + rr * transform.b
    y = transform.f + cc * transform.d + rr * transform.e
    verts = np.column_stack([x.ravel(), y.ravel(), nodes[rr, cc].ravel()])
    w = len(kc)
    i, j = np.meshgrid(np.arange(len(kr) - 1), np.arange(w - 1), indexing="ij")
    v00 = (i * w + j).ravel()
    v01, v10, v11 = v00 + 1, v00 + w, v00 + w + 1
    # rows run south (transform.e < 0): v10 is south-west, so (v10, v11, v01) and (v10, v01, v00) are CCW from above
    tris = np.concatenate([np.column_stack([v10, v11, v01]), np.column_stack([v10, v01, v00])]).astype(np.int64)
    if transform.e > 0:
        tris = tris[:, ::-1]
    return TerrainMesh(vertices=verts, triangles=tris, stride=int(stride))
