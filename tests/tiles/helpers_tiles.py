"""Reading tilesets back from their files alone: tiles with composed transforms, GLB positions in ECEF."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyproj

from twin.tiles.glb import accessor_array, read_glb
from twin.tiles.metadata import read_property_table


def matrix(m: list[float] | None) -> np.ndarray:
    """A column-major 3D Tiles / glTF matrix as a row-major 4×4 numpy array (identity when absent)."""
    return np.eye(4) if m is None else np.asarray(m, dtype=np.float64).reshape(4, 4).T


def walk(tile: dict[str, Any], parent: np.ndarray | None = None, depth: int = 0, up: dict | None = None
         ) -> Iterator[tuple[dict[str, Any], np.ndarray, int, dict | None]]:
    """(tile, world transform, depth, parent tile) for every tile of an explicit tileset, parents first."""
    world = (np.eye(4) if parent is None else parent) @ matrix(tile.get("transform"))
    yield tile, world, depth, up
    for child in tile.get("children", []):
        yield from walk(child, world, depth + 1, tile)


YUP_TO_ZUP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def glb_points(data: bytes, world: np.ndarray) -> tuple[dict[str, Any], bytes, list[dict[str, Any]]]:
    """Every primitive of a GLB with its POSITION in ECEF (float64): node matrix, y-up → z-up, tile transform."""
    gltf, binary = read_glb(data)
    prims = []
    for node in gltf.get("nodes", []):
        node_m = matrix(node.get("matrix"))
        for p in gltf["meshes"][node["mesh"]]["primitives"]:
            pos = accessor_array(gltf, binary, p["attributes"]["POSITION"]).astype(np.float64)
            h = np.c_[pos, np.ones(len(pos))]
            ecef = (world @ YUP_TO_ZUP @ node_m @ h.T).T[:, :3]
            out = {"ecef": ecef, "local": pos, "primitive": p}
            if "NORMAL" in p["attributes"]:
                out["normal"] = accessor_array(gltf, binary, p["attributes"]["NORMAL"]).astype(np.float64)
            if "_FEATURE_ID_0" in p["attributes"]:
                out["feature"] = accessor_array(gltf, binary, p["attributes"]["_FEATURE_ID_0"]).astype(np.int64)
            if "indices" in p:
                out["indices"] = accessor_array(gltf, binary, p["indices"]).astype(np.int64)
            if "COLOR_0" in p["attributes"]:
                out["color"] = accessor_array(gltf, binary, p["attributes"]["COLOR_0"])
            prims.append(out)
    return gltf, binary, prims


def building_tiles(tileset_path: Path) -> list[dict[str, Any]]:
    """Every tile with content of a buildings tileset: tile, depth, parent, ECEF primitives, property table."""
    doc = json.loads(tileset_path.read_text())
    out = []
    for tile, world, depth, parent in walk(doc["root"]):
        if "content" not in tile:
            continue
        data = (tileset_path.parent / tile["content"]["uri"]).read_bytes()
        gltf, binary, prims = glb_points(data, world)
        out.append({"tile": tile, "depth": depth, "parent": parent, "prims": prims,
                    "table": read_property_table(gltf, binary), "gltf": gltf})
    return out


@lru_cache(maxsize=8)
def _to_ecef(crs: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(pyproj.CRS.from_user_input(crs).to_3d(), "EPSG:4978", always_xy=True)


def pyproj_ecef(points: np.ndarray, crs: str) -> np.ndarray:
    """The independent reference: pyproj from the 3D version of ``crs`` (z ellipsoidal) to EPSG:4978."""
    t = _to_ecef(crs)
    return np.stack(t.transform(points[:, 0], points[:, 1], points[:, 2]), axis=1)


def nearest_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each point of ``a``, the distance to the nearest point of ``b`` (brute force, small sets)."""
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(axis=1)


def region_contains(outer: list[float], inner: list[float], eps: float = 1e-12) -> bool:
    """Whether region ``inner`` lies inside region ``outer`` (radians, metres)."""
    return (outer[0] - eps <= inner[0] and outer[1] - eps <= inner[1] and inner[2] <= outer[2] + eps
            and inner[3] <= outer[3] + eps and outer[4] - 1e-6 <= inner[4] and inner[5] <= outer[5] + 1e-6)


@lru_cache(maxsize=1)
def _to_geodetic() -> pyproj.Transformer:
    return pyproj.Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)


def geodetic(ecef: np.ndarray) -> np.ndarray:
    """ECEF → (lon rad, lat rad, h) with pyproj (EPSG:4978 → 4979)."""
    lon, lat, h = _to_geodetic().transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
    return np.stack([np.radians(lon), np.radians(lat), h], axis=1)


__all__ = ["walk", "glb_points", "building_tiles", "pyproj_ecef", "nearest_distance", "region_contains",
           "geodetic", "matrix"]
