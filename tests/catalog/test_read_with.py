"""What an asset was read with: parameters and digest decide whether re-ingesting the same bytes is a no-op."""

from __future__ import annotations

from datetime import UTC, datetime

from twin.catalog.assets import read_with, same_reading


def _params(**kw):
    base = {"crs": "EPSG:4548", "acquired": None, "classification": "public", "options": {"tz": "UTC", "bands": "r"}}
    return read_with("vector", **{**base, **kw})


def test_equal_parameters_give_equal_digests_and_any_change_another() -> None:
    a = _params()
    assert a == _params(options={"bands": "r", "tz": "UTC"}) == _params(crs=" EPSG:4548 ")
    assert a["options"] == {"bands": "r", "tz": "UTC"} and a["reader"] == "vector" and len(a["digest"]) == 32
    changed = [_params(crs="EPSG:2436"), _params(classification="internal"), _params(options={"tz": "UTC"}),
               _params(acquired=datetime(2024, 5, 1, tzinfo=UTC)), _params(licence="CC0-1.0"),
               _params(producer="survey"), read_with("osm", crs="EPSG:4548", acquired=None, classification="public",
                                                      options={"tz": "UTC", "bands": "r"})]
    assert len({c["digest"] for c in changed} | {a["digest"]}) == len(changed) + 1


def test_same_reading_needs_the_same_bytes_and_the_same_parameters() -> None:
    p = _params()
    asset = {"checksum": "ab" * 32, "properties": {"read_with": p}}
    assert same_reading(asset, "ab" * 32, p)
    assert not same_reading(asset, "cd" * 32, p)
    assert not same_reading(asset, "ab" * 32, _params(crs="EPSG:2436"))
    assert not same_reading(None, "ab" * 32, p)
    # an asset stored before the parameters were recorded: read again, once
    assert not same_reading({"checksum": "ab" * 32, "properties": {}}, "ab" * 32, p)
