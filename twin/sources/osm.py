"""OpenStreetMap sources (.osm.pbf, .osm, .osm.bz2, .osm.gz) through GDAL's OSM driver (via pyogrio).

GDAL is given its own configuration (written once per process to a temporary file) so that

* every tagged way is reported in the ``lines`` layer with *all* its tags (as JSON), whatever its tags are — the
  reader, not GDAL's default list, decides which closed ways are areas;
* the ``multipolygons`` layer holds multipolygon relations (and the few closed ways GDAL itself treats as areas,
  ``area=yes``), also with all tags;
* ``points`` gives tagged nodes (trees).

Mapping (one entity per OSM object; ids ``osm-way-<id>``, ``osm-rel-<id>``, ``osm-node-<id>``, stable across
re-ingests of newer extracts):

* ``building=*`` (not ``no``) ways and multipolygon relations -> Building: ``building`` -> use (unless ``yes``),
  ``building:levels`` -> storeys, ``height`` -> height (metres; feet converted), ``roof:shape`` -> roof_type; all
  tags in attributes (``name``, ``addr:*`` ...). ``building:part`` objects are skipped (counted);
* ``highway=*`` -> Road: ``highway`` -> road_class, ``lanes``, ``oneway`` (also implied by roundabouts),
  ``maxspeed`` -> speed_limit_kmh (mph converted), ``width`` -> width_m, ``name``; areas (``area=yes``) as polygons;
* water areas (``natural=water``, ``waterway=riverbank|dock|basin``, ``landuse=reservoir|basin``, ``water=*``) ->
  WaterBody polygons; linear waterways (river, stream, canal, drain, ditch) -> WaterBody lines;
* ``natural=tree`` nodes -> Vegetation points.

Closed ways are turned into polygons by the reader; ways that do not close (usually cut by the extract's clip) are
closed straight and flagged ``osm:unclosed-way``; invalid outlines are repaired (``shapely.make_valid``, flagged
``osm:repaired-geometry``); outlines with fewer than three distinct nodes in the file are skipped and counted.
Everything is reprojected from WGS84 into the store CRS.
"""

from __future__ import annotations

import bz2
import gzip
import json
import shutil
import tempfile
import warnings
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
from pydantic import ValidationError

from data_models import Building, Quality, Road, RoofType, Vegetation, WaterBody
from twin.geo.crs import reproject
from twin.sources.base import ReadContext, SourceRead
from twin.sources.features import check_extent, extent, length_m, speed_kmh, to_bool, to_int

OSM_CRS = "EPSG:4326"
_LAYER_CONF = "osm_id=yes\nosm_version=no\nosm_timestamp=no\nosm_uid=no\nosm_user=no\nosm_changeset=no\n" \
              "attributes=\nall_tags=yes\ntags_format=json\n"
_CONF = ("[general]\nclosed_ways_are_polygons=__twin_none__\n"
         + "".join(f"[{layer}]\n{_LAYER_CONF}" for layer in
                   ("points", "lines", "multipolygons", "multilinestrings", "other_relations")))
_WATER_AREA = {("natural", "water"), ("waterway", "riverbank"), ("waterway", "dock"), ("waterway", "basin"),
               ("landuse", "reservoir"), ("landuse", "basin")}
_WATER_LINES = {"river", "stream", "canal", "drain", "ditch", "tidal_channel"}
_ROOF = {"flat": RoofType.flat, "gabled": RoofType.gable, "hipped": RoofType.hip, "half-hipped": RoofType.hip,
         "pyramidal": RoofType.hip, "skillion": RoofType.shed, "lean_to": RoofType.shed, "mansard": RoofType.mansard,
         "gambrel": RoofType.mansard, "dome": RoofType.dome, "onion": RoofType.dome}
METHOD = "osm-ingest"


@lru_cache(maxsize=1)
def _config_file() -> str:
    d = Path(tempfile.mkdtemp(prefix="twin-osmconf-"))
    p = d / "osmconf.ini"
    p.write_text(_CONF)
    return str(p)


def _layer(ctx: ReadContext, path: Path, layer: str) -> tuple[list[dict[str, Any]], np.ndarray]:
    """(rows: osm_id / osm_way_id / tags, geometries) of one layer of the GDAL OSM driver."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # GDAL notes unclosed rings of clipped extracts
            meta, table = pyogrio.read_arrow(path, layer=layer, CONFIG_FILE=_config_file(),
                                             INTERLEAVED_READING="NO")
    except Exception as exc:  # noqa: BLE001 - GDAL raises several error types for unreadable files
        raise ctx.fail(f"not a readable OpenStreetMap file ({exc})") from exc
    geom_col = meta.get("geometry_name") or "wkb_geometry"
    geoms = shapely.from_wkb(table.column(geom_col).to_numpy(zero_copy_only=False), on_invalid="ignore")
    cols = [c for c in ("osm_id", "osm_way_id", "all_tags") if c in table.column_names]
    rows = table.select(cols).to_pylist()
    for r in rows:
        r["tags"] = json.loads(r.pop("all_tags") or "{}")
    return rows, geoms


def _open_path(ctx: ReadContext, tmp: Path) -> Path:
    """The file GDAL reads: compressed XML is decompressed into ``tmp`` first (GDAL has no bz2 reader)."""
    name = ctx.path.name.lower()
    if name.endswith((".bz2", ".gz")):
        out = tmp / (ctx.path.name.rsplit(".", 1)[0] if name.endswith(".osm.bz2") or name.endswith(".osm.gz")
                     else "data.osm")
        opener = bz2.open if name.endswith(".bz2") else gzip.open
        try:
            with opener(ctx.path, "rb") as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError, ValueError) as exc:
            raise ctx.fail(f"not a readable compressed OpenStreetMap file ({exc})") from exc
        return out
    return ctx.path


def _blob_size(header: bytes) -> int | None:
    """The ``datasize`` (field 3) of a PBF BlobHeader, or None when the bytes are not a BlobHeader."""
    i = 0
    size = None
    try:
        while i < len(header):
            key, i = _varint(header, i)
            wire = key & 7
            if wire == 0:
                v, i = _varint(header, i)
                if key >> 3 == 3:
                    size = v
            elif wire == 2:
                n, i = _varint(header, i)
                i += n
            else:
                return None
    except IndexError:
        return None
    return size if i == len(header) else None


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def check_complete(ctx: ReadContext, path: Path) -> None:
    """Refuse truncated files, which GDAL reads silently up to the break: PBF blob framing, XML closing tag."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if path.name.lower().endswith(".pbf"):
            pos = 0
            while pos < size:
                f.seek(pos)
                head = f.read(4)
                if len(head) < 4:
                    raise ctx.fail(f"truncated or corrupt PBF: {size - pos} stray byte(s) at offset {pos}")
                hl = int.from_bytes(head, "big")
                if not 0 < hl <= 64 * 1024:
                    raise ctx.fail(f"corrupt PBF: bad blob header length {hl} at offset {pos}")
                blob = _blob_size(f.read(hl))
                if blob is None:
                    raise ctx.fail(f"corrupt PBF: unreadable blob header at offset {pos}")
                pos += 4 + hl + blob
                if pos > size:
                    raise ctx.fail(f"truncated PBF: the blob at offset {pos - blob} needs {blob} bytes, "
                                   f"the file ends {pos - size} bytes early")
        else:
            f.seek(max(0, size - 256))
            if not f.read().rstrip().endswith(b"</osm>"):
                raise ctx.fail("truncated or not OSM XML: the file does not end with </osm>")


def _kind(tags: dict[str, str], area_capable: bool) -> str | None:
    """building | water_area | road | water_line | part | None for an OSM object's tags."""
    b = tags.get("building")
    if b and b != "no":
        return "building" if area_capable else None
    if tags.get("building:part") and tags.get("building:part") != "no":
        return "part"
    if area_capable and (any(tags.get(k) == v for k, v in _WATER_AREA) or tags.get("water")):
        return "water_area"
    if tags.get("highway"):
        return "road"
    if tags.get("waterway") in _WATER_LINES:
        return "water_line"
    return None


def _polygons_from_lines(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(polygons, was_closed, ok) from way linestrings: each ring closed; ok=False for < 3 distinct nodes."""
    n = len(lines)
    polys = np.full(n, None, dtype=object)
    closed = np.asarray(shapely.is_closed(lines), dtype=bool) if n else np.zeros(0, bool)
    counts = shapely.get_num_coordinates(lines) - closed.astype(int)
    ok = counts >= 3
    if ok.any():
        coords, idx = shapely.get_coordinates(lines[ok], return_index=True)
        rings = shapely.linearrings(coords, indices=idx)
        polys[ok] = shapely.polygons(rings)
    ok &= np.array([p is not None and p.area > 0 for p in polys], dtype=bool) if n else ok
    return polys, closed, ok


def _clean(polys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(valid polygons, repaired, usable) — invalid outlines repaired to their polygonal part."""
    valid = shapely.is_valid(polys)
    repaired = ~valid
    out = polys.copy()
    for i in np.flatnonzero(repaired):
        fixed = shapely.make_valid(polys[i])
        parts = [p for p in shapely.get_parts(fixed) if p.geom_type == "Polygon" and p.area > 0]
        out[i] = shapely.union_all(parts) if parts else None
    usable = np.array([g is not None and not g.is_empty and g.geom_type in ("Polygon", "MultiPolygon")
                       for g in out], dtype=bool)
    return out, repaired, usable


def _building_fields(tags: dict[str, str]) -> dict[str, Any]:
    f: dict[str, Any] = {}
    if tags.get("building") not in (None, "yes"):
        f["use"] = tags["building"]
    levels = to_int(tags.get("building:levels"))
    if levels is not None:
        f["storeys"] = levels
    h = length_m(tags.get("height"))
    if h is not None:
        f["height"] = h
    roof = tags.get("roof:shape")
    if roof:
        f["roof_type"] = _ROOF.get(roof, RoofType.complex)
    return f


def _road_fields(tags: dict[str, str]) -> dict[str, Any]:
    f: dict[str, Any] = {"road_class": tags["highway"]}
    if tags.get("name"):
        f["name"] = tags["name"]
    lanes = to_int(tags.get("lanes"))
    if lanes:
        f["lanes"] = lanes
    oneway = to_bool(tags.get("oneway"))
    if oneway is None and tags.get("junction") in ("roundabout", "circular"):
        oneway = True
    if oneway is not None:
        f["oneway"] = oneway
    speed = speed_kmh(tags.get("maxspeed"))
    if speed:
        f["speed_limit_kmh"] = speed
    width = length_m(tags.get("width"))
    if width:
        f["width_m"] = width
    return f


def _water_fields(tags: dict[str, str]) -> dict[str, Any]:
    f: dict[str, Any] = {}
    cls = tags.get("water") or tags.get("waterway") or (tags.get("landuse") if tags.get("landuse") in (
        "reservoir", "basin") else None) or tags.get("natural")
    if cls:
        f["water_class"] = cls
    if tags.get("name"):
        f["name"] = tags["name"]
    return f


def read(ctx: ReadContext) -> SourceRead:
    """Read an OSM extract into buildings, roads, water and trees in the store CRS (see the module docstring)."""
    if not ctx.path.exists():
        raise ctx.fail("no such file")
    if ctx.path.stat().st_size == 0:
        raise ctx.fail("the file is empty")
    if ctx.crs and ctx.crs.strip().upper() not in ("EPSG:4326", "WGS84", "OGC:CRS84"):
        raise ctx.fail(f"OpenStreetMap data is WGS84 (EPSG:4326) but --crs says {ctx.crs}")
    if ctx.options.get("coords") not in (None, "wgs84", "WGS84"):
        raise ctx.fail("OpenStreetMap data is WGS84; coords=gcj02/bd09 does not apply to it")
    with tempfile.TemporaryDirectory(prefix="twin-osm-") as tmp:
        path = _open_path(ctx, Path(tmp))
        check_complete(ctx, path)
        lines, line_geoms = _layer(ctx, path, "lines")
        mps, mp_geoms = _layer(ctx, path, "multipolygons")
        points, point_geoms = _layer(ctx, path, "points")
    if not (len(lines) or len(mps) or len(points)):
        raise ctx.fail("no OpenStreetMap objects in the file (empty or not OSM data)")

    skipped: Counter[str] = Counter()
    # candidate objects: (id, kind, tags, geometry, flags)
    cand_ids: list[str] = []
    cand_kind: list[str] = []
    cand_tags: list[dict[str, str]] = []
    cand_geom: list[Any] = []
    cand_flags: list[list[str]] = []

    kinds = [_kind(r["tags"], True) for r in lines]
    area_idx = [i for i, k in enumerate(kinds) if k in ("building", "water_area")]
    area_lines = line_geoms[area_idx] if area_idx else np.zeros(0, dtype=object)
    polys, closed, ok = _polygons_from_lines(area_lines)
    polys[~ok] = shapely.Polygon()
    polys, repaired, usable = _clean(polys)
    for j, i in enumerate(area_idx):
        if not (ok[j] and usable[j]):
            skipped[f"{kinds[i]} way with fewer than 3 nodes in the file"] += 1
            continue
        flags = ([] if closed[j] else ["osm:unclosed-way"]) + (["osm:repaired-geometry"] if repaired[j] else [])
        cand_ids.append(f"osm-way-{lines[i]['osm_id']}")
        cand_kind.append("building" if kinds[i] == "building" else "water")
        cand_tags.append(lines[i]["tags"])
        cand_geom.append(polys[j])
        cand_flags.append(flags)
    for i, k in enumerate(kinds):
        if k in ("road", "water_line"):
            g = line_geoms[i]
            if g is None or g.is_empty or shapely.get_num_coordinates(g) < 2:
                skipped[f"{k} way with fewer than 2 nodes in the file"] += 1
                continue
            cand_ids.append(f"osm-way-{lines[i]['osm_id']}")
            cand_kind.append("road" if k == "road" else "water")
            cand_tags.append(lines[i]["tags"])
            cand_geom.append(g)
            cand_flags.append([])
        elif k == "part":
            skipped["building:part way"] += 1
        elif k is None:
            skipped["way with other tags"] += 1

    mp_kinds = [_kind(r["tags"], True) for r in mps]
    mp_sel = [i for i, k in enumerate(mp_kinds) if k in ("building", "water_area", "road")]
    mp_arr = mp_geoms[mp_sel] if mp_sel else np.zeros(0, dtype=object)
    present = np.array([g is not None and not g.is_empty for g in mp_arr], dtype=bool)
    mp_arr = mp_arr.copy()
    mp_arr[~present] = shapely.Polygon()
    fixed, rep2, usable2 = _clean(mp_arr)
    for j, i in enumerate(mp_sel):
        r = mps[i]
        oid = f"osm-way-{r['osm_way_id']}" if r.get("osm_way_id") else f"osm-rel-{r['osm_id']}"
        if not (present[j] and usable2[j]):
            skipped[f"{mp_kinds[i]} area that could not be assembled"] += 1
            continue
        cand_ids.append(oid)
        cand_kind.append({"building": "building", "water_area": "water", "road": "road"}[mp_kinds[i]])
        cand_tags.append(r["tags"])
        cand_geom.append(fixed[j])
        cand_flags.append(["osm:repaired-geometry"] if rep2[j] else [])
    for k in mp_kinds:
        if k == "part":
            skipped["building:part area"] += 1
        elif k not in ("building", "water_area", "road"):
            skipped["area or relation with other tags"] += 1

    trees = [i for i, r in enumerate(points) if r["tags"].get("natural") == "tree" and point_geoms[i] is not None]
    for i in trees:
        cand_ids.append(f"osm-node-{points[i]['osm_id']}")
        cand_kind.append("tree")
        cand_tags.append(points[i]["tags"])
        cand_geom.append(point_geoms[i])
        cand_flags.append([])
    skipped["tagged node other than a tree"] += len(points) - len(trees)

    if not cand_geom:
        info = {"crs": OSM_CRS, "bbox": None, "feature_count": 0, "skipped": dict(skipped)}
        return SourceRead(info=info, entities=[])
    geoms = np.asarray(cand_geom, dtype=object)
    bbox = extent(geoms)
    check_extent(ctx, bbox, OSM_CRS)
    projected = shapely.force_2d(reproject(geoms, OSM_CRS, ctx.store_crs))
    prov = [ctx.provenance(METHOD)]
    entities: list[Any] = []
    seen: set[str] = set()
    counts: Counter[str] = Counter()
    for oid, kind, tags, g, flags in zip(cand_ids, cand_kind, cand_tags, projected, cand_flags, strict=True):
        if oid in seen:  # e.g. a closed highway way that is also an area
            skipped["duplicate object"] += 1
            continue
        seen.add(oid)
        osm_type, osm_id = oid.split("-")[1:3]
        attrs: dict[str, Any] = {"osm_type": osm_type, "osm_id": int(osm_id), **tags}
        quality = Quality(errors=flags) if flags else None
        geo = shapely.geometry.mapping(g)
        common = dict(id=oid, geometry=geo, attributes=attrs, provenance=prov, quality=quality,
                      classification=ctx.classification)
        try:
            if kind == "building":
                ent: Any = Building(**common, **_building_fields(tags))
            elif kind == "road":
                ent = Road(**common, **_road_fields(tags))
            elif kind == "water":
                ent = WaterBody(**common, **_water_fields(tags))
            else:
                h = length_m(tags.get("height"))
                ent = Vegetation(**common, height=h, species=tags.get("species") or tags.get("genus"))
        except ValidationError as exc:
            raise ctx.fail(f"{oid}: {exc.errors()[0]['msg']}") from None
        entities.append(ent)
        counts[ent.type] += 1
    info = {"crs": OSM_CRS, "bbox": bbox, "feature_count": len(lines) + len(mps) + len(points),
            "entity_counts": dict(counts), "skipped": dict(skipped),
            "osm_layers": {"lines": len(lines), "multipolygons": len(mps), "points": len(points)}}
    return SourceRead(info=info, entities=entities)
