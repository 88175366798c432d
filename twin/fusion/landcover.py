"""Land-cover fusion: spectral indices + LiDAR heights and classes + vector land use → classes with confidence.

Classes use the demo truth's codes: 1 building, 2 road/impervious, 3 grass, 4 tree (canopy seen from above),
5 water, 6 bare; 0 = no data. Each available source casts fuzzy votes for the six classes per pixel (memberships are
linear ramps between two thresholds, so a pixel near a threshold votes for both sides):

* imagery (NDVI, NDWI, brightness, redness): water (NDWI high, NDVI < 0), vegetation (NDVI high; tree vs grass by
  canopy density, NDVI ≥ 0.8, only meaningful without LiDAR), bare soil (red/blue contrast and bright), built
  (bright or strongly coloured roofs) vs paved (the rest);
* LiDAR (nDSM, class fractions): tree (elevated vegetation points), building (building-class points, or elevated
  non-vegetation when the cloud has no building class), water (water-class returns), road (bridge deck), and an
  uninformative "ground" vote shared by road, grass and bare (LiDAR without intensity cannot tell them apart);
* vectors (building footprints, road areas, water/park polygons): their class, where they cover the pixel centre.

The fused class is the arg-max of the weighted votes (LiDAR 1.2, vectors 1.0, imagery 0.8: canopy over a road or
roof is tree — what is seen from above; a footprint the newest image and LiDAR both show as open ground loses).
Confidence is ``best / (best + runner-up)`` in [0.5, 1] (0 where nothing voted). Running with one source only gives
the single-source baselines the fusion is measured against (:func:`score`).

Large grids are processed in strips of rows (with a halo for the LiDAR DTM interpolation), so memory is bounded by
the strip, not the city.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import laspy
import numpy as np
import shapely
from affine import Affine
from rasterio import features as rfeatures
from rasterio.windows import Window

from data_models import LandCover, LandCoverClass, Provenance
from twin.geo import indices as ix
from twin.geo.crs import normalise, reproject
from twin.lidar.grids import LidarGrids, grid_lidar
from twin.sources import SourceError
from twin.sources.imagery import band_names, image_grid, read_bands

BUILDING, IMPERVIOUS, GRASS, TREE, WATER, BARE = 1, 2, 3, 4, 5, 6
CODES = {1: "building", 2: "road/impervious", 3: "grass", 4: "tree", 5: "water", 6: "bare"}
COVER_CLASS = {1: LandCoverClass.building, 2: LandCoverClass.impervious, 3: LandCoverClass.grass,
               4: LandCoverClass.tree, 5: LandCoverClass.water, 6: LandCoverClass.bare}
KIND_CODES = {"building": 1, "road": 2, "impervious": 2, "paved": 2, "grass": 3, "park": 3, "lawn": 3, "tree": 4,
              "forest": 4, "water": 5, "bare": 6}
WEIGHTS = {"lidar": 1.2, "vector": 1.0, "imagery": 0.8}
DEFAULT_ROAD_WIDTH_M = {"motorway": 24.0, "trunk": 20.0, "primary": 20.0, "secondary": 14.0, "tertiary": 10.0,
                        "residential": 8.0, "service": 5.0, "footway": 2.5, "cycleway": 2.5, "path": 2.0}
STRIP_ROWS = 1024
HALO = 64


class LandCoverResult(NamedTuple):
    """Classes (uint8 codes, 0 = no data), confidence (float32 0..1), grid transform and CRS."""

    classes: np.ndarray
    confidence: np.ndarray
    transform: Affine
    crs: str


def ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below lo, 1 above hi, linear between: a fuzzy threshold."""
    return np.clip((np.asarray(x, np.float32) - np.float32(lo)) / np.float32(hi - lo), 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------------------ evidence per source


def imagery_votes(bands: Mapping[str, np.ma.MaskedArray], lidar_present: bool = False) -> np.ndarray:
    """Votes (7, h, w) of the imagery for classes 0..6 (index = code; 0 unused); zero where the image has no data."""
    s = ix.spectral_indices(bands)
    if s.ndvi is None:
        raise KeyError("land-cover classification needs red and nir bands; " + "; ".join(s.notes))
    valid = ~np.ma.getmaskarray(s.ndvi)
    ndvi = s.ndvi.filled(0)
    ndwi = s.ndwi.filled(0) if s.ndwi is not None else np.zeros_like(ndvi)
    bright = s.brightness.filled(0) if s.brightness is not None else np.zeros_like(ndvi)
    red = s.redness.filled(0) if s.redness is not None else np.zeros_like(ndvi)
    water = ramp(ndwi, 0.1, 0.3) * ramp(-ndvi, 0.0, 0.1)
    veg = ramp(ndvi, 0.35, 0.55) * (1 - water)
    dense = np.full_like(ndvi, 0.5) if lidar_present else ramp(ndvi, 0.79, 0.83)
    open_ = (1 - veg) * (1 - water)
    bare = open_ * ramp(red, 0.10, 0.20) * ramp(bright, 0.12, 0.16) * (1 - ramp(red, 0.36, 0.42))
    built = open_ - bare
    if s.ndbi is not None:
        roof = ramp(s.ndbi.filled(-1), -0.05, 0.1)
    else:
        roof = np.maximum.reduce([ramp(bright, 0.22, 0.28), ramp(-red, 0.2, 0.3), ramp(red, 0.36, 0.42)])
    # spectra separate roofs from pavement, and canopy from lawn, only weakly: those votes stay soft (0.3..0.7),
    # so the arg-max follows the spectra but the confidence says how little they can tell
    dense = 0.3 + 0.4 * dense
    roof = 0.3 + 0.4 * roof
    v = np.zeros((7, *ndvi.shape), np.float32)
    v[WATER] = water
    v[TREE] = veg * dense
    v[GRASS] = veg * (1 - dense)
    v[BARE] = bare
    v[BUILDING] = built * roof
    v[IMPERVIOUS] = built * (1 - roof)
    v *= valid
    return v


def lidar_votes(g: LidarGrids) -> np.ndarray:
    """Votes (7, h, w) of gridded LiDAR; cells without points and without neighbours vote nothing."""
    elev = ramp(g.ndsm, 1.5, 2.5)
    vegdom = ramp(g.veg_fraction, 0.3, 0.7)
    water = ramp(g.water_fraction, 0.3, 0.6) * (1 - elev)
    bridge = ramp(g.bridge_fraction, 0.2, 0.5)
    has_classes = bool(g.building_fraction.any())
    bld = ramp(g.building_fraction, 0.35, 0.75) if has_classes else elev * (1 - vegdom)
    tree = elev * vegdom * (1 - bld)
    ground = np.clip(1 - tree - bld - water - bridge, 0, 1)
    v = np.zeros((7, *g.shape), np.float32)
    v[TREE] = tree
    v[BUILDING] = bld * (1 - water)
    v[WATER] = water
    v[IMPERVIOUS] = bridge + 0.4 * ground
    v[GRASS] = 0.3 * ground
    v[BARE] = 0.3 * ground
    seen = (g.count > 0) | (g.water_fraction > 0)
    v *= seen
    return v


def vector_votes(features: Sequence[tuple[shapely.Geometry, str]], transform: Affine,
                 shape: tuple[int, int]) -> np.ndarray:
    """Votes (7, h, w) of land-use polygons (pixel-centre rule); one vote per class whatever the overlap."""
    v = np.zeros((7, *shape), np.float32)
    by_code: dict[int, list[shapely.Geometry]] = {}
    for geom, kind in features:
        code = KIND_CODES.get(str(kind).lower())
        if code is None:
            raise ValueError(f"unknown land-use kind {kind!r}; known: {', '.join(sorted(KIND_CODES))}")
        if geom is not None and not geom.is_empty:
            by_code.setdefault(code, []).append(geom)
    for code, geoms in by_code.items():
        v[code] = rfeatures.rasterize(((g, 1) for g in geoms), out_shape=shape, transform=transform, fill=0,
                                      dtype="uint8")
    return v


def decide(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arg-max class (uint8, 0 where no votes) and confidence best / (best + runner-up)."""
    top2 = np.sort(votes[1:], axis=0)[-2:]
    best, second = top2[1], top2[0]
    cls = (np.argmax(votes[1:], axis=0) + 1).astype(np.uint8)
    none = best <= 1e-6
    cls[none] = 0
    conf = np.where(none, 0.0, best / np.maximum(best + second, 1e-6)).astype(np.float32)
    return cls, conf


# ------------------------------------------------------------------------------------------ whole classification


def _las_bounds(paths: Sequence[Path]) -> list[tuple[float, float, float, float]]:
    out = []
    for p in paths:
        try:
            with laspy.open(p) as f:
                h = f.header
                out.append((float(h.mins[0]), float(h.mins[1]), float(h.maxs[0]), float(h.maxs[1])))
        except (laspy.errors.LaspyException, OSError, ValueError) as exc:
            raise SourceError(p, f"not a readable LAS/LAZ file ({exc})") from exc
    return out


def classify(image: Path | str | None = None, las_paths: Iterable[Path | str] = (),
             features: Sequence[tuple[shapely.Geometry, str]] = (), *, bands: Any = None,
             grid: tuple[Affine, tuple[int, int], str] | None = None, points_crs: str | None = None,
             features_crs: str | None = None, weights: Mapping[str, float] | None = None,
             strip_rows: int = STRIP_ROWS) -> LandCoverResult:
    """Classify land cover on the image grid (or ``grid`` = (transform, shape, crs)) from whatever is given.

    ``image``: a 4+ band image with red, green, blue, nir (``bands`` = its band mapping when the file does not name
    them); ``las_paths``: LAS/LAZ files (``points_crs`` when it differs from the grid's); ``features``: (shapely
    geometry, kind) pairs — footprints ("building"), road areas ("road", see :func:`vector_features`), "water",
    "grass"… in ``features_crs`` (default the grid's). Any subset works: imagery only, LiDAR only, all fused.
    """
    las = [Path(p) for p in las_paths]
    if image is None and grid is None:
        raise ValueError("classify needs an image or an explicit grid (transform, shape, crs)")
    if image is None and not las and not features:
        raise ValueError("classify needs at least one source: an image, LiDAR files or land-use features")
    transform, shape, crs = grid if grid is not None else image_grid(image)
    crs = normalise(crs)
    w = {**WEIGHTS, **(weights or {})}
    feats = list(features)
    unknown = sorted({str(k) for _, k in feats if str(k).lower() not in KIND_CODES})
    if unknown:
        raise ValueError(f"unknown land-use kind(s) {', '.join(unknown)}; known: {', '.join(sorted(KIND_CODES))}")
    if feats and features_crs and normalise(features_crs) != crs:
        geoms = reproject(np.asarray([g for g, _ in feats], dtype=object), features_crs, crs)
        feats = [(g, k) for g, (_, k) in zip(geoms, feats, strict=True)]
    tree = shapely.STRtree([g for g, _ in feats]) if feats else None
    las_boxes = _las_bounds(las)
    if las and points_crs and normalise(points_crs) != crs:
        las_boxes = [tuple(reproject(shapely.box(*b), points_crs, crs).bounds) for b in las_boxes]
    wanted = ["red", "green", "blue", "nir"]
    if image is not None and "swir1" in band_names(image, bands):
        wanted.append("swir1")  # NDBI then separates roofs from pavement better than brightness does
    h, wd = shape
    classes = np.zeros(shape, np.uint8)
    conf = np.zeros(shape, np.float32)
    for r0 in range(0, h, strip_rows):
        r1 = min(h, r0 + strip_rows)
        h0, h1 = max(0, r0 - HALO), min(h, r1 + HALO)  # halo rows: DTM interpolation sees across strip edges
        t_strip = transform @ Affine.translation(0, h0)
        s_shape = (h1 - h0, wd)
        votes = np.zeros((7, *s_shape), np.float32)
        if image is not None:
            b = read_bands(image, wanted, window=Window(0, h0, wd, h1 - h0),
                           bands_option=bands)
            votes += w["imagery"] * imagery_votes(b, lidar_present=bool(las))
        if las:
            x0, y1 = t_strip @ (0, 0)
            x1, y0 = t_strip @ (wd, h1 - h0)
            sb = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            mine = [p for p, bb in zip(las, las_boxes, strict=True) if shapely.box(*bb).intersects(sb)]
            if mine:
                g = grid_lidar(mine, t_strip, s_shape, grid_crs=crs, points_crs=points_crs)
                votes += w["lidar"] * lidar_votes(g)
        if tree is not None:
            x0, y1 = t_strip @ (0, 0)
            x1, y0 = t_strip @ (wd, h1 - h0)
            idx = np.sort(tree.query(shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))))
            if len(idx):
                votes += w["vector"] * vector_votes([feats[i] for i in idx], t_strip, s_shape)
        c, f = decide(votes)
        classes[r0:r1], conf[r0:r1] = c[r0 - h0:r1 - h0], f[r0 - h0:r1 - h0]
    return LandCoverResult(classes, conf, transform, crs)


def _road_width(r: Any) -> float:
    width = _get(r, "width_m")
    if width:
        return float(width)
    attrs = _get(r, "attributes") or {}
    if attrs.get("width_m"):
        return float(attrs["width_m"])
    cls = str(_get(r, "road_class") or attrs.get("class") or "").lower()
    return DEFAULT_ROAD_WIDTH_M.get(cls, 6.0)


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _shape(obj: Any) -> shapely.Geometry:
    if isinstance(obj, shapely.Geometry):
        return obj
    g = _get(obj, "geometry")
    if isinstance(g, shapely.Geometry):
        return g
    if hasattr(g, "to_shapely"):
        return g.to_shapely()
    return shapely.geometry.shape(g)


def vector_features(buildings: Iterable[Any] = (), roads: Iterable[Any] = (), water: Iterable[Any] = (),
                    other: Iterable[tuple[shapely.Geometry, str]] = ()) -> list[tuple[shapely.Geometry, str]]:
    """(geometry, kind) pairs from store records or models: footprints, roads buffered by half their ``width_m``
    (flat ends; a default width per road class when unset), water areas, plus any extra (geometry, kind) pairs."""
    out = [(_shape(b), "building") for b in buildings]
    for r in roads:
        g = _shape(r)
        if g.geom_type in ("LineString", "MultiLineString"):
            g = shapely.buffer(g, _road_width(r) / 2, cap_style="flat")
        out.append((g, "road"))
    out += [(_shape(wb), "water") for wb in water if _shape(wb).geom_type in ("Polygon", "MultiPolygon")]
    out += list(other)
    return out


# ------------------------------------------------------------------------------------------ accuracy


def score(predicted: np.ndarray, truth: np.ndarray, codes: Iterable[int] = CODES) -> dict[str, Any]:
    """Overall accuracy, Cohen's kappa, per-class producer's (recall) / user's (precision) accuracy and F1.

    Pixels where truth or prediction is 0 (no data) are left out.
    """
    codes = list(codes)
    ok = (truth > 0) & (predicted > 0)
    t, p = truth[ok].astype(np.int64), predicted[ok].astype(np.int64)
    k = max(codes) + 1
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    n = cm.sum()
    oa = float(np.trace(cm) / n) if n else 0.0
    pe = float((cm.sum(0) * cm.sum(1)).sum() / n**2) if n else 0.0
    per = {}
    for c in codes:
        tp, tr, pr = cm[c, c], cm[c].sum(), cm[:, c].sum()
        rec = float(tp / tr) if tr else None
        prec = float(tp / pr) if pr else None
        f1 = 2 * rec * prec / (rec + prec) if rec and prec else 0.0
        per[CODES.get(c, str(c))] = {"producer": rec, "user": prec, "f1": f1, "pixels": int(tr)}
    return {"overall": oa, "kappa": (oa - pe) / (1 - pe) if pe < 1 else 0.0, "classes": per, "pixels": int(n),
            "confusion": cm[1:, 1:].tolist()}


# ------------------------------------------------------------------------------------------ entities


def grid_key(transform: Affine, shape: tuple[int, int], crs: str) -> str:
    """Short digest of a grid (CRS, transform, shape): part of region ids, so ids are stable per grid."""
    s = f"{normalise(crs)}|{tuple(round(v, 6) for v in transform[:6])}|{tuple(shape)}"
    return hashlib.sha1(s.encode()).hexdigest()[:8]


def landcover_entities(classes: np.ndarray, confidence: np.ndarray, transform: Affine, crs: str,
                       provenance: Provenance | Sequence[Provenance] = (), min_area_m2: float = 25.0, *,
                       store_crs: str | None = None, valid_from: datetime | None = None,
                       method: str = "landcover-fusion") -> list[LandCover]:
    """LandCover entities: one polygon per 4-connected region of one class, regions under ``min_area_m2`` merged
    into their largest neighbour first (GDAL sieve); geometry in ``store_crs`` (default the grid's), mean
    confidence of the region, id ``lc-<grid key>-<row>-<col>`` of the region's first cell in row-major order,
    so rebuilding from the same classification gives the same ids."""
    cell = abs(transform.a * transform.e - transform.b * transform.d)
    size = max(1, int(np.ceil(min_area_m2 / cell)))
    cls = np.ascontiguousarray(classes, dtype=np.uint8)
    sieved = rfeatures.sieve(cls, size=size, connectivity=4) if size > 1 else cls
    valid = sieved > 0
    polys, codes = [], []
    for geom, value in rfeatures.shapes(sieved, mask=valid, connectivity=4, transform=transform):
        polys.append(shapely.geometry.shape(geom))
        codes.append(int(value))
    if not polys:
        return []
    labels = rfeatures.rasterize(((p, i + 1) for i, p in enumerate(polys)), out_shape=cls.shape,
                                 transform=transform, fill=0, dtype="int32")
    n = len(polys)
    cnt = np.bincount(labels.ravel(), minlength=n + 1)
    csum = np.bincount(labels.ravel(), weights=np.asarray(confidence, np.float64).ravel(), minlength=n + 1)
    key = grid_key(transform, cls.shape, crs)
    inv = ~transform
    provs = [provenance] if isinstance(provenance, Provenance) else list(provenance)
    out_geoms = np.asarray(polys, dtype=object)
    if store_crs and normalise(store_crs) != normalise(crs):
        out_geoms = reproject(out_geoms, crs, store_crs)
    entities = []
    for i, (poly, code) in enumerate(zip(polys, codes, strict=True)):
        xy = np.asarray(poly.exterior.coords)
        col_row = np.column_stack(inv @ (xy[:, 0], xy[:, 1]))
        r = np.round(col_row[:, 1]).astype(np.int64)
        top = r.min()
        c = int(np.round(col_row[r == top, 0]).min())
        mean_conf = float(csum[i + 1] / cnt[i + 1]) if cnt[i + 1] else 0.0
        mean_conf = round(min(1.0, max(0.0, mean_conf)), 4)
        g = out_geoms[i]
        entities.append(LandCover(
            id=f"lc-{key}-{int(top)}-{c}",
            geometry=shapely.geometry.mapping(g),
            cover_class=COVER_CLASS[code],
            confidence=mean_conf,
            valid_from=valid_from,
            attributes={"code": code, "label": CODES[code], "area_m2": round(float(poly.area), 2),
                        "cells": int(cnt[i + 1]), "method": method},
            provenance=[p.model_copy(update={"confidence": mean_conf}) for p in provs],
        ))
    return entities
