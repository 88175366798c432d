"""H3 layers as OGC API Features collections, so GIS clients (QGIS's OGC API connection, GDAL's OAPIF) see them.

Every layer of a branch at a version is the collection ``layer-<name>``: one feature per cell (and time bucket, for
time-based layers) at one resolution, the cell's hexagon as a CRS84 polygon, and the columns

``cell`` (H3 index, hex text), ``res`` (integer), ``time`` and ``time_end`` (date-time: the bucket [time,
time_end), time-based layers only), ``<variable>`` (number, the value; its unit in the schema's ``x-ogc-unit`` and
in ``unit``), ``count`` (integer: samples behind the value), ``area_m2`` (number: covered area, area-weighted
layers only), ``unit`` (text).

``res`` selects the resolution (default the layer's finest; another is a 400 naming the resolutions), ``datetime``
the buckets (an instant: the bucket holding it; an interval: the buckets overlapping it; no ``datetime``: every
bucket; static layers ignore it), ``bbox`` the cells overlapping the box; ``filter`` and ``?name=value`` work on the
numeric columns and ``cell``. Features are ordered by cell, then time, and paged like every collection.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import h3
import numpy as np
import shapely

from data_models import Aggregation, LayerSpec
from twin.api import flatten, items, ogc
from twin.api.flatten import INTEGER, NUMBER, STRING, Field, Schema
from twin.geo import crs as geocrs
from twin.layers.registry import Layers

PREFIX = "layer-"
_FIXED = ("cell", "res", "time", "time_end", "count", "area_m2", "unit")
TABLES = items.Memo(16)


def collection_of(spec: LayerSpec) -> ogc.Collection:
    when = f"time bucket {spec.time_bucket}" if spec.time_bucket else "static"
    res = ", ".join(map(str, spec.resolutions))
    desc = (f"H3 layer {spec.name!r}: {spec.variable} in {spec.unit} ({spec.aggregation.value} of "
            f"{spec.kind} values; {when}; resolutions {res}, default {max(spec.resolutions)}: `res` selects one). "
            f"{spec.description}".strip())
    return ogc.Collection(PREFIX + spec.name, "Layer", None, f"Layer {spec.name}: {spec.variable} ({spec.unit})",
                          desc, geometry="geometry-polygon", kind="layer")


def value_name(spec: LayerSpec) -> str:
    """The value column: the variable as a name (``pm25``), ``value_<variable>`` if that is a fixed column."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", spec.variable).strip("_") or "value"
    return f"value_{name}" if name in _FIXED else name


def layer_schema(spec: LayerSpec) -> Schema:
    f: dict[str, Field] = {
        "cell": Field("cell", STRING, None, "H3 cell index (hex)", queryable=True),
        "res": Field("res", INTEGER, None, "H3 resolution of the cell", queryable=True),
    }
    if spec.time_bucket:
        f["time"] = Field("time", STRING, flatten.DATE_TIME, f"start of the {spec.time_bucket} time bucket")
        f["time_end"] = Field("time_end", STRING, flatten.DATE_TIME, "end of the time bucket (exclusive)")
    v = value_name(spec)
    f[v] = Field(v, NUMBER, None, f"{spec.variable} in {spec.unit} ({spec.aggregation.value} over the cell"
                 + (" and time bucket)" if spec.time_bucket else ")"), queryable=True, unit=spec.unit)
    f["count"] = Field("count", INTEGER, None, "samples behind the value (points, readings, pixels)", queryable=True)
    if spec.aggregation == Aggregation.area_weighted_mean:
        f["area_m2"] = Field("area_m2", NUMBER, None, "area of the cell covered by the source, m²", queryable=True,
                             unit="m2")
    f["unit"] = Field("unit", STRING, None, f"unit of {v}")
    return Schema(f)


class _Table:
    """A layer's values at one resolution (every time), as arrays, ordered by cell then time."""

    def __init__(self, table) -> None:
        self.cell = np.asarray(table["cell"].to_numpy(zero_copy_only=False), dtype=np.uint64)
        t = table["t"].cast("int64").to_numpy(zero_copy_only=False) if table.num_rows else np.zeros(0)
        self.t_us = np.asarray([np.nan if x is None else x for x in t] if t.dtype == object else t, dtype=np.float64)
        self.value = np.asarray(table["value"].to_numpy(zero_copy_only=False), dtype=np.float64)
        self.count = np.asarray(table["count"].to_numpy(zero_copy_only=False), dtype=np.int64)
        self.weight = np.asarray(table["weight"].to_numpy(zero_copy_only=False), dtype=np.float64)

    def __len__(self) -> int:
        return len(self.cell)


class LayerSource(items.Source):
    has_validity = False
    has_resolutions = True

    def __init__(self, store, branch: str, version: int, spec: LayerSpec) -> None:
        super().__init__(store, branch, version, collection_of(spec))
        self.spec = spec
        self._schema = layer_schema(spec)
        self._bucket_us = (int(spec.time_bucket_delta.total_seconds() * 1e6) if spec.time_bucket_delta else 0)

    @property
    def schema(self) -> Schema:
        return self._schema

    def nested_names(self) -> set[str]:
        return set(self._schema.fields)

    def geometry_format(self) -> str:
        return "geometry-polygon"

    def filter(self, path: list[str], param: str) -> tuple[str | None, tuple[str, ...] | None]:
        q = self._schema.queryables()
        if len(path) == 1 and path[0] in q:
            return path[0], None
        raise ogc.OGCError(f"{param}: {'.'.join(path)!r} is not a queryable of collection {self.id!r}; "
                           f"queryables: {', '.join(q)}")

    def _res(self, res: int | None) -> int:
        r = max(self.spec.resolutions) if res is None else res
        if r not in self.spec.resolutions:
            raise ogc.OGCError(f"res: layer {self.spec.name!r} has resolutions {self.spec.resolutions}, not {r}")
        return r

    def table(self, res: int) -> _Table:
        return TABLES.get(items.key(self.store, self.branch, self.version, self.spec.name, res),
                          lambda: _Table(Layers(self.store).query(self.spec.name, res=res, branch=self.branch,
                                                                  as_of=self.version)))

    # -------------------------------------------------------------- features
    def _props(self, tb: _Table, i: int, res: int) -> dict[str, Any]:
        out: dict[str, Any] = {"cell": h3.int_to_str(int(tb.cell[i])), "res": res}
        if self.spec.time_bucket:
            t = _time(tb.t_us[i])
            out["time"] = flatten.iso(t)
            out["time_end"] = flatten.iso(t + timedelta(microseconds=self._bucket_us)) if t else None
        v = float(tb.value[i])
        out[value_name(self.spec)] = v if np.isfinite(v) else None
        out["count"] = int(tb.count[i])
        if "area_m2" in self._schema.fields:
            w = float(tb.weight[i])
            out["area_m2"] = w if np.isfinite(w) else None
        out["unit"] = self.spec.unit
        return self._schema.project(out)

    def _item(self, tb: _Table, i: int, res: int) -> items.Item:
        props = self._props(tb, i, res)
        fid = props["cell"] if not self.spec.time_bucket else f"{props['cell']}@{props['time']}"
        ring = [[lng, lat] for lat, lng in h3.cell_to_boundary(props["cell"])]
        ring.append(ring[0])
        return items.Item(fid, {"type": "Polygon", "coordinates": [ring]}, geocrs.CRS84, props, props)

    def _box84(self, q: items.ItemQuery) -> list[float] | None:
        """The query box as CRS84 [w, s, e, n] (a store-CRS box reprojected)."""
        assert q.box is not None
        w, s, e, n = q.box
        if geocrs.from_uri(q.bbox_crs).is_geographic:
            if geocrs.north_first(q.bbox_crs):
                w, s, e, n = s, w, n, e
            if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
                raise ogc.OGCError(f"bbox: longitudes must lie in [-180, 180] and latitudes in [-90, 90], "
                                   f"got {q.box}")
            return [w, s, e, n]
        store_box = ogc.bbox_to_store(q.box, q.bbox_crs, self.store)
        if store_box is None:
            return None
        bounds = store_box["bbox"] if "bbox" in store_box else list(store_box["polygon"].bounds)
        return ogc.crs84_bbox(self.store, bounds)

    def _mask(self, tb: _Table, q: items.ItemQuery, res: int) -> np.ndarray:
        keep = np.ones(len(tb), dtype=bool)
        if q.box is not None:
            box = self._box84(q)
            ext = self.summary().bbox
            if box is None or ext is None:
                return np.zeros(len(tb), dtype=bool)
            w, s, e, n = max(box[0], ext[0]), max(box[1], ext[1]), min(box[2], ext[2]), min(box[3], ext[3])
            if w > e or s > n:
                return np.zeros(len(tb), dtype=bool)
            # exactly the cells whose hexagon meets the box (a point or a line box included)
            keep &= self._touching(tb, shapely.envelope(shapely.MultiPoint([(w, s), (e, n)])))
        if q.interval is not None and self.spec.time_bucket:
            start, end = q.interval
            if end is not None:
                keep &= tb.t_us <= _us(end)
            if start is not None:
                keep &= tb.t_us + self._bucket_us > _us(start)
        for f in q.filters:
            keep &= self._compare(tb, res, f)
        return keep

    @staticmethod
    def _touching(tb: _Table, area: shapely.Geometry) -> np.ndarray:
        uniq, inv = np.unique(tb.cell, return_inverse=True)
        hexes = [shapely.Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(h3.int_to_str(int(c)))])
                 for c in uniq.tolist()]
        hit = shapely.intersects(np.asarray(hexes, dtype=object), area) if hexes else np.zeros(0, dtype=bool)
        return np.asarray(hit, dtype=bool)[inv.ravel()] if len(tb) else np.zeros(0, dtype=bool)

    def _compare(self, tb: _Table, res: int, f: items.Filter) -> np.ndarray:
        name, op, value = f.name, f.op, f.value
        if name in ("cell", "unit") or isinstance(value, str) or isinstance(value, bool):
            col = ([h3.int_to_str(int(c)) for c in tb.cell.tolist()] if name == "cell"
                   else [self._props(tb, i, res).get(name) for i in range(len(tb))])
            return np.array([items.compare(v, op, value) for v in col], dtype=bool)
        arr = {"res": np.full(len(tb), float(res)), "count": tb.count.astype(np.float64),
               "area_m2": tb.weight}.get(name or "", tb.value)
        b = float(value)
        with np.errstate(invalid="ignore"):
            out = {"=": arr == b, "!=": arr != b, "<": arr < b, "<=": arr <= b, ">": arr > b, ">=": arr >= b}[op]
        return out & np.isfinite(arr)

    def page(self, q: items.ItemQuery) -> tuple[int, list[items.Item]]:
        res = self._res(q.res)
        tb = self.table(res)
        idx = np.nonzero(self._mask(tb, q, res))[0]
        return len(idx), [self._item(tb, int(i), res) for i in idx[q.offset:q.offset + q.limit]]

    def get(self, feature_id: str) -> items.Item | None:
        cell, _, when = feature_id.partition("@")
        try:
            if not h3.is_valid_cell(cell):
                return None
            res = h3.get_resolution(cell)
        except (ValueError, TypeError, h3.H3BaseException):
            return None
        if res not in self.spec.resolutions or bool(when) != bool(self.spec.time_bucket):
            return None
        tb = self.table(res)
        hit = tb.cell == np.uint64(h3.str_to_int(cell))
        if when:
            t = flatten._utc(when)
            if t is None:
                return None
            hit &= tb.t_us == _us(t)
        idx = np.nonzero(hit)[0]
        return self._item(tb, int(idx[0]), res) if len(idx) else None

    def summary(self) -> items.Summary:
        return TABLES.get(items.key(self.store, "summary", self.branch, self.version, self.spec.name),
                          self._summary)

    def _summary(self) -> items.Summary:
        tb = self.table(max(self.spec.resolutions))
        if not len(tb):
            return items.Summary(None, None, None, 0)
        pts = np.array([(lng, lat) for c in np.unique(tb.cell).tolist()
                        for lat, lng in h3.cell_to_boundary(h3.int_to_str(int(c)))])
        bbox = [float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())]
        start = end = None
        if self.spec.time_bucket and np.isfinite(tb.t_us).any():
            start = _time(np.nanmin(tb.t_us))
            end = _time(np.nanmax(tb.t_us) + self._bucket_us)
        return items.Summary(bbox, start, end, len(tb))


def _us(t: datetime) -> float:
    return t.timestamp() * 1e6


def _time(us: float) -> datetime | None:
    if not np.isfinite(us):
        return None
    return datetime.fromtimestamp(0, UTC) + timedelta(microseconds=int(us))


def sources(store, branch: str, version: int) -> list[LayerSource]:
    """One source per layer of the branch at the version, by name."""
    specs = Layers(store).list(branch, version)
    return [LayerSource(store, branch, version, s) for s in sorted(specs, key=lambda s: s.name)]
