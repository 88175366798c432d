"""Candidate outlines from LiDAR building points without a footprint, scored on the demo city's ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely

from data_models import Building
from twin.fusion.outlines import candidate_outlines


@pytest.fixture(scope="module")
def outline_city(city) -> dict:
    """The session's small demo city: cadastre footprints, their truth shapes and the LiDAR tiles."""
    out = city["dir"]
    feats = json.loads((out / "sources/cadastre/buildings.geojson").read_text())["features"]
    truth = {f["properties"]["id"]: f["properties"]
             for f in json.loads((out / "truth/buildings.geojson").read_text())["features"]}
    ids = [f["properties"]["cadastre_id"] for f in feats]
    return {"ids": ids, "geoms": [shapely.geometry.shape(f["geometry"]) for f in feats],
            "shape": [truth[i]["shape"] for i in ids], "las": sorted((out / "sources/lidar").glob("*.laz"))}


def _removed(city: dict) -> list[int]:
    """Ten footprints of every shape the city has (L, U, courtyard, podium+tower, split, rectangles)."""
    by: dict[str, list[int]] = {}
    for i, s in enumerate(city["shape"]):
        by.setdefault(s, []).append(i)
    picks = [i for s in sorted(by) for i in by[s][:2]]
    picks += [i for i in by["rect"][10::37] if i not in picks]
    return picks[:10]


def _iou(a: shapely.Geometry, b: shapely.Geometry) -> float:
    return shapely.intersection(a, b).area / shapely.union(a, b).area


def test_removed_footprints_are_recovered(outline_city: dict) -> None:
    rm = _removed(outline_city)
    assert len(rm) == 10 and {"courtyard", "U", "L"} <= {outline_city["shape"][i] for i in rm}
    keep = [g for i, g in enumerate(outline_city["geoms"]) if i not in rm]
    cands = candidate_outlines(outline_city["las"], keep)
    assert all(isinstance(c, Building) for c in cands)
    shapes = [shapely.geometry.shape(c.geometry.model_dump()) for c in cands]
    assert len(cands) == 10, [c.id for c in cands]  # one per removed building, nothing else
    matched = set()
    for i in rm:
        true = outline_city["geoms"][i]
        score, k = max((_iou(true, s), k) for k, s in enumerate(shapes))
        assert score >= 0.7, (outline_city["ids"][i], outline_city["shape"][i], score)
        matched.add(k)
    assert len(matched) == 10
    # no candidate where a footprint exists
    tree = shapely.STRtree(keep)
    for s in shapes:
        assert sum(shapely.intersection(s, keep[j]).area for j in tree.query(s)) < 0.5
    for c, s in zip(cands, shapes, strict=True):
        cx, cy = s.centroid.x, s.centroid.y
        assert c.id == f"bldg-lidar-{round(cx)}-{round(cy)}"
        assert c.attributes["candidate"] is True and c.height is None
        assert c.provenance[0].confidence < 0.5 and c.provenance[0].source_asset_id.startswith("src-lidar-als-2024")
        assert 5.0 < c.quality.point_density < 20.0  # the demo flies ~10 pulses/m²
        assert s.is_valid and c.quality.valid


def test_no_candidates_when_every_building_has_a_footprint_and_ids_are_stable(outline_city: dict,
                                                                                tmp_path: Path) -> None:
    assert candidate_outlines(outline_city["las"], outline_city["geoms"]) == []
    keep = outline_city["geoms"][1:]
    a = candidate_outlines(outline_city["las"], keep)
    b = candidate_outlines(list(reversed(outline_city["las"])), keep, min_area=10.0)
    assert [c.id for c in a] == [c.id for c in b] and len(a) == 1
    assert _iou(shapely.geometry.shape(a[0].geometry.model_dump()), outline_city["geoms"][0]) >= 0.7
