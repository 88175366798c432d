"""CityJSON 1.0 / 1.1 / 2.0 files (.city.json, .json with ``"type": "CityJSON"``) and CityJSONSeq (.city.jsonl).

* Vertices are de-quantised (``v * transform.scale + transform.translate``) and reprojected into the store CRS in one
  vectorised call (x/y change, z is kept).
* The CRS comes from ``metadata.referenceSystem`` (``https://www.opengis.net/def/crs/EPSG/0/7415`` or
  ``urn:ogc:def:crs:EPSG::7415``) or, when the file has none, from ``ctx.crs``; neither is an error.
* Building and BuildingPart: every geometry becomes ``lods[<lod>]``, a :class:`Solid` with its own vertex list and
  its semantics. Solids keep their shells; MultiSurface / CompositeSurface geometries (and the exterior shells of
  MultiSolid / CompositeSolid) are recorded as a Solid with **one shell holding all their surfaces** — not
  necessarily closed — and ``attributes["lod_geometry_types"][lod]`` says what they were. Surfaces with fewer than
  four faces (e.g. an LoD0 footprint) are not stored as solids but still give the footprint.
  ``BuildingPart.parent_id`` is the first of its ``parents``; a Building without geometry gets the union of its
  parts' footprints.
* The 2D footprint is the union of the GroundSurface faces (lowest LoD that has them), else the union of the
  projected faces of the lowest LoD.
* Other types: Road -> Road, WaterBody -> WaterBody, PlantCover and LandUse -> LandCover (class from their
  attributes, e.g. BGT ``plus_fysiekvoorkomen`` / ``bgt_fysiekvoorkomen``), SolitaryVegetationObject -> Vegetation;
  everything else (Bridge, TINRelief, GenericCityObject, CityFurniture, extensions ...) is skipped and counted in
  ``info["skipped"]``.
* Ids are the CityJSON object ids. Attributes are kept; ``measuredHeight`` -> height, ``storeysAboveGround`` ->
  storeys, ``roofType`` -> roof_type (when it is one of the model's roof types), ``function`` -> use.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from itertools import chain
from typing import Any

import numpy as np
import shapely
from pydantic import ValidationError

from data_models import Building, BuildingPart, LandCover, LandCoverClass, Road, RoofType, Solid, Vegetation, WaterBody
from twin.geo.crs import is_geographic, normalise, parse, same_horizontal, transformer, web_coords
from twin.sources.base import ReadContext, SourceRead
from twin.sources.features import BGT_ROAD_CLASS, check_extent, landcover_class, length_m, to_int

METHOD = "cityjson-ingest"
VERSIONS = ("1.0", "1.1", "2.0")
_SEMANTIC_TYPES = {"RoofSurface", "GroundSurface", "WallSurface", "ClosureSurface", "OuterCeilingSurface",
                   "OuterFloorSurface", "Window", "Door", "InteriorWallSurface", "CeilingSurface", "FloorSurface"}
_LOD_RE = re.compile(r"^[0-3](\.[0-3])?$")
_MAPPED = {"Building", "BuildingPart", "Road", "WaterBody", "PlantCover", "LandUse", "SolitaryVegetationObject"}


def crs_from_reference(ref: str) -> str:
    """'EPSG:<code>' (or WKT) from a CityJSON ``referenceSystem`` (OGC URL or URN); ValueError when unknown."""
    m = re.search(r"EPSG/\d+/(\d+)\s*$", ref) or re.search(r"EPSG:[\d.]*:(\d+)\s*$", ref)
    return normalise(f"EPSG:{m.group(1)}" if m else ref)


class _Doc:
    """One vertex array (store CRS) and the city objects that index it."""

    def __init__(self, objects: dict[str, Any], vertices: np.ndarray) -> None:
        self.objects = objects
        self.v = vertices


def _load(ctx: ReadContext) -> tuple[dict[str, Any], list[_Doc], np.ndarray]:
    """(header, documents with quantised vertices, all raw de-quantised vertices) of a CityJSON(Seq) file."""
    if not ctx.path.exists():
        raise ctx.fail("no such file")
    raw = ctx.path.read_bytes()
    if not raw.strip():
        raise ctx.fail("the file is empty")
    try:
        header = json.loads(raw)
        features: list[dict[str, Any]] = []
    except json.JSONDecodeError as exc:
        lines = [ln for ln in raw.splitlines() if ln.strip()]
        try:
            parsed = [json.loads(ln) for ln in lines]
        except json.JSONDecodeError:
            raise ctx.fail(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                           "truncated or corrupt?") from None
        header, features = parsed[0], parsed[1:]
        if any(not isinstance(f, dict) or f.get("type") != "CityJSONFeature" for f in features):
            raise ctx.fail("a CityJSONSeq file holds one CityJSON header line, then CityJSONFeature lines") from None
    if not isinstance(header, dict) or header.get("type") != "CityJSON":
        raise ctx.fail('not a CityJSON file (no "type": "CityJSON")')
    version = str(header.get("version", ""))
    if version not in VERSIONS:
        raise ctx.fail(f"unsupported CityJSON version {version!r}; supported: {', '.join(VERSIONS)}")
    tr = header.get("transform")
    if tr is None and version != "1.0":
        raise ctx.fail(f"CityJSON {version} needs a 'transform' (scale, translate)")
    scale = np.asarray(tr["scale"] if tr else [1, 1, 1], dtype=float)
    translate = np.asarray(tr["translate"] if tr else [0, 0, 0], dtype=float)
    if scale.shape != (3,) or translate.shape != (3,):
        raise ctx.fail("'transform' needs 3 scale and 3 translate values")
    docs: list[_Doc] = []
    parts = [(header.get("CityObjects", {}), header.get("vertices", []))]
    parts += [(f.get("CityObjects", {}), f.get("vertices", [])) for f in features]
    for objects, verts in parts:
        if not isinstance(objects, dict):
            raise ctx.fail("'CityObjects' must be an object")
        try:
            v = np.asarray(verts, dtype=float).reshape(-1, 3) if len(verts) else np.zeros((0, 3))
        except ValueError:
            raise ctx.fail("'vertices' must be a list of [x, y, z] triples") from None
        docs.append(_Doc(objects, v * scale + translate))
    allv = np.concatenate([d.v for d in docs]) if docs else np.zeros((0, 3))
    if not np.isfinite(allv).all():
        raise ctx.fail("vertices must be finite numbers")
    return header, docs, allv


def _file_crs(ctx: ReadContext, header: dict[str, Any]) -> str:
    ref = (header.get("metadata") or {}).get("referenceSystem")
    file_crs = None
    if ref:
        try:
            file_crs = crs_from_reference(str(ref))
        except ValueError as exc:
            raise ctx.fail(f"metadata.referenceSystem: {exc}") from None
    if file_crs and ctx.crs and not same_horizontal(file_crs, ctx.crs):
        raise ctx.fail(f"file declares CRS {file_crs} but --crs says {normalise(ctx.crs)}")
    use = file_crs or ctx.crs
    if not use:
        raise ctx.fail("no CRS in the file (metadata.referenceSystem); pass --crs (the CRS is never guessed)")
    try:
        return normalise(use)
    except ValueError as exc:
        raise ctx.fail(str(exc)) from None


# ---------------------------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------------------------


def _shells(g: dict[str, Any]) -> tuple[list, list | None]:
    """([shell][face][ring] boundaries, [shell][face] semantic values) of a surface or solid geometry."""
    t, b = g.get("type"), g.get("boundaries") or []
    values = (g.get("semantics") or {}).get("values")
    if t == "Solid":
        return b, values
    if t in ("MultiSurface", "CompositeSurface"):
        return [b], ([values] if values is not None else None)
    if t in ("MultiSolid", "CompositeSolid"):
        shells = [list(chain.from_iterable(solid[0] for solid in b if solid))]
        vals = None
        if values is not None:
            vals = [list(chain.from_iterable((v[0] if v else []) for v in values))]
        return shells, vals
    raise ValueError(t)


class _Flat:
    """Boundaries flattened to arrays: ring lengths, vertex indices, ring -> face, face -> shell."""

    def __init__(self, shells: list) -> None:
        faces = [face for shell in shells for face in shell]
        self.face_shell = np.repeat(np.arange(len(shells)), [len(s) for s in shells])
        rings = [ring for face in faces for ring in face]
        self.ring_face = np.repeat(np.arange(len(faces)), [len(f) for f in faces])
        self.ring_first = np.concatenate([[True, *([False] * (len(f) - 1))] for f in faces]).astype(bool) \
            if faces else np.zeros(0, bool)
        self.lengths = np.fromiter(map(len, rings), dtype=np.int64, count=len(rings))
        self.idx = np.fromiter(chain.from_iterable(rings), dtype=np.int64, count=int(self.lengths.sum()))
        self.n_faces = len(faces)


def _face_polygons(flat: _Flat, v: np.ndarray, face_mask: np.ndarray | None = None) -> np.ndarray:
    """2D polygons (store CRS) of the faces (projected to the plane), one per face; degenerate ones are None."""
    out = np.full(flat.n_faces, None, dtype=object)
    if flat.n_faces == 0:
        return out
    ok_ring = flat.lengths >= 3
    keep_face = np.zeros(flat.n_faces, bool)
    keep_face[flat.ring_face[ok_ring & flat.ring_first]] = True
    if face_mask is not None:
        keep_face &= face_mask
    ring_keep = ok_ring & keep_face[flat.ring_face]
    if not ring_keep.any():
        return out
    ring_ids = np.repeat(np.arange(len(flat.lengths)), flat.lengths)
    vkeep = ring_keep[ring_ids]
    coords = v[flat.idx[vkeep], :2]
    rings = shapely.linearrings(coords, indices=ring_ids[vkeep])
    kept_rings = np.flatnonzero(ring_keep)
    shapely.polygons(rings, indices=flat.ring_face[kept_rings], out=out)
    return out


def _footprint(polys: np.ndarray, grid: float) -> shapely.Geometry | None:
    """Union of the non-degenerate face projections, snapped to ``grid``; None when nothing has area."""
    polys = polys[[p is not None for p in polys]]
    if not len(polys):
        return None
    area = shapely.area(polys)
    polys = polys[area > grid * grid * 10]
    if not len(polys):
        return None
    bad = ~shapely.is_valid(polys)
    if bad.any():
        polys = polys.copy()
        polys[bad] = shapely.make_valid(polys[bad])
    u = None
    if len(polys) > 8:  # surfaces that tile the plane (TINs, terrain patches): the fast coverage union
        try:
            cu = shapely.coverage_union_all(polys)
            if cu.is_valid and abs(cu.area - float(shapely.area(polys).sum())) <= 1e-9 * max(cu.area, 1):
                u = cu
        except shapely.errors.GEOSException:
            u = None
    if u is None:
        u = shapely.union_all(polys, grid_size=grid)
    parts = [p for p in shapely.get_parts(u) if p.geom_type == "Polygon" and p.area > 0]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def _solid(shells: list, values: list | None, surfaces: list | None, v: np.ndarray) -> tuple[Solid | None, str]:
    """A Solid with its own vertex list (remapped indices) from CityJSON boundaries; (None, why) if impossible."""
    flat = _Flat(shells)
    if flat.idx.size == 0:
        return None, "empty geometry"
    used, inverse = np.unique(flat.idx, return_inverse=True)
    pieces = np.split(inverse, np.cumsum(flat.lengths)[:-1])
    ring_lists = [p.tolist() for p in pieces]
    it = iter(ring_lists)
    new_shells: list[list[list[list[int]]]] = []
    new_values: list[list[int | None]] | None = [] if values is not None else None
    for s, shell in enumerate(shells):
        faces_out: list[list[list[int]]] = []
        vals_out: list[int | None] = []
        for f, face in enumerate(shell):
            rings = [next(it) for _ in face]
            rings = [r for r in rings if len(r) >= 3]
            if not rings or len(face[0]) < 3:
                continue
            faces_out.append(rings)
            if values is not None:
                sv = values[s] if s < len(values) and values[s] is not None else []
                vals_out.append(sv[f] if f < len(sv) else None)
        if len(faces_out) < 4:
            if s == 0:
                return None, "fewer than 4 surfaces"
            continue  # a degenerate void shell is dropped
        new_shells.append(faces_out)
        if new_values is not None:
            new_values.append(vals_out)
    semantics = None
    if surfaces is not None and new_values is not None:
        if all(isinstance(sf, dict) and sf.get("type") in _SEMANTIC_TYPES for sf in surfaces):
            semantics = {"surfaces": surfaces, "values": new_values}
    try:
        return Solid(vertices=v[used].tolist(), boundaries=new_shells, semantics=semantics), ""
    except ValidationError as exc:
        if semantics is not None:
            try:
                return Solid(vertices=v[used].tolist(), boundaries=new_shells), "semantics dropped"
            except ValidationError:
                pass
        return None, exc.errors()[0]["msg"]


def _lod_key(lod: Any) -> str | None:
    s = str(lod)
    return s if _LOD_RE.match(s) else None


def _lod_sort(lod: str) -> tuple[int, ...]:
    return tuple(int(p) for p in lod.split("."))


# ---------------------------------------------------------------------------------------------------------------
# objects
# ---------------------------------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, ctx: ReadContext, grid: float) -> None:
        self.ctx = ctx
        self.grid = grid
        self.skipped: Counter[str] = Counter()
        self.lod_counts: Counter[tuple[str, str]] = Counter()
        self.prov = [ctx.provenance(METHOD)]

    def geometry_faces(self, oid: str, o: dict[str, Any], v: np.ndarray
                       ) -> tuple[dict[str, Solid], dict[str, str], shapely.Geometry | None, list]:
        """(solids by LoD, geometry type by LoD, footprint, line/point geometries) of one city object."""
        solids: dict[str, Solid] = {}
        types: dict[str, str] = {}
        ground: list[tuple[str, np.ndarray]] = []
        faces_by_lod: list[tuple[str, np.ndarray]] = []
        other: list[shapely.Geometry] = []
        want_solids = o.get("type") in ("Building", "BuildingPart")
        for g in o.get("geometry") or []:
            t = g.get("type")
            lod = _lod_key(g.get("lod"))
            if t in ("MultiPoint", "MultiLineString"):
                other.append(self._points_lines(oid, g, v))
                continue
            if t == "GeometryInstance":
                self.skipped["geometry template instance"] += 1
                continue
            if lod is None:
                self.skipped[f"geometry with an unknown LoD {g.get('lod')!r}"] += 1
                continue
            try:
                shells, values = _shells(g)
            except ValueError:
                self.skipped[f"geometry of type {t!r}"] += 1
                continue
            try:
                flat = _Flat(shells)
            except (TypeError, ValueError):
                raise self.ctx.fail(f"object {oid!r}: malformed {t} boundaries (LoD {lod})") from None
            if flat.idx.size and (flat.idx.max() >= len(v) or flat.idx.min() < 0):
                raise self.ctx.fail(f"object {oid!r}: vertex index {int(flat.idx.max())} out of range "
                                    f"(the file has {len(v)} vertices)")
            self.lod_counts[(o.get("type"), lod)] += 1
            surfaces = (g.get("semantics") or {}).get("surfaces")
            polys = _face_polygons(flat, v)
            faces_by_lod.append((lod, polys))
            if surfaces is not None and values is not None:
                kinds = self._face_semantics(shells, values, surfaces)
                mask = kinds == "GroundSurface"
                if mask.any():
                    ground.append((lod, polys[mask[: len(polys)]]))
            if not want_solids:
                continue
            if lod in solids:
                self.skipped["second geometry of the same LoD"] += 1
                continue
            solid, why = _solid(shells, values, surfaces, v)
            if solid is None:
                self.skipped[f"LoD geometry not stored as a solid ({why})"] += 1
                continue
            if why:
                self.skipped[f"semantics dropped ({why})"] += 1
            solids[lod] = solid
            types[lod] = t
        footprint = None
        for _lod, polys in sorted(ground, key=lambda p: _lod_sort(p[0])):
            footprint = _footprint(polys, self.grid)
            if footprint is not None:
                break
        if footprint is None:
            for _lod, polys in sorted(faces_by_lod, key=lambda p: _lod_sort(p[0])):
                footprint = _footprint(polys, self.grid)
                if footprint is not None:
                    break
        return solids, types, footprint, other

    @staticmethod
    def _face_semantics(shells: list, values: list, surfaces: list) -> np.ndarray:
        """Semantic surface type of every face (flattened over shells), '' when none."""
        out: list[str] = []
        for s, shell in enumerate(shells):
            sv = values[s] if s < len(values) and values[s] is not None else []
            for f in range(len(shell)):
                k = sv[f] if f < len(sv) else None
                ok = isinstance(k, int) and 0 <= k < len(surfaces) and isinstance(surfaces[k], dict)
                out.append(surfaces[k].get("type", "") if ok else "")
        return np.asarray(out, dtype=object)

    def _points_lines(self, oid: str, g: dict[str, Any], v: np.ndarray) -> shapely.Geometry:
        b = g.get("boundaries") or []
        try:
            if g["type"] == "MultiPoint":
                pts = v[np.asarray(b, dtype=np.int64), :2]
                return shapely.multipoints(pts) if len(pts) > 1 else shapely.points(pts[0])
            lines = [shapely.linestrings(v[np.asarray(line, dtype=np.int64), :2]) for line in b if len(line) >= 2]
            return lines[0] if len(lines) == 1 else shapely.MultiLineString(lines)
        except (IndexError, ValueError):
            raise self.ctx.fail(f"object {oid!r}: bad {g['type']} boundaries") from None

    def building(self, oid: str, o: dict[str, Any], v: np.ndarray, footprints: dict[str, shapely.Geometry]
                 ) -> dict[str, Any] | None:
        """Model fields of a Building / BuildingPart (footprint may come later from its parts)."""
        solids, types, footprint, _ = self.geometry_faces(oid, o, v)
        attrs = dict(o.get("attributes") or {})
        fields: dict[str, Any] = {}
        h = length_m(attrs.get("measuredHeight"))
        if h is not None:
            fields["height"] = h
            attrs.pop("measuredHeight")
        s = to_int(attrs.get("storeysAboveGround"))
        if s is not None:
            fields["storeys"] = s
            attrs.pop("storeysAboveGround")
        rt = attrs.get("roofType")
        if isinstance(rt, str) and rt in RoofType.__members__:
            fields["roof_type"] = RoofType(rt)
            attrs.pop("roofType")
        fn = attrs.get("function")
        if isinstance(fn, str | int) and not isinstance(fn, bool):
            fields["use"] = str(fn)
            attrs.pop("function")
        nonsolid = {lod: t for lod, t in types.items() if t != "Solid"}
        if nonsolid:
            attrs["lod_geometry_types"] = nonsolid
        if footprint is not None:
            footprints[oid] = footprint
        return {"fields": fields, "attrs": attrs, "lods": solids}

    def make(self, cls: type, oid: str, geometry: shapely.Geometry, **kw: Any) -> Any:
        """A validated city object of ``cls``; a validation failure names the object."""
        try:
            return cls(id=oid, geometry=shapely.geometry.mapping(geometry), provenance=self.prov,
                       classification=self.ctx.classification, **kw)
        except ValidationError as exc:
            raise self.ctx.fail(f"object {oid!r}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None

    def other(self, oid: str, o: dict[str, Any], v: np.ndarray) -> Any | None:
        """Road / WaterBody / LandCover / Vegetation from a non-building object, or None (skipped)."""
        t = o.get("type")
        _, _, footprint, extra = self.geometry_faces(oid, o, v)
        attrs = dict(o.get("attributes") or {})
        geom = footprint if footprint is not None else (extra[0] if extra else None)
        if geom is None:
            self.skipped[f"{t} without a usable geometry"] += 1
            return None
        gtype = geom.geom_type
        if t == "Road":
            fn = str(attrs.get("function") or attrs.get("class") or "").strip().lower()
            rc = BGT_ROAD_CLASS.get(fn, fn.replace(" ", "_") or "unclassified")
            return self.make(Road, oid, geom, road_class=rc, name=attrs.get("name"), attributes=attrs)
        if t == "WaterBody":
            return self.make(WaterBody, oid, geom, water_class=str(attrs["class"]) if attrs.get("class") else None,
                             name=attrs.get("name"), attributes=attrs)
        if t in ("PlantCover", "LandUse"):
            if gtype not in ("Polygon", "MultiPolygon"):
                self.skipped[f"{t} with a {gtype} geometry"] += 1
                return None
            theme = "begroeidterreindeel" if t == "PlantCover" else None
            cls = landcover_class(attrs, theme, self.ctx.options.get("cover_class"))
            if cls is None:
                cls = LandCoverClass.bare
                self.skipped["LandUse class not recognised (stored as bare)"] += 1
            return self.make(LandCover, oid, geom, cover_class=cls, attributes=attrs)
        if gtype not in ("Point", "Polygon", "MultiPolygon"):
            geom = shapely.centroid(geom)
        return self.make(Vegetation, oid, geom, height=length_m(attrs.get("height") or attrs.get("treeHeight")),
                         species=attrs.get("species"), attributes=attrs)


def read(ctx: ReadContext) -> SourceRead:
    """Read a CityJSON (or CityJSONSeq) file into buildings with LoD solids and other city objects."""
    header, docs, allv = _load(ctx)
    file_crs = _file_crs(ctx, header)
    info: dict[str, Any] = {"crs": file_crs, "cityjson_version": str(header["version"]),
                            "vertex_count": int(len(allv)), "bbox": None}
    if len(allv):
        try:
            kind = web_coords(ctx.options.get("coords"))
        except ValueError as exc:
            raise ctx.fail(str(exc)) from None
        if kind != "wgs84":
            if not is_geographic(file_crs):
                raise ctx.fail(f"coords={kind} needs longitude/latitude data, but the CRS is {file_crs}")
            from twin.geo.crs import bd09_to_wgs84, gcj02_to_wgs84

            conv = gcj02_to_wgs84 if kind == "gcj02" else bd09_to_wgs84
            for d in docs:
                d.v[:, 0], d.v[:, 1] = conv(d.v[:, 0], d.v[:, 1])
            file_crs = "EPSG:4326"
            info["coords_converted_from"] = kind
        bbox = [float(allv[:, 0].min()), float(allv[:, 1].min()), float(allv[:, 0].max()), float(allv[:, 1].max())]
        info["bbox"] = bbox
        info["z_range"] = [float(allv[:, 2].min()), float(allv[:, 2].max())]
        check_extent(ctx, bbox, file_crs)
        if not same_horizontal(file_crs, ctx.store_crs):
            t = transformer(file_crs, normalise(ctx.store_crs))
            for d in docs:
                d.v[:, 0], d.v[:, 1] = t.transform(d.v[:, 0], d.v[:, 1])
    grid = 1e-8 if parse(ctx.store_crs).is_geographic else 1e-3
    r = _Reader(ctx, grid)
    type_counts: Counter[str] = Counter()
    footprints: dict[str, shapely.Geometry] = {}
    pending: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
    entities: list[Any] = []
    parents_of: dict[str, list[str]] = {}
    for d in docs:
        for oid, o in d.objects.items():
            if not isinstance(o, dict):
                raise ctx.fail(f"object {oid!r} is not a JSON object")
            t = str(o.get("type"))
            type_counts[t] += 1
            if t in ("Building", "BuildingPart"):
                got = r.building(oid, o, d.v, footprints)
                if got is not None:
                    pending[oid] = (t, o, got)
                    parents_of[oid] = list(o.get("parents") or [])
            elif t in _MAPPED:
                e = r.other(oid, o, d.v)
                if e is not None:
                    entities.append(e)
            else:
                r.skipped[f"{t} (not mapped)"] += 1
    # footprints of buildings without geometry: union of their parts' footprints (deepest parts first)
    children: dict[str, list[str]] = {}
    for cid, ps in parents_of.items():
        for p in ps[:1]:
            children.setdefault(p, []).append(cid)

    def footprint_of(oid: str, depth: int = 0) -> shapely.Geometry | None:
        """An object's footprint, or the union of its parts' footprints when it has no geometry of its own."""
        if oid in footprints or depth > 16:
            return footprints.get(oid)
        parts = [g for c in children.get(oid, []) if (g := footprint_of(c, depth + 1)) is not None]
        if parts:
            footprints[oid] = _footprint(np.asarray(parts, dtype=object), grid)
        return footprints.get(oid)

    for oid, (t, _o, got) in pending.items():
        fp = footprint_of(oid)
        if fp is None:
            r.skipped[f"{t} without geometry or parts"] += 1
            continue
        kw = dict(attributes=got["attrs"], lods=got["lods"], **got["fields"])
        if t == "BuildingPart":
            ps = parents_of.get(oid) or []
            if not ps:
                raise ctx.fail(f"BuildingPart {oid!r} has no parent")
            if len(ps) > 1:
                kw["attributes"] = {**kw["attributes"], "parents": ps}
            entities.append(r.make(BuildingPart, oid, fp, parent_id=ps[0], **kw))
        else:
            entities.append(r.make(Building, oid, fp, **kw))
    ids = [e.id for e in entities]
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise ctx.fail(f"duplicate city object id {dup!r}")
    info["object_counts"] = dict(type_counts)
    info["lod_counts"] = {f"{t}:{lod}": n for (t, lod), n in sorted(r.lod_counts.items())}
    info["entity_counts"] = dict(Counter(e.type for e in entities))
    if r.skipped:
        info["skipped"] = dict(r.skipped)
    return SourceRead(info=info, entities=entities)
