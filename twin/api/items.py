"""What an OGC API Features collection serves, whatever holds its features: one :class:`Source` per collection.

* :class:`EntitySource`: city objects of one CIM type, read from the store page by page (filters, bbox, validity
  and paging are the store's);
* :class:`RowsSource`: features computed per version and kept in memory (the building parts,
  ``twin/api/parts.py``), queried here with the same rules as the store;
* ``twin/api/layer_collections.py``: an H3 layer's cells.

Every source has a flat :class:`~twin.api.flatten.Schema` fixed per version (so paging never changes a column's
type) and answers a :class:`ItemQuery` with :class:`Item`\\ s carrying both the flat properties (what GIS clients
get) and the nested record (``flat=false``, what the viewer reads). The routers only parse parameters and render.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import shapely
import shapely.geometry

from data_models import Building, BuildingPart
from twin.api import flatten, ogc
from twin.api.flatten import Field, Schema
from twin.geo import crs as geocrs
from twin.store import CITY, Store
from twin.store import Query as StoreQuery

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- memo
class Memo:
    """Values computed once per key (a version never changes once committed), however many requests ask at the
    same time; the ``size`` most recently used are kept."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._busy: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, fn: Callable[[], T]) -> T:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            lock = self._busy.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._data:
                    return self._data[key]
            value = fn()
            with self._lock:
                self._data[key] = value
                self._busy.pop(key, None)
                while len(self._data) > self._size:
                    self._data.popitem(last=False)
            return value


SCHEMAS = Memo(64)


def key(store: Store, *parts: Hashable) -> tuple[Hashable, ...]:
    """A cache key of data derived from what ``store`` shows: the store, the reader's view of it (a guarded
    store's clearance and area: two principals never share derived data) and ``parts``."""
    return (str(store.root), getattr(store, "view", None), *parts)


# ---------------------------------------------------------------------------------------------- query, item
@dataclass(frozen=True)
class Filter:
    """One comparison: the flat column it is on (None: no such column at this version, so only the store can
    tell) and the stored body path the store filters by (None: not a stored value)."""

    name: str | None
    path: tuple[str, ...] | None
    op: str
    value: Any


@dataclass(frozen=True)
class ItemQuery:
    box: list[float] | None = None
    bbox_crs: str = geocrs.CRS84
    interval: tuple[datetime | None, datetime | None] | None = None
    filters: tuple[Filter, ...] = ()
    limit: int = ogc.DEFAULT_LIMIT
    offset: int = 0
    res: int | None = None


@dataclass
class Item:
    id: str
    geometry: dict[str, Any] | None  # GeoJSON in ``crs``
    crs: str
    flat: dict[str, Any]
    nested: dict[str, Any]
    lods: Any = None


@dataclass
class Summary:
    """A collection's extent (CRS84 box, validity or time interval) and the number of features its default view
    (no parameters) matches."""

    bbox: list[float] | None
    start: datetime | None
    end: datetime | None
    count: int


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Source(ABC):
    """One collection at one version of one branch."""

    collection: ogc.Collection
    has_validity = True  # ``datetime`` matches validity; the default view is what is still valid now
    has_resolutions = False

    def __init__(self, store: Store, branch: str, version: int, collection: ogc.Collection) -> None:
        self.store, self.branch, self.version, self.collection = store, branch, version, collection

    @property
    def id(self) -> str:
        return self.collection.id

    @property
    @abstractmethod
    def schema(self) -> Schema:
        """The collection's flat columns and their types at this version."""

    def nested_names(self) -> set[str]:
        """The properties of the nested form (``flat=false``)."""
        return set(self.schema.fields)

    def geometry_format(self) -> str:
        return "geometry-any"

    def default_interval(self, t: datetime) -> tuple[datetime | None, datetime | None] | None:
        """``datetime`` when the request gives none: what has not ended by ``t`` (ended states are history)."""
        return (t, None) if self.has_validity else None

    @abstractmethod
    def page(self, q: ItemQuery) -> tuple[int, list[Item]]:
        """How many items match ``q`` in all, and the items of its page."""

    @abstractmethod
    def get(self, feature_id: str) -> Item | None:
        """One item by id, whatever its validity; None when there is none."""

    @abstractmethod
    def summary(self) -> Summary:
        """Extent, time span and count of the default view, for the collection document."""

    def filter(self, path: list[str], param: str) -> tuple[str | None, tuple[str, ...] | None]:
        """A property path of ``filter`` or ``?name=value`` as (flat column, stored path); a 400 when it is no
        queryable. Besides the flat columns, the nested paths of before (``quality.rmse.2.2``,
        ``attributes.district``) are accepted where the collection has attributes and quality."""
        q = self.schema.queryables()
        if len(path) == 1 and path[0] in q:
            return path[0], q[path[0]].path
        fields = self.collection.model.model_fields if self.collection.model else {}
        if len(path) >= 2 and path[0] in ("attributes", "quality") and path[0] in fields:
            if path[0] == "attributes":
                name = "_".join([flatten.attribute_name(path[1], fields), *path[2:]])
            else:
                name = "_".join(["quality", *(flatten.lod_key(k) for k in path[1:])])
            f = self.schema.fields.get(name)
            return (name if f is not None else None), tuple(path)
        dotted = ".".join(path)
        legacy = ", or any attributes.<name> / quality.<name> path" if "attributes" in fields else ""
        raise ogc.OGCError(f"{param}: {dotted!r} is not a queryable of collection {self.id!r}; queryables: "
                           f"{', '.join(q) or 'none'}{legacy}")

    def field(self, name: str | None) -> Field | None:
        return self.schema.fields.get(name) if name else None


def nested_props(row: dict[str, Any]) -> dict[str, Any]:
    """The record as it is stored (nested ``attributes``, ``quality``, ``provenance``), without the solids."""
    props = {k: v for k, v in row.items() if k not in ("id", "geometry", "_store", "lods")}
    props["store_version"] = (row.get("_store") or {}).get("version")
    return props


def _nested_names(model) -> set[str]:
    return (set(model.model_fields) - {"id", "geometry", "lods"}) | {"store_version"}


# ---------------------------------------------------------------------------------------------- entities
class EntitySource(Source):
    """City objects of one CIM type: the store answers the query."""

    def _rows(self) -> list[dict[str, Any]]:
        return self.store.features(self.branch, self.version, StoreQuery(collection=CITY,
                                                                         types=[self.collection.type]))

    @property
    def schema(self) -> Schema:
        c = self.collection
        declared = flatten.BUILDING_QUALITY if c.model in (Building, BuildingPart) else None
        return SCHEMAS.get(key(self.store, "entities", self.branch, self.version, c.id),
                           lambda: flatten.derive(c.model, self._rows(), declared))

    def nested_names(self) -> set[str]:
        return _nested_names(self.collection.model)

    def geometry_format(self) -> str:
        return self.collection.geometry

    def _item(self, row: dict[str, Any], schema: Schema) -> Item:
        flat = schema.project(flatten.values_only(flatten.flat_values(row, list(self.collection.model.model_fields))))
        return Item(row["id"], row.get("geometry"), geocrs.crs_uri(self.store.crs), flat, nested_props(row),
                    row.get("lods"))

    def page(self, q: ItemQuery) -> tuple[int, list[Item]]:
        spatial: dict[str, Any] = {}
        if q.box is not None:  # no store box (outside the store CRS's area of use): nothing can match
            spatial = ogc.bbox_to_store(q.box, q.bbox_crs, self.store) or {"ids": []}
        filters = []
        for f in q.filters:
            if f.path is None:
                raise ogc.OGCError(f"filter: {f.name!r} cannot be filtered on")
            filters.append((list(f.path), f.op, f.value))
        page = self.store.page(self.branch, self.version, StoreQuery(
            collection=CITY, types=[self.collection.type], filters=filters, valid_during=q.interval, limit=q.limit,
            offset=q.offset, **spatial))
        schema = self.schema
        return page.matched, [self._item(r, schema) for r in page.rows]

    def get(self, feature_id: str) -> Item | None:
        row = self.store.get(feature_id, self.branch, self.version)
        if row is None or row.get("type") != self.collection.type:
            return None
        return self._item(row, self.schema)

    def summary(self) -> Summary:
        e = SCHEMAS.get(key(self.store, "extents", self.branch, self.version),
                        lambda: self.store.extents(self.branch, self.version, types=list(ogc.BY_TYPE))
                        ).get(self.collection.type)
        if e is None:
            return Summary(None, None, None, 0)
        n = self.store.count(self.branch, self.version, StoreQuery(
            collection=CITY, types=[self.collection.type], valid_during=self.default_interval(now())))
        return Summary(ogc.crs84_bbox(self.store, list(e.bbox)), e.start, e.end, n)


# ---------------------------------------------------------------------------------------------- rows in memory
@dataclass
class Rows:
    """Features computed for one version, in id order, with what queries test: geometry (store CRS), validity,
    flat properties."""

    schema: Schema
    items: list[Item] = field(default_factory=list)
    geoms: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    valid_from: list[datetime | None] = field(default_factory=list)
    valid_to: list[datetime | None] = field(default_factory=list)


def rows_from(model, records: list[dict[str, Any]], store_crs: str,
              declared: dict[str, Field] | None = None) -> Rows:
    """Rows of model-shaped records (store CRS geometry), sorted by id."""
    records = sorted(records, key=lambda r: r["id"])
    schema = flatten.derive(model, records, declared)
    names = list(model.model_fields)
    out = Rows(schema)
    geoms = []
    for r in records:
        flat = schema.project(flatten.values_only(flatten.flat_values(r, names)))
        out.items.append(Item(r["id"], r.get("geometry"), store_crs, flat, nested_props(r), r.get("lods")))
        geoms.append(shapely.geometry.shape(r["geometry"]) if r.get("geometry") else None)
        out.valid_from.append(flatten._utc(r.get("valid_from")))
        out.valid_to.append(flatten._utc(r.get("valid_to")))
    out.geoms = np.array(geoms, dtype=object)
    return out


def compare(v: Any, op: str, value: Any) -> bool:
    """The store's comparison rule on one value: numbers numerically, booleans and everything else as text;
    null never matches."""
    if v is None:
        return False
    if isinstance(value, bool):
        a: Any = str(v).lower() if isinstance(v, bool) else str(v)
        b: Any = str(value).lower()
    elif isinstance(value, int | float):
        if isinstance(v, bool):
            return False
        try:
            a = float(v)
        except (TypeError, ValueError):
            return False
        b = float(value)
    else:
        a, b = (v if isinstance(v, str) else flatten.convert(v, Field("_"))), str(value)
    return {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def select(rows: Rows, q: ItemQuery, store: Store) -> tuple[int, list[Item]]:
    """The page of ``q`` over in-memory rows, by the store's rules (bbox intersects, validity meets the
    interval, every filter holds, id order)."""
    n = len(rows.items)
    keep = np.ones(n, dtype=bool)
    if q.box is not None:
        spatial = ogc.bbox_to_store(q.box, q.bbox_crs, store)
        if spatial is None:
            return 0, []
        area = shapely.box(*spatial["bbox"]) if "bbox" in spatial else spatial["polygon"]
        present = np.array([g is not None for g in rows.geoms], dtype=bool)
        hit = np.zeros(n, dtype=bool)
        if present.any():
            hit[present] = shapely.intersects(np.asarray(list(rows.geoms[present]), dtype=object), area)
        keep &= hit
    if q.interval is not None:
        start, end = q.interval
        for i in range(n):
            if not keep[i]:
                continue
            vf, vt = rows.valid_from[i], rows.valid_to[i]
            if (end is not None and vf is not None and vf > end) or (start is not None and vt is not None
                                                                     and vt <= start):
                keep[i] = False
    for f in q.filters:
        for i in range(n):
            if keep[i] and not compare(rows.items[i].flat.get(f.name) if f.name else None, f.op, f.value):
                keep[i] = False
    idx = np.nonzero(keep)[0]
    return len(idx), [rows.items[i] for i in idx[q.offset:q.offset + q.limit]]


def rows_summary(rows: Rows, store: Store, t: datetime) -> Summary:
    present = [g for g in rows.geoms if g is not None]
    if not present:
        return Summary(None, None, None, 0)
    bbox = ogc.crs84_bbox(store, list(shapely.total_bounds(np.asarray(present, dtype=object))))
    start = None if any(v is None for v in rows.valid_from) else min(rows.valid_from)  # type: ignore[type-var]
    end = None if any(v is None for v in rows.valid_to) else max(rows.valid_to)  # type: ignore[type-var]
    count = sum(1 for vt in rows.valid_to if vt is None or vt > t)
    return Summary(bbox, start, end, count)


class RowsSource(Source):
    """A collection whose features are computed per version (``compute``) and queried in memory."""

    def __init__(self, store: Store, branch: str, version: int, collection: ogc.Collection,
                 compute: Callable[[Store, str, int], Rows]) -> None:
        super().__init__(store, branch, version, collection)
        self._compute = compute

    def rows(self) -> Rows:
        return SCHEMAS.get(key(self.store, "rows", self.branch, self.version, self.id),
                           lambda: self._compute(self.store, self.branch, self.version))

    @property
    def schema(self) -> Schema:
        return self.rows().schema

    def nested_names(self) -> set[str]:
        return _nested_names(self.collection.model)

    def geometry_format(self) -> str:
        return self.collection.geometry

    def page(self, q: ItemQuery) -> tuple[int, list[Item]]:
        return select(self.rows(), q, self.store)

    def get(self, feature_id: str) -> Item | None:
        return next((it for it in self.rows().items if it.id == feature_id), None)

    def summary(self) -> Summary:
        return rows_summary(self.rows(), self.store, now())
