"""Change detection between the demo's two image dates and against the cadastre, scored with truth/changes.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
import shapely

from data_models import Building
from twin.fusion.change import ChangeCandidate, apply_changes, detect_changes, model_changes
from twin.sources import SourceError

T1 = datetime(2023, 5, 12, 2, 48, tzinfo=UTC)  # 10:48 +08:00
T2 = datetime(2024, 6, 3, 2, 48, tzinfo=UTC)
T_CADASTRE = datetime(2024, 6, 1, tzinfo=UTC)
T_LIDAR = datetime(2024, 6, 12, 2, tzinfo=UTC)
A1, A2 = "src-imagery-bj-sat-2023-05-12-tif", "src-imagery-bj-sat-2024-06-03-tif"


@pytest.fixture(scope="module")
def demo(rs_city) -> dict:
    src = rs_city["sources"]
    truth = json.loads((rs_city["truth"] / "changes.json").read_text())
    cadastre = json.loads((src / "cadastre" / "buildings.geojson").read_text())["features"]
    return {
        "before": src / "imagery" / "bj_sat_2023-05-12.tif",
        "after": src / "imagery" / "bj_sat_2024-06-03.tif",
        "las": sorted((src / "lidar").glob("*.laz")),
        "truth": [(k, c["id"], shapely.geometry.shape(c["geometry"])) for k in ("built", "demolished")
                  for c in truth[k]],
        "footprints": [(f["id"], shapely.geometry.shape(f["geometry"])) for f in cadastre],
        "cadastre": cadastre,
    }


def evaluate(candidates: list[ChangeCandidate], truth) -> tuple[float, float, set[str]]:
    """(recall, precision, ids found): a candidate finds a true change of its kind when it covers at least half of
    that footprint and its centroid lies within 10 m of it."""
    found: set[str] = set()
    tp = 0
    for c in candidates:
        hits = [i for k, i, g in truth if k == c.kind and c.geometry.intersection(g).area >= 0.5 * g.area
                and c.geometry.centroid.distance(g) <= 10.0]
        found.update(hits)
        tp += bool(hits)
    return len(found) / len(truth), tp / len(candidates) if candidates else 0.0, found


@pytest.fixture(scope="module")
def fused(demo) -> list[ChangeCandidate]:
    return detect_changes(demo["before"], demo["after"], T1, T2, footprints=demo["footprints"],
                          footprints_time=T_CADASTRE, las_paths=demo["las"], lidar_time=T_LIDAR)


def test_two_dates_recall_and_precision(demo, fused) -> None:
    recall, precision, _ = evaluate(fused, demo["truth"])
    only_img = detect_changes(demo["before"], demo["after"], T1, T2)
    r_img, p_img, _ = evaluate(only_img, demo["truth"])
    print(f"fused: recall {recall:.3f} precision {precision:.3f} ({len(fused)} candidates, {len(demo['truth'])} "
          f"true changes); imagery only: recall {r_img:.3f} precision {p_img:.3f}")
    assert recall >= 0.8 and precision >= 0.8
    for kind in ("built", "demolished"):
        truth_k = [t for t in demo["truth"] if t[0] == kind]
        assert evaluate([c for c in fused if c.kind == kind], truth_k)[0] >= 0.75, kind
    for c in fused:
        assert c.t_before == T1 and c.t_after == T2 and 0 < c.confidence <= 1
        assert c.geometry.is_valid and c.geometry.area >= 30


def test_built_candidates_are_matched_to_their_footprints(demo, fused) -> None:
    true_built = {i for k, i, _ in demo["truth"] if k == "built"}
    matched = {c.building_id for c in fused if c.kind == "built" and c.building_id}
    assert len(matched & true_built) >= 0.8 * len(true_built)
    assert matched <= true_built
    # demolished buildings are gone from the cadastre: nothing to match
    assert all(c.building_id is None for c in fused if c.kind == "demolished")
    # LiDAR of 2024 saw the built ones: their regions are mostly building points, the demolished ones not at all
    assert all(c.evidence["lidar_building"] > 0.5 for c in fused if c.kind == "built")
    assert all(c.evidence["lidar_building"] < 0.1 for c in fused if c.kind == "demolished")


def test_model_vs_images(demo) -> None:
    # the 2023 image against the 2024 cadastre: the new footprints stand on bare sites -> built between the two
    old = model_changes(demo["before"], T1, demo["footprints"], T_CADASTRE)
    true_built = {i for k, i, _ in demo["truth"] if k == "built"}
    from_fp = [c for c in old if c.building_id]
    assert {c.building_id for c in from_fp} == true_built
    assert all(c.kind == "built" and c.t_before == T1 and c.t_after == T_CADASTRE for c in from_fp)
    recall, precision, _ = evaluate(old, demo["truth"])
    print(f"2023 image vs cadastre: recall {recall:.3f} precision {precision:.3f}")
    assert precision >= 0.8
    # the 2024 image (and LiDAR) against the cadastre of two days before: nothing has changed
    new = model_changes(demo["after"], T2, demo["footprints"], T_CADASTRE, las_paths=demo["las"],
                        lidar_time=T_LIDAR)
    assert len(new) <= 1, [(c.kind, c.building_id, c.area_m2) for c in new]


def test_apply_changes_sets_valid_time_and_provenance(demo, fused) -> None:
    buildings = [{"id": f["id"], "geometry": f["geometry"], "use": f["properties"]["use"],
                  "_store": {"version": 1}} for f in demo["cadastre"]]
    out = apply_changes(buildings, fused, before_asset_id=A1, after_asset_id=A2)
    assert all(isinstance(b, Building) for b in out)
    built = [b for b in out if b.id in {c.building_id for c in fused if c.kind == "built"}]
    assert built
    for b in built:
        assert b.valid_from == T2 and b.attributes["valid_from_earliest"] == T1.isoformat()
        assert not b.is_valid_at(T1) and b.is_valid_at(T2)
        assert {p.source_asset_id for p in b.provenance} == {A1, A2}
        assert all(p.attribute == "valid_from" and 0 < p.confidence <= 1 for p in b.provenance)
        assert b.use is not None  # the rest of the record is kept
    gone = [b for b in out if b.id.startswith("bldg-demolished-")]
    assert len(gone) == sum(c.kind == "demolished" for c in fused)
    for b in gone:
        assert b.valid_to == T2 and b.attributes["valid_to_earliest"] == T1.isoformat()
        assert b.is_valid_at(T1) and not b.is_valid_at(T2)
    # a rebuild gives the same ids
    again = apply_changes(buildings, fused, before_asset_id=A1, after_asset_id=A2)
    assert sorted(b.id for b in again) == sorted(b.id for b in out)
    # a demolished candidate matched to a model building closes that building's valid time
    fid, geom = demo["footprints"][0]
    cand = ChangeCandidate(kind="demolished", geometry=geom, t_before=T1, t_after=T2, confidence=0.9,
                           building_id=fid)
    (closed,) = apply_changes(buildings, [cand], before_asset_id=A1, after_asset_id=A2)
    assert closed.id == fid and closed.valid_to == T2 and closed.valid_from is None


def test_bad_inputs(demo, tmp_path) -> None:
    with pytest.raises(ValueError, match="earlier"):
        detect_changes(demo["before"], demo["after"], T2, T1)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(demo["before"].read_bytes()[:300_000])
    with pytest.raises(SourceError) as err:
        detect_changes(cut, demo["after"], T1, T2)
    assert str(cut) in str(err.value)
    with pytest.raises(ValueError, match="same time"):
        model_changes(demo["after"], T2, demo["footprints"], T2)
    # no change at all: an image against itself
    assert detect_changes(demo["after"], demo["after"], T1, T2) == []
    assert np.isfinite([c.confidence for c in detect_changes(demo["before"], demo["after"], T1, T2)]).all()
