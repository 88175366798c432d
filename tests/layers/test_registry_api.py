"""Layers in the store and over real HTTP: publish, list, query, compare, formats and bad requests."""

from __future__ import annotations

import io
import os
import subprocess

import h3
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_models import LayerSpec
from tests.api.test_serve import _wait
from tests.conftest import ROOT, TWIN
from twin.layers.h3index import latlng_to_cells
from twin.layers.registry import LayerError, LayerNotFound, Layers
from twin.layers.values import aggregate, make_values
from twin.store import Store

SPEC = LayerSpec(name="gps-fixes", variable="fixes", unit="1", aggregation="count", resolutions=[7, 9],
                 time_bucket="1h", lineage=["synthetic"])


def _points(n: int, seed: int):
    rng = np.random.default_rng(seed)
    lat, lng = rng.uniform(39.90, 39.95, n), rng.uniform(116.30, 116.36, n)
    t = np.datetime64("2024-05-01T00:00") + (rng.integers(0, 72, n) * 3600).astype("timedelta64[s]")
    return lat, lng, t


def _values(lat, lng, t):
    return aggregate(make_values(latlng_to_cells(lat, lng, 9), 9, np.ones(len(lat)), t=t), "count", bucket_s=3600)


@pytest.fixture(scope="module")
def layer_store(tmp_path_factory) -> tuple[Store, tuple]:
    store = Store.init(tmp_path_factory.mktemp("layers") / "store")
    pts = _points(30_000, 1)
    Layers(store).publish(SPEC, _values(*pts))
    store.create_branch("more-traffic")
    extra = _points(5_000, 2)
    both = tuple(np.concatenate([a, b]) for a, b in zip(pts, extra, strict=True))
    Layers(store).publish(SPEC, _values(*both), branch="more-traffic")
    return store, pts


def test_publish_is_versioned_and_idempotent(layer_store) -> None:
    store, pts = layer_store
    layers = Layers(store)
    assert layers.publish(SPEC, _values(*pts)) is None  # same values again: no new version
    assert [s.name for s in layers.list()] == ["gps-fixes"]
    for res in (7, 9):
        assert sum(layers.query("gps-fixes", res=res)["value"].to_pylist()) == 30_000
        assert sum(layers.query("gps-fixes", res=res, branch="more-traffic")["value"].to_pylist()) == 35_000
    with pytest.raises(LayerNotFound, match="unknown layer 'nope'"):
        layers.spec("nope")


def test_bbox_time_window_matches_a_direct_count(layer_store) -> None:
    store, (lat, lng, t) = layer_store
    bbox = [116.31, 39.91, 116.33, 39.93]
    q = Layers(store).query("gps-fixes", bbox=bbox, res=9, start="2024-05-02T00:00:00Z", end="2024-05-03T00:00:00Z")
    cells = set(q["cell"].to_pylist())
    inside = (t >= np.datetime64("2024-05-02T00:00")) & (t < np.datetime64("2024-05-03T00:00"))
    pc = latlng_to_cells(lat, lng, 9)
    expect = int(np.isin(pc[inside], np.array(sorted(cells), np.uint64)).sum())
    assert sum(q["value"].to_pylist()) == expect > 0
    # every cell whose centre is in the bbox is part of the answer
    for c in cells:
        assert h3.get_resolution(h3.int_to_str(c)) == 9


@pytest.fixture(scope="module")
def server(layer_store, tmp_path_factory):
    store, _ = layer_store
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TWIN_STORE": str(store.root)}
    proc = subprocess.Popen([TWIN, "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    _wait(base + "/health", proc)
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def test_layers_over_http(server: str, layer_store) -> None:
    store, _ = layer_store
    assert [x["name"] for x in httpx.get(server + "/layers").json()] == ["gps-fixes"]
    assert httpx.get(server + "/layers/gps-fixes").json()["resolutions"] == [7, 9]
    assert httpx.get(server + "/layers/nope").status_code == 404
    url = server + "/layers/gps-fixes/cells"
    params = {"bbox": "116.31,39.91,116.33,39.93", "res": 9, "start": "2024-05-02T00:00:00Z",
              "end": "2024-05-03T00:00:00Z"}
    rows = httpx.get(url, params=params).json()
    py = Layers(store).query("gps-fixes", bbox=[116.31, 39.91, 116.33, 39.93], res=9, start="2024-05-02T00:00:00Z",
                             end="2024-05-03T00:00:00Z")
    assert len(rows) == py.num_rows and sum(r["value"] for r in rows) == sum(py["value"].to_pylist())
    assert h3.is_valid_cell(rows[0]["cell"]) and rows[0]["t"].startswith("2024-05-02")
    csv = httpx.get(url, params={**params, "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv") and len(csv.text.strip().splitlines()) == len(rows) + 1
    pqt = pq.read_table(io.BytesIO(httpx.get(url, params={**params, "format": "parquet"}).content))
    assert pqt.num_rows == len(rows)
    gj = httpx.get(url, params={**params, "format": "geojson"}).json()
    assert len(gj["features"]) == len(rows)
    ring = gj["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 7
    arrow = pa.ipc.open_stream(httpx.get(url, params={**params, "format": "arrow"}).content).read_all()
    assert arrow.num_rows == len(rows) and arrow.schema.field("cell").type == pa.uint64()
    wkt = "POLYGON ((116.31 39.91, 116.33 39.91, 116.33 39.93, 116.31 39.93, 116.31 39.91))"
    by_poly = httpx.get(url, params={k: v for k, v in params.items() if k != "bbox"} | {"polygon": wkt}).json()
    assert by_poly == rows
    assert httpx.get(url, params={"polygon": "POLYGON ((1 2"}).status_code == 400
    daily = httpx.get(url, params={**params, "bucket": "1d"}).json()
    assert sum(r["value"] for r in daily) == sum(r["value"] for r in rows) and {r["t"][:10] for r in daily} == {
        "2024-05-02"}
    cmp = httpx.get(server + "/layers/gps-fixes/cells", params={"res": 7, "bucket": "3d",
                                                                "compare_branch": "more-traffic"}).json()
    assert sum(r["difference"] for r in cmp) == -5_000


@pytest.mark.parametrize("params, status, words", [
    ({"res": 8}, 400, "res: layer 'gps-fixes' has resolutions [7, 9]"),
    ({"res": 16}, 400, "res: "),
    ({"start": "2024-05-03T00:00:00Z", "end": "2024-05-02T00:00:00Z"}, 400, "end: empty time range"),
    ({"bbox": "100,30,120,45", "res": 9}, 400, "bbox: the area would need about"),
    ({"bbox": "1,2,3"}, 400, "bbox: needs 4 numbers"),
    ({"bbox": "116.3,39.9,116.4,39.95", "bucket": "90min"}, 400, "bucket: '90min' must be a multiple"),
    ({"cells": "zzz"}, 400, "cells: "),
    ({"start": "yesterday"}, 400, "start: "),
    # issue 11: these were 500s (a ValueError and an OverflowError out of the bucket parser)
    ({"bucket": "xyz"}, 400, "bucket: 'xyz' is not a fixed duration"),
    ({"bucket": "0s"}, 400, "bucket: '0s' is not a fixed duration"),
    ({"bucket": "99999999999999999999d"}, 400, "bucket: '99999999999999999999d' is too long"),
    ({"compare_as_of": "yesterday"}, 400, "compare_as_of: 'yesterday'"),
])
def test_bad_layer_requests_get_clear_4xx(server: str, params: dict, status: int, words: str) -> None:
    r = httpx.get(server + "/layers/gps-fixes/cells", params=params, timeout=30)
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith(words)


def test_python_api_refuses_huge_areas_quickly(layer_store) -> None:
    store, _ = layer_store
    with pytest.raises(LayerError, match="limit"):
        Layers(store).query("gps-fixes", bbox=[-180, -80, 180, 80], res=9)


@pytest.mark.parametrize("bucket, words", [
    ("xyz", "not a fixed duration"), ("0s", "not a fixed duration"), ("1mo", "not a fixed duration"),
    ("99999999999999999999d", "too long"), ("3661d", "too long"), ("9" * 100_000 + "s", "too long"),
])
def test_bucket_errors_are_bad_input_naming_the_parameter(layer_store, bucket: str, words: str) -> None:
    """The parser itself refuses: a LayerError (BadInput, HTTP 400) starting with the parameter, raised before any
    value is read, never a ValueError or OverflowError (a 500) from timedelta."""
    from twin.errors import BadInput
    from twin.layers.values import bucket_seconds

    with pytest.raises(LayerError, match=f"^bucket: .*{words}") as err:
        bucket_seconds(bucket)
    assert isinstance(err.value, BadInput) and err.value.answer.http == 400
    with pytest.raises(LayerError, match=f"^bucket: .*{words}"):
        Layers(layer_store[0]).query("gps-fixes", res=7, bucket=bucket)
    assert bucket_seconds("3660d") == 3660 * 86400 and bucket_seconds("PT15M") == 900 and bucket_seconds(None) is None


def test_specs_are_remembered_per_version_and_new_versions_seen(tmp_path) -> None:
    """Layer specs are read once per (branch, version); a layer published later (a new version) shows up at once,
    and the older version still lists what it had."""
    store = Store.init(tmp_path / "store")
    layers = Layers(store)
    layers.publish(SPEC, _values(*_points(500, 5)))
    assert [s.name for s in layers.list()] == ["gps-fixes"]
    other = SPEC.model_copy(update={"name": "gps-fixes-2"})
    Layers(Store(store.root)).publish(other, _values(*_points(500, 6)))  # another writer
    assert [s.name for s in layers.list()] == ["gps-fixes", "gps-fixes-2"]
    assert [s.name for s in layers.list(as_of=1)] == ["gps-fixes"]
    assert layers.spec("gps-fixes-2").name == "gps-fixes-2"
    with pytest.raises(LayerNotFound, match="layers: gps-fixes$"):
        layers.spec("gps-fixes-2", as_of=1)
