"""Desensitised public products: the generaliser that makes a public version of a layer or a collection.

A :class:`Policy` is declared data (JSON round-trippable) saying how: the finest H3 resolution a public layer may
have, the minimum ``count`` per cell (k-anonymity for sensor and trajectory data), the Douglas-Peucker tolerance for
geometries, the attributes, object types and fields removed, the height rounding, and the classification of the
result. :func:`generalise_cells` applies it to a layer's values table, :func:`generalise_features` to the JSON-shaped
features the store returns, and :func:`public_form` says whether a generalised form may be served to a principal.
What the rules do and what a generalised product does (and does not) guarantee: ``docs/security_generalise.md``.

Nothing here reads the store: callers (the API's layer and feature routes) read the raw data as the store (not
through the principal's guard), generalise it, and serve the result only when :func:`public_form` allows it.
"""

from __future__ import annotations

import copy
import math
from enum import Enum
from fnmatch import fnmatchcase
from typing import Any, Literal

import duckdb
import pyarrow as pa
import shapely
import shapely.geometry
from pydantic import BaseModel

from data_models import CITY_OBJECT_TYPES, PROTECTED_FIELDS, Aggregation, Classification, Policy
from data_models.layers import EXTENSIVE_AGGREGATIONS, INTENSIVE_AGGREGATIONS

__all__ = [
    "Policy",
    "DEFAULT_LAYER_POLICY",
    "DEFAULT_COLLECTION_POLICY",
    "PROTECTED_FIELDS",
    "generalise_cells",
    "generalise_features",
    "public_form",
    "served_form",
]

GENERALISED_KEY = "_generalised"
"""Key of the note each generalised feature carries: ``{"policy": name, "geometry": how}``, ``how`` one of
``unchanged`` (no geometry, a point, or no tolerance), ``simplified``, ``convex_hull`` (the simplified shape was
not valid or lost its area: the hull of each part instead), ``original`` (neither was usable)."""


def _match(name: str, pattern: str) -> bool:
    return fnmatchcase(name.lower(), pattern.lower())


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(_match(name, p) for p in patterns)


DEFAULT_LAYER_POLICY = Policy(
    name="default-layer",
    res=8,
    k_min=5,
    description="H3 resolution 8 (cells of about 0.74 km², edge about 460 m: a neighbourhood, not a street or a "
                "house) and at least 5 observations behind each cell and time bucket",
)
"""Layers: roll up to H3 resolution 8 (about 0.74 km² a cell: neighbourhood scale, coarser than a block or a
building; the coarsest resolution of the building layers) and suppress cells with fewer than 5 observations
(the usual minimum for k-anonymity of counts of people and vehicles)."""

DEFAULT_COLLECTION_POLICY = Policy(
    name="default-collection",
    simplify_m=1.0,
    drop_types=("Sensor",),
    drop_attributes=("owner*", "tenant*", "occupant*", "resident*", "person*", "contact*", "phone*", "email*",
                     "security*", "alarm*", "camera*", "access_code*", "cadastr*", "parcel*"),
    drop_fields=("provenance",),
    round_height_m=3.0,
    description="footprints simplified to 1 m, heights rounded to 3 m, no 3D solids, no sensors, no personal or "
                "security attributes, no provenance",
)
"""Collections: footprints simplified to 1 m (hides recesses, entrances and openings, keeps the block shape),
heights rounded to 3 m (about a storey), LoD solids dropped (3D detail shows what the footprint hides), sensors
dropped (their sites are infrastructure and their readings are the sensitive data), attributes about people
(owners, tenants, contacts), land parcels and security installations removed, provenance blanked (it names
internal sources and files)."""


# ----------------------------------------------------------------------------------------------- who gets what
def _classification_of(data: Any) -> Classification:
    """The classification of a LayerSpec / model / feature dict / level name."""
    if isinstance(data, dict):
        data = data.get("classification", Classification.public)
    elif not isinstance(data, (str, Classification)):
        data = data.classification
    return Classification.parse(data.strip().lower() if isinstance(data, str) else data)


def public_form(data: Any, principal_clearance: Classification | str, policy: Policy | None) -> bool:
    """True when a generalised form of ``data`` (a LayerSpec, a feature dict, a model, or its classification) may be
    served to a principal of ``principal_clearance`` instead of nothing: the data is above the clearance, a policy
    for a public form exists, the data is not above the policy's ``source_max``, and the policy's result is within
    the clearance."""
    level = _classification_of(data)
    clearance = Classification.parse(principal_clearance)
    if policy is None:
        return False
    source_max, result = Classification.parse(policy.source_max), Classification.parse(policy.classification)
    return clearance.rank < level.rank <= source_max.rank and result.rank <= clearance.rank


def served_form(data: Any, principal_clearance: Classification | str,
                policy: Policy | None) -> Literal["full", "generalised"] | None:
    """What a principal gets: ``full`` within its clearance, ``generalised`` when :func:`public_form` allows it,
    else None (the data does not exist for it: a 404)."""
    if _classification_of(data).rank <= Classification.parse(principal_clearance).rank:
        return "full"
    return "generalised" if public_form(data, principal_clearance, policy) else None


# ----------------------------------------------------------------------------------------------- layers
_MEASURES = ("value", "count", "weight")
_H3_FULL = (1 << 64) - 1


def _value_sql(aggregation: Aggregation, has_weight: bool) -> str:
    """SQL for the value of a merged group: the same rules as the layers' own roll-ups (``twin.layers.values``)."""
    if aggregation in EXTENSIVE_AGGREGATIONS:
        return "sum(value)"
    if aggregation == Aggregation.mean:
        return "sum(value * count) / nullif(sum(count), 0)"
    if aggregation == Aggregation.area_weighted_mean:
        if not has_weight:
            raise ValueError("cells: an area_weighted_mean layer needs the weight column")
        return "sum(value * weight) / nullif(sum(weight), 0)"
    return "max(value)" if aggregation == Aggregation.max else "min(value)"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _parent_sql(res: int) -> str:
    """SQL moving ``cell`` (any finer resolution) to its parent at ``res``: the resolution field set to ``res`` and
    the digits below it to 7 (unused), as ``h3.cell_to_parent`` does."""
    low = (1 << (3 * (15 - res))) - 1
    keep = _H3_FULL & ~((0xF << 52) | low)
    return f"((CAST(cell AS UBIGINT) & CAST({keep} AS UBIGINT)) | CAST({(res << 52) | low} AS UBIGINT))"


def generalise_cells(cells: pa.Table, aggregation: Aggregation | str, kind: str | None, policy: Policy) -> pa.Table:
    """The public form of a layer's values table (``data_models.LAYER_VALUES`` columns; any other column, such as
    ``asset_id``, is kept and grouped by), with the same schema.

    1. One resolution: the data's finest, or ``policy.res`` when that is coarser. Finer cells are rolled up to it
       by the aggregation (sum / count add up; mean is count-weighted, area_weighted_mean weight-weighted; max and
       min stay extremes; count and weight add up), per time bucket. Rows at other resolutions (the store keeps every
       resolution of a layer) are not served: a second resolution beside the first lets a reader recover suppressed
       cells by differencing.
    2. k-anonymity: cells whose count is below ``policy.k_min`` are removed.

    ``kind`` (extensive / intensive, or None) is checked against the aggregation. Rows are ordered by res, cell, t.
    """
    agg = Aggregation(aggregation)
    if kind is not None:
        allowed = {"extensive": EXTENSIVE_AGGREGATIONS, "intensive": INTENSIVE_AGGREGATIONS}.get(kind)
        if allowed is None:
            raise ValueError(f"kind: {kind!r} is neither extensive nor intensive")
        if agg not in allowed:
            raise ValueError(f"aggregation {agg.value!r} does not fit a {kind} layer")
    names = cells.column_names
    missing = [c for c in ("cell", "res", "value", "count") if c not in names]
    if missing:
        raise ValueError(f"cells: no column {', '.join(missing)} (a layer values table has cell, res, t, value, "
                         "count, weight)")
    schema = cells.schema
    if cells.num_rows == 0:
        return cells
    con = duckdb.connect()
    try:
        con.register("_cells", cells)
        bad = con.execute("SELECT count(*) FROM _cells WHERE cell IS NULL OR res IS NULL OR count IS NULL "
                          "OR ((CAST(cell AS UBIGINT) >> 59) & 15) != 1 "
                          "OR ((CAST(cell AS UBIGINT) >> 52) & 15) != res").fetchone()[0]
        if bad:
            raise ValueError(f"cells: {bad} row(s) with a null cell, res or count, or a cell that is not an H3 cell "
                             "of its row's res")
        finest = int(con.execute("SELECT max(res) FROM _cells").fetchone()[0])
        target = finest if policy.res is None else min(finest, policy.res)
        keys = [c for c in names if c not in _MEASURES]  # cell, res, t and any other column
        has_weight = "weight" in names
        moved = {"cell": f"{_parent_sql(target)} AS cell", "res": f"CAST({target} AS TINYINT) AS res"}
        select = ", ".join(moved.get(c, _quote(c)) for c in keys)
        measures = {"value": f"{_value_sql(agg, has_weight)} AS value", "count": "sum(count) AS count",
                    "weight": "sum(weight) AS weight"}
        order = ", ".join(c for c in ("res", "cell", "t") if c in names)
        sql = (f"WITH src AS (SELECT {select}, value, count{', weight' if has_weight else ''} FROM _cells "
               f"WHERE res = {finest}) "
               f"SELECT {', '.join(_quote(c) for c in keys)}, "
               f"{', '.join(measures[c] for c in _MEASURES if c in names)} FROM src "
               f"GROUP BY ALL HAVING sum(count) >= {int(policy.k_min)} ORDER BY {order}")
        out = con.execute(sql).to_arrow_table()
    finally:
        con.close()
    return out.select(names).cast(schema)


# ----------------------------------------------------------------------------------------------- features
def _drop_keys(value: Any, patterns: tuple[str, ...]) -> Any:
    """``value`` without the dict keys matching ``patterns``, at any depth (inside lists too)."""
    if isinstance(value, dict):
        return {k: _drop_keys(v, patterns) for k, v in value.items() if not _matches(str(k), patterns)}
    if isinstance(value, list):
        return [_drop_keys(v, patterns) for v in value]
    return value


def _blank(entity_type: Any, key: str, value: Any) -> Any:
    """The blank of a field: its model's default (a city object's type says which model), else [] / {} / null."""
    model = CITY_OBJECT_TYPES.get(entity_type) if isinstance(entity_type, str) else None
    field = model.model_fields.get(key) if model is not None else None
    if field is not None and not field.is_required():
        default = field.get_default(call_default_factory=True)
        return default.model_dump(mode="json") if isinstance(default, BaseModel) else (
            default.value if isinstance(default, Enum) else copy.deepcopy(default))
    return [] if isinstance(value, list) else {} if isinstance(value, dict) else None


def _polygonal(g: Any) -> bool:
    return g.geom_type in ("Polygon", "MultiPolygon")


def _usable(g: Any, original: Any) -> bool:
    """A generalised geometry may replace the original: valid, not empty, the same kind, and a polygon keeps area."""
    if g is None or g.is_empty or not g.is_valid:
        return False
    if _polygonal(original):
        return _polygonal(g) and g.area > 0
    return g.geom_type == original.geom_type or g.geom_type.removeprefix("Multi") == original.geom_type.removeprefix(
        "Multi")


def _hull(g: Any) -> Any:
    """The convex hull of each polygon of ``g`` (a MultiPolygon's hulls merged where they overlap)."""
    if g.geom_type == "Polygon":
        return g.convex_hull
    return shapely.union_all([p.convex_hull for p in g.geoms])


def _simplify(g: Any, tolerance: float) -> Any:
    return shapely.simplify(g, tolerance, preserve_topology=True)


def simplify_geometry(geometry: dict[str, Any] | None, tolerance: float) -> tuple[dict[str, Any] | None, str]:
    """A GeoJSON geometry simplified (Douglas-Peucker, topology-preserving, ``tolerance`` in its CRS units) and how
    (see :data:`GENERALISED_KEY`)."""
    if geometry is None or tolerance <= 0 or geometry.get("type") in ("Point", "MultiPoint"):
        return geometry, "unchanged"
    original = shapely.geometry.shape(geometry)
    if original.is_empty:
        return geometry, "unchanged"
    simplified = _simplify(original, tolerance)
    if _usable(simplified, original):
        return shapely.geometry.mapping(simplified), "simplified"
    if _polygonal(original):
        hull = _hull(original)
        if _usable(hull, original):
            return shapely.geometry.mapping(hull), "convex_hull"
    return copy.deepcopy(geometry), "original"


def _round_height(h: Any, step: float) -> Any:
    if isinstance(h, bool) or not isinstance(h, (int, float)) or not math.isfinite(h):
        return h
    return max(0.0, round(round(h / step) * step, 6))


def generalise_feature(feature: dict[str, Any], policy: Policy) -> dict[str, Any] | None:
    """The public form of one feature (the store's JSON shape), or None when the policy removes it (its type is
    dropped, or it is above the policy's ``source_max``). The input is not changed."""
    if feature.get("type") is not None and _matches(str(feature["type"]), policy.drop_types):
        return None
    if _classification_of(feature).rank > policy.source_max.rank:
        return None
    out = copy.deepcopy(feature)
    for key in list(out):
        if key not in PROTECTED_FIELDS and _matches(key, policy.drop_fields):
            out[key] = _blank(out.get("type"), key, out[key])
    if policy.drop_attributes and isinstance(out.get("attributes"), dict):
        out["attributes"] = _drop_keys(out["attributes"], policy.drop_attributes)
    how = "unchanged"
    if "geometry" in out:
        out["geometry"], how = simplify_geometry(out["geometry"], policy.simplify_m)
    if not policy.keep_lods and "lods" in out:
        out["lods"] = {}
    if policy.round_height_m is not None and "height" in out:
        out["height"] = _round_height(out["height"], policy.round_height_m)
    out["classification"] = policy.classification.value
    out[GENERALISED_KEY] = {"policy": policy.name, "geometry": how}
    return out


def generalise_features(features: list[dict[str, Any]], policy: Policy) -> list[dict[str, Any]]:
    """The public form of features (the JSON shape ``Store.features`` returns), in their order: dropped types and
    features above the policy's ``source_max`` removed; attributes matching ``drop_attributes`` removed at any depth;
    ``drop_fields`` blanked; geometries simplified by ``simplify_m`` (topology-preserving; a result that is not
    valid or loses a polygon's area falls back to the convex hull of each part, else the original: the note
    ``_generalised.geometry`` says which); LoD solids removed unless ``keep_lods``; ``height`` rounded to
    ``round_height_m``; ``classification`` set to the policy's. Copies: the input is not changed."""
    out = []
    for f in features:
        g = generalise_feature(f, policy)
        if g is not None:
            out.append(g)
    return out
