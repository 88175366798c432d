"""Terrain as 3D Tiles 1.1: an implicit quadtree of glTF meshes from the DTM, coloured by our newest imagery.

The root is the DTM's extent as a geodetic ``region``; implicit tiling halves it in longitude and latitude per
level, so every tile is a lon/lat rectangle that holds a (GRID+1)² vertex grid sampled from the DTM (bilinear,
store CRS) — coarser grids at upper levels, REPLACE refinement. Triangles with a vertex outside the DTM are left out;
a tile with no triangle has no content. Vertex colours are the newest imagery asset in true colour (2–98 %
stretch per band, box-averaged to the level's vertex spacing, sRGB → linear), drawn unlit.

Geometric error: implicit tiling halves it per level, so the root's is the smallest value that bounds every level's
measured error (DTM sampled at the quad centres against the rendered triangles) times 2^level.
The result is keyed by a digest of its inputs (DTM or point clouds, imagery, CRS, :data:`FORMAT`) and shared by
every branch and version with the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
from affine import Affine

from twin.tiles.ecef import ecef_to_geodetic, region, to_ecef, translation, yup
from twin.tiles.glb import ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER, TRIANGLES, GltfBuilder
from twin.tiles.implicit import level_offset, morton, subtree_bytes

FORMAT = 2
GRID = 64  # quads per tile side
SUBTREE_LEVELS = 6  # levels per subtree file (fewer when the tree is shallower)
MIN_ERROR = 0.05  # metres: floor of the leaf level's geometric error
Progress = Callable[[str, float], None]


@dataclass
class Dtm:
    """A terrain grid: heights (NaN = no data), its affine transform and CRS."""

    z: np.ndarray
    transform: Affine
    crs: str


def terrain_inputs(store: Any, branch: str, version: int) -> dict[str, Any] | None:
    """What the terrain of (branch, version) is made of, or None when there is neither a DTM nor a point cloud."""
    from data_models import TERRAIN_PRODUCT_IDS
    from twin.store import ASSETS, Query

    assets = store.features(branch, as_of=version, query=Query(collection=ASSETS))
    dtm = next((a for a in assets if a["id"] == TERRAIN_PRODUCT_IDS["dtm"]), None)
    if dtm is not None:
        source: dict[str, Any] = {"dtm": [dtm["id"], dtm.get("checksum"), str(store.asset_path(dtm))]}
    else:
        clouds = sorted((a for a in assets if a.get("kind") == "pointcloud"), key=lambda a: a["id"])
        if not clouds:
            return None
        source = {"clouds": [[a["id"], a.get("checksum"), str(store.asset_path(a)), a.get("crs")] for a in clouds]}
    images = [a for a in assets if a.get("kind") == "imagery"]
    image = max(images, key=lambda a: (str(a.get("acquired") or ""), a["id"]), default=None)
    imagery = None if image is None else [image["id"], image.get("checksum"), str(store.asset_path(image)),
                                          (image.get("properties") or {}).get("bands"),
                                          (image.get("properties") or {}).get("scales")]
    return {"format": FORMAT, "grid": GRID, "crs": store.crs, "source": source, "imagery": imagery}


def terrain_digest(inputs: dict[str, Any]) -> str:
    """Folder name of a terrain tileset: a hash of its inputs."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]


def load_dtm(inputs: dict[str, Any]) -> Dtm:
    """The DTM product (COG) of the store, or a DTM gridded from its point clouds at 1 m."""
    import rasterio

    if "dtm" in inputs["source"]:
        with rasterio.open(inputs["source"]["dtm"][2]) as ds:
            z = ds.read(1).astype(np.float64)
            if ds.nodata is not None:
                z[z == ds.nodata] = np.nan
            return Dtm(z, ds.transform, inputs["crs"])
    from twin.reality3d.terrain import build_terrain

    clouds = inputs["source"]["clouds"]
    crss = {c[3] for c in clouds if c[3]}
    t = build_terrain([Path(c[2]) for c in clouds], resolution=1.0, crs=crss.pop() if len(crss) == 1 else None,
                      to_crs=inputs["crs"])
    return Dtm(t.dtm.astype(np.float64), t.transform, inputs["crs"])


def sample_bilinear(dtm: Dtm, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """DTM heights at CRS points (bilinear between cell centres, clamped at the border cells); NaN outside."""
    h, w = dtm.z.shape
    col, row = ~dtm.transform @ (x, y)
    inside = (col >= 0) & (col <= w) & (row >= 0) & (row <= h)
    c = np.clip(col - 0.5, 0, w - 1)
    r = np.clip(row - 0.5, 0, h - 1)
    c0, r0 = np.minimum(np.floor(c).astype(np.int64), max(w - 2, 0)), np.minimum(np.floor(r).astype(np.int64),
                                                                               max(h - 2, 0))
    c1, r1 = np.minimum(c0 + 1, w - 1), np.minimum(r0 + 1, h - 1)
    fc, fr = c - c0, r - r0
    z = dtm.z
    out = ((z[r0, c0] * (1 - fc) + z[r0, c1] * fc) * (1 - fr) + (z[r1, c0] * (1 - fc) + z[r1, c1] * fc) * fr)
    return np.where(inside, out, np.nan)


class Colours:
    """True-colour vertex colours from one imagery file, box-averaged to each level's vertex spacing."""

    def __init__(self, spec: list[Any] | None) -> None:
        self.spec = spec
        self.levels: dict[int, tuple[np.ndarray, Affine]] = {}
        self.lo = self.hi = None
        self.to_img: pyproj.Transformer | None = None
        if spec is None:
            return
        import rasterio

        with rasterio.open(spec[2]) as ds:
            names = [b.lower() for b in (spec[3] or [])] or [str(d or "").lower() for d in ds.descriptions]
            self.bands = [names.index(b) + 1 if b in names else i + 1 for i, b in enumerate(("red", "green", "blue"))]
            self.pixel = abs(ds.transform.a)
            self.to_img = pyproj.Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True)
            rgb = ds.read(self.bands, out_shape=(3, min(ds.height, 1024), min(ds.width, 1024))).astype(np.float64)
        valid = rgb > 0
        self.lo = np.array([np.percentile(b[v], 2) if v.any() else 0.0 for b, v in zip(rgb, valid, strict=True)])
        self.hi = np.array([np.percentile(b[v], 98) if v.any() else 1.0 for b, v in zip(rgb, valid, strict=True)])

    def _image(self, spacing_m: float) -> tuple[np.ndarray, Affine]:
        import rasterio
        from rasterio.enums import Resampling

        factor = max(1, int(spacing_m / self.pixel))
        if factor not in self.levels:
            with rasterio.open(self.spec[2]) as ds:
                shape = (3, max(1, ds.height // factor), max(1, ds.width // factor))
                rgb = ds.read(self.bands, out_shape=shape, resampling=Resampling.average).astype(np.float64)
                tr = ds.transform @ Affine.scale(ds.width / shape[2], ds.height / shape[1])
            self.levels[factor] = (rgb, tr)
        return self.levels[factor]

    def sample(self, lon: np.ndarray, lat: np.ndarray, spacing_m: float) -> np.ndarray:
        """Linear RGBA (uint16, normalised; VEC4 keeps vertex attributes 4-byte aligned) at lon/lat; mid grey where
        there is no imagery."""
        out = np.full((*lon.shape, 4), 0.5)
        out[..., 3] = 1.0
        if self.spec is not None:
            rgb, tr = self._image(spacing_m)
            x, y = self.to_img.transform(lon, lat)
            col, row = ~tr @ (x, y)
            col, row = np.floor(col).astype(np.int64), np.floor(row).astype(np.int64)
            ok = (col >= 0) & (row >= 0) & (col < rgb.shape[2]) & (row < rgb.shape[1])
            vals = rgb[:, row[ok], col[ok]].T
            srgb = np.clip((vals - self.lo) / np.maximum(self.hi - self.lo, 1e-9), 0, 1)
            out[ok, :3] = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
        return np.round(out * 65535).astype(np.uint16)


def _root(dtm: Dtm) -> tuple[float, float, float, float, float]:
    """(west, south, east, north) in degrees around the DTM's extent, and its ground size in metres."""
    h, w = dtm.z.shape
    t = np.linspace(0, 1, 65)
    edge_c = np.concatenate([t * w, np.full_like(t, w), t * w, np.zeros_like(t)])
    edge_r = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), t * h])
    x, y = dtm.transform @ (edge_c, edge_r)
    lon, lat = pyproj.Transformer.from_crs(pyproj.CRS(dtm.crs).to_2d(), "EPSG:4326", always_xy=True).transform(x, y)
    size = max(abs(dtm.transform.a) * w, abs(dtm.transform.e) * h)
    return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()), float(size)


def _tile_template() -> np.ndarray:
    """Two CCW (seen from above) triangles per quad of a (GRID+1)² vertex grid indexed [row=north, col=east]."""
    j, i = np.meshgrid(np.arange(GRID), np.arange(GRID), indexing="ij")
    a = j * (GRID + 1) + i
    b, c, d = a + 1, a + GRID + 2, a + GRID + 1
    return np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])


def _tile_glb(ecef: np.ndarray, colours: np.ndarray, tris: np.ndarray) -> bytes:
    used = np.unique(tris)
    remap = np.full(len(ecef), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    pts = ecef[used]
    center = (pts.min(axis=0) + pts.max(axis=0)) / 2
    g = GltfBuilder()
    pos = g.add_accessor(yup(pts - center).astype(np.float32), bounds=True)
    col = g.add_accessor(colours[used], target=ARRAY_BUFFER, normalized=True)
    idx = g.add_accessor(remap[tris].astype(np.uint16).reshape(-1), target=ELEMENT_ARRAY_BUFFER)
    mat = g.add_material({"pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0,
                                                   "roughnessFactor": 1.0},
                          "extensions": {"KHR_materials_unlit": {}}})
    g.use_extension("KHR_materials_unlit")
    g.add_mesh([{"attributes": {"POSITION": pos, "COLOR_0": col}, "indices": idx, "material": mat,
                 "mode": TRIANGLES}], matrix=translation(yup(center[None])[0]))
    return g.to_glb()


def build_terrain_tileset(inputs: dict[str, Any], root: Path, progress: Progress | None = None,
                          subtree_levels: int = SUBTREE_LEVELS) -> Path:
    """Write ``root/<digest>/`` (content, subtrees) and ``root/<digest>.json`` (the tileset); returns the latter."""
    step = progress or (lambda stage, fraction: None)
    digest = terrain_digest(inputs)
    out = root / f"{digest}.json"
    step("terrain: DTM", 0.0)
    dtm = load_dtm(inputs)
    colours = Colours(inputs.get("imagery"))
    west, south, east, north, size = _root(dtm)
    res = abs(dtm.transform.a)
    last = max(0, round(math.log2(max(size / (GRID * res), 1.0))))  # leaf spacing within √2 of the DTM cell
    to_crs = pyproj.Transformer.from_crs("EPSG:4326", pyproj.CRS(dtm.crs).to_2d(), always_xy=True)
    template = _tile_template()
    tmp = root / f".{digest}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    tmp.mkdir(parents=True)
    try:
        doc = _write_tiles(tmp, inputs, digest, dtm, colours, (west, south, east, north, size), last, to_crs,
                           template, step, subtree_levels)
        final = root / digest
        if final.exists():
            shutil.rmtree(tmp)  # another process finished first; its files are identical
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a refusing disk (full, read-only) leaves no half-written folder
        raise
    tmp_json = root / f".{digest}.{os.getpid()}.json.tmp"
    try:
        tmp_json.write_text(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp_json, out)
    except BaseException:
        tmp_json.unlink(missing_ok=True)
        raise
    return out


def _write_tiles(tmp: Path, inputs: dict[str, Any], digest: str, dtm: Dtm, colours: Colours,
                 extent: tuple[float, float, float, float, float], last: int, to_crs: pyproj.Transformer,
                 template: np.ndarray, step: Progress, subtree_levels: int) -> dict[str, Any]:
    """Every level's tiles and the subtrees into ``tmp``; returns the tileset.json document."""
    west, south, east, north, size = extent
    content: list[np.ndarray] = []
    errors: list[float] = []
    h_lo, h_hi = math.inf, -math.inf
    step("terrain: DTM", 1.0)
    for level in range(last + 1):
        n = 2**level
        lon = np.linspace(west, east, n * GRID + 1)
        lat = np.linspace(south, north, n * GRID + 1)
        glon, glat = np.meshgrid(lon, lat)  # [row = latitude index, col = longitude index]
        gx, gy = to_crs.transform(glon, glat)
        z = sample_bilinear(dtm, gx, gy)
        ecef = to_ecef(gx, gy, np.nan_to_num(z), dtm.crs)
        if np.isfinite(z).any():
            h = ecef_to_geodetic(ecef[np.isfinite(z)])[2]
            h_lo, h_hi = min(h_lo, float(h.min())), max(h_hi, float(h.max()))
        spacing = size / (n * GRID)
        rgb = colours.sample(glon, glat, spacing)
        # error: the DTM at quad centres against the rendered diagonal (a–c) of each quad
        mlon, mlat = np.meshgrid((lon[:-1] + lon[1:]) / 2, (lat[:-1] + lat[1:]) / 2)
        zc = sample_bilinear(dtm, *to_crs.transform(mlon, mlat))
        diff = np.abs(zc - (z[:-1, :-1] + z[1:, 1:]) / 2)
        errors.append(float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0)
        avail = np.zeros((n, n), dtype=bool)
        for y in range(n):
            for x in range(n):
                sl = (slice(y * GRID, y * GRID + GRID + 1), slice(x * GRID, x * GRID + GRID + 1))
                ok = np.isfinite(z[sl]).reshape(-1)
                tris = template[ok[template].all(axis=1)]
                if not len(tris):
                    continue
                avail[y, x] = True
                path = tmp / "content" / str(level) / str(x) / f"{y}.glb"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_tile_glb(ecef[sl].reshape(-1, 3), rgb[sl].reshape(-1, 4), tris))
        content.append(avail)
        step("terrain: tiles", (level + 1) / (last + 1))
    tiles = _tile_availability(content)
    levels_per_subtree = min(subtree_levels, last + 1)
    _write_subtrees(tmp, tiles, content, levels_per_subtree)
    ge = max([e * 2**lv for lv, e in enumerate(errors)] + [MIN_ERROR * 2**last])
    doc = {
        "asset": {"version": "1.1", "generator": "twin"},
        "geometricError": round(2 * ge, 3),
        "root": {
            "boundingVolume": {"region": region(west, south, east, north, h_lo - 1.0, h_hi + 1.0)},
            "geometricError": round(ge, 3),
            "refine": "REPLACE",
            "content": {"uri": f"{digest}/content/{{level}}/{{x}}/{{y}}.glb"},
            "implicitTiling": {"subdivisionScheme": "QUADTREE", "subtreeLevels": levels_per_subtree,
                               "availableLevels": last + 1,
                               "subtrees": {"uri": f"{digest}/subtrees/{{level}}/{{x}}/{{y}}.subtree"}},
        },
        "extras": {"twin": {"inputs": inputs, "levels_error_m": [round(e, 4) for e in errors]}},
    }
    return doc


def _tile_availability(content: list[np.ndarray]) -> list[np.ndarray]:
    """A tile is available when it has content or an available child (parents of available tiles must be)."""
    tiles = [c.copy() for c in content]
    for level in range(len(tiles) - 1, 0, -1):
        child = tiles[level]
        up = child[0::2, 0::2] | child[1::2, 0::2] | child[0::2, 1::2] | child[1::2, 1::2]
        tiles[level - 1] |= up
    return tiles


def _write_subtrees(out: Path, tiles: list[np.ndarray], content: list[np.ndarray], per: int) -> None:
    """One ``.subtree`` per available subtree root (levels 0, S, 2S, …), Morton-ordered bitstreams."""
    levels = len(tiles)
    for base in range(0, levels, per):
        n0 = 2**base
        for y0 in range(n0):
            for x0 in range(n0):
                if not tiles[base][y0, x0]:
                    continue
                t_bits = np.zeros(level_offset(per), dtype=bool)
                c_bits = np.zeros_like(t_bits)
                for lv in range(per):
                    if base + lv >= levels:
                        break
                    k = 2**lv
                    ys, xs = np.mgrid[0:k, 0:k]
                    gy, gx = y0 * k + ys, x0 * k + xs
                    idx = level_offset(lv) + morton(xs, ys).astype(np.int64)
                    t_bits[idx.ravel()] = tiles[base + lv][gy, gx].ravel()
                    c_bits[idx.ravel()] = content[base + lv][gy, gx].ravel()
                k = 2**per
                children = np.zeros(k * k, dtype=bool)
                if base + per < levels:
                    ys, xs = np.mgrid[0:k, 0:k]
                    gy, gx = y0 * k + ys, x0 * k + xs
                    children[morton(xs, ys).astype(np.int64).ravel()] = tiles[base + per][gy, gx].ravel()
                path = out / "subtrees" / str(base) / str(x0) / f"{y0}.subtree"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(subtree_bytes(t_bits, c_bits, children))
