"""Flat, typed feature properties for GIS clients: one scalar column per value, one type per column per collection.

What GDAL, QGIS and ArcGIS make of a GeoJSON feature is a table row: nested objects become JSON text nobody can
style by, and a column's type is guessed from the first page (a column that is null there becomes text). So the OGC
API Features items carry *flat* properties, named and typed by a :class:`Schema` derived once per collection and
version (from the CIM model and the values stored at that version, never from one page), declared in
``/queryables`` and ``/schema``, and every feature of every page carries every column (null when absent).

Naming (documented in docs/api.md):

* model scalar fields keep their name (``height``, ``storeys``, ``valid_from`` …), dicts of the model flatten to
  ``<field>_<key>`` (``units_pm25``), lists of scalars become one text joined by ``"; "``;
* ``attributes`` become columns of their own name (``district``, ``name``) unless the name is taken by the model or
  by this scheme (``id``, ``type``, ``store_version``, ``lods``, anything starting ``quality_``, ``provenance_`` or
  ``attr_``): then ``attr_<key>``; nested attribute objects flatten with ``_`` as well;
* ``quality`` becomes ``quality_<key>``; LoD keys (``"2.2"``) become ``lod22``: ``quality_rmse_lod22``,
  ``quality_volume_m3_lod13``; the lists ``errors`` and ``flags`` are ``"; "``-joined text;
* ``provenance`` becomes, per attribute it supports (``object`` for records about the whole object),
  ``provenance_<attribute>_method``, ``_source`` (source asset ids) and ``_acquired`` (the latest acquisition);
  several records for one attribute are joined with ``"; "``;
* ``store_version`` (integer) is the version that wrote the state.

Types: the model's declared type where there is one (``storeys`` integer even when every value is null, validity
fields ``date-time``), else what the stored values are: integers only → integer, numbers → number, booleans →
boolean, RFC 3339 text → ``date-time`` (``date`` for bare dates), anything mixed → string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

STRING, NUMBER, INTEGER, BOOLEAN = "string", "number", "integer", "boolean"
DATE_TIME, DATE = "date-time", "date"
JOIN = "; "

# the properties every item has beside the model's and the ones this scheme generates
_FIXED = ("id", "geometry", "type", "store_version", "lods", "properties")
_PREFIXES = ("quality_", "provenance_", "attr_")
_NESTED = ("attributes", "quality", "provenance", "lods")
_LOD = re.compile(r"\d+(\.\d+)+")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PATH_KEY = re.compile(r"[A-Za-z0-9_.:-]+")  # what a store filter path may hold


@dataclass(frozen=True)
class Field:
    """One flat property: its JSON type (and format), what it is, and where a store filter finds it.

    ``path`` is the key path into the stored body (``("quality", "rmse", "2.2")``) when the store can filter on
    it, else None; ``queryable`` says whether ``filter`` and ``?name=value`` may use it at all."""

    name: str
    type: str = STRING
    format: str | None = None
    description: str | None = None
    path: tuple[str, ...] | None = None
    queryable: bool = False
    enum: tuple[str, ...] | None = None
    unit: str | None = None

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the property: one ``type`` string (what GDAL and QGIS read; null is always
        allowed: a feature without the value carries null)."""
        out: dict[str, Any] = {"type": self.type}
        if self.format:
            out["format"] = self.format
        if self.enum:
            out["enum"] = list(self.enum)
        out["title"] = self.name
        if self.description:
            out["description"] = self.description
        if self.unit:
            out["x-ogc-unit"] = self.unit
        return out


@dataclass(frozen=True)
class Schema:
    """The flat properties of one collection at one version, in column order."""

    fields: dict[str, Field] = field(default_factory=dict)

    def names(self) -> list[str]:
        return list(self.fields)

    def queryables(self) -> dict[str, Field]:
        return {n: f for n, f in self.fields.items() if f.queryable}

    def properties(self) -> dict[str, dict[str, Any]]:
        return {n: f.json_schema() for n, f in self.fields.items()}

    def project(self, values: dict[str, Any]) -> dict[str, Any]:
        """Flat values (:func:`flat_values`) as this schema's properties: every column, in order, each value of
        the column's type (null when absent or not convertible)."""
        return {n: convert(values.get(n), f) for n, f in self.fields.items()}


# ---------------------------------------------------------------------------------------------- naming
def lod_key(key: str) -> str:
    """An LoD key (``"2.2"``) as a column-name segment (``lod22``); other keys as they are."""
    return "lod" + key.replace(".", "") if _LOD.fullmatch(key) else key


def attribute_name(key: str, model_fields: Iterable[str]) -> str:
    """The column of a free attribute: its own name unless the model or this scheme uses it (then ``attr_<key>``)."""
    taken = set(model_fields) | set(_FIXED)
    return f"attr_{key}" if key in taken or key.startswith(_PREFIXES) else key


def provenance_key(attribute: str | None) -> str:
    return "object" if attribute in (None, "") else str(attribute)


# ---------------------------------------------------------------------------------------------- flat values
@dataclass(frozen=True)
class _Value:
    value: Any
    path: tuple[str, ...] | None  # None: derived (joined, JSON or provenance): not filterable in the store
    joined: bool = False


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def _put(out: dict[str, _Value], name: str, v: Any, path: tuple[str, ...] | None, lod_keys: bool) -> None:
    if name in out:  # a generated name met twice (e.g. a key "rmse_lod12" beside rmse."1.2"): the first stays
        return
    if isinstance(v, dict):
        for k, sub in v.items():
            seg = lod_key(str(k)) if lod_keys else str(k)
            _put(out, f"{name}_{seg}", sub, None if path is None else (*path, str(k)), lod_keys)
        return
    if isinstance(v, list | tuple):
        if all(_scalar(x) and not isinstance(x, bool) for x in v):
            out[name] = _Value(JOIN.join("" if x is None else str(x) for x in v), None, joined=True)
        else:
            out[name] = _Value(json.dumps(v, separators=(",", ":"), default=str), None, joined=True)
        return
    out[name] = _Value(v, path)


def flat_values(row: dict[str, Any], model_fields: Iterable[str]) -> dict[str, _Value]:
    """A store row (model JSON shape + ``_store``) as flat name → value (with the body path of each value)."""
    fields = [f for f in model_fields if f not in ("id", "geometry")]
    out: dict[str, _Value] = {}
    for name in fields:
        if name in _NESTED:
            continue
        _put(out, name, row.get(name), (name,), lod_keys=False)
    for k, v in (row.get("attributes") or {}).items():
        _put(out, attribute_name(str(k), fields), v, ("attributes", str(k)), lod_keys=False)
    for k, v in (row.get("quality") or {}).items():
        _put(out, f"quality_{lod_key(str(k))}", v, ("quality", str(k)), lod_keys=True)
    by_attr: dict[str, list[dict[str, Any]]] = {}
    for p in row.get("provenance") or []:
        if isinstance(p, dict):
            by_attr.setdefault(provenance_key(p.get("attribute")), []).append(p)
    for attr, recs in by_attr.items():
        base = f"provenance_{attr}"
        out[f"{base}_method"] = _Value(JOIN.join(dict.fromkeys(str(p.get("method")) for p in recs)), None, True)
        out[f"{base}_source"] = _Value(JOIN.join(dict.fromkeys(str(p.get("source_asset_id")) for p in recs)),
                                       None, True)
        acquired = [t for t in (_utc(p.get("acquired")) for p in recs) if t is not None]
        out[f"{base}_acquired"] = _Value(iso(max(acquired)) if acquired else None, None, True)
    out["store_version"] = _Value((row.get("_store") or {}).get("version"), None)
    return out


def values_only(flat: dict[str, _Value]) -> dict[str, Any]:
    return {k: v.value for k, v in flat.items()}


# ---------------------------------------------------------------------------------------------- types
def _kind(v: Any) -> str | None:
    """The JSON type (or string format) one stored value has; None for null."""
    if v is None:
        return None
    if isinstance(v, bool):
        return BOOLEAN
    if isinstance(v, int):
        return INTEGER
    if isinstance(v, float):
        return NUMBER
    if isinstance(v, str):
        if _DATE_TIME.fullmatch(v.strip()):
            return DATE_TIME
        if _DATE.fullmatch(v.strip()):
            return DATE
    return STRING


def _join_kinds(kinds: set[str]) -> tuple[str, str | None]:
    """(type, format) of a column from the kinds of its values."""
    if not kinds:
        return STRING, None
    if kinds <= {INTEGER}:
        return INTEGER, None
    if kinds <= {INTEGER, NUMBER}:
        return NUMBER, None
    if kinds == {BOOLEAN}:
        return BOOLEAN, None
    if kinds == {DATE_TIME}:
        return STRING, DATE_TIME
    if kinds == {DATE}:
        return STRING, DATE
    return STRING, None


def model_fields_schema(model: type[BaseModel]) -> dict[str, Field]:
    """The flat columns the model declares itself (scalar fields, with their type, format, enum and description)."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    out: dict[str, Field] = {}
    for name, prop in schema["properties"].items():
        if name in ("id", "geometry") or name in _NESTED:
            continue
        resolved = _scalar_schema(prop, defs)
        if resolved is None:
            continue
        enum = tuple(resolved["enum"]) if resolved.get("enum") else None
        if name == "type":  # the discriminator: not worth a filter, and a constant per collection
            out[name] = Field(name, STRING, description="the CIM type", enum=enum)
            continue
        # validity and classification are store columns (``datetime`` selects by validity), not body paths
        path = None if name in ("valid_from", "valid_to", "classification") else (name,)
        out[name] = Field(name, resolved["type"], resolved.get("format"), resolved.get("description"), path,
                          queryable=path is not None, enum=enum)
    return out


def _scalar_schema(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any] | None:
    """A property's schema reduced to one scalar type (null alternatives dropped), or None if not scalar."""
    desc = prop.get("description")
    if "$ref" in prop:
        prop = {**defs[prop["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in prop.items() if k != "$ref"}}
    if "anyOf" in prop:
        options = [o for o in prop["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            return None
        inner = _scalar_schema(options[0], defs)
        if inner is None:
            return None
        prop = {**inner, **{k: v for k, v in prop.items() if k not in ("anyOf", "default")}}
    if prop.get("type") not in ("string", "number", "integer", "boolean"):
        return None
    out = {"type": prop["type"], "format": prop.get("format"), "enum": prop.get("enum"),
           "description": desc or prop.get("description")}
    return {k: v for k, v in out.items() if v is not None}


# quality values every reconstructed building (and part) may carry: declared even before any has them
BUILDING_QUALITY = {
    f.name: f for f in (
        Field("quality_point_density", NUMBER, None, "LiDAR points per square metre in the footprint",
              ("quality", "point_density"), True, unit="1/m2"),
        Field("quality_nodata_fraction", NUMBER, None, "fraction of the footprint's 1 m cells without a roof point",
              ("quality", "nodata_fraction"), True, unit="1"),
        Field("quality_rmse_lod12", NUMBER, None, "RMSE of the LoD1.2 solid against the roof points",
              ("quality", "rmse", "1.2"), True, unit="m"),
        Field("quality_rmse_lod13", NUMBER, None, "RMSE of the LoD1.3 solid against the roof points",
              ("quality", "rmse", "1.3"), True, unit="m"),
        Field("quality_rmse_lod22", NUMBER, None, "RMSE of the LoD2.2 solid against the roof points",
              ("quality", "rmse", "2.2"), True, unit="m"),
        Field("quality_valid", BOOLEAN, None, "geometric validity of the solids (null: not checked)",
              ("quality", "valid"), True),
        Field("quality_errors", STRING, None, "validation errors, '; '-joined"),
    )
}
_PROVENANCE_PARTS = {"method": "how it was derived", "source": "source asset id(s)",
                     "acquired": "latest acquisition time of its sources"}


@dataclass
class _Seen:
    kinds: set[str] = field(default_factory=set)
    path: tuple[str, ...] | None = None
    joined: bool = False


def derive(model: type[BaseModel], rows: Iterable[dict[str, Any]],
           declared: dict[str, Field] | None = None) -> Schema:
    """The flat schema of a collection: the model's own columns (then ``declared`` ones), every attribute and
    model-dict column any of ``rows`` has, the quality columns, the provenance columns, ``store_version``; each
    observed column typed by all its values."""
    model_names = list(model.model_fields)
    seen: dict[str, _Seen] = {}
    for row in rows:
        for name, v in flat_values(row, model_names).items():
            s = seen.setdefault(name, _Seen())
            k = _kind(v.value)
            if k is not None:
                s.kinds.add(k)
            s.joined |= v.joined
            if s.path is None and v.path and all(_PATH_KEY.fullmatch(p) for p in v.path):
                s.path = v.path
    fixed = {**model_fields_schema(model), **(declared or {})}
    columns = {n: f for n, f in fixed.items() if not n.startswith("quality_")}
    quality = {n: f for n, f in fixed.items() if n.startswith("quality_")}
    observed = [n for n in seen if n not in fixed and n != "store_version"]
    for name in sorted(n for n in observed if not n.startswith(("quality_", "provenance_"))):
        columns[name] = _observed(name, seen[name], "attribute")
    for name in sorted(n for n in observed if n.startswith("quality_")):
        quality[name] = _observed(name, seen[name], "quality value")
    out = {**columns, **quality}
    prov = [n for n in observed if n.startswith("provenance_")]
    order = list(_PROVENANCE_PARTS)

    def prov_key(name: str) -> tuple[bool, str, int]:
        attr, part = name.removeprefix("provenance_").rsplit("_", 1)
        return attr != "object", attr, order.index(part)

    for name in sorted(prov, key=prov_key):
        attr, part = name.removeprefix("provenance_").rsplit("_", 1)
        out[name] = Field(name, STRING, DATE_TIME if part == "acquired" else None,
                          f"provenance of {attr}: {_PROVENANCE_PARTS[part]}")
    out["store_version"] = Field("store_version", INTEGER, description="the store version that wrote this state")
    return Schema(out)


def _observed(name: str, s: _Seen, what: str) -> Field:
    if s.joined:
        return Field(name, STRING, None, f"{what}: a '; '-joined list, or JSON text")
    t, fmt = _join_kinds(s.kinds)
    return Field(name, t, fmt, what, s.path, queryable=s.path is not None)


# ---------------------------------------------------------------------------------------------- values
def _utc(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v.astimezone(UTC) if v.tzinfo else v.replace(tzinfo=UTC)
    if not isinstance(v, str) or not v.strip():
        return None
    s = v.strip().replace("z", "Z").replace("t", "T")
    if _DATE.fullmatch(s):
        s += "T00:00:00Z"
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def iso(t: datetime | None) -> str | None:
    """RFC 3339 UTC text with ``Z``."""
    if t is None:
        return None
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def convert(v: Any, f: Field) -> Any:
    """A value as the column's type; null when it has none or cannot be one."""
    if v is None:
        return None
    if f.type == BOOLEAN:
        return v if isinstance(v, bool) else None
    if f.type == INTEGER:
        if isinstance(v, bool):
            return None
        if isinstance(v, int):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return None
    if f.type == NUMBER:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return float(v)
    if f.format == DATE_TIME:
        return iso(_utc(v))
    if f.format == DATE:
        return v if isinstance(v, str) and _DATE.fullmatch(v.strip()) else None
    if isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"), default=str)


# ---------------------------------------------------------------------------------------------- documents
def part5(schema: Schema, geometry: str, title: str, id_: str, description: str | None = None) -> dict[str, Any]:
    """OGC API Features Part 5 schema (returnables): every property with its type, order and role; the geometry
    as a property with ``x-ogc-role: primary-geometry``."""
    props: dict[str, Any] = {}
    for i, (name, f) in enumerate(schema.fields.items(), start=1):
        p = f.json_schema()
        p["x-ogc-propertySeq"] = i
        if name == "valid_from":
            p["x-ogc-role"] = "primary-interval-start"
        elif name == "valid_to":
            p["x-ogc-role"] = "primary-interval-end"
        props[name] = p
    props["geometry"] = {"format": geometry, "x-ogc-role": "primary-geometry",
                         "x-ogc-propertySeq": len(props) + 1}
    out: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": id_, "type": "object",
                           "title": title, "properties": props, "additionalProperties": False}
    if description:
        out["description"] = description
    return out


def feature_schema(schema: Schema, title: str, id_: str) -> dict[str, Any]:
    """A JSON Schema of one GeoJSON Feature of the collection (what GDAL's OAPIF driver reads from a
    ``describedby`` link to type its fields): ``properties.properties`` holds the flat columns."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": id_,
        "title": title,
        "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": {"type": "string"},
            "geometry": {"type": "object"},
            "properties": {"type": "object", "properties": schema.properties()},
        },
    }


def queryables_doc(schema: Schema, title: str, id_: str) -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": id_, "type": "object", "title": title,
            "properties": {n: f.json_schema() for n, f in schema.queryables().items()},
            "additionalProperties": True}
