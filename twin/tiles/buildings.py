"""Building solids → one GLB per tile: flat-shaded triangles in ECEF offsets, one primitive per surface class,
feature ids and a property table per building (EXT_mesh_features + EXT_structural_metadata)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import Any

import numpy as np

from twin.tiles.ecef import region_of_ecef, to_ecef, yup
from twin.tiles.glb import ELEMENT_ARRAY_BUFFER, TRIANGLES, GltfBuilder
from twin.tiles.metadata import BUILDING_PROPERTIES, Prop, add_property_table, feature_id_accessor
from twin.tiles.triangulate import triangulate_faces

GROUND, WALL, ROOF = 0, 1, 2
SURFACE_CLASSES = ("ground", "wall", "roof")
_CLASS_OF = {"GroundSurface": GROUND, "FloorSurface": GROUND, "OuterFloorSurface": GROUND,
             "RoofSurface": ROOF, "OuterCeilingSurface": ROOF}  # walls, closures and the rest: WALL
MATERIALS = [  # linear RGB: dark grey ground, warm white walls, terracotta roofs
    {"name": "ground", "pbrMetallicRoughness": {"baseColorFactor": [0.25, 0.25, 0.25, 1.0], "metallicFactor": 0.0,
                                                "roughnessFactor": 1.0}, "doubleSided": True},
    {"name": "wall", "pbrMetallicRoughness": {"baseColorFactor": [0.80, 0.77, 0.71, 1.0], "metallicFactor": 0.0,
                                              "roughnessFactor": 0.9}, "doubleSided": True},
    {"name": "roof", "pbrMetallicRoughness": {"baseColorFactor": [0.60, 0.17, 0.10, 1.0], "metallicFactor": 0.0,
                                              "roughnessFactor": 0.8}, "doubleSided": True},
]
FINEST, COARSE = "finest", "coarse"


def lod_keys(b: dict[str, Any]) -> list[str]:
    """The building's LoDs that carry geometry, coarsest first (``"1.2" < "1.3" < "2.2"``)."""
    lods = b.get("lods") or {}
    return sorted((k for k, v in lods.items() if v and v.get("vertices") and v.get("boundaries")), key=_lod_value)


def _lod_value(key: str) -> float:
    try:
        return float(key)
    except ValueError:
        return 0.0


def pick_lod(b: dict[str, Any], policy: str) -> str | None:
    """The LoD a tile shows: the finest for leaf tiles; LoD1.2 (else the coarsest there is) for coarser tiles."""
    keys = lod_keys(b)
    if not keys:
        return None
    if policy == FINEST:
        return keys[-1]
    return "1.2" if "1.2" in keys else keys[0]


def iter_faces(geom: dict[str, Any]) -> Iterator[tuple[list[list[int]], str | None]]:
    """(rings, semantic surface type) for every surface of a CityJSON Solid, Multi/CompositeSolid or MultiSurface."""
    boundaries = geom["boundaries"]
    values = (geom.get("semantics") or {}).get("values")
    surfaces = (geom.get("semantics") or {}).get("surfaces") or []
    depth, probe = 0, boundaries
    while isinstance(probe, list) and probe:
        probe, depth = probe[0], depth + 1
    # depth counts list levels down to a vertex index: MultiSurface 3, Solid 4, MultiSolid/CompositeSolid 5

    def kind(v: Any) -> str | None:
        return surfaces[v]["type"] if isinstance(v, int) and 0 <= v < len(surfaces) else None

    if depth == 4:  # Solid, the usual case: two plain loops
        for si, shell in enumerate(boundaries):
            vs = values[si] if isinstance(values, list) and si < len(values) else None
            for fi, face in enumerate(shell):
                yield face, kind(vs[fi] if isinstance(vs, list) and fi < len(vs) else None)
        return

    def walk(b: Any, v: Any, level: int) -> Iterator[tuple[list[list[int]], str | None]]:
        if level == 2:  # a surface: list of rings of vertex indices
            yield b, kind(v)
            return
        for i, child in enumerate(b):
            yield from walk(child, v[i] if isinstance(v, list) and i < len(v) else None, level - 1)

    yield from walk(boundaries, values, depth)


def collect_faces(geom: dict[str, Any], offset: int, faces: list[list[int]], sizes: list[list[int]],
                  classes: list[int]) -> int:
    """Append one LoD's surfaces (vertex ids shifted by ``offset``, rings concatenated; ring sizes; surface class);
    returns the count. Plain lists: numpy arrays per face would cost more than the work on them."""
    n = 0
    for rings, kind in iter_faces(geom):
        if not rings or len(rings[0]) < 3:
            continue
        if len(rings) == 1:
            faces.append([i + offset for i in rings[0]])
            sizes.append([len(rings[0])])
        else:
            rings = [rings[0]] + [r for r in rings[1:] if len(r) >= 3]
            faces.append([i + offset for r in rings for i in r])
            sizes.append([len(r) for r in rings])
        classes.append(_CLASS_OF.get(kind or "", WALL))
        n += 1
    return n


def _flat_normals(off: np.ndarray, starts: np.ndarray, ext_len: np.ndarray) -> np.ndarray:
    """Newell normal (unit) of each face's exterior ring, given face vertex blocks starting at ``starts``."""
    idx = np.repeat(starts - np.concatenate([[0], np.cumsum(ext_len)[:-1]]), ext_len) + np.arange(ext_len.sum())
    nxt = idx + 1
    ends = np.cumsum(ext_len) - 1
    nxt[ends] = starts
    p, q = off[idx], off[nxt]
    contrib = np.stack([(p[:, 1] - q[:, 1]) * (p[:, 2] + q[:, 2]),
                        (p[:, 2] - q[:, 2]) * (p[:, 0] + q[:, 0]),
                        (p[:, 0] - q[:, 0]) * (p[:, 1] + q[:, 1])], axis=1)
    n = np.add.reduceat(contrib, np.concatenate([[0], np.cumsum(ext_len)[:-1]]), axis=0)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.where(length > 0, length, 1.0)


def encode_buildings(buildings: list[dict[str, Any]], policy: str, crs: str,
                     props: list[Prop] | None = None) -> tuple[bytes, dict[str, Any]] | None:
    """One GLB for ``buildings`` at the LoD ``policy`` picks; positions are float32 ECEF offsets (glTF y-up) from
    the returned ``meta['center']``, which the tile's ``transform`` restores. None when nothing has geometry.
    z is the height above the store CRS's ellipsoid (pyproj's 3D CRS), as for point clouds and terrain."""
    props = props or BUILDING_PROPERTIES
    rows: list[tuple[dict, str]] = []
    vert_blocks: list[np.ndarray] = []
    faces: list[list[int]] = []
    sizes: list[list[int]] = []
    classes: list[int] = []
    face_feature: list[int] = []
    n_src = 0
    for b in buildings:
        lod = pick_lod(b, policy)
        if lod is None:
            continue
        geom = b["lods"][lod]
        verts = np.asarray(geom["vertices"], dtype=np.float64).reshape(-1, 3)
        n = collect_faces(geom, n_src, faces, sizes, classes)
        if not n:
            continue
        face_feature += [len(rows)] * n
        rows.append((b, lod))
        vert_blocks.append(verts)
        n_src += len(verts)
    if not rows:
        return None
    src = np.concatenate(vert_blocks)
    local = triangulate_faces(src, faces, sizes)
    kept = [i for i, t in enumerate(local) if len(t)]
    if not kept:
        return None
    lens = np.array([len(faces[i]) for i in kept])
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    ntri = np.array([len(local[i]) for i in kept])
    corner = np.fromiter(chain.from_iterable(faces[i] for i in kept), dtype=np.int64, count=int(lens.sum()))
    tris = np.concatenate([local[i] for i in kept]) + np.repeat(starts, ntri)[:, None]
    klass = np.repeat(np.asarray(classes, dtype=np.uint8)[kept], ntri)
    fids = np.repeat(np.asarray(face_feature)[kept], lens)
    ext_len = np.array([sizes[i][0] for i in kept])

    ecef_src = to_ecef(src[:, 0], src[:, 1], src[:, 2], crs)
    used = np.unique(corner)
    center = (ecef_src[used].min(axis=0) + ecef_src[used].max(axis=0)) / 2
    off = ecef_src[corner] - center
    normals = np.repeat(_flat_normals(off, starts, ext_len), lens, axis=0)
    n_vert = len(corner)

    g = GltfBuilder()
    pos = g.add_accessor(yup(off).astype(np.float32), bounds=True)
    nor = g.add_accessor(yup(normals).astype(np.float32))
    fid_acc = feature_id_accessor(g, fids)
    index_type = np.uint16 if n_vert < 65535 else np.uint32
    primitives = []
    for c, material in enumerate(MATERIALS):
        sel = tris[klass == c]
        if not len(sel):
            continue
        primitives.append({
            "attributes": {"POSITION": pos, "NORMAL": nor, "_FEATURE_ID_0": fid_acc},
            "indices": g.add_accessor(sel.astype(index_type).reshape(-1), target=ELEMENT_ARRAY_BUFFER),
            "material": g.add_material(dict(material)),
            "mode": TRIANGLES,
            "extensions": {"EXT_mesh_features": {"featureIds": [
                {"featureCount": len(rows), "attribute": 0, "propertyTable": 0}]}},
        })
    g.add_mesh(primitives)
    g.use_extension("EXT_mesh_features")
    add_property_table(g, "building", props, rows)
    meta = {
        "center": center.tolist(),
        "region": region_of_ecef(ecef_src[used]),
        "features": len(rows),
        "vertices": int(n_vert),
        "triangles": int(len(tris)),
    }
    return g.to_glb(), meta


def fold_parts(features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Buildings of ``features`` (Buildings and BuildingParts). Those whose geometry lives in BuildingParts
    (CityJSON / 3D BAG style) get, per LoD, the parts' solids as one CompositeSolid, so the building is drawn and
    picked as one feature whose id opens its record; the store version is the newest of the building and its parts,
    so editing a part re-tiles the building."""
    buildings = [f for f in features if f["type"] == "Building"]
    by_parent: dict[str, list[dict[str, Any]]] = {}
    for p in (f for f in features if f["type"] == "BuildingPart"):
        by_parent.setdefault(p.get("parent_id") or "", []).append(p)
    out = []
    for b in buildings:
        kids = [p for p in by_parent.get(b["id"], []) if lod_keys(p)]
        if not kids or lod_keys(b):
            out.append(b)
            continue
        lods: dict[str, Any] = {}
        for key in sorted({k for p in kids for k in lod_keys(p)}, key=_lod_value):
            vertices: list[list[float]] = []
            solids, values, surfaces = [], [], []
            for p in kids:
                geom = p["lods"].get(key)
                if not geom or key not in lod_keys(p):
                    continue
                off, s_off = len(vertices), len(surfaces)
                vertices += geom["vertices"]
                shells = geom["boundaries"] if _depth(geom["boundaries"]) == 4 else [geom["boundaries"]]
                solids.append([[[[i + off for i in ring] for ring in face] for face in shell] for shell in shells])
                sem = geom.get("semantics") or {}
                surfaces += sem.get("surfaces") or []
                vals = sem.get("values") or [[None] * len(shell) for shell in shells]
                values.append([[None if v is None else v + s_off for v in shell] for shell in vals])
            lods[key] = {"type": "CompositeSolid", "vertices": vertices, "boundaries": solids,
                         "semantics": {"surfaces": surfaces, "values": values}}
        version = max(int((x.get("_store") or {}).get("version", 0)) for x in [b, *kids])
        out.append({**b, "lods": lods, "_store": {**(b.get("_store") or {}), "version": version}})
    return out


def _depth(boundaries: Any) -> int:
    """List levels down to a vertex index (Solid 4)."""
    depth, probe = 0, boundaries
    while isinstance(probe, list) and probe:
        probe, depth = probe[0], depth + 1
    return depth
