"""The layer registry: layer specs and their values live in the store, versioned and per branch.

A layer is published as one commit holding its ``LayerSpec`` (collection ``layers``) and its values at every
declared resolution (bulk table ``layer_values``, ``asset_id`` = layer name), so ``as_of`` and branches work for
layers exactly as for city objects, and re-publishing identical values is a no-op.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from datetime import datetime
from typing import Any

import h3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from data_models import LAYER_VALUES_TABLE, Aggregation, LayerSpec
from twin.errors import NotFound, Status
from twin.layers.values import VALUE_SCHEMA, LayerError, aggregate, bucket_seconds, rollup
from twin.store import LAYERS, MAIN, Query, Store, StoreError
from twin.times import to_utc

TABLE = LAYER_VALUES_TABLE
MAX_CELLS = 500_000  # cells one query may touch; more would be a bulk export, not a query
MAX_ROWS = 2_000_000
_SPECS_KEPT = 64  # (branch, version) spec sets one Store remembers

# the layer specs per Store and (branch, version): a version never changes once committed, and reading the specs
# from the segments (a DuckDB scan of every visible segment) was 40 % of a small query's time
_specs: weakref.WeakKeyDictionary[Store, OrderedDict[tuple[str, int], dict[str, LayerSpec]]] = \
    weakref.WeakKeyDictionary()
_specs_lock = threading.Lock()


__all__ = ["LayerError", "LayerNotFound", "Layers", "parse_bbox", "parse_polygon", "polygon_cells", "to_geojson"]


class LayerNotFound(LayerError, NotFound):
    """An unknown layer."""

    status = Status.not_found


def with_layer(values: pa.Table, name: str) -> pa.Table:
    """Values plus the ``asset_id`` column the store keys bulk tables by."""
    return values.append_column("asset_id", pa.array([name] * values.num_rows, pa.string()))


class Layers:
    """Publish, list and query layers of a store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -------------------------------------------------------------- writing
    def prepare(self, spec: LayerSpec, finest: pa.Table) -> pa.Table:
        """The rows to store for a layer: its finest values rolled up to every declared resolution."""
        if finest.schema != VALUE_SCHEMA:
            finest = finest.select(VALUE_SCHEMA.names).cast(VALUE_SCHEMA)
        bad = pc.unique(finest["res"]).to_pylist()
        if bad and bad != [max(spec.resolutions)]:
            raise LayerError(f"layer {spec.name!r}: values must be at its finest resolution "
                             f"{max(spec.resolutions)}, got {bad}")
        rolled = rollup(finest, spec)
        # 1e-9 rounding: values computed from geometry that went through a store round trip (GeoJSON/WKB parsing)
        # differ in the last bits; rounded, an unchanged layer hashes the same and re-publishing is a no-op
        for col in ("value", "weight"):
            i = rolled.schema.get_field_index(col)
            rolled = rolled.set_column(i, col, pc.round(rolled[col], 9))
        return with_layer(rolled, spec.name)

    def publish(self, spec: LayerSpec, finest: pa.Table, *, branch: str = MAIN, author: str = "twin",
                message: str | None = None):
        """Store a layer (spec + values at every resolution) as one commit; None when nothing changed."""
        return self.store.commit([spec], message=message or f"layer {spec.name}", author=author, branch=branch,
                                 tables={TABLE: self.prepare(spec, finest)})

    # -------------------------------------------------------------- reading
    def _specs(self, branch: str, as_of: Any) -> dict[str, LayerSpec]:
        """Every layer spec of a branch at a version, by name (read once per version, then remembered)."""
        version = self.store.resolve_version(branch, as_of)
        key = (self.store.view_key, branch, version)  # a guarded store's view: what its principal may see
        with _specs_lock:
            kept = _specs.setdefault(self.store.base, OrderedDict())
            found = kept.get(key)
            if found is not None:
                kept.move_to_end(key)
                return found
        found = {r["id"]: _spec(r) for r in self.store.peek(branch, version, Query(collection=LAYERS))}
        with _specs_lock:
            kept[key] = found
            while len(kept) > _SPECS_KEPT:
                kept.popitem(last=False)
        return found

    def list(self, branch: str = MAIN, as_of: Any = None) -> list[LayerSpec]:
        out = list(self._specs(branch, as_of).values())
        self.store.note(LAYERS, [(s.name, s.classification) for s in out])
        return out

    def spec(self, name: str, branch: str = MAIN, as_of: Any = None) -> LayerSpec:
        specs = self._specs(branch, as_of)
        if name not in specs:
            raise LayerNotFound(f"unknown layer {name!r} on branch {branch!r}; layers: {', '.join(specs) or 'none'}")
        self.store.note(LAYERS, [(name, specs[name].classification)])
        return specs[name]

    def query(
        self,
        name: str,
        *,
        bbox: list[float] | str | None = None,
        polygon: dict | shapely.Geometry | str | None = None,
        cells: list[int] | np.ndarray | None = None,
        res: int | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        bucket: str | None = None,
        branch: str = MAIN,
        as_of: Any = None,
        compare_branch: str | None = None,
        compare_as_of: Any = None,
    ) -> pa.Table:
        """Values of a layer in an area (WGS84 bbox/polygon, or explicit cells) and time range [start, end).

        ``bucket`` re-aggregates to a longer time bucket; ``compare_*`` adds the other state's value and the
        difference per cell (``value - other``), for scenario vs baseline or before vs after. Every parameter is
        checked before any value is read; a bad one is a :class:`LayerError` whose message starts with its name
        (``bbox: …``, ``res: …``, ``bucket: …``, ``compare_as_of: …``). ``bbox`` and ``polygon`` may be given as
        the text of a request (``"w,s,e,n"``; WKT or GeoJSON).
        """
        version = self.store.resolve_version(branch, as_of)
        spec = self.spec(name, branch, version)
        res = max(spec.resolutions) if res is None else int(res)
        if res not in spec.resolutions:
            raise LayerError(f"res: layer {name!r} has resolutions {spec.resolutions}, not {res}")
        t0, t1 = _time(start, "start"), _time(end, "end")
        if t0 and t1 and t1 <= t0:
            raise LayerError(f"end: empty time range: end {t1.isoformat()} is not after start {t0.isoformat()}")
        bucket_s = self._bucket(spec, bucket)
        other = None
        if compare_branch is not None or compare_as_of is not None:
            other = _other_version(self.store, compare_branch or branch, compare_as_of, compare_branch is not None)
        want = self._cells(parse_bbox(bbox) if isinstance(bbox, str) else bbox,
                           parse_polygon(polygon) if isinstance(polygon, str) else polygon, cells, res)
        rows = self._rows(name, spec, res, t0, t1, want, bucket_s, branch, version)
        if other is None:
            return rows
        return _compare(rows, self._rows(name, spec, res, t0, t1, want, bucket_s, *other), self.store._con)

    @staticmethod
    def _bucket(spec: LayerSpec, bucket: str | None) -> int | None:
        """Seconds of the requested re-aggregation bucket (None: the layer's own), checked against the layer."""
        if bucket is None:
            return None
        b = bucket_seconds(bucket, "bucket")
        base = bucket_seconds(spec.time_bucket, "time_bucket")
        if base is None:
            raise LayerError(f"bucket: layer {spec.name!r} is static (no time bucket); leave bucket out")
        if b % base:
            raise LayerError(f"bucket: {bucket!r} must be a multiple of the layer's time bucket {spec.time_bucket}")
        return b

    def _cells(self, bbox, polygon, cells, res: int) -> np.ndarray | None:
        given = [k for k, x in (("bbox", bbox), ("polygon", polygon), ("cells", cells)) if x is not None]
        if len(given) > 1:
            raise LayerError(f"{', '.join(given)}: give only one of bbox, polygon or cells")
        if cells is not None:
            if len(cells) > MAX_CELLS:
                raise LayerError(f"cells: {len(cells):,} cells requested; the limit is {MAX_CELLS:,} per query")
            try:
                arr = np.unique(np.asarray([int(c, 16) if isinstance(c, str) else int(c) for c in cells], np.uint64))
            except (ValueError, OverflowError):
                raise LayerError("cells: must be H3 indexes (hex strings such as 8931aa42a6bffff)") from None
            bad = [int(c) for c in arr[:1000] if not h3.is_valid_cell(int(c)) or h3.get_resolution(int(c)) != res]
            if bad:
                raise LayerError(f"cells: {h3.int_to_str(bad[0])} is not a valid H3 cell at resolution {res}")
            return arr
        if bbox is not None:
            if len(bbox) != 4:
                raise LayerError(f"bbox: needs 4 numbers (west, south, east, north), got {len(bbox)}")
            w, s, e, n = (float(v) for v in bbox)
            if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
                raise LayerError(f"bbox: must be [west, south, east, north] in WGS84 degrees, got {list(bbox)}")
            # exact area of a lon/lat box on the sphere: geodesic edges of a box spanning the globe degenerate
            area = 6_371_008.8**2 * np.radians(e - w) * (np.sin(np.radians(n)) - np.sin(np.radians(s)))
            return polygon_cells(shapely.box(w, s, e, n), res, area_m2=float(area), what="bbox")
        if polygon is None:
            return None
        try:
            geom = polygon if isinstance(polygon, shapely.Geometry) else shapely.geometry.shape(polygon)
        except (AttributeError, KeyError, TypeError, ValueError, shapely.errors.GEOSException) as exc:
            raise LayerError(f"polygon: not a GeoJSON geometry: {exc}") from None
        return polygon_cells(geom, res)

    def _rows(self, name, spec, res, t0, t1, cells, bucket_s, branch, as_of) -> pa.Table:
        src = self.store.table_sql(TABLE, branch, as_of, owner=name)  # the one layer spec() has checked
        if src is None:
            return VALUE_SCHEMA.empty_table()
        where, params = ["asset_id = ?", "res = ?"], [name, res]
        if t0 is not None:
            where.append("t >= ?")
            params.append(t0)
        if t1 is not None:
            where.append("t < ?")
            params.append(t1)
        con = self.store._con
        if cells is not None:
            if len(cells) == 0:
                return VALUE_SCHEMA.empty_table()
            con.register("_cells", pa.table({"cell": pa.array(cells, pa.uint64())}))
            # the range lets Parquet row-group statistics prune before the exact semi-join
            where.append("cell BETWEEN ? AND ? AND cell IN (SELECT cell FROM _cells)")
            params += [int(cells.min()), int(cells.max())]
        sql = (f"SELECT cell, res, t, value, count, weight FROM {src} v WHERE {' AND '.join(where)} "
               f"ORDER BY cell, t LIMIT {MAX_ROWS + 1}")
        try:
            out = con.execute(sql, params).to_arrow_table().cast(VALUE_SCHEMA)
        finally:
            if cells is not None:
                con.unregister("_cells")
        if out.num_rows > MAX_ROWS:
            raise LayerError(f"more than {MAX_ROWS:,} rows match; narrow the area, time range or resolution")
        if bucket_s:
            out = aggregate(out, Aggregation(spec.aggregation), bucket_s=bucket_s, con=con)
        return out


def parse_bbox(text: str) -> list[float]:
    """``"west,south,east,north"`` (WGS84 degrees) as four numbers; a :class:`LayerError` naming ``bbox``."""
    try:
        out = [float(v) for v in text.split(",")]
    except ValueError:
        raise LayerError(f"bbox: must be comma-separated numbers west,south,east,north, got {text[:80]!r}") from None
    if len(out) != 4:
        raise LayerError(f"bbox: needs 4 numbers (west, south, east, north), got {len(out)}")
    return out


def parse_polygon(text: str) -> shapely.Geometry | None:
    """A WGS84 polygon from WKT or a GeoJSON geometry string (None for empty text); a :class:`LayerError` naming
    ``polygon``."""
    import json

    if not text.strip():
        return None
    try:
        return shapely.from_geojson(text) if text.lstrip().startswith("{") else shapely.from_wkt(text)
    except (shapely.errors.GEOSException, ValueError, json.JSONDecodeError) as exc:
        raise LayerError(f"polygon: neither WKT nor GeoJSON: {exc}") from None


def _other_version(store: Store, branch: str, as_of: Any, named: bool) -> tuple[str, int]:
    """The (branch, version) a comparison reads, its faults named ``compare_branch`` / ``compare_as_of``."""
    try:
        if named:
            store.branch(branch)
    except StoreError as exc:
        raise type(exc)(f"compare_branch: {exc}") from None
    try:
        return branch, store.resolve_version(branch, as_of)
    except StoreError as exc:  # the store names it as_of: this request calls it compare_as_of
        raise type(exc)(f"compare_as_of: {str(exc).removeprefix('as_of: ')}") from None


def polygon_cells(geom: shapely.Geometry, res: int, area_m2: float | None = None,
                  what: str = "polygon") -> np.ndarray:
    """H3 cells at ``res`` overlapping a WGS84 polygon, refusing before work when there would be too many."""
    import pyproj

    if geom is None or geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise LayerError(f"{what}: the area must be a polygon in WGS84 lon/lat")
    if area_m2 is None:
        area_m2 = abs(pyproj.Geod(ellps="WGS84").geometry_area_perimeter(geom)[0])
    estimate = area_m2 / h3.average_hexagon_area(res, unit="m^2")
    if estimate > MAX_CELLS:
        raise LayerError(f"{what}: the area would need about {estimate:,.0f} cells at resolution {res}; the limit "
                         f"is {MAX_CELLS:,} per query: use a coarser resolution or a smaller area")
    shape = h3.geo_to_h3shape(shapely.geometry.mapping(geom))
    found = h3.h3shape_to_cells_experimental(shape, res, contain="overlap")
    return np.unique(np.asarray([h3.str_to_int(c) for c in found], np.uint64))


def _compare(a: pa.Table, b: pa.Table, con) -> pa.Table:
    """Full outer join of two value tables on (cell, res, t) with the difference a - b (on the caller's cursor)."""
    con.register("_a", a)
    con.register("_b", b)
    try:
        return con.execute(
            "SELECT coalesce(a.cell, b.cell) AS cell, coalesce(a.res, b.res) AS res, coalesce(a.t, b.t) AS t, "
            "a.value AS value, b.value AS other, a.value - b.value AS difference "
            "FROM _a a FULL OUTER JOIN _b b ON a.cell = b.cell AND a.res = b.res AND a.t IS NOT DISTINCT FROM b.t "
            "ORDER BY cell, t"
        ).to_arrow_table()
    finally:
        con.unregister("_a")
        con.unregister("_b")


def _spec(row: dict[str, Any]) -> LayerSpec:
    return LayerSpec.model_validate({k: v for k, v in row.items() if k not in ("id", "_store")})


def _time(v: datetime | str | None, what: str) -> datetime | None:
    try:
        return to_utc(v)
    except ValueError:
        raise LayerError(f"{what}: must be an ISO 8601 time, got {v!r}") from None


def to_geojson(table: pa.Table) -> dict[str, Any]:
    """Rows as a GeoJSON FeatureCollection of hexagons (WGS84), one feature per row."""
    feats = []
    cols = table.to_pydict()
    for i, cell in enumerate(cols["cell"]):
        ring = [[lng, lat] for lat, lng in h3.cell_to_boundary(h3.int_to_str(int(cell)))]
        ring.append(ring[0])
        props = {k: (v[i].isoformat() if isinstance(v[i], datetime) else v[i]) for k, v in cols.items()}
        props["cell"] = h3.int_to_str(int(cell))
        feats.append({"type": "Feature", "id": f"{props['cell']}@{props.get('t') or ''}",
                      "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props})
    return {"type": "FeatureCollection", "features": feats}
