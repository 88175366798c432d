"""A small glTF 2.0 binary (GLB) builder: buffer views, accessors and meshes from numpy arrays.

Hand-written rather than pygltflib: tiles are encoded by the thousand, and building the JSON dict and one binary
buffer directly is several times faster than round-tripping through pygltflib's dataclasses.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

# glTF componentType codes and bufferView targets (glTF 2.0 spec, 3.6.2)
COMPONENT = {np.dtype("float32"): 5126, np.dtype("uint32"): 5125, np.dtype("uint16"): 5123,
             np.dtype("uint8"): 5121, np.dtype("int16"): 5122, np.dtype("int8"): 5120}
ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963
TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}
POINTS, TRIANGLES = 0, 4


def _pad(data: bytes | bytearray, align: int = 8, fill: bytes = b"\0") -> bytes:
    rem = (-len(data)) % align
    return bytes(data) + fill * rem


class GltfBuilder:
    """Accumulates one binary buffer and the JSON that describes it; ``to_glb`` packs both into a GLB."""

    def __init__(self, generator: str = "twin") -> None:
        self.gltf: dict[str, Any] = {
            "asset": {"version": "2.0", "generator": generator},
            "scene": 0,
            "scenes": [{"nodes": []}],
            "nodes": [],
            "meshes": [],
            "buffers": [],
            "bufferViews": [],
            "accessors": [],
        }
        self._bin = bytearray()
        self.extensions_used: set[str] = set()

    def add_view(self, data: bytes, target: int | None = None) -> int:
        """Append raw bytes (8-byte aligned) as a bufferView; returns its index."""
        offset = len(self._bin)
        self._bin += _pad(data)
        view: dict[str, Any] = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.gltf["bufferViews"].append(view)
        return len(self.gltf["bufferViews"]) - 1

    def add_accessor(self, array: np.ndarray, target: int | None = ARRAY_BUFFER, normalized: bool = False,
                     bounds: bool = False) -> int:
        """A tightly packed accessor over ``array`` (N or N×k); ``bounds`` adds min/max (required for POSITION)."""
        a = np.ascontiguousarray(array)
        count = a.shape[0]
        width = 1 if a.ndim == 1 else a.shape[1]
        acc: dict[str, Any] = {
            "bufferView": self.add_view(a.tobytes(), target),
            "componentType": COMPONENT[a.dtype],
            "count": int(count),
            "type": TYPES[width],
        }
        if normalized:
            acc["normalized"] = True
        if bounds and count:
            flat = a.reshape(count, width)
            acc["min"] = [float(v) for v in flat.min(axis=0)]
            acc["max"] = [float(v) for v in flat.max(axis=0)]
        self.gltf["accessors"].append(acc)
        return len(self.gltf["accessors"]) - 1

    def add_mesh(self, primitives: list[dict[str, Any]], matrix: list[float] | None = None) -> int:
        """A mesh in a node of the default scene; returns the node index."""
        self.gltf["meshes"].append({"primitives": primitives})
        node: dict[str, Any] = {"mesh": len(self.gltf["meshes"]) - 1}
        if matrix is not None:
            node["matrix"] = matrix
        self.gltf["nodes"].append(node)
        self.gltf["scenes"][0]["nodes"].append(len(self.gltf["nodes"]) - 1)
        return len(self.gltf["nodes"]) - 1

    def add_material(self, material: dict[str, Any]) -> int:
        self.gltf.setdefault("materials", []).append(material)
        return len(self.gltf["materials"]) - 1

    def use_extension(self, name: str, extension: dict[str, Any] | None = None) -> None:
        """Declare ``name`` in extensionsUsed, and put ``extension`` at the root's ``extensions`` when given."""
        self.extensions_used.add(name)
        if extension is not None:
            self.gltf.setdefault("extensions", {})[name] = extension

    def to_glb(self) -> bytes:
        """Pack the JSON chunk (space-padded) and the BIN chunk (zero-padded) into GLB bytes."""
        gltf = dict(self.gltf)
        gltf["buffers"] = [{"byteLength": len(self._bin)}]
        for key in ("meshes", "nodes", "bufferViews", "accessors"):
            if not gltf[key]:
                del gltf[key]
        if self.extensions_used:
            gltf["extensionsUsed"] = sorted(self.extensions_used)
        js = _pad(json.dumps(gltf, separators=(",", ":")).encode(), 4, b" ")
        bin_chunk = _pad(self._bin, 4)
        parts = [struct.pack("<I4s", len(js), b"JSON"), js]
        if bin_chunk:
            parts += [struct.pack("<I4s", len(bin_chunk), b"BIN\0"), bin_chunk]
        body = b"".join(parts)
        return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Split GLB bytes into (JSON dict, BIN chunk); raises ValueError on a malformed container."""
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2 or length != len(data):
        raise ValueError(f"not a GLB 2.0 container (magic={magic!r}, version={version}, length={length})")
    jlen, jtype = struct.unpack_from("<I4s", data, 12)
    if jtype != b"JSON":
        raise ValueError("GLB: first chunk is not JSON")
    gltf = json.loads(data[20:20 + jlen])
    rest = 20 + jlen
    binary = b""
    if rest < len(data):
        blen, btype = struct.unpack_from("<I4s", data, rest)
        if btype != b"BIN\0":
            raise ValueError("GLB: second chunk is not BIN")
        binary = data[rest + 8:rest + 8 + blen]
    return gltf, binary


def accessor_array(gltf: dict[str, Any], binary: bytes, index: int) -> np.ndarray:
    """Read accessor ``index`` back as a numpy array (tightly packed or interleaved, byteStride, views)."""
    acc = gltf["accessors"][index]
    view = gltf["bufferViews"][acc["bufferView"]]
    dtype = next(d for d, c in COMPONENT.items() if c == acc["componentType"])
    width = {v: k for k, v in TYPES.items()}[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride")
    if stride and stride != dtype.itemsize * width and acc["count"]:  # interleaved view: a strided copy
        arr = np.ndarray((acc["count"], width), dtype=dtype, buffer=binary, offset=start,
                         strides=(stride, dtype.itemsize)).copy()
        return arr if width > 1 else arr[:, 0]
    arr = np.frombuffer(binary, dtype=dtype, count=acc["count"] * width, offset=start)
    return arr.reshape(acc["count"], width) if width > 1 else arr
