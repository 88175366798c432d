from datetime import UTC, datetime, timedelta, timezone

import pytest
import shapely
from pydantic import BaseModel, ValidationError
from shapely.geometry import LineString, MultiPolygon, Point, Polygon

from data_models import Classification, Geometry, Provenance, Quality, UtcDatetime

# ---- classification ----


def test_classification_order():
    C = Classification
    assert C.public < C.internal < C.confidential < C.secret
    assert C.secret > C.public and C.internal >= C.internal and C.internal <= C.confidential
    # rank order, not alphabetical ("confidential" < "internal" as strings)
    assert C.internal < C.confidential
    assert sorted([C.secret, C.public, C.confidential, C.internal]) == [
        C.public,
        C.internal,
        C.confidential,
        C.secret,
    ]
    assert max(C.internal, C.confidential) is C.confidential
    assert [c.rank for c in C] == [0, 1, 2, 3]
    assert C.internal < "secret"
    assert C.max_of("public", "Confidential", C.internal) is C.confidential
    assert C.max_of() is C.public
    assert C.confidential.allows("internal") and not C.internal.allows(C.secret)


def test_classification_parse():
    assert Classification.parse("Internal") is Classification.internal
    assert Classification.parse(" SECRET ") is Classification.secret
    assert Classification("Confidential") is Classification.confidential
    assert Classification.parse(Classification.public) is Classification.public
    assert Classification.internal == "internal" and str(Classification.internal) == "internal"
    with pytest.raises(ValueError):
        Classification.parse("top-secret")


def test_unknown_classification_rejected_in_models():
    class M(BaseModel):
        level: Classification

    assert M(level="Internal").level is Classification.internal
    assert M.model_validate_json('{"level": "SECRET"}').level is Classification.secret
    with pytest.raises(ValidationError, match="public', 'internal', 'confidential' or 'secret"):
        M(level="restricted")


# ---- time ----


class _T(BaseModel):
    t: UtcDatetime


def test_datetimes_normalised_to_utc():
    beijing = timezone(timedelta(hours=8))
    t = _T(t=datetime(2024, 5, 1, 8, 0, tzinfo=beijing)).t
    assert t == datetime(2024, 5, 1, 0, 0, tzinfo=UTC) and t.utcoffset() == timedelta(0)
    assert _T(t="2024-05-01T08:00:00+08:00").t.hour == 0
    assert (
        _T.model_validate_json('{"t": "2024-05-01T00:00:00Z"}').model_dump_json()
        == '{"t":"2024-05-01T00:00:00Z"}'
    )


def test_naive_datetime_rejected():
    with pytest.raises(ValidationError, match="timezone"):
        _T(t=datetime(2024, 5, 1))


# ---- provenance & quality ----


def test_provenance_and_quality():
    p = Provenance(source_asset_id="a1", method="lidar-p95", confidence=0.8, attribute="height")
    assert Provenance.model_validate_json(p.model_dump_json()) == p
    with pytest.raises(ValidationError):
        Provenance(source_asset_id="a1", method="m", confidence=1.5)
    with pytest.raises(ValidationError):
        Provenance(source_asset_id="a1", method="m", extra_field=1)
    q = Quality(
        point_density=10, rmse={"1.2": 0.5, "2.2": 0.3}, valid=False, errors=["203"], val3dity_version="2.4"
    )
    assert q.model_extra == {"val3dity_version": "2.4"}
    assert Quality.model_validate_json(q.model_dump_json()) == q
    with pytest.raises(ValidationError, match="LoD"):
        Quality(rmse={"lod2": 0.3})
    with pytest.raises(ValidationError):
        Quality(nodata_fraction=1.2)


# ---- geometry ----

SQUARE = [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]]
HOLE = [[1, 1], [1, 2], [2, 2], [2, 1], [1, 1]]


@pytest.mark.parametrize(
    "gtype, coords",
    [
        ("Point", [1, 2]),
        ("Point", [1, 2, 3]),
        ("LineString", [[0, 0], [1, 1]]),
        ("Polygon", SQUARE),
        ("Polygon", [SQUARE[0], HOLE]),
        ("MultiPoint", [[0, 0], [1, 1]]),
        (
            "MultiLineString",
            [
                [[0, 0], [1, 1]],
                [
                    [2, 2],
                    [
                        3,
                        3,
                    ],
                ],
            ],
        ),
        ("MultiPolygon", [SQUARE, [[[10, 10], [11, 10], [11, 11], [10, 10]]]]),
        ("Polygon", [[[0, 0, 5], [4, 0, 5], [4, 4, 6], [0, 0, 5]]]),
    ],
)
def test_geometry_valid_and_shapely_round_trip(gtype, coords):
    g = Geometry(type=gtype, coordinates=coords)
    assert Geometry.model_validate_json(g.model_dump_json()) == g
    s = g.to_shapely()
    assert s.geom_type == gtype
    back = Geometry.from_shapely(s)
    assert back == g
    assert shapely.geometry.shape(g).equals(s)  # __geo_interface__
    minx, miny, maxx, maxy = g.bounds
    assert (minx, miny, maxx, maxy) == pytest.approx(s.bounds)


def test_geometry_from_shapely_objects():
    poly = Polygon([(0, 0), (3, 0), (3, 3)], holes=[])
    g = Geometry.from_shapely(poly)
    assert g.type == "Polygon" and g.coordinates[0][0] == g.coordinates[0][-1]
    assert Geometry.from_shapely(Point(1, 2, 3)).has_z
    assert Geometry.from_shapely(LineString([(0, 0), (1, 1)])).type == "LineString"
    mp = MultiPolygon([poly, Polygon([(5, 5), (6, 5), (6, 6)])])
    assert Geometry.from_shapely(mp).to_shapely().equals(mp)
    with pytest.raises(ValueError, match="empty"):
        Geometry.from_shapely(Polygon())
    with pytest.raises(ValueError, match="unsupported"):
        Geometry.from_shapely(shapely.GeometryCollection([Point(0, 0)]))


def test_geometry_to_2d():
    g = Geometry(type="Polygon", coordinates=[[[0, 0, 5], [4, 0, 5], [4, 4, 6], [0, 0, 5]]])
    assert g.has_z and not g.to_2d().has_z
    assert g.to_2d().coordinates[0][1] == [4.0, 0.0]


@pytest.mark.parametrize(
    "gtype, coords, message",
    [
        ("Polygon", [[[0, 0], [4, 0], [4, 4], [0, 4]]], "not closed"),
        ("Polygon", [[[0, 0], [4, 0], [0, 0]]], "at least 4 positions"),
        ("Polygon", [], "at least one ring"),
        ("Point", [1, 2, 3, 4], "2 \\(x, y\\) or 3"),
        ("LineString", [[0, 0, 0, 1], [1, 1, 1, 1]], "2 \\(x, y\\) or 3"),
        ("LineString", [[0, 0]], "at least 2 positions"),
        ("Point", [1, "a"], "must be a number"),
        ("Point", [1, float("nan")], "finite"),
        ("Point", [True, 1], "must be a number"),
        ("LineString", [[0, 0], [1, 1, 1]], "mixes 2D and 3D"),
        ("MultiPolygon", [[[[0, 0], [1, 0], [1, 1], [0, 1]]]], "not closed"),
        ("Circle", [0, 0], "Input should be 'Point'"),
    ],
)
def test_geometry_invalid(gtype, coords, message):
    with pytest.raises(ValidationError, match=message):
        Geometry(type=gtype, coordinates=coords)


def test_geometry_error_names_the_position():
    with pytest.raises(ValidationError) as e:
        Geometry(type="MultiPolygon", coordinates=[SQUARE, [[[0, 0], [1, 0], [1, 1, 1, 1], [0, 0]]]])
    assert "coordinates[1][0][2]" in str(e.value)


def test_geometry_bbox_member_accepted_and_dropped():
    g = Geometry.model_validate({"type": "Point", "coordinates": [1, 2], "bbox": [1, 2, 1, 2]})
    assert g.model_dump() == {"type": "Point", "coordinates": [1.0, 2.0]}
    with pytest.raises(ValidationError, match="Extra inputs"):
        Geometry.model_validate({"type": "Point", "coordinates": [1, 2], "crs": "EPSG:4547"})
