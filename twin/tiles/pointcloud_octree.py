"""The point-cloud octree: voxel subsampling per node (ADD refinement) over Morton-sorted records, and GLB content.

A node at level ``l`` is a Morton prefix of ``3·l`` bits: a cube of side ``size / 2^l``. It keeps one point per voxel
of ``2^-VOXEL_BITS`` of its side (its *spacing*; the point within a voxel is picked by a hash, so there is no grid
pattern) and passes the rest down; a node whose cube holds at most ``MAX_LEAF`` points keeps them all (a leaf). With
the records sorted by Morton code, nodes and voxels at every level are contiguous runs, so each level is a few
vectorised passes over the remaining points and no sort after the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from twin.tiles.glb import ARRAY_BUFFER, POINTS, GltfBuilder
from twin.tiles.pointcloud_colour import SRGB_TO_LINEAR16
from twin.tiles.pointcloud_source import BITS, REC

VOXEL_BITS = 7  # 128 voxels per node side: ~16k points per node of a surface
MAX_LEAF = 40_000  # a node whose cube holds at most this many points keeps them all
MAX_DEPTH = BITS - VOXEL_BITS  # deeper voxels would be finer than the Morton grid: the last level keeps everything
_HASH = np.uint64(0x9E3779B97F4A7C15)

SCHEMA = {
    "id": "twin_pointcloud",
    "classes": {"point": {"name": "LiDAR point", "properties": {
        "classification": {"description": "ASPRS classification code", "type": "SCALAR", "componentType": "UINT8"},
        "intensity": {"description": "return intensity as recorded in the LAS file", "type": "SCALAR",
                      "componentType": "UINT16"},
    }}},
}
# per-vertex attribute layout: COLOR_0 (3×uint16) at 0, intensity at 8, classification at 12; every element of a
# vertex attribute must start on a 4-byte boundary (glTF 2.0, 3.6.2.4)
_ATTR = np.dtype({"names": ["color", "inten", "cls"], "formats": [("<u2", (3,)), "<u2", "u1"],
                  "offsets": [0, 8, 12], "itemsize": 16})


def node_keys(m: np.ndarray, level: int) -> np.ndarray:
    """The level-``level`` node (Morton prefix) of each code."""
    return m >> np.uint64(3 * (BITS - level))


def subsample(m: np.ndarray, lp: int, upper_counts: list[np.ndarray], max_leaf: int = MAX_LEAF
              ) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Assign every point of a Morton-sorted partition to one node: [(level, point indices, node keys)].

    ``upper_counts[l]`` holds the points per level-``l`` node over all partitions for the levels above the
    partition level ``lp`` (the leaf test needs whole-cube counts); below it the partition holds whole cubes.
    """
    rem = np.arange(len(m))
    out = []
    for level in range(MAX_DEPTH + 1):
        if rem.size == 0:
            break
        mr = m[rem]
        nk = node_keys(mr, level)
        starts = np.flatnonzero(np.r_[True, nk[1:] != nk[:-1]])
        uk = nk[starts]
        if level < lp:
            total = upper_counts[level][uk.astype(np.int64)]
        else:
            every = node_keys(m, level)
            total = np.searchsorted(every, uk, "right") - np.searchsorted(every, uk, "left")
        leaf = (total <= max_leaf) | (level == MAX_DEPTH)
        keep = np.repeat(leaf, np.diff(np.r_[starts, len(mr)]))
        inner = np.flatnonzero(~keep)
        if inner.size:
            vk = mr[inner] >> np.uint64(3 * (BITS - level - VOXEL_BITS))
            vs = np.flatnonzero(np.r_[True, vk[1:] != vk[:-1]])
            vlen = np.diff(np.r_[vs, inner.size]).astype(np.uint64)
            pick = vs + (((vk[vs] * _HASH) >> np.uint64(33)) % vlen).astype(np.int64)
            keep[inner[pick]] = True
        sel = np.flatnonzero(keep)
        out.append((level, rem[sel], nk[sel]))
        rem = rem[~keep]
    return out


def split_nodes(level: int, idx: np.ndarray, keys: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Split one level's assignment (sorted by key) into [(level, key, point indices)]."""
    if idx.size == 0:
        return []
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.r_[0, cuts]
    return [(level, int(keys[s]), part) for s, part in zip(starts, np.split(idx, cuts), strict=True)]


def encode(rec: np.ndarray) -> tuple[bytes, np.ndarray, np.ndarray]:
    """GLB bytes of a node's points and their ENU bounds (lo, hi).

    POSITION: float32 offsets from the centre of the points' box (glTF y-up; the glTF node's translation is that
    centre), COLOR_0: linear normalized uint16 RGB, _CLASSIFICATION/_INTENSITY: EXT_structural_metadata property
    attributes.
    """
    x, y, z = rec["x"], rec["y"], rec["z"]
    lo = np.array([x.min(), y.min(), z.min()])
    hi = np.array([x.max(), y.max(), z.max()])
    centre = (lo + hi) / 2
    pos = np.empty((len(rec), 3), dtype=np.float32)  # ENU offsets in glTF's y-up axes: (e, u, -n)
    np.subtract(x, centre[0], out=pos[:, 0], casting="same_kind")
    np.subtract(z, centre[2], out=pos[:, 1], casting="same_kind")
    np.subtract(centre[1], y, out=pos[:, 2], casting="same_kind")
    b = GltfBuilder()
    pa = b.add_accessor(pos)
    # float32 rounding is monotonic, so the rounded extremes are the extremes of the rounded values
    b.gltf["accessors"][pa]["min"] = [float(np.float32(v)) for v in (lo[0] - centre[0], lo[2] - centre[2],
                                                                       centre[1] - hi[1])]
    b.gltf["accessors"][pa]["max"] = [float(np.float32(v)) for v in (hi[0] - centre[0], hi[2] - centre[2],
                                                                       centre[1] - lo[1])]
    attr = np.zeros(len(rec), dtype=_ATTR)
    attr["color"] = SRGB_TO_LINEAR16[rec["rgb"]]
    attr["inten"] = rec["inten"]
    attr["cls"] = rec["cls"]
    view = b.add_view(attr.tobytes(), ARRAY_BUFFER)
    b.gltf["bufferViews"][view]["byteStride"] = _ATTR.itemsize
    accessors = b.gltf["accessors"]
    first = len(accessors)
    accessors += [
        {"bufferView": view, "byteOffset": 0, "componentType": 5123, "normalized": True, "count": len(rec),
         "type": "VEC3"},
        {"bufferView": view, "byteOffset": 8, "componentType": 5123, "count": len(rec), "type": "SCALAR"},
        {"bufferView": view, "byteOffset": 12, "componentType": 5121, "count": len(rec), "type": "SCALAR"},
    ]
    prim: dict[str, Any] = {
        "attributes": {"POSITION": pa, "COLOR_0": first, "_INTENSITY": first + 1, "_CLASSIFICATION": first + 2},
        "mode": POINTS,
        "extensions": {"EXT_structural_metadata": {"propertyAttributes": [0]}},
    }
    node = b.add_mesh([prim])
    b.gltf["nodes"][node]["translation"] = [float(centre[0]), float(centre[2]), float(-centre[1])]
    b.use_extension("EXT_structural_metadata", {
        "schema": SCHEMA,
        "propertyAttributes": [{"class": "point", "properties": {
            "classification": {"attribute": "_CLASSIFICATION"}, "intensity": {"attribute": "_INTENSITY"}}}],
    })
    return b.to_glb(), lo, hi


def node_uri(level: int, key: int) -> str:
    """Content path of a node, relative to the tileset."""
    return f"{level}/{key}.glb"


def write_node(out_dir: Path, level: int, key: int, rec: np.ndarray) -> dict[str, Any]:
    """Write a node's GLB; returns its facts for the tileset (level, key, count, bounds, uri)."""
    data, lo, hi = encode(rec)
    uri = node_uri(level, key)
    path = out_dir / uri
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"level": level, "key": key, "count": len(rec), "lo": lo.tolist(), "hi": hi.tolist(), "uri": uri}


def process_partition(rec: np.ndarray, lp: int, upper_counts: list[np.ndarray], out_dir: Path,
                      max_leaf: int = MAX_LEAF) -> tuple[list[dict[str, Any]], dict[tuple[int, int], np.ndarray]]:
    """Subsample one partition: writes its own nodes (levels ≥ lp) and returns their facts, plus its share of the
    nodes above it (level, key) → records, which the caller merges over partitions."""
    order = np.argsort(rec["m"])  # deterministic: every mode hands over the records in read order
    nodes: list[dict[str, Any]] = []
    upper: dict[tuple[int, int], np.ndarray] = {}
    for level, idx, keys in subsample(rec["m"][order], lp, upper_counts, max_leaf):
        for lv, key, part in split_nodes(level, idx, keys):
            if lv < lp:
                upper[(lv, key)] = rec[order[part]]
            else:
                nodes.append(write_node(out_dir, lv, key, rec[order[part]]))
    return nodes, upper


def empty_records() -> np.ndarray:
    """A zero-length record array."""
    return np.empty(0, dtype=REC)
