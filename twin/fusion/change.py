"""Change detection: built / demolished building candidates between two acquisitions, and imagery vs the model.

**Two image dates** (:func:`detect_changes`). Both images are read on the newer image's grid (the older one is
warped when the grids differ), smoothed with a 3×3 box filter, and compared by change-vector analysis on
log-reflectance: per band the log ratio minus its scene median (relative radiometric normalisation: illumination
and phenology shifts that affect the whole scene cancel), then the RMS over bands. Pixels above an automatic
threshold (median + 8 robust SDs of the magnitude, at least 0.15) are opened morphologically, regions smaller than
``min_area_m2`` removed (GDAL sieve), and the rest polygonised. Each changed region then gets a *building score*
before and after, from whatever describes that state:

* LiDAR (a state at its acquisition time): share of the region's cells whose points are mostly building class;
* footprints of the model (a state at the model's time): share of the region the footprints cover;
* spectra of each image: share of built-up pixels (not vegetation, not water, not bare soil).

A region whose score rises is a *built* candidate, one whose score falls is *demolished*; one with no building on
either side (a lawn turned to soil) is dropped. Confidence grows with the score difference and the change magnitude.
The matched building is the footprint overlapping the region most (None when none does).

**Imagery vs model** (:func:`model_changes`). A footprint that an image shows mostly as vegetation or bare soil (and
LiDAR, when given, as ground) was not standing at the image time; a building-like region in the image (fused land
cover, class building) that no footprint covers was not in the model. Which of built/demolished that means depends
on whether the image is newer or older than the model.

**Valid time** (:func:`apply_changes`). A change seen between ``t_before`` and ``t_after`` happened at an unknown
time in that interval. The store's valid time takes the certain bound — a built building ``valid_from = t_after``
(it certainly stands from then), a demolished one ``valid_to = t_after`` (certainly gone from then, exclusive) — and
the attributes keep the other bound: ``valid_from_earliest`` / ``valid_to_earliest`` = ``t_before``, plus the
interval under ``change``. An as-of query inside the interval thus shows the older state, which the imagery still
confirms at ``t_before``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely
from affine import Affine
from rasterio import features as rfeatures

from data_models import Building, Provenance
from twin.fusion.landcover import BUILDING, classify, ramp
from twin.geo import indices as ix
from twin.geo.crs import normalise, reproject
from twin.lidar.grids import grid_lidar
from twin.sources.imagery import image_grid, read_bands, read_bands_on_grid

BANDS = ["red", "green", "blue", "nir"]
MIN_AREA_M2 = 30.0
MAX_AREA_M2 = 20_000.0
MIN_SCORE_CHANGE = 0.2
PIXEL_SCORE_CHANGE = 0.3
ABSENT_FRACTION = 0.6


@dataclass
class ChangeCandidate:
    """A building that appeared (built) or disappeared (demolished) between two times."""

    kind: Literal["built", "demolished"]
    geometry: shapely.Geometry  # store CRS
    t_before: datetime
    t_after: datetime
    confidence: float
    building_id: str | None = None
    method: str = "imagery-pair"
    area_m2: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ raster helpers


def box_mean(a: np.ndarray, r: int = 1) -> np.ndarray:
    """Mean over a (2r+1)² window (edges replicated), by summed-area table: O(1) per pixel."""
    k = 2 * r + 1
    p = np.pad(np.asarray(a, np.float64), r, mode="edge")
    c = np.pad(np.cumsum(np.cumsum(p, 0), 1), ((1, 0), (1, 0)))
    return ((c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)).astype(np.float32)


def _open(mask: np.ndarray, r: int = 1) -> np.ndarray:
    """Morphological opening (erode then dilate, square (2r+1)² element) of a boolean mask."""
    eroded = box_mean(mask.astype(np.float32), r) > 1 - 1e-6
    return box_mean(eroded.astype(np.float32), r) > 1e-6


def change_magnitude(before: dict[str, np.ma.MaskedArray], after: dict[str, np.ma.MaskedArray]) -> np.ma.MaskedArray:
    """RMS over the bands both dates have of the median-normalised log-ratio of 3×3-smoothed reflectances
    (0 = no change); symmetric: swapping the dates gives the same magnitude."""
    names = [n for n in before if n in after]
    if not names:
        raise KeyError(f"no common bands: {', '.join(before)} vs {', '.join(after)}")
    mask = np.zeros(before[names[0]].shape, bool)
    terms = []
    for n in names:
        a, b = before[n], after[n]
        mask |= np.ma.getmaskarray(a) | np.ma.getmaskarray(b)
        la = np.log(np.maximum(box_mean(a.filled(1e-3)), 1e-3))
        lb = np.log(np.maximum(box_mean(b.filled(1e-3)), 1e-3))
        d = lb - la
        ok = ~mask
        d -= np.median(d[ok]) if ok.any() else 0.0
        terms.append(d * d)
    return np.ma.MaskedArray(np.sqrt(np.mean(terms, 0)).astype(np.float32), mask=mask)


def built_up(bands: dict[str, np.ma.MaskedArray]) -> np.ndarray:
    """Fuzzy built-up surface (roof or pavement) from spectra: not vegetation, not water, not bare soil."""
    s = ix.spectral_indices(bands)
    ndvi = s.ndvi.filled(0)
    veg = ramp(ndvi, 0.3, 0.5)
    water = ramp(s.ndwi.filled(0), 0.1, 0.3) * ramp(-ndvi, 0.0, 0.1)
    red, bright = s.redness.filled(0), s.brightness.filled(0)
    soil = ramp(red, 0.10, 0.20) * ramp(bright, 0.12, 0.16) * (1 - ramp(red, 0.36, 0.42))
    if s.ndbi is not None:
        return (ramp(s.ndbi.filled(-1), -0.1, 0.05) * (1 - veg) * (1 - water)).astype(np.float32)
    return ((1 - veg) * (1 - water) * (1 - soil)).astype(np.float32)


def _regions(mask: np.ndarray, transform: Affine, min_area_m2: float) -> list[shapely.Polygon]:
    cell = abs(transform.a * transform.e - transform.b * transform.d)
    m = mask.astype(np.uint8)
    size = max(2, int(np.ceil(min_area_m2 / cell)))
    m = rfeatures.sieve(m, size=size, connectivity=4)
    return [shapely.geometry.shape(g) for g, v in rfeatures.shapes(m, mask=m > 0, connectivity=4, transform=transform)
            if v == 1]


def _zonal(polys: Sequence[shapely.Geometry], transform: Affine, shape: tuple[int, int],
           layers: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Cell counts and means of each layer per polygon (pixel-centre rule)."""
    n = len(polys)
    if n == 0:
        return np.zeros(0), {k: np.zeros(0) for k in layers}
    lab = rfeatures.rasterize(((p, i + 1) for i, p in enumerate(polys)), out_shape=shape, transform=transform,
                              fill=0, dtype="int32").ravel()
    cnt = np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)
    means = {k: np.bincount(lab, weights=np.asarray(v, np.float64).ravel(), minlength=n + 1)[1:] / np.maximum(cnt, 1)
             for k, v in layers.items()}
    return cnt, means


def _footprint_cover(footprints: Sequence[tuple[str, shapely.Geometry]], transform: Affine,
                     shape: tuple[int, int]) -> np.ndarray:
    if not footprints:
        return np.zeros(shape, np.float32)
    return rfeatures.rasterize(((g, 1) for _, g in footprints), out_shape=shape, transform=transform, fill=0,
                               dtype="uint8").astype(np.float32)


def _best_match(poly: shapely.Geometry, footprints: Sequence[tuple[str, shapely.Geometry]],
                tree: shapely.STRtree | None, min_share: float = 0.3) -> str | None:
    """Id of the footprint overlapping ``poly`` most, when it covers ≥ min_share of the smaller of the two."""
    if tree is None:
        return None
    best, best_a = None, 0.0
    for i in tree.query(poly, predicate="intersects"):
        fid, g = footprints[int(i)]
        a = poly.intersection(g).area
        if a > best_a and a >= min_share * min(poly.area, g.area):
            best, best_a = fid, a
    return best


def _state(t: datetime | None, t_before: datetime, t_after: datetime) -> str | None:
    """Which image date a dataset of time ``t`` describes: 'before' (up to t_before), 'after' (from t_after, or in
    the last 20 % of the interval), else None (too far from both to say)."""
    if t is None:
        return None
    if t >= t_after:
        return "after"
    if t <= t_before:
        return "before"
    return "after" if (t - t_before) > 0.8 * (t_after - t_before) else None


# ------------------------------------------------------------------------------------------ two image dates


def detect_changes(before: Path | str, after: Path | str, t_before: datetime, t_after: datetime, *,
                   footprints: Sequence[tuple[str, shapely.Geometry]] = (), footprints_time: datetime | None = None,
                   las_paths: Iterable[Path | str] = (), lidar_time: datetime | None = None,
                   bands: Any = None, store_crs: str | None = None, min_area_m2: float = MIN_AREA_M2,
                   max_area_m2: float = MAX_AREA_M2, threshold: float | None = None) -> list[ChangeCandidate]:
    """Built / demolished building candidates between two images of ``t_before`` < ``t_after``.

    ``footprints`` are (id, geometry) of the model's buildings in ``store_crs`` (default: the image CRS), describing
    the city at ``footprints_time`` (None: the present, i.e. the after state); ``las_paths`` a LiDAR survey of
    ``lidar_time`` (None: the after state). Returns candidates with geometry in the store CRS.
    """
    if not t_before < t_after:
        raise ValueError(f"t_before ({t_before}) must be earlier than t_after ({t_after})")
    transform, shape, crs = image_grid(after)
    store_crs = normalise(store_crs or crs)
    b_img = read_bands_on_grid(before, BANDS, transform, shape, crs, bands_option=bands)
    a_img = read_bands(after, BANDS, bands_option=bands)
    cm = change_magnitude(b_img, a_img)
    vals = cm.compressed()
    if threshold is None:
        med = float(np.median(vals)) if vals.size else 0.0
        mad = float(np.median(np.abs(vals - med))) if vals.size else 0.0
        threshold = max(0.15, med + 8 * 1.4826 * mad)
    changed = cm.filled(0) > threshold
    fps = list(footprints)
    fps_img = fps
    if fps and store_crs != crs:
        geoms = reproject(np.asarray([g for _, g in fps], dtype=object), store_crs, crs)
        fps_img = [(i, g) for (i, _), g in zip(fps, geoms, strict=True)]
    # building evidence per state: spectra of each image (weight 0.5), LiDAR and footprints of the state they
    # describe (weight 1 each)
    evidence: dict[str, list[tuple[str, np.ndarray, float]]] = {
        "before": [("spectral_before", built_up(b_img), 0.5)], "after": [("spectral_after", built_up(a_img), 0.5)]}
    las = [Path(p) for p in las_paths]
    lidar_state = _state(lidar_time, t_before, t_after) if lidar_time else "after"
    if las and lidar_state:
        g = grid_lidar(las, transform, shape, grid_crs=crs, points_crs=store_crs)
        lb = (ramp(g.building_fraction, 0.35, 0.75) if g.building_fraction.any()
              else ramp(g.ndsm, 1.5, 2.5) * (1 - ramp(g.veg_fraction, 0.3, 0.7)))
        evidence[lidar_state].append(("lidar_building", lb, 1.0))
    fp_state = _state(footprints_time, t_before, t_after) if footprints_time else "after"
    if fps_img and fp_state:
        evidence[fp_state].append(("footprints", _footprint_cover(fps_img, transform, shape), 1.0))
    score = {k: sum(w * a for _, a, w in v) / sum(w for _, _, w in v) for k, v in evidence.items()}
    delta = (score["after"] - score["before"]).astype(np.float32)
    layers = {"cm": cm.filled(0), "delta": delta, **{n: a for v in evidence.values() for n, a, _ in v}}
    tree = shapely.STRtree([g for _, g in fps_img]) if fps_img else None
    out: list[ChangeCandidate] = []
    for kind, mask in (("built", changed & (delta >= PIXEL_SCORE_CHANGE)),
                       ("demolished", changed & (delta <= -PIXEL_SCORE_CHANGE))):
        polys = [p for p in _regions(_open(mask, 1), transform, min_area_m2) if min_area_m2 <= p.area <= max_area_m2]
        cnt, m = _zonal(polys, transform, shape, layers)
        for i, poly in enumerate(polys):
            d = float(m["delta"][i])
            if cnt[i] == 0 or abs(d) < MIN_SCORE_CHANGE:
                continue
            mag = float(m["cm"][i])
            conf = 0.6 * min(1.0, abs(d) / 0.6) + 0.4 * float(ramp(np.float32(mag), threshold, 3 * threshold))
            geom = poly.simplify(abs(transform.a) / 2, preserve_topology=True)
            if store_crs != crs:
                geom = reproject(geom, crs, store_crs)
            info = {k: round(float(v[i]), 3) for k, v in m.items()}
            info.update(threshold=round(float(threshold), 3), cells=int(cnt[i]), lidar_state=lidar_state if las
                        else None, footprints_state=fp_state if fps_img else None)
            match = _best_match(poly, fps_img, tree)
            out.append(ChangeCandidate(kind=kind, geometry=geom, t_before=t_before, t_after=t_after,
                                       confidence=round(min(1.0, conf), 3), building_id=match, method="imagery-pair",
                                       area_m2=round(float(poly.area), 2), evidence=info))
    return out


# ------------------------------------------------------------------------------------------ imagery vs model


def model_changes(image: Path | str, t_image: datetime, footprints: Sequence[tuple[str, shapely.Geometry]],
                  t_model: datetime, *, las_paths: Iterable[Path | str] = (), lidar_time: datetime | None = None,
                  roads: Sequence[shapely.Geometry] = (), bands: Any = None, store_crs: str | None = None,
                  min_area_m2: float = MIN_AREA_M2, absent_fraction: float = ABSENT_FRACTION) -> list[ChangeCandidate]:
    """Candidates from one image against the model's footprints (id, geometry in ``store_crs``) at ``t_model``.

    A footprint the image shows mostly as vegetation / bare soil (LiDAR as ground, when given and of about the
    image's time) is absent at ``t_image``; a building region of the fused land cover outside every footprint is
    absent from the model. Image newer than the model: absent footprint → demolished, unmodelled region → built;
    image older: the reverse. ``roads`` are road areas (already buffered) that help the land cover.
    """
    if t_image == t_model:
        raise ValueError("the image and the model have the same time: nothing can have changed between them")
    transform, shape, crs = image_grid(image)
    store_crs = normalise(store_crs or crs)
    t_before, t_after = sorted((t_image, t_model))
    newer = t_image > t_model
    fps = list(footprints)
    fps_img = fps
    if fps and store_crs != crs:
        geoms = reproject(np.asarray([g for _, g in fps], dtype=object), store_crs, crs)
        fps_img = [(i, g) for (i, _), g in zip(fps, geoms, strict=True)]
    bands_img = read_bands(image, BANDS, bands_option=bands)
    s = ix.spectral_indices(bands_img)
    ndvi = s.ndvi.filled(0)
    red, bright = s.redness.filled(0), s.brightness.filled(0)
    open_ground = np.maximum(ramp(ndvi, 0.3, 0.5),
                             ramp(red, 0.10, 0.20) * ramp(bright, 0.12, 0.16) * (1 - ramp(red, 0.36, 0.42)))
    las = [Path(p) for p in las_paths]
    same_time_lidar = bool(las) and (lidar_time is None or abs((lidar_time - t_image).days) <= 60)
    lc = classify(image, las if same_time_lidar else (), [(r, "road") for r in roads], bands=bands,
                  points_crs=store_crs)
    layers = {"open": open_ground, "lc_building": (lc.classes == BUILDING).astype(np.float32)}
    out: list[ChangeCandidate] = []
    if fps_img:
        cnt, m = _zonal([g for _, g in fps_img], transform, shape, layers)
        for i, ((fid, _), (_, g_store)) in enumerate(zip(fps_img, fps, strict=True)):
            if cnt[i] < 4:
                continue
            absent = float(m["open"][i])
            if same_time_lidar:  # LiDAR of the image's time: its building class counts as much as the spectra
                absent = 0.5 * absent + 0.5 * (1 - float(m["lc_building"][i]))
            if absent < absent_fraction:
                continue
            kind: Literal["built", "demolished"] = "demolished" if newer else "built"
            out.append(ChangeCandidate(kind=kind, geometry=g_store, t_before=t_before, t_after=t_after,
                                       confidence=round(min(1.0, absent), 3), building_id=fid,
                                       method="imagery-vs-model", area_m2=round(float(g_store.area), 2),
                                       evidence={"absent_score": round(absent, 3), "cells": int(cnt[i])}))
    building = lc.classes == BUILDING
    if fps_img:
        covered = rfeatures.rasterize(((g.buffer(1.5 * abs(transform.a)), 1) for _, g in fps_img), out_shape=shape,
                                      transform=transform, fill=0, dtype="uint8") > 0
        building &= ~covered
    building = _open(building, 1)
    polys = [p for p in _regions(building, transform, min_area_m2) if min_area_m2 <= p.area <= MAX_AREA_M2]
    cnt, m = _zonal(polys, transform, shape, {"conf": lc.confidence})
    kind = "built" if newer else "demolished"
    for i, poly in enumerate(polys):
        geom = poly.simplify(abs(transform.a) / 2, preserve_topology=True)
        if store_crs != crs:
            geom = reproject(geom, crs, store_crs)
        conf = round(float(m["conf"][i]), 3)
        out.append(ChangeCandidate(kind=kind, geometry=geom, t_before=t_before, t_after=t_after, confidence=conf,
                                   building_id=None, method="imagery-vs-model", area_m2=round(float(poly.area), 2),
                                   evidence={"landcover_confidence": conf, "cells": int(cnt[i])}))
    return out


# ------------------------------------------------------------------------------------------ into the model


def _stable_id(prefix: str, geom: shapely.Geometry) -> str:
    """Id from the geometry's centroid rounded to 1 m: the same detection rebuilt gives the same id."""
    c = geom.centroid
    h = hashlib.sha1(f"{round(c.x)}:{round(c.y)}".encode()).hexdigest()[:12]
    return f"{prefix}-{h}"


def apply_changes(buildings: Sequence[dict | Building], candidates: Sequence[ChangeCandidate], *,
                  before_asset_id: str, after_asset_id: str) -> list[Building]:
    """Building versions the candidates imply (only changed or new buildings are returned).

    Built & matched: ``valid_from = t_after``, attribute ``valid_from_earliest = t_before`` (an existing
    ``valid_from`` inside the interval is kept: it is more precise). Built & unmatched: a new building
    ``bldg-detected-<hash>`` with the detected outline. Demolished & matched: ``valid_to = t_after``,
    ``valid_to_earliest = t_before``. Demolished & unmatched: a new building ``bldg-demolished-<hash>`` that was
    valid until ``t_after``. Provenance points at both image assets with the candidate's confidence.
    """
    by_id: dict[str, Building] = {}
    for b in buildings:
        if isinstance(b, Building):
            by_id[b.id] = b
        else:
            by_id[b["id"]] = Building.model_validate({k: v for k, v in b.items() if not k.startswith("_")})
    out: dict[str, Building] = {}
    for c in candidates:
        method = f"change-detection:{c.method}"
        interval = {"kind": c.kind, "between": [c.t_before.isoformat(), c.t_after.isoformat()],
                    "confidence": c.confidence, "method": method}
        attr = "valid_from" if c.kind == "built" else "valid_to"
        prov = [
            Provenance(source_asset_id=before_asset_id, acquired=c.t_before, method=method, confidence=c.confidence,
                       attribute=attr, note=f"{'absent' if c.kind == 'built' else 'present'} at t_before"),
            Provenance(source_asset_id=after_asset_id, acquired=c.t_after, method=method, confidence=c.confidence,
                       attribute=attr, note=f"{'present' if c.kind == 'built' else 'absent'} at t_after"),
        ]
        base = (out.get(c.building_id) or by_id.get(c.building_id)) if c.building_id else None
        if base is not None:
            data = base.model_dump()
            attrs = dict(data.get("attributes") or {})
            if c.kind == "built":
                vf = base.valid_from
                keep = vf is not None and c.t_before <= vf <= c.t_after
                data["valid_from"] = vf if keep else c.t_after
                attrs["valid_from_earliest"] = c.t_before.isoformat()
                if data.get("valid_to") is not None and data["valid_to"] <= data["valid_from"]:
                    continue  # contradicts the model's own valid time: leave the building alone
            else:
                if base.valid_from is not None and base.valid_from >= c.t_after:
                    continue
                data["valid_to"] = c.t_after
                attrs["valid_to_earliest"] = c.t_before.isoformat()
            attrs["change"] = interval
            data["attributes"] = attrs
            data["provenance"] = [p for p in data.get("provenance", []) if p.get("attribute") != attr] + [
                p.model_dump() for p in prov]
            out[base.id] = Building.model_validate(data)
            continue
        geom = c.geometry
        if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
            continue
        if c.kind == "built":
            bid = _stable_id("bldg-detected", geom)
            b = Building(id=bid, geometry=shapely.geometry.mapping(geom), valid_from=c.t_after,
                         attributes={"valid_from_earliest": c.t_before.isoformat(), "change": interval,
                                     "detected_area_m2": c.area_m2},
                         provenance=prov)
        else:
            bid = _stable_id("bldg-demolished", geom)
            b = Building(id=bid, geometry=shapely.geometry.mapping(geom), valid_to=c.t_after,
                         attributes={"valid_to_earliest": c.t_before.isoformat(), "change": interval,
                                     "detected_area_m2": c.area_m2},
                         provenance=prov)
        out[bid] = b
    return list(out.values())
