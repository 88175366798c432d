"""The sunlight scene: building solids and the terrain as one triangle soup, with the building of every triangle.

Each building is its LoD2.2 solid where it has one, else LoD1.2 (then 1.3), else its footprint extruded from its
ground height by ``height``. The ground height is ``attributes.ground_z`` when present, else the lowest terrain
height under the footprint's corners (the DTM mesh), else the scene's default ground (0 m). The terrain is the DTM
product (``prd-dtm``) as a regular-grid mesh (:func:`twin.reality3d.terrain.terrain_mesh`) when the store has it.

Faces of solids are triangulated on the coordinate plane their normal is most aligned with: triangles and convex
holeless quads are fanned, the rest go through GEOS' constrained Delaunay triangulation (shapely ≥ 2.1), whose
corners are input coordinates (so they map back to the 3D vertices exactly). Occlusion does not care about facing,
so triangle orientation is not fixed up.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from twin.sim.raycast import Occluder, merge

LOD_ORDER = ("2.2", "1.2", "1.3")
TERRAIN_MAX_ERROR_M = 0.5  # a shadow test does not need the terrain closer than this
MAX_TERRAIN_TRIANGLES = 2_000_000
_KEEP = {0: (1, 2), 1: (2, 0), 2: (0, 1)}
_EMPTY_V = np.zeros((0, 3))
_EMPTY_F = np.zeros((0, 3), np.int64)


@dataclass
class BuildingGeom:
    """One building as the simulator sees it: footprint, base, height, storeys, use and its triangles."""

    id: str
    polygons: list[shapely.Polygon]
    base_z: float
    height: float
    storeys: int
    residential: bool
    vertices: np.ndarray = field(repr=False)
    faces: np.ndarray = field(repr=False)
    source: str = "extruded"

    def bounds3d(self) -> np.ndarray:
        """``(minx, miny, minz, maxx, maxy, maxz)`` of the building's triangles."""
        if not len(self.vertices):
            return np.full(6, np.nan)
        return np.concatenate([self.vertices.min(axis=0), self.vertices.max(axis=0)])


def polygons_of(geometry: dict[str, Any]) -> list[shapely.Polygon]:
    """The polygons of a GeoJSON Polygon / MultiPolygon footprint (made valid, empty parts dropped)."""
    g = shapely.geometry.shape(geometry)
    if not g.is_valid:
        g = shapely.make_valid(g)
    parts = [p for p in shapely.get_parts(g) if isinstance(p, shapely.Polygon) and not p.is_empty and p.area > 0]
    if not parts:  # make_valid may give a collection
        parts = [p for p in shapely.get_parts(shapely.get_parts(g)) if isinstance(p, shapely.Polygon)]
    return [shapely.geometry.polygon.orient(p, 1.0) for p in parts]


def _cdt2d(poly: shapely.Polygon) -> np.ndarray:
    """Constrained Delaunay triangles of a 2D polygon with holes, as (k, 3, 2) corner coordinates."""
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
    coords = shapely.get_coordinates(shapely.get_parts(shapely.constrained_delaunay_triangles(poly)))
    return coords.reshape(-1, 4, 2)[:, :3] if len(coords) else np.zeros((0, 3, 2))


def extrude(polygons: list[shapely.Polygon], z0: float, z1: float) -> tuple[np.ndarray, np.ndarray]:
    """Walls (every ring edge) and a flat roof at ``z1`` of footprints standing on ``z0``, as a triangle soup."""
    tris = []
    for p in polygons:
        for ring in [p.exterior, *p.interiors]:
            xy = np.asarray(ring.coords)[:-1, :2]
            q = np.roll(xy, -1, axis=0)
            a0, b0 = np.column_stack([xy, np.full(len(xy), z0)]), np.column_stack([q, np.full(len(xy), z0)])
            a1, b1 = np.column_stack([xy, np.full(len(xy), z1)]), np.column_stack([q, np.full(len(xy), z1)])
            tris.append(np.stack([a0, b0, b1], axis=1))
            tris.append(np.stack([a0, b1, a1], axis=1))
        roof = _cdt2d(p)
        tris.append(np.concatenate([roof, np.full((len(roof), 3, 1), z1)], axis=2))
    if not tris:
        return _EMPTY_V, _EMPTY_F
    soup = np.concatenate(tris).reshape(-1, 3)
    return soup, np.arange(len(soup), dtype=np.int64).reshape(-1, 3)


def _iter_faces(boundaries: Any) -> list[list[list[int]]]:
    """The faces (rings of vertex ids) of a Solid (depth 4) or Multi/CompositeSolid (depth 5) boundary list."""
    depth, b = 0, boundaries
    while isinstance(b, list) and b:
        depth, b = depth + 1, b[0]
    if depth == 3:
        return list(boundaries)
    if depth == 4:
        return [face for shell in boundaries for face in shell]
    return [face for solid in boundaries for shell in solid for face in shell]


def _quads_convex(v: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """For (k, 4) vertex ids of planar quads: is each convex (the four corner turns agree with its normal)?"""
    p = v[quads]
    e = np.roll(p, -1, axis=1) - p
    turns = np.cross(e, np.roll(e, -1, axis=1))  # k × 4 × 3
    normal = turns.sum(axis=1)
    return np.all(np.einsum("kij,kj->ki", turns, normal) > 0, axis=1)


def _face_triangles(v: np.ndarray, rings: list[list[int]]) -> np.ndarray | None:
    """Triangles of one planar face with holes (or a concave one), by GEOS' constrained Delaunay triangulation."""
    ext = np.asarray(rings[0], dtype=np.int64)
    p = v[ext] - v[ext[0]]
    q = np.roll(p, -1, axis=0)
    normal = np.array([np.sum((p[:, 1] - q[:, 1]) * (p[:, 2] + q[:, 2])),
                       np.sum((p[:, 2] - q[:, 2]) * (p[:, 0] + q[:, 0])),
                       np.sum((p[:, 0] - q[:, 0]) * (p[:, 1] + q[:, 1]))])
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < 1e-12:
        return None
    keep = list(_KEEP[axis])
    all_ids = np.concatenate([np.asarray(r, dtype=np.int64) for r in rings])
    lookup = {(float(a), float(b)): int(i) for i, (a, b) in zip(all_ids, v[all_ids][:, keep], strict=True)}
    poly = shapely.Polygon(v[ext][:, keep], [v[np.asarray(r)][:, keep] for r in rings[1:]])
    corners = _cdt2d(poly).reshape(-1, 2)
    ids = [lookup.get((float(a), float(b)), -1) for a, b in corners]
    return np.asarray(ids, dtype=np.int64).reshape(-1, 3) if ids and min(ids) >= 0 else None


def solid_mesh(solid: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Triangles of a CityJSON-style solid (``vertices``, ``boundaries``) as vertices and faces: triangles as
    they are, convex quads split in one numpy batch, other faces by constrained Delaunay."""
    v = np.asarray(solid.get("vertices") or [], dtype=np.float64).reshape(-1, 3)
    tris: list[list[int]] = []
    quads: list[list[int]] = []
    other: list[list[list[int]]] = []
    for face in _iter_faces(solid.get("boundaries") or []):
        rings = [list(r) for r in face if len(r) >= 3]
        if not rings:
            continue
        if len(rings) == 1 and len(rings[0]) == 3:
            tris.append(rings[0])
        elif len(rings) == 1 and len(rings[0]) == 4:
            quads.append(rings[0])
        else:
            other.append(rings)
    faces = [np.asarray(tris, dtype=np.int64).reshape(-1, 3)]
    if quads:
        qa = np.asarray(quads, dtype=np.int64)
        convex = _quads_convex(v, qa)
        c = qa[convex]
        faces += [c[:, [0, 1, 2]], c[:, [0, 2, 3]]]
        other += [[list(q)] for q in qa[~convex]]
    for rings in other:
        t = _face_triangles(v, rings)
        if t is not None:
            faces.append(t)
    f = np.concatenate(faces)
    if not len(f):
        return _EMPTY_V, _EMPTY_F
    return v, f


def _convex(xy: np.ndarray) -> bool:
    """Is the 2D ring convex (all turns one way)?"""
    d1 = np.roll(xy, -1, axis=0) - xy
    d2 = np.roll(d1, -1, axis=0)
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    return bool(np.all(cross >= 0) or np.all(cross <= 0))


def is_residential(feature: dict[str, Any]) -> bool:
    """``use`` (or ``attributes.use``) is "residential", case-insensitive."""
    use = feature.get("use") or (feature.get("attributes") or {}).get("use") or ""
    return str(use).strip().lower() == "residential"


@dataclass
class Terrain:
    """The DTM as a mesh, with an occluder of it alone to find ground heights."""

    vertices: np.ndarray
    faces: np.ndarray
    occluder: Occluder
    zmax: float
    bounds: tuple[float, float, float, float]

    def height_at(self, xy: np.ndarray) -> np.ndarray:
        """Terrain height at points (n, 2) on the mesh (NaN outside it), by a ray cast straight down."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        top = self.zmax + 10.0
        o = np.column_stack([xy, np.full(len(xy), top)])
        d = np.tile([0.0, 0.0, -1.0], (len(xy), 1))
        return top - self.occluder.distance(o, d)


def load_terrain(path: Any, max_error: float = TERRAIN_MAX_ERROR_M) -> Terrain:
    """The DTM COG at ``path`` as a :class:`Terrain` (nodata filled by the nearest valid cell): a regular mesh at
    the coarsest power-of-two stride within ``max_error`` metres of every cell corner, and at most
    ``MAX_TERRAIN_TRIANGLES`` triangles (a coarser stride where the finest would exceed it)."""
    import rasterio
    from scipy import ndimage

    from twin.reality3d.terrain import terrain_mesh

    with rasterio.open(path) as src:
        dtm = src.read(1, masked=True).astype(np.float64)
        transform = src.transform
        bounds = tuple(src.bounds)
    data = np.ma.filled(dtm, np.nan)
    bad = ~np.isfinite(data)
    if bad.all():
        raise ValueError(f"terrain {path}: every cell is nodata")
    if bad.any():
        idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
        data = data[tuple(idx)]
    stride = 1  # the finest power-of-two stride within max_error, coarser while over MAX_TERRAIN_TRIANGLES
    while max(data.shape) > 2 * stride and 2 * (data.shape[0] // stride) * (data.shape[1] // stride) > \
            MAX_TERRAIN_TRIANGLES:
        stride *= 2
    mesh = terrain_mesh(data, transform, stride=stride) if stride > 1 else terrain_mesh(data, transform,
                                                                                         max_error=max_error)
    occ = Occluder(mesh.vertices, mesh.triangles)
    return Terrain(mesh.vertices, mesh.triangles, occ, float(mesh.vertices[:, 2].max()), bounds)  # type: ignore[arg-type]


def building_geom(feature: dict[str, Any], terrain: Terrain | None, storey_height_m: float,
                  default_ground: float = 0.0) -> BuildingGeom | None:
    """A store feature as a :class:`BuildingGeom`, or None when it has neither a solid nor a height."""
    polys = polygons_of(feature["geometry"])
    if not polys:
        return None
    attrs = feature.get("attributes") or {}
    lods = feature.get("lods") or {}
    v, f, source = _EMPTY_V, _EMPTY_F, "extruded"
    for key in LOD_ORDER:
        solid = lods.get(key)
        if solid and solid.get("vertices") and solid.get("boundaries"):
            v, f = solid_mesh(solid)
            if len(f):
                source = f"lod{key}"
                break
    height = feature.get("height")
    if attrs.get("ground_z") is not None:
        base = float(attrs["ground_z"])
    elif len(f):
        base = float(v[:, 2].min())
    elif terrain is not None:
        corners = np.concatenate([np.asarray(p.exterior.coords)[:, :2] for p in polys])
        z = terrain.height_at(corners)
        base = float(np.nanmin(z)) if np.isfinite(z).any() else default_ground
    else:
        base = default_ground
    if len(f):
        height = float(v[:, 2].max()) - base if height is None else float(height)
    else:
        if height is None and attrs.get("roof_z") is not None:
            height = float(attrs["roof_z"]) - base
        if height is None or height <= 0:
            return None
        v, f = extrude(polys, base, base + float(height))
    storeys = feature.get("storeys")
    if storeys is None or storeys <= 0:
        storeys = max(1, int(round(float(height) / storey_height_m)))
    return BuildingGeom(id=feature["id"], polygons=polys, base_z=base, height=float(height), storeys=int(storeys),
                        residential=is_residential(feature), vertices=v, faces=f, source=source)


@dataclass
class Scene:
    """Buildings and terrain as one occluder; ``owner[i]`` is the building index of triangle i (−1: terrain)."""

    buildings: list[BuildingGeom]
    terrain: Terrain | None
    occluder: Occluder
    owner: np.ndarray

    @property
    def ids(self) -> list[str]:
        """Building ids in scene order."""
        return [b.id for b in self.buildings]


def build_scene(buildings: list[BuildingGeom], terrain: Terrain | None) -> Scene:
    """One occluder of every building's triangles and the terrain mesh."""
    meshes = [(b.vertices, b.faces) for b in buildings]
    if terrain is not None:
        meshes.append((terrain.vertices, terrain.faces))
    v, f, owner = merge(meshes)
    owner = np.where(owner == len(buildings), -1, owner) if terrain is not None else owner
    return Scene(buildings, terrain, Occluder(v, f), owner)


# ------------------------------------------------------------------------------------------------ the scene cache
CACHE_VERSION = "1"  # bump when building_geom, solid_mesh, extrude or load_terrain change what they make
CACHE_KEEP = 2.0  # a building pack keeps at most this many times the current run's buildings (old versions too)


def cache_dir(store_root: Path) -> Path:
    """Where the sunlight scene cache lives: ``<store>/cache/sunlight`` (outside ``tmp/``; safe to delete)."""
    return Path(store_root) / "cache" / "sunlight"


def _key(*parts: Any) -> str:
    return hashlib.sha256("\n".join([CACHE_VERSION, *map(str, parts)]).encode()).hexdigest()[:24]


def _save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to a temporary file beside ``path``, then renamed over it (readers never see half a file); a
    cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass


_MEMO: dict[Path, tuple[tuple[int, int], dict[str, np.ndarray]]] = {}  # the last cache files read, by path
_MEMO_KEEP = 4


def _load(path: Path) -> dict[str, np.ndarray] | None:
    """A cache file's arrays (read-only), remembered in this process while the file is unchanged (a service or a
    benchmark running many runs reads each once), or None when it cannot be read."""
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
        hit = _MEMO.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    for a in data.values():
        a.flags.writeable = False
    _MEMO[path] = (stamp, data)
    while len(_MEMO) > _MEMO_KEEP:
        _MEMO.pop(next(iter(_MEMO)))
    return data


def terrain_key(checksum: str | None, path: Any) -> str:
    """The cache key of a DTM: its asset checksum (else its path and mtime) and the meshing settings."""
    ident = checksum or f"{path}:{os.path.getmtime(path) if os.path.exists(path) else ''}"
    return _key("terrain", ident, TERRAIN_MAX_ERROR_M, MAX_TERRAIN_TRIANGLES)


def cached_terrain(path: Any, key: str, cache: Path | None) -> Terrain:
    """:func:`load_terrain`, read from ``cache/terrain-<key>.npz`` when there, written there when not."""
    f = cache / f"terrain-{key}.npz" if cache is not None else None
    z = _load(f) if f is not None and f.exists() else None
    if z is not None:
        v, t = z["vertices"], z["faces"].astype(np.int64)
        return Terrain(v, t, Occluder(v, t), float(z["zmax"]), tuple(float(x) for x in z["bounds"]))  # type: ignore[arg-type]
    terrain = load_terrain(path)
    if f is not None:
        _save_atomic(f, {"vertices": terrain.vertices, "faces": terrain.faces.astype(np.int32),
                         "zmax": np.float64(terrain.zmax), "bounds": np.asarray(terrain.bounds, np.float64)})
    return terrain


class BuildingCache:
    """Building geometry (:class:`BuildingGeom`, or None for a feature without one) by entity digest, for one
    terrain and storey height: ``buildings-<key>.npz`` holds every building of the last runs as flat arrays."""

    def __init__(self, cache: Path | None, terrain: str, storey_height_m: float) -> None:
        self.path = cache / f"buildings-{_key('buildings', terrain, storey_height_m)}.npz" if cache else None
        self.z = _load(self.path) if self.path is not None and self.path.exists() else None
        self.index = {str(d): i for i, d in enumerate(self.z["digest"])} if self.z is not None else {}
        self.new: dict[str, BuildingGeom | None] = {}

    def get(self, digest: str) -> BuildingGeom | None | bool:
        """The cached geometry (None: the feature has none), or False when the digest is not cached."""
        if digest in self.new:
            return self.new[digest]
        i = self.index.get(digest)
        if i is None or self.z is None:
            return False
        z = self.z
        if not z["valid"][i]:
            return None
        v0, v1, f0, f1, p0, p1 = (int(z["v_off"][i]), int(z["v_off"][i + 1]), int(z["f_off"][i]),
                                  int(z["f_off"][i + 1]), int(z["p_off"][i]), int(z["p_off"][i + 1]))
        wkb, w_off = z["wkb"], z["w_off"]
        polys = list(shapely.from_wkb([wkb[w_off[k]:w_off[k + 1]].tobytes() for k in range(p0, p1)]))
        return BuildingGeom(id=str(z["id"][i]), polygons=polys, base_z=float(z["base"][i]),
                            height=float(z["height"][i]), storeys=int(z["storeys"][i]),
                            residential=bool(z["residential"][i]), vertices=z["verts"][v0:v1],
                            faces=z["faces"][f0:f1].astype(np.int64), source=str(z["source"][i]))

    def put(self, digest: str, geom: BuildingGeom | None) -> None:
        """Remember a building computed in this run (written by :meth:`save`)."""
        self.new[digest] = geom

    def save(self, current: dict[str, str]) -> None:
        """Write the pack when something new was computed: this run's buildings (``current``: id → digest) first,
        then older cached ones up to ``CACHE_KEEP`` times as many (so a branch and its base both hit)."""
        if self.path is None or not self.new:
            return
        keep = list(dict.fromkeys(current.values()))
        extra = [d for d in self.index if d not in set(keep)]
        digests = keep + extra[:max(0, int(CACHE_KEEP * len(keep)) - len(keep))]
        geoms = [self.get(d) for d in digests]
        rows = [(d, g) for d, g in zip(digests, geoms, strict=True) if g is not False]
        gs = [g for _, g in rows]
        ok = [g is not None for g in gs]
        real = [g for g in gs if g is not None]
        polys = [p for g in real for p in g.polygons]
        wkb = [bytes(b) for b in shapely.to_wkb(polys)] if polys else []

        def offsets(sizes: list[int]) -> np.ndarray:
            return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)

        def per(values: list[int]) -> list[int]:  # sizes of every row (0 for those without geometry)
            it = iter(values)
            return [next(it) if o else 0 for o in ok]

        _save_atomic(self.path, {
            "digest": np.array([d for d, _ in rows], dtype=str),
            "id": np.array([g.id if g is not None else "" for g in gs], dtype=str),
            "valid": np.array(ok, bool),
            "base": np.array([g.base_z if g is not None else 0.0 for g in gs], np.float64),
            "height": np.array([g.height if g is not None else 0.0 for g in gs], np.float64),
            "storeys": np.array([g.storeys if g is not None else 0 for g in gs], np.int64),
            "residential": np.array([g.residential if g is not None else False for g in gs], bool),
            "source": np.array([g.source if g is not None else "" for g in gs], dtype=str),
            "v_off": offsets(per([len(g.vertices) for g in real])),
            "f_off": offsets(per([len(g.faces) for g in real])),
            "p_off": offsets(per([len(g.polygons) for g in real])),
            "verts": np.concatenate([g.vertices for g in real]) if real else _EMPTY_V,
            "faces": np.concatenate([g.faces for g in real]).astype(np.int32) if real else _EMPTY_F.astype(np.int32),
            "wkb": np.frombuffer(b"".join(wkb), np.uint8) if wkb else np.zeros(0, np.uint8),
            "w_off": offsets([len(b) for b in wkb]),
        })
