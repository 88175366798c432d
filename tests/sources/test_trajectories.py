"""GPS trajectories: the GeoLife sample against SOURCE.md and pandas, options, GCJ-02, bad input."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyproj
import pytest

from tests.conftest import shared_data
from twin.geo import crs as crs_mod
from twin.pipeline.ingest import ingest_paths
from twin.sources import ReadContext, SourceError, trajectories
from twin.store import Store

STORE_CRS = "EPSG:4548"


def ctx_for(path: Path, crs: str | None = None, **options) -> ReadContext:
    return ReadContext(path=path, store_crs=STORE_CRS, asset_id="src-traj", crs=crs, options=options)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def fails(path: Path, *words: str, **kw) -> None:
    with pytest.raises(SourceError) as exc:
        trajectories.read(ctx_for(path, **kw))
    assert exc.value.path == str(path) and str(exc.value).startswith(str(path))
    for w in words:
        assert w in str(exc.value), str(exc.value)


@pytest.fixture(scope="module")
def geolife():
    path = shared_data("mobility_geolife_beijing") / "geolife_sample.txt.gz"
    got = trajectories.read(ctx_for(path, tz="UTC"))
    ref = pd.read_csv(path, dtype={"uid": str})
    return path, got, ref


def test_geolife_counts_and_time_range_match_source(geolife) -> None:
    _, got, ref = geolife
    t = got.tables["trajectories"]
    assert t.schema == trajectories.TRAJECTORIES
    assert t.num_rows == 217_653 == len(ref)
    counts = {d["values"]: d["counts"] for d in pc.value_counts(t.column("track_id")).to_pylist()}
    assert counts == {"001": 108_607, "005": 109_046} == ref["uid"].value_counts().to_dict()
    lo, hi = pc.min_max(t.column("time")).values()
    assert lo.as_py() == datetime(2008, 10, 23, 5, 53, 5, tzinfo=UTC)
    assert hi.as_py() == datetime(2009, 3, 19, 5, 46, 37, tzinfo=UTC)
    lon, lat = t.column("lon"), t.column("lat")
    inside = pc.and_(pc.and_(pc.greater_equal(lon, 115.9), pc.less_equal(lon, 116.9)),
                     pc.and_(pc.greater_equal(lat, 39.6), pc.less_equal(lat, 40.4)))
    assert pc.sum(inside).as_py() == 209_876
    assert got.info["fixes_per_track"] == {"001": 108_607, "005": 109_046}
    assert got.info["crs"] == "EPSG:4326" and got.info["tracks"] == 2


def test_geolife_rows_equal_pandas_and_pyproj(geolife) -> None:
    _, got, ref = geolife
    t = got.tables["trajectories"]
    ref = ref.assign(time=pd.to_datetime(ref["datetime"])).sort_values(["uid", "time"], kind="stable")
    np.testing.assert_array_equal(t.column("lat").to_numpy(), ref["lat"].to_numpy())
    np.testing.assert_array_equal(t.column("lon").to_numpy(), ref["lng"].to_numpy())
    np.testing.assert_array_equal(t.column("time").to_numpy().astype("datetime64[us]"),
                                  ref["time"].to_numpy().astype("datetime64[us]"))
    x, y = pyproj.Transformer.from_crs("EPSG:4326", STORE_CRS, always_xy=True).transform(ref["lng"], ref["lat"])
    np.testing.assert_allclose(t.column("x").to_numpy(), x, atol=1e-6)
    np.testing.assert_allclose(t.column("y").to_numpy(), y, atol=1e-6)


def test_geolife_needs_a_declared_zone(geolife) -> None:
    path, _, _ = geolife
    fails(path, "no zone", "tz=")


def test_through_ingest_with_kind_trajectories(geolife, tmp_path) -> None:
    path, got, _ = geolife
    store = Store.init(tmp_path / "store", STORE_CRS)
    assert ingest_paths(store, [path], kind="trajectories", options={"tz": "UTC"}) is not None
    stored = store.read_table("trajectories")
    assert stored.num_rows == got.tables["trajectories"].num_rows
    by_user = {d["values"]: d["counts"] for d in pc.value_counts(stored.column("track_id")).to_pylist()}
    assert by_user == {"001": 108_607, "005": 109_046}
    assert ingest_paths(store, [path], kind="trajectories", options={"tz": "UTC"}) is None


def test_mapping_xy_input_and_default_track(tmp_path) -> None:
    path = tmp_path / "walk.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("E;N;stamp\n448100;4418900;2024-05-27 08:00:05\n448000;4418800;2024-05-27 08:00:00\n"
                "448200;4419000;2024-05-27 08:00:10\n")
    got = trajectories.read(ctx_for(path, crs="EPSG:4548", columns="x=E,y=N,time=stamp", tz="Asia/Shanghai"))
    t = got.tables["trajectories"]
    assert t.column("track_id").to_pylist() == ["walk"] * 3
    assert t.column("x").to_pylist() == [448000.0, 448100.0, 448200.0]  # sorted by time
    assert t.column("time")[0].as_py() == datetime(2024, 5, 27, 0, 0, 0, tzinfo=UTC)
    lon, lat = pyproj.Transformer.from_crs(STORE_CRS, "EPSG:4326", always_xy=True).transform(448000.0, 4418800.0)
    assert t.column("lon")[0].as_py() == pytest.approx(lon, abs=1e-9)
    assert t.column("lat")[0].as_py() == pytest.approx(lat, abs=1e-9)
    named = trajectories.read(ctx_for(path, crs="EPSG:4548", columns="x=E,y=N,time=stamp", tz="+08:00",
                                      track="bus-7"))
    assert set(named.tables["trajectories"].column("track_id").to_pylist()) == {"bus-7"}


def test_missing_positions_are_kept_as_null(tmp_path) -> None:
    path = write(tmp_path / "gaps.csv",
                 "lat,lon,time,uid\n39.9,116.4,2008-10-23T05:53:05Z,1\n,,2008-10-23T05:53:10Z,1\n")
    t = trajectories.read(ctx_for(path)).tables["trajectories"]
    assert t.num_rows == 2 and t.column("lat").null_count == 1 and t.column("x").null_count == 1


def test_gcj02_input(tmp_path) -> None:
    path = write(tmp_path / "gcj.csv", "lat,lng,datetime,uid\n39.990464,116.327061,2008-10-23T05:53:05Z,1\n")
    if not hasattr(crs_mod, "gcj02_to_wgs84"):
        fails(path, "coords='gcj02'", "not supported", coords="gcj02")
        return
    got = trajectories.read(ctx_for(path, coords="gcj02")).tables["trajectories"]
    lon, lat = (np.asarray(v, float) for v in crs_mod.gcj02_to_wgs84(np.array([116.327061]), np.array([39.990464])))
    assert got.column("lon")[0].as_py() == pytest.approx(float(lon[0]), abs=1e-9)
    assert got.column("lat")[0].as_py() == pytest.approx(float(lat[0]), abs=1e-9)
    # the GCJ-02 shift in Beijing is a few hundred metres
    moved = pyproj.Geod(ellps="WGS84").inv(116.327061, 39.990464, float(lon[0]), float(lat[0]))[2]
    assert 100 < moved < 1000


def test_bad_trajectory_files(tmp_path) -> None:
    fails(write(tmp_path / "empty.csv", ""), "empty")
    fails(write(tmp_path / "nocoords.csv", "time,uid\n2008-10-23T05:53:05Z,1\n"), "no coordinate columns")
    fails(write(tmp_path / "notime.csv", "lat,lon,uid\n39.9,116.4,1\n"), "no time column")
    fails(write(tmp_path / "badtime.csv", "lat,lon,time,uid\n39.9,116.4,23 Oct 2008,1\n"), "'23 Oct 2008'")
    west = "lat,lon,time,uid\n" + "".join(f"39.9,-116.4,2008-10-23T05:53:{s:02d}Z,1\n" for s in range(5))
    fails(write(tmp_path / "west.csv", west), "outside the area of use", "wrong hemisphere")
    fails(write(tmp_path / "swap.csv", "lat,lon,time,uid\n116.4,39.9,2008-10-23T05:53:05Z,1\n"),
          "not valid longitude/latitude")
    fails(write(tmp_path / "utm.csv", "lat,lon,time,uid\n39.9,116.4,2008-10-23T05:53:05Z,1\n"), "coords='utm'",
          "not supported", coords="utm")
    fails(write(tmp_path / "noid.csv", "lat,lon,time,uid\n39.9,116.4,2008-10-23T05:53:05Z,\n"), "no track id")


def test_a_few_far_away_fixes_are_kept(tmp_path) -> None:
    rows = [f"39.9,116.4,2008-10-23T05:53:{s:02d}Z,1\n" for s in range(9)] + ["22.5,114.0,2008-10-24T00:00:00Z,1\n"]
    t = trajectories.read(ctx_for(write(tmp_path / "trip.csv", "lat,lon,time,uid\n" + "".join(rows))))
    tab = t.tables["trajectories"]
    assert tab.num_rows == 10 and pc.min(tab.column("lat")).as_py() == 22.5
    assert isinstance(tab.column("x"), pa.ChunkedArray) and tab.column("x").null_count == 0
