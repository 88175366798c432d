"""3D Tiles 1.1 implicit quadtree tiling: Morton indices and the binary ``.subtree`` format (write and read)."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

SUBTREE_MAGIC = b"subt"


def morton(x: np.ndarray | int, y: np.ndarray | int, bits: int = 16) -> np.ndarray:
    """Interleave bits: x in the even bits, y in the odd bits (the quadtree child order of 3D Tiles)."""
    x, y = np.asarray(x, dtype=np.uint64), np.asarray(y, dtype=np.uint64)
    out = np.zeros(np.broadcast(x, y).shape, dtype=np.uint64)
    for b in range(bits):
        out |= ((x >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b)
        out |= ((y >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b + 1)
    return out


def level_offset(level: int) -> int:
    """Bit index of a subtree level's first tile: 4^0 + … + 4^(level-1)."""
    return (4**level - 1) // 3


def _availability(bits: np.ndarray, views: list[bytes]) -> dict[str, Any]:
    count = int(bits.sum())
    if count == 0:
        return {"constant": 0, "availableCount": 0}
    if count == len(bits):
        return {"constant": 1, "availableCount": count}
    views.append(np.packbits(bits.astype(np.uint8), bitorder="little").tobytes())
    return {"bitstream": len(views) - 1, "availableCount": count}


def subtree_bytes(tiles: np.ndarray, content: np.ndarray, children: np.ndarray) -> bytes:
    """Encode one subtree: tile and content availability over its levels (level offsets + Morton order) and the
    availability of the child subtrees below its last level (Morton order)."""
    views: list[bytes] = []
    doc: dict[str, Any] = {
        "tileAvailability": _availability(np.asarray(tiles, bool), views),
        "contentAvailability": [_availability(np.asarray(content, bool), views)],
        "childSubtreeAvailability": _availability(np.asarray(children, bool), views),
    }
    binary = bytearray()
    if views:
        doc["bufferViews"] = []
        for v in views:
            doc["bufferViews"].append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(v)})
            binary += v + b"\0" * ((-len(v)) % 8)
        doc["buffers"] = [{"byteLength": len(binary)}]
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * ((-len(js)) % 8)
    return SUBTREE_MAGIC + struct.pack("<IQQ", 1, len(js), len(binary)) + js + bytes(binary)


def read_subtree(data: bytes, subtree_levels: int) -> dict[str, np.ndarray]:
    """Decode a ``.subtree`` (internal buffer only) to boolean arrays: tiles, content, children."""
    magic, version, jlen, blen = data[:4], *struct.unpack_from("<IQQ", data, 4)
    if magic != SUBTREE_MAGIC or version != 1:
        raise ValueError(f"not a subtree file (magic {magic!r}, version {version})")
    doc = json.loads(data[24:24 + jlen])
    binary = data[24 + jlen:24 + jlen + blen]
    n_tiles = level_offset(subtree_levels)
    n_children = 4**subtree_levels

    def bits(av: dict[str, Any], n: int) -> np.ndarray:
        if "constant" in av:
            return np.full(n, bool(av["constant"]))
        v = doc["bufferViews"][av["bitstream"]]
        raw = np.frombuffer(binary, np.uint8, count=v["byteLength"], offset=v.get("byteOffset", 0))
        return np.unpackbits(raw, bitorder="little")[:n].astype(bool)

    return {"tiles": bits(doc["tileAvailability"], n_tiles),
            "content": bits(doc["contentAvailability"][0], n_tiles),
            "children": bits(doc["childSubtreeAvailability"], n_children)}
