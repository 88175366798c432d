"""Conversion between CIM models and the store's row layout (one Parquet row per entity version).

A row keeps the fields the store filters on as columns (id, type, classification, valid time, bbox, geometry)
and the rest of the model as canonical JSON in ``body``, so entity types can grow without a schema migration.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import pyarrow as pa
import shapely
from pydantic import BaseModel

from data_models import LayerSpec, Principal, Scenario, SimulationRun, SourceAsset, parse_city_object
from twin.times import to_utc

CITY = "city"
ASSETS = "assets"
LAYERS = "layers"
SCENARIOS = "scenarios"  # a scenario's record lives on its own branch, rewritten with each edit
RUNS = "runs"  # simulation runs, on the branch they ran on
PRINCIPALS = "principals"  # users and service accounts (twin.security), on main
COLLECTIONS = (CITY, ASSETS, LAYERS, SCENARIOS, RUNS, PRINCIPALS)
TABLE_OWNERS = (ASSETS, LAYERS, RUNS)  # the collections whose ids own bulk-table rows (their asset_id column)
_KIND = {SourceAsset: (ASSETS, "SourceAsset"), LayerSpec: (LAYERS, "LayerSpec"), Scenario: (SCENARIOS, "Scenario"),
         SimulationRun: (RUNS, "SimulationRun"), Principal: (PRINCIPALS, "Principal")}

# Columns every segment file has, in order (geometry is added by DuckDB from ``wkb``).
ROW_SCHEMA = pa.schema(
    [
        ("collection", pa.string()),
        ("id", pa.string()),
        ("op", pa.string()),
        ("version", pa.int64()),
        ("type", pa.string()),
        ("classification", pa.string()),
        ("valid_from", pa.timestamp("us", tz="UTC")),
        ("valid_to", pa.timestamp("us", tz="UTC")),
        ("xmin", pa.float64()),
        ("ymin", pa.float64()),
        ("xmax", pa.float64()),
        ("ymax", pa.float64()),
        ("digest", pa.string()),
        ("body", pa.string()),
        ("wkb", pa.binary()),
    ]
)

_LIFTED = ("id", "type", "geometry", "valid_from", "valid_to", "classification")

# Rows of these levels are sealed (encrypted, docs/security_encryption.md) when the store encrypts; the others stay
# plain Parquet for speed.
SEALED_LEVELS = frozenset({"confidential", "secret"})
# A stub is a plain row that says only "this id has a sealed version here": collection, id, version, its op as
# ``sealed:<op>``, type and classification; no body, digest, bbox, time or geometry. It is written for the sealed rows
# of ids already stored in clear, so that readers without the key do not take an older plain row for the live one.
STUB = "sealed:"


@dataclass(frozen=True)
class Record:
    """One entity version ready to be written."""

    collection: str
    id: str
    type: str
    classification: str
    valid_from: datetime | None
    valid_to: datetime | None
    geometry: shapely.Geometry | None
    body: dict[str, Any]

    @cached_property
    def wkb(self) -> bytes | None:
        return None if self.geometry is None else shapely.to_wkb(self.geometry, include_srid=False)

    @cached_property
    def body_json(self) -> str:
        """Canonical JSON of the body (sorted keys), as stored."""
        return json.dumps(self.body, sort_keys=True, separators=(",", ":"), default=str)

    @cached_property
    def digest(self) -> str:
        """Content hash: equal digests mean an upsert would change nothing (so it is skipped)."""
        h = hashlib.blake2b(digest_size=16)
        for part in (self.type, self.classification, _iso(self.valid_from), _iso(self.valid_to), self.body_json):
            h.update(str(part).encode())
            h.update(b"\x00")
        h.update(self.wkb or b"")
        return h.hexdigest()


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat()


def from_us(us: int | None) -> datetime | None:
    """Epoch microseconds (how times leave DuckDB) as an aware UTC datetime."""
    return None if us is None else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)



def parse_record(data: dict[str, Any]) -> BaseModel:
    """A dict as its model: what ``Store.get`` / ``features`` returned (its ``_store`` metadata names the collection
    and is dropped, so a read object, edited, can be committed again), a source asset, or a city object."""
    meta = data.get("_store")
    body = {k: v for k, v in data.items() if k != "_store"}
    collection = meta.get("collection") if isinstance(meta, dict) else None
    model = next((cls for cls, (c, _) in _KIND.items() if c == collection), None)
    if model is None and collection in (None, ASSETS) and "checksum" in body:
        model = SourceAsset
    if model is None:
        return parse_city_object(body)
    if model is LayerSpec:
        body.pop("id", None)  # a layer's id is its name, added on the way in
    return model.model_validate(body)


def to_records(objs: Iterable[BaseModel | dict[str, Any]], geometries: dict[str, shapely.Geometry]) -> list[Record]:
    """Validate city objects, source assets or layer specs (models or dicts) and turn them into store records.

    ``geometries`` overrides footprints by id, e.g. an asset extent already transformed into the store CRS.
    Footprints are parsed in one vectorised GEOS call.
    """
    dumped: list[tuple[str, dict[str, Any]]] = []
    for obj in objs:
        if isinstance(obj, dict):
            obj = parse_record(obj)
        kind = next((c for cls, (c, _) in _KIND.items() if isinstance(obj, cls)), CITY)
        data = obj.model_dump(mode="json")
        if kind == LAYERS:
            data["id"] = data["name"]  # a layer's id is its name
        dumped.append((kind, data))
    todo = [i for i, (kind, d) in enumerate(dumped) if kind == CITY and d["id"] not in geometries]
    parsed = shapely.from_geojson([json.dumps(dumped[i][1]["geometry"]) for i in todo]) if todo else []
    geom_of = dict(zip(todo, parsed, strict=True))
    out = []
    for i, (collection, data) in enumerate(dumped):
        if collection == ASSETS:
            type_ = "SourceAsset"
            valid_from, valid_to = to_utc(data.get("acquired")), None
        elif collection != CITY:
            type_ = next(t for c, t in _KIND.values() if c == collection)
            valid_from, valid_to = None, None
        else:
            type_ = data["type"]
            valid_from, valid_to = to_utc(data.get("valid_from")), to_utc(data.get("valid_to"))
        out.append(
            Record(
                collection=collection,
                id=data["id"],
                type=type_,
                classification=str(data.get("classification") or "public"),
                valid_from=valid_from,
                valid_to=valid_to,
                geometry=geometries.get(data["id"], geom_of.get(i)),
                body={k: v for k, v in data.items() if k not in _LIFTED},
            )
        )
    return out


def removal(collection: str, entity_id: str, type_: str) -> Record:
    """A tombstone record: the entity stops existing from this version on."""
    return Record(collection, entity_id, type_, "public", None, None, None, {})


def records_table(records: list[Record], ops: list[str], version: int) -> pa.Table:
    """Arrow table of records in ROW_SCHEMA order (vectorised WKB and bounds)."""
    geoms = [r.geometry for r in records]
    has = [g is not None for g in geoms]
    present = [g for g in geoms if g is not None]
    bounds = shapely.bounds(present) if present else []
    wkbs = [r.wkb for r in records if r.geometry is not None]
    cols: dict[str, list[Any]] = {f: [] for f in ROW_SCHEMA.names}
    j = 0
    for r, op, h in zip(records, ops, has, strict=True):
        cols["collection"].append(r.collection)
        cols["id"].append(r.id)
        cols["op"].append(op)
        cols["version"].append(version)
        cols["type"].append(r.type)
        cols["classification"].append(r.classification)
        cols["valid_from"].append(r.valid_from)
        cols["valid_to"].append(r.valid_to)
        if h:
            b = bounds[j]
            cols["xmin"].append(float(b[0]))
            cols["ymin"].append(float(b[1]))
            cols["xmax"].append(float(b[2]))
            cols["ymax"].append(float(b[3]))
            cols["wkb"].append(wkbs[j])
            j += 1
        else:
            for k in ("xmin", "ymin", "xmax", "ymax", "wkb"):
                cols[k].append(None)
        cols["digest"].append(r.digest if op != "remove" else None)
        cols["body"].append(r.body_json)
    return pa.table(cols, schema=ROW_SCHEMA)


def stubs_table(stubs: list[tuple[str, str, str, str, str]], version: int) -> pa.Table:
    """Stub rows (collection, id, op, type, classification) in ROW_SCHEMA, everything else null (see :data:`STUB`)."""
    n = len(stubs)
    cols: dict[str, Any] = {f.name: pa.nulls(n, f.type) for f in ROW_SCHEMA}
    for i, name in enumerate(("collection", "id", "op", "type", "classification")):
        cols[name] = pa.array([STUB + s[i] if name == "op" else s[i] for s in stubs], pa.string())
    cols["version"] = pa.array([version] * n, pa.int64())
    return pa.table(cols, schema=ROW_SCHEMA)


def sealed_table(table: pa.Table) -> pa.Table:
    """Rows in ROW_SCHEMA as a sealed segment holds them: sorted by collection and id, ``wkb`` named ``geometry``
    (plain WKB: the columns and types a plain segment reads back with)."""
    table = table.sort_by([("collection", "ascending"), ("id", "ascending")])
    return table.rename_columns(["geometry" if n == "wkb" else n for n in table.column_names])


def row_to_feature(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row (with ``wkb``) back to the model's JSON shape plus store metadata under ``_store``."""
    body = json.loads(row["body"]) if row.get("body") else {}
    out: dict[str, Any] = {"id": row["id"], "type": row["type"]}
    geom = shapely.from_wkb(row["wkb"]) if row.get("wkb") is not None else None
    if row["collection"] == CITY:
        out["geometry"] = shapely.geometry.mapping(geom) if geom is not None else None
        out["valid_from"] = _iso(from_us(row.get("valid_from_us")))
        out["valid_to"] = _iso(from_us(row.get("valid_to_us")))
    else:
        out.pop("type")
    if row["collection"] in (CITY, ASSETS, LAYERS, RUNS):  # scenarios and principals have none of their own
        out["classification"] = row["classification"]
    out.update(body)
    out["_store"] = {"version": row["version"], "op": row["op"], "collection": row["collection"]}
    return out
