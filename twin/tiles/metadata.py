"""EXT_structural_metadata property tables and EXT_mesh_features ids for glTF tile content.

The building class is a list of :class:`Prop` rows, so a later step (e.g. a simulation result such as solar
potential) adds a property by appending one ``Prop`` to :data:`BUILDING_PROPERTIES` — the schema, the table and the
tests follow from the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.tiles.glb import GltfBuilder

FLOAT_NO_DATA = -9999.0


@dataclass(frozen=True)
class Prop:
    """One property of a metadata class: name, 3D Tiles type, how to read it from (entity, lod shown)."""

    name: str
    type: str  # STRING | BOOLEAN | SCALAR
    get: Callable[[dict[str, Any], str], Any]
    description: str = ""
    component: str | None = None  # FLOAT32 for SCALAR

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.component:
            out["componentType"] = self.component
        if self.type == "SCALAR":
            out["noData"] = FLOAT_NO_DATA
        elif self.type == "STRING":
            out["noData"] = ""
        return out


def _geometry_provenance(b: dict[str, Any]) -> dict[str, Any]:
    """The provenance entry behind the geometry: the one for ``lods``, else the entity-wide one, else the first."""
    prov = b.get("provenance") or []
    for key in ("lods", None):
        for p in prov:
            if p.get("attribute") == key:
                return p
    return prov[0] if prov else {}


def _quality(b: dict[str, Any]) -> dict[str, Any]:
    return b.get("quality") or {}


BUILDING_PROPERTIES: list[Prop] = [
    Prop("id", "STRING", lambda b, lod: b["id"], "store entity id (stable across versions)"),
    Prop("lod", "STRING", lambda b, lod: lod, "level of detail shown in this tile"),
    Prop("height", "SCALAR", lambda b, lod: b.get("height"), "building height, m", "FLOAT32"),
    Prop("roof_type", "STRING", lambda b, lod: b.get("roof_type"), "roof shape"),
    Prop("rmse", "SCALAR", lambda b, lod: (_quality(b).get("rmse") or {}).get(lod),
         "RMSE of the shown LoD against the point cloud, m", "FLOAT32"),
    Prop("valid", "BOOLEAN", lambda b, lod: bool(_quality(b).get("valid", False)), "solid passed validity checks"),
    Prop("point_density", "SCALAR", lambda b, lod: _quality(b).get("point_density"), "LiDAR points per m²",
         "FLOAT32"),
    Prop("source", "STRING", lambda b, lod: _geometry_provenance(b).get("source_asset_id"),
         "source asset id of the geometry"),
    Prop("acquired", "STRING", lambda b, lod: _geometry_provenance(b).get("acquired"),
         "acquisition time of that source (ISO 8601)"),
    Prop("classification", "STRING", lambda b, lod: b.get("classification"), "security classification"),
    Prop("use", "STRING", lambda b, lod: b.get("use"), "building use"),
]


def schema(class_name: str, props: list[Prop]) -> dict[str, Any]:
    """The EXT_structural_metadata schema with one class."""
    return {"id": "twin", "classes": {class_name: {"properties": {p.name: p.schema() for p in props}}}}


def _strings(values: list[Any]) -> tuple[bytes, bytes]:
    encoded = [("" if v is None else str(v)).encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.uint32)
    offsets[1:] = np.cumsum([len(e) for e in encoded], dtype=np.uint64)
    return b"".join(encoded), offsets.tobytes()


def add_property_table(gltf: GltfBuilder, class_name: str, props: list[Prop], rows: list[tuple[dict, str]]) -> None:
    """Add the schema and one property table (one row per (entity, lod)) as EXT_structural_metadata."""
    table: dict[str, Any] = {"class": class_name, "count": len(rows), "properties": {}}
    for p in props:
        values = [p.get(b, lod) for b, lod in rows]
        if p.type == "STRING":
            data, offsets = _strings(values)
            if not data:  # every value missing: leave the property out (a bufferView cannot be empty)
                continue
            entry = {"values": gltf.add_view(data), "stringOffsets": gltf.add_view(offsets),
                     "stringOffsetType": "UINT32"}
        elif p.type == "BOOLEAN":
            bits = np.packbits(np.array([bool(v) for v in values], dtype=np.uint8), bitorder="little")
            entry = {"values": gltf.add_view(bits.tobytes())}
        else:
            arr = np.array([FLOAT_NO_DATA if v is None else float(v) for v in values], dtype=np.float32)
            entry = {"values": gltf.add_view(arr.tobytes())}
        table["properties"][p.name] = entry
    gltf.use_extension("EXT_structural_metadata", {"schema": schema(class_name, props), "propertyTables": [table]})


def feature_id_accessor(gltf: GltfBuilder, ids: np.ndarray) -> int:
    """The ``_FEATURE_ID_0`` accessor as FLOAT: exact to 2^24 ids, and unlike tightly packed bytes or shorts its
    elements meet glTF's 4-byte vertex attribute alignment (custom attributes may not use UNSIGNED_INT)."""
    return gltf.add_accessor(np.asarray(ids).astype(np.float32))


def read_property_table(gltf_json: dict[str, Any], binary: bytes, index: int = 0) -> dict[str, list[Any]]:
    """Decode a property table back to Python lists (tests and tools; the inverse of ``add_property_table``)."""
    ext = gltf_json["extensions"]["EXT_structural_metadata"]
    table = ext["propertyTables"][index]
    cls = ext["schema"]["classes"][table["class"]]["properties"]
    n = table["count"]

    def view(i: int) -> bytes:
        v = gltf_json["bufferViews"][i]
        return binary[v.get("byteOffset", 0):v.get("byteOffset", 0) + v["byteLength"]]

    out: dict[str, list[Any]] = {}
    for name, entry in table["properties"].items():
        kind = cls[name]["type"]
        if kind == "STRING":
            data, offs = view(entry["values"]), np.frombuffer(view(entry["stringOffsets"]), dtype=np.uint32)
            out[name] = [data[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
        elif kind == "BOOLEAN":
            bits = np.unpackbits(np.frombuffer(view(entry["values"]), dtype=np.uint8), bitorder="little")
            out[name] = [bool(b) for b in bits[:n]]
        else:
            out[name] = np.frombuffer(view(entry["values"]), dtype=np.float32)[:n].tolist()
    return out
