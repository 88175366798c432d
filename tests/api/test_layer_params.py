"""Every malformed parameter of the layer routes is a 400 whose detail starts with the parameter's name (issue 11:
a bad ``bucket`` was a 500), unknown things are 404s naming theirs, and the OpenAPI document says what comes back."""

from __future__ import annotations

import h3
import numpy as np
import pytest
from fastapi.testclient import TestClient

from data_models import LayerSpec
from twin.api.app import create_app
from twin.layers.h3index import latlng_to_cells
from twin.layers.registry import Layers
from twin.layers.values import aggregate, make_values
from twin.store import Store

HOURLY = LayerSpec(name="fixes", variable="fixes", unit="1", aggregation="count", resolutions=[7, 9],
                   time_bucket="1h", lineage=["synthetic"])
STATIC = LayerSpec(name="trees", variable="trees", unit="1", aggregation="count", resolutions=[9])
CELLS = "/layers/fixes/cells"


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> TestClient:
    """A store with an hourly and a static layer (two versions), served in-process."""
    store = Store.init(tmp_path_factory.mktemp("layer_params") / "store")
    rng = np.random.default_rng(3)
    lat, lng = rng.uniform(39.90, 39.93, 2_000), rng.uniform(116.30, 116.34, 2_000)
    t = np.datetime64("2024-05-01T00:00") + (rng.integers(0, 48, 2_000) * 3600).astype("timedelta64[s]")
    cells = latlng_to_cells(lat, lng, 9)
    Layers(store).publish(HOURLY, aggregate(make_values(cells, 9, np.ones(2_000), t=t), "count", bucket_s=3600))
    Layers(store).publish(STATIC, aggregate(make_values(cells, 9, np.ones(2_000)), "count"))
    return TestClient(create_app(store.root), raise_server_exceptions=False)


BAD = [  # (path, params, the parameter the detail must start with, status)
    (CELLS, {"bucket": "xyz"}, "bucket", 400),
    (CELLS, {"bucket": "0s"}, "bucket", 400),
    (CELLS, {"bucket": "99999999999999999999d"}, "bucket", 400),
    (CELLS, {"bucket": "9" * 5000 + "w"}, "bucket", 400),
    (CELLS, {"bucket": "3661d"}, "bucket", 400),
    (CELLS, {"bucket": "1mo"}, "bucket", 400),
    (CELLS, {"bucket": ""}, "bucket", 400),
    (CELLS, {"bucket": "90min"}, "bucket", 400),
    ("/layers/trees/cells", {"bucket": "1d"}, "bucket", 400),
    (CELLS, {"compare_as_of": "yesterday"}, "compare_as_of", 400),
    (CELLS, {"compare_as_of": "-1"}, "compare_as_of", 400),
    (CELLS, {"compare_as_of": "9" * 30}, "compare_as_of", 400),
    (CELLS, {"compare_as_of": "999"}, "compare_as_of", 404),
    (CELLS, {"compare_branch": "nope"}, "compare_branch", 404),
    (CELLS, {"as_of": "last week"}, "as_of", 400),
    (CELLS, {"bbox": "1,2,3"}, "bbox", 400),
    (CELLS, {"bbox": "a,b,c,d"}, "bbox", 400),
    (CELLS, {"bbox": ""}, "bbox", 400),
    (CELLS, {"bbox": "200,0,210,1"}, "bbox", 400),
    (CELLS, {"bbox": "nan,0,1,1"}, "bbox", 400),
    (CELLS, {"bbox": "100,30,120,45", "res": 9}, "bbox", 400),
    (CELLS, {"bbox": "116.3,39.9,116.4,39.95", "cells": "8931aa42a6bffff"}, "bbox, cells", 400),
    (CELLS, {"res": 16}, "res", 400),
    (CELLS, {"res": -1}, "res", 400),
    (CELLS, {"res": "x"}, "res", 400),
    (CELLS, {"res": 8}, "res", 400),
    (CELLS, {"start": "yesterday"}, "start", 400),
    (CELLS, {"start": "2024-05-02T00:00:00Z", "end": "2024-05-01T00:00:00Z"}, "end", 400),
    (CELLS, {"format": "xml"}, "format", 400),
    (CELLS, {"polygon": "POLYGON ((1 2"}, "polygon", 400),
    (CELLS, {"polygon": '{"type": "Point", "coordinates": [116.3, 39.9]}'}, "polygon", 400),
    (CELLS, {"cells": "zzz"}, "cells", 400),
    (CELLS, {"cells": h3.latlng_to_cell(39.91, 116.31, 8)}, "cells", 400),
    ("/layers", {"as_of": "soon"}, "as_of", 400),
    ("/layers/fixes", {"as_of": "soon"}, "as_of", 400),
]


@pytest.mark.parametrize(("path", "params", "param", "status"), BAD,
                         ids=[f"{p}-{next(iter(q.items()))[0]}={str(next(iter(q.values())))[:20]}"
                              for p, q, _, _ in BAD])
def test_bad_parameter_is_named_in_a_4xx(api: TestClient, path: str, params: dict, param: str, status: int) -> None:
    r = api.get(path, params=params)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail.startswith(f"{param}: "), detail
    assert len(detail) < 400  # a message, not an echo of a huge parameter


def test_good_buckets_still_aggregate(api: TestClient) -> None:
    """The bounds refuse nothing sensible: daily and ISO buckets keep the total; a bucket equal to the layer's is
    the same rows."""
    hourly = api.get(CELLS, params={"res": 7}).json()
    total = sum(r["value"] for r in hourly)
    assert total == 2_000
    for bucket in ("1d", "P1D", "2d", "1w", "3660d"):
        rows = api.get(CELLS, params={"res": 7, "bucket": bucket})
        assert rows.status_code == 200, rows.text
        assert sum(r["value"] for r in rows.json()) == total
    assert len(api.get(CELLS, params={"res": 7, "bucket": "1d"}).json()) < len(hourly)
    assert api.get(CELLS, params={"res": 7, "bucket": "PT1H"}).json() == hourly


def test_comparison_names_its_version(api: TestClient) -> None:
    """compare_as_of resolves on its own: version 1 had only the hourly layer, so the difference to it is zero."""
    rows = api.get(CELLS, params={"res": 7, "compare_as_of": "1"}).json()
    assert rows and all(r["difference"] == 0 for r in rows)


def test_openapi_declares_media_types_models_and_errors(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    paths = doc["paths"]
    cells = paths["/layers/{name}/cells"]["get"]["responses"]
    assert set(cells["200"]["content"]) == {"application/json", "text/csv", "application/vnd.apache.parquet",
                                            "application/vnd.apache.arrow.stream", "application/geo+json"}
    rows = cells["200"]["content"]["application/json"]["schema"]
    assert rows["type"] == "array" and "$ref" in rows["items"]
    for path in ("/layers", "/layers/{name}", "/layers/{name}/cells"):
        responses = paths[path]["get"]["responses"]
        assert "422" not in responses, path
        for code in ("400", "404"):
            schema = responses[code]["content"]["application/json"]["schema"]
            schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema
            assert schema["properties"]["detail"]["type"] == "string" and schema["required"] == ["detail"]
