"""The generaliser: public forms of layers (exact roll-ups, k-anonymity) and of collections (simplified valid
geometry, attributes / types / fields removed, heights rounded), never changing its input."""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import h3
import numpy as np
import pyarrow as pa
import pytest
import shapely
import shapely.geometry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_models import LAYER_VALUES, Classification, LayerSpec, parse_city_object
from tests.conftest import make_buildings
from twin.security import generalise as gen
from twin.security.generalise import (
    DEFAULT_COLLECTION_POLICY,
    DEFAULT_LAYER_POLICY,
    Policy,
    generalise_cells,
    generalise_features,
    public_form,
    served_form,
)

T0 = datetime(2024, 5, 1, tzinfo=UTC)
KIND = {"sum": "extensive", "count": "extensive", "mean": "intensive", "max": "intensive", "min": "intensive",
        "area_weighted_mean": "intensive"}


# ----------------------------------------------------------------------------------------------- helpers
def _cells(n: int, res: int, seed: int = 0, spread: float = 0.01) -> list[int]:
    rng = np.random.default_rng(seed)
    lat = 40.42 + rng.uniform(-spread, spread, n)
    lng = -3.70 + rng.uniform(-spread, spread, n)
    return [h3.str_to_int(h3.latlng_to_cell(a, b, res)) for a, b in zip(lat, lng, strict=True)]


def _table(cells: list[int], res: int, values, counts, weights=None, times=None, extra=None) -> pa.Table:
    n = len(cells)
    t = pa.nulls(n, pa.timestamp("us", tz="UTC")) if times is None else pa.array(times, pa.timestamp("us", tz="UTC"))
    cols = {"cell": pa.array(cells, pa.uint64()), "res": pa.array([res] * n, pa.int8()), "t": t,
            "value": pa.array(values, pa.float64()), "count": pa.array(counts, pa.int64()),
            "weight": pa.array([float(c) for c in counts] if weights is None else weights, pa.float64())}
    table = pa.table(cols, schema=LAYER_VALUES)
    if extra:
        for name, col in extra.items():
            table = table.append_column(name, col)
    return table


def _brute(table: pa.Table, aggregation: str, res: int, k: int) -> dict[tuple, tuple]:
    """The roll-up and suppression in plain Python: (cell, t) -> (value, count, weight)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in table.to_pylist():
        parent = h3.str_to_int(h3.cell_to_parent(h3.int_to_str(r["cell"]), res)) if r["res"] > res else r["cell"]
        groups[(parent, r["t"])].append(r)
    out = {}
    for key, rows in groups.items():
        count = sum(r["count"] for r in rows)
        weight = math.fsum(r["weight"] for r in rows)
        vals = [r["value"] for r in rows]
        if aggregation in ("sum", "count"):
            v = math.fsum(vals)
        elif aggregation == "mean":
            v = math.fsum(x * r["count"] for x, r in zip(vals, rows, strict=True)) / count if count else None
        elif aggregation == "area_weighted_mean":
            v = math.fsum(x * r["weight"] for x, r in zip(vals, rows, strict=True)) / weight if weight else None
        else:
            v = max(vals) if aggregation == "max" else min(vals)
        if count >= k:
            out[key] = (v, count, weight)
    return out


def _as_dict(table: pa.Table) -> dict[tuple, tuple]:
    return {(r["cell"], r["t"]): (r["value"], r["count"], r["weight"]) for r in table.to_pylist()}


def _same(got: dict, want: dict, aggregation: str) -> None:
    assert got.keys() == want.keys()
    for key, (v, c, w) in want.items():
        gv, gc, gw = got[key]
        assert gc == c
        assert gw == pytest.approx(w, rel=1e-12, abs=1e-12)
        if aggregation in ("max", "min") or v is None:
            assert gv == v  # extremes are exact: one of the inputs
        else:
            assert gv == pytest.approx(v, rel=1e-12, abs=1e-9)


# ----------------------------------------------------------------------------------------------- layers
@pytest.mark.parametrize("aggregation", ["sum", "count", "mean", "max", "min", "area_weighted_mean"])
def test_rollup_matches_brute_force(aggregation: str) -> None:
    rng = np.random.default_rng(1)
    cells = _cells(400, 10, seed=2)
    times = [T0 + timedelta(hours=int(h)) for h in rng.integers(0, 3, len(cells))]
    counts = rng.integers(1, 6, len(cells)).tolist()
    values = (rng.integers(0, 50, len(cells)) if aggregation == "count" else rng.normal(20, 8, len(cells))).tolist()
    weights = rng.uniform(1, 100, len(cells)).tolist()
    table = _table(cells, 10, values, counts, weights=weights, times=times)
    policy = Policy(res=8, k_min=4)
    out = generalise_cells(table, aggregation, KIND[aggregation], policy)
    assert out.schema == table.schema
    assert set(out["res"].to_pylist()) == {8}
    want = _brute(table, aggregation, 8, 4)
    assert 0 < len(want) < len(_brute(table, aggregation, 8, 0))  # some cells are suppressed, not all
    _same(_as_dict(out), want, aggregation)
    keys = [(r["res"], r["cell"], r["t"]) for r in out.to_pylist()]
    assert keys == sorted(keys)


def test_parents_are_h3s() -> None:
    cells = _cells(50, 12, seed=3, spread=0.2)
    for target in (0, 3, 7, 11, 12):
        out = generalise_cells(_table(cells, 12, [1.0] * 50, [1] * 50), "sum", None, Policy(res=target))
        want = {h3.str_to_int(h3.cell_to_parent(h3.int_to_str(c), target)) for c in cells}
        assert set(out["cell"].to_pylist()) == want
        assert all(h3.is_valid_cell(h3.int_to_str(c)) for c in want)


def test_matches_the_layers_own_rollup() -> None:
    """The public form at res 8 is the internal layer's res-8 rows, less the suppressed cells."""
    from twin.layers.values import rollup  # tests may read twin.layers; the generaliser does not

    rng = np.random.default_rng(4)
    cells = _cells(300, 10, seed=5)
    table = _table(cells, 10, rng.normal(5, 2, 300).tolist(), rng.integers(1, 4, 300).tolist())
    spec = LayerSpec(name="pm25", variable="pm25", unit="ug/m3", aggregation="mean", resolutions=[8, 9, 10])
    every = rollup(table, spec)  # the store keeps every resolution of a layer
    out = generalise_cells(every, spec.aggregation, spec.kind, Policy(res=8, k_min=0))
    internal = every.filter(pa.compute.equal(every["res"], 8))
    _same(_as_dict(out), _as_dict(internal), "mean")  # no double counting of the res-9 and res-8 rows
    out5 = generalise_cells(every, spec.aggregation, spec.kind, Policy(res=8, k_min=5))
    assert _as_dict(out5) == {k: v for k, v in _as_dict(out).items() if v[1] >= 5}


def test_one_resolution_only() -> None:
    """Coarser data stays at its own resolution; rows at other resolutions are not served."""
    cells = _cells(40, 7, seed=6)
    coarse = _table(cells, 7, [2.0] * 40, [3] * 40)
    out = generalise_cells(coarse, "sum", "extensive", DEFAULT_LAYER_POLICY)  # res 8 > 7: no roll-up
    assert set(out["res"].to_pylist()) == {7}
    assert _as_dict(out) == _brute(coarse, "sum", 7, 5)
    mixed = pa.concat_tables([coarse, _table(_cells(40, 6, seed=7), 6, [1.0] * 40, [9] * 40)])
    assert set(generalise_cells(mixed, "sum", None, Policy())["res"].to_pylist()) == {7}


def test_k_anonymity_suppresses_small_cells() -> None:
    parent = h3.str_to_int(h3.latlng_to_cell(40.42, -3.70, 8))
    kids = sorted(h3.str_to_int(c) for c in h3.cell_to_children(h3.int_to_str(parent), 9))
    lonely = h3.str_to_int(h3.latlng_to_cell(40.50, -3.60, 9))  # a parent with one observation
    table = _table(kids + [lonely], 9, [1.0] * 8, [1] * 8)  # 7 children, 1 each, and the lonely cell
    for k, want in ((0, 2), (1, 2), (2, 1), (7, 1), (8, 0)):
        out = generalise_cells(table, "count", "extensive", Policy(res=8, k_min=k))
        assert out.num_rows == want
        assert all(c >= k for c in out["count"].to_pylist())
    # at the data's own resolution (no res in the policy) each cell is judged alone
    assert generalise_cells(table, "count", None, Policy(k_min=2)).num_rows == 0


def test_extra_columns_are_kept_and_grouped() -> None:
    cells = _cells(60, 10, seed=8)
    base = _table(cells, 10, [1.0] * 60, [1] * 60)
    table = pa.concat_tables([base.append_column("asset_id", pa.array(["a"] * 60)),
                              base.append_column("asset_id", pa.array(["b"] * 60))])
    out = generalise_cells(table, "sum", None, Policy(res=8))
    assert out.schema == table.schema
    a = out.filter(pa.compute.equal(out["asset_id"], "a")).drop_columns(["asset_id"])
    b = out.filter(pa.compute.equal(out["asset_id"], "b")).drop_columns(["asset_id"])
    assert _as_dict(a) == _as_dict(b) == _brute(base, "sum", 8, 0)


def test_bad_input_is_refused() -> None:
    cells = _cells(3, 10)
    table = _table(cells, 10, [1.0] * 3, [1] * 3)
    with pytest.raises(ValueError, match="does not fit"):
        generalise_cells(table, "sum", "intensive", Policy())
    with pytest.raises(ValueError, match="not an H3 cell of its row's res"):
        generalise_cells(table.set_column(1, "res", pa.array([9] * 3, pa.int8())), "sum", None, Policy())
    with pytest.raises(ValueError, match="no column count"):
        generalise_cells(table.drop_columns(["count"]), "sum", None, Policy())
    empty = table.slice(0, 0)
    assert generalise_cells(empty, "mean", None, DEFAULT_LAYER_POLICY).schema == table.schema


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), aggregation=st.sampled_from(["sum", "mean", "max", "min", "area_weighted_mean"]),
       src=st.integers(5, 11), k=st.integers(0, 12))
def test_rollup_property(data, aggregation: str, src: int, k: int) -> None:
    target = data.draw(st.integers(0, src), label="target")
    n = data.draw(st.integers(1, 60), label="n")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    cells = _cells(n, src, seed=seed, spread=0.05)
    values = data.draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=n, max_size=n), label="values")
    counts = data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n), label="counts")
    weights = data.draw(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=n, max_size=n), label="weights")
    hours = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n), label="hours")
    table = _table(cells, src, values, counts, weights=weights, times=[T0 + timedelta(hours=h) for h in hours])
    out = generalise_cells(table, aggregation, None, Policy(res=target, k_min=k))
    assert out.schema == table.schema
    want = _brute(table, aggregation, target, k)
    got = _as_dict(out)
    assert got.keys() == want.keys()
    for key, (v, c, w) in want.items():
        gv, gc, gw = got[key]
        assert gc == c and gw == pytest.approx(w, rel=1e-9, abs=1e-6)
        if v is None or aggregation in ("max", "min"):
            assert gv == v
        else:  # sums of values up to 1e6 in another order: tolerance relative to their magnitude
            assert gv == pytest.approx(v, rel=1e-9, abs=1e-6 * max(1.0, max(abs(x) for x in values)))


# ----------------------------------------------------------------------------------------------- policy
def test_policy_json_round_trip() -> None:
    for p in (DEFAULT_LAYER_POLICY, DEFAULT_COLLECTION_POLICY,
              Policy(name="x", res=9, k_min=10, simplify_m=2.5, drop_attributes=["a*"], drop_types=["Road"],
                     drop_fields=["quality"], round_height_m=0.5, classification="internal", source_max="secret")):
        assert Policy.model_validate_json(p.model_dump_json()) == p
        assert Policy.model_validate(p.model_dump(mode="json")) == p
    with pytest.raises(ValueError, match="cannot be blanked"):
        Policy(drop_fields=["geometry"])
    with pytest.raises(ValueError, match="keep_lods"):
        Policy(keep_lods=True, round_height_m=3)
    with pytest.raises(ValueError, match="above source_max"):
        Policy(classification="secret")
    with pytest.raises(ValueError):
        Policy(res=16)
    with pytest.raises(ValueError):
        Policy(unknown=1)
    with pytest.raises(ValueError):
        DEFAULT_LAYER_POLICY.k_min = 0  # frozen


def test_public_form() -> None:
    spec = LayerSpec(name="x", variable="x", unit="1", aggregation="sum", resolutions=[9],
                     classification="confidential")
    p = DEFAULT_LAYER_POLICY
    assert public_form(spec, "public", p) and public_form("internal", Classification.public, p)
    assert not public_form(spec, "confidential", p)  # it may see the data itself
    assert not public_form(spec, "public", None)  # no policy, no public form
    assert not public_form({"classification": "secret"}, "public", p)  # above the policy's source_max
    assert public_form({"classification": "secret"}, "public", Policy.model_validate(
        {**p.model_dump(), "source_max": "secret"}))
    internal_result = Policy(classification="internal")
    assert not public_form(spec, "public", internal_result) and public_form(spec, "internal", internal_result)
    assert served_form(spec, "secret", None) == "full"
    assert served_form(spec, "public", p) == "generalised"
    assert served_form(spec, "public", None) is None


# ----------------------------------------------------------------------------------------------- features
def _jagged(cx: float, cy: float, n: int = 60, r: float = 20.0, amp: float = 0.6, seed: int = 0):
    """A star-shaped polygon with small (amp m) zig-zags: what simplification removes."""
    rng = np.random.default_rng(seed)
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = r + amp * rng.uniform(-1, 1, n)
    return shapely.Polygon(np.c_[cx + rad * np.cos(a), cy + rad * np.sin(a)])


def _feature(i: int, geom, **extra) -> dict:
    f = {"id": f"b{i}", "type": "Building", "geometry": shapely.geometry.mapping(geom), "valid_from": None,
         "valid_to": None, "classification": "confidential", "height": 10.4 + i, "roof_type": "flat",
         "storeys": 3, "use": "residential",
         "attributes": {"owner_name": "A. Person", "Owner-Phone": "555", "year": 1990,
                        "details": {"ownerId": 7, "material": "brick"}, "rooms": [{"tenant": "x", "n": 2}]},
         "provenance": [{"source": "internal/cadastre.gpkg"}], "quality": {"accuracy_m": 0.1},
         "lods": {"1.2": {"type": "Solid", "vertices": [[0, 0, 0]], "boundaries": []}},
         "_store": {"version": 1, "op": "put", "collection": "city"}}
    f.update(extra)
    return f


def test_features_generalised_by_the_default_policy() -> None:
    hole = _jagged(0, 0, r=6, amp=0.1, seed=9)
    with_hole = shapely.Polygon(_jagged(0, 0).exterior.coords, [hole.exterior.coords])
    multi = shapely.MultiPolygon([_jagged(100, 0, seed=1), _jagged(160, 0, seed=2)])
    sensor = {"id": "s1", "type": "Sensor", "geometry": {"type": "Point", "coordinates": [1.0, 2.0]},
              "classification": "internal", "station_kind": "camera", "attributes": {},
              "_store": {"version": 1, "op": "put", "collection": "city"}}
    road = {"id": "r1", "type": "Road", "classification": "public", "attributes": {"name": "Main St"},
            "geometry": {"type": "LineString", "coordinates": [[0, 0], [50, 0.3], [100, 0]]},
            "_store": {"version": 1, "op": "put", "collection": "city"}}
    secret = _feature(9, _jagged(300, 0), classification="secret")
    features = [_feature(0, _jagged(0, 0)), _feature(1, with_hole), _feature(2, multi), sensor, road, secret]
    before = copy.deepcopy(features)
    out = generalise_features(features, DEFAULT_COLLECTION_POLICY)
    assert features == before  # the input is untouched
    assert [f["id"] for f in out] == ["b0", "b1", "b2", "r1"]  # no sensor; secret data has no public form here
    tol = DEFAULT_COLLECTION_POLICY.simplify_m
    for f, src in zip(out, [features[0], features[1], features[2], features[4]], strict=True):
        assert f["classification"] == "public"
        assert f["_generalised"] == {"policy": "default-collection", "geometry": "simplified"}
        g, g0 = shapely.geometry.shape(f["geometry"]), shapely.geometry.shape(src["geometry"])
        assert g.is_valid and g.geom_type == g0.geom_type and not g.is_empty
        assert shapely.hausdorff_distance(g, g0) <= tol + 1e-9
        assert shapely.get_num_coordinates(g) < shapely.get_num_coordinates(g0)
        if g0.area:
            assert abs(g.area - g0.area) <= g0.length * tol
            assert len(g.geoms if hasattr(g, "geoms") else [g]) == len(g0.geoms if hasattr(g0, "geoms") else [g0])
    b = out[0]
    assert b["attributes"] == {"year": 1990, "details": {"material": "brick"}, "rooms": [{"n": 2}]}
    assert b["provenance"] == [] and b["quality"] == {"accuracy_m": 0.1} and b["lods"] == {}
    assert b["height"] == 9.0 and out[1]["height"] == 12.0 and out[2]["height"] == 12.0
    assert (b["id"], b["type"], b["_store"], b["use"]) == ("b0", "Building", features[0]["_store"], "residential")
    assert out[3]["attributes"] == {"name": "Main St"}
    for f in out[:3]:  # still valid city objects (less the store's and the generaliser's notes)
        parse_city_object({k: v for k, v in f.items() if not k.startswith("_")})


def test_custom_policy_patterns_and_blanks() -> None:
    features = [_feature(0, _jagged(0, 0)), {**_feature(1, _jagged(50, 0)), "type": "BuildingPart"}]
    p = Policy(drop_types=["building?art"], drop_attributes=["year", "det*"], drop_fields=["quality", "use", "*ov*"],
               keep_lods=True, classification="internal")
    out = generalise_features(features, p)
    assert [f["id"] for f in out] == ["b0"]
    f = out[0]
    assert f["attributes"] == {"owner_name": "A. Person", "Owner-Phone": "555", "rooms": [{"tenant": "x", "n": 2}]}
    assert f["quality"] is None and f["use"] is None and f["provenance"] == []
    assert f["lods"] == features[0]["lods"] and f["height"] == features[0]["height"]
    assert f["geometry"] == features[0]["geometry"] and f["_generalised"]["geometry"] == "unchanged"
    assert f["classification"] == "internal"


def test_real_buildings_and_nothing_vanishes() -> None:
    """Small footprints under a large tolerance: each stays a valid polygon with area."""
    features = [b.model_dump(mode="json") for b in make_buildings(9)]  # 10 m squares, 20 m apart
    for tol in (0.5, 5.0, 50.0):
        for f in generalise_features(features, Policy(simplify_m=tol)):
            g = shapely.geometry.shape(f["geometry"])
            assert g.is_valid and g.area > 0


def test_invalid_simplification_falls_back(monkeypatch) -> None:
    f = _feature(0, _jagged(0, 0))
    bowtie = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    monkeypatch.setattr(gen, "_simplify", lambda g, tol: bowtie)
    [out] = generalise_features([f], DEFAULT_COLLECTION_POLICY)
    g, g0 = shapely.geometry.shape(out["geometry"]), shapely.geometry.shape(f["geometry"])
    assert out["_generalised"]["geometry"] == "convex_hull"
    assert g.is_valid and g.covers(g0) and g.equals(g0.convex_hull)
    line = {"id": "r", "type": "Road", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}
    monkeypatch.setattr(gen, "_simplify", lambda g, tol: shapely.Polygon())
    [out] = generalise_features([line], DEFAULT_COLLECTION_POLICY)
    assert out["_generalised"]["geometry"] == "original" and out["geometry"] == line["geometry"]
    assert out["geometry"] is not line["geometry"]
