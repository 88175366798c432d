"""Classifications flow from the delivery to what is derived from it: a feature's own `classification` (never
below the file's), and a layer carries the highest classification of what it is computed from."""

from __future__ import annotations

import json

import pytest

from tests.helpers_geojson import write_buildings_geojson
from twin.errors import BadInput
from twin.pipeline.build import build
from twin.pipeline.ingest import ingest_paths
from twin.store import LAYERS, Query, Store


def _mark(path, levels: dict[int, str]):
    doc = json.loads(path.read_text())
    for i, level in levels.items():
        doc["features"][i]["properties"]["classification"] = level
    doc["features"][0]["properties"]["height"] = 12.0
    for f in doc["features"]:
        f["properties"].setdefault("height", 9.0)
    path.write_text(json.dumps(doc))
    return path


def test_feature_classification_and_layers_carry_the_max_of_their_inputs(tmp_path) -> None:
    src = _mark(write_buildings_geojson(tmp_path / "b.geojson", 6), {1: "Confidential", 2: "public"})
    s = Store.init(tmp_path / "s")
    ingest_paths(s, [src], classification="internal")
    levels = sorted(b["classification"] for b in s.features(query=Query(types=["Building"])))
    assert levels == ["confidential"] + ["internal"] * 5  # the file's level is a floor, a feature may raise it
    build(s, only=["layers"])
    specs = {x["id"]: x for x in s.features(query=Query(collection=LAYERS))}
    assert specs and all(x["classification"] == "confidential" for x in specs.values()), \
        {k: v["classification"] for k, v in specs.items()}


def test_a_bad_feature_classification_names_the_feature_and_changes_nothing(tmp_path) -> None:
    src = _mark(write_buildings_geojson(tmp_path / "b.geojson", 3), {2: "top-secret"})
    s = Store.init(tmp_path / "s")
    with pytest.raises(BadInput, match=r"feature 2 .*classification 'top-secret' is not one of public, internal"):
        ingest_paths(s, [src])
    assert s.head() == 0
