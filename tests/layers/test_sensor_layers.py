"""Sensor time series as H3 layers, checked against a plain pandas reading of the UCI Beijing PRSA CSVs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from data_models import Aggregation
from tests.conftest import shared_data
from twin.layers.h3index import cells_to_parent
from twin.layers.sensors import station_cells, station_series, station_values
from twin.layers.values import VALUE_SCHEMA, aggregate
from twin.pipeline.ingest import ingest_paths
from twin.store import Query, Store

TZ8 = timezone(timedelta(hours=8))
BEIJING_MIDNIGHT = datetime(2013, 3, 1, tzinfo=TZ8)
N_ROWS, N_MISSING = 420_768, 8_739


@pytest.fixture(scope="module")
def prsa(tmp_path_factory: pytest.TempPathFactory):
    """The PRSA folder ingested once: (store, Sensor features, PM2.5 observations, raw pandas frame)."""
    folder = shared_data("sensors_beijing_air_quality")
    store = Store.init(tmp_path_factory.mktemp("prsa") / "store")
    ingest_paths(store, [folder], options={"tz": "+08:00"})
    sensors = store.features(query=Query(types=["Sensor"]))
    obs = store.read_table("observations", where="variable = ?", params=["pm25"])
    files = sorted(Path(folder, "PRSA_Data_20130301-20170228").glob("PRSA_Data_*.csv"))
    raw = pd.concat([pd.read_csv(f, usecols=["year", "month", "day", "hour", "PM2.5", "station"]) for f in files])
    local = pd.to_datetime(raw[["year", "month", "day", "hour"]])
    raw["t"] = (local - pd.Timedelta(hours=8)).dt.tz_localize("UTC")
    raw["local_day"] = local.dt.normalize()
    raw["sensor_id"] = "sensor-" + raw["station"].str.lower()
    return store, sensors, obs, raw


def _cell_station(sensors: list[dict], crs: str, res: int) -> dict[int, str]:
    sc = station_cells(sensors, crs, res)
    return dict(zip(sc["cell"].to_pylist(), sc["sensor_id"].to_pylist(), strict=True))


def test_raw_frame_matches_source_counts(prsa):
    _, sensors, obs, raw = prsa
    assert len(raw) == N_ROWS and raw["PM2.5"].isna().sum() == N_MISSING
    assert obs.num_rows == N_ROWS and obs["value"].null_count == N_MISSING
    assert len(sensors) == 12


@pytest.mark.parametrize("res", [7, 8])
def test_every_station_its_own_cell(prsa, res):
    store, sensors, obs, _ = prsa
    sc = station_cells(sensors, store.crs, res)
    assert sc.num_rows == 12 and len(set(sc["cell"].to_pylist())) == 12
    # all 420,768 rows belong to a located station
    assert pc.all(pc.is_in(obs["sensor_id"], value_set=sc["sensor_id"])).as_py()
    v = station_values(obs, sensors, store.crs, "pm25", res, 3600)
    assert v.schema == VALUE_SCHEMA
    assert set(v["cell"].to_pylist()) == set(sc["cell"].to_pylist())
    assert pc.sum(v["count"]).as_py() == N_ROWS - N_MISSING  # missing readings never count
    assert pc.all(pc.equal(v["res"], res)).as_py()
    per_hour = v.group_by("t").aggregate([("cell", "count")])["cell_count"].to_numpy()
    assert per_hour.max() <= 12


def test_res5_cells_shared_and_match_station_coordinates(prsa):
    store, sensors, _, _ = prsa
    st = pd.read_csv(shared_data("sensors_beijing_air_quality") / "stations.csv")
    expected = {f"sensor-{s.lower()}": h3.str_to_int(h3.latlng_to_cell(la, lo, 5))
                for s, la, lo in zip(st["station"], st["lat"], st["lon"], strict=True)}
    sc = station_cells(sensors, store.crs, 5)
    got = dict(zip(sc["sensor_id"].to_pylist(), sc["cell"].to_pylist(), strict=True))
    assert got == expected
    assert len(set(got.values())) < 12  # several urban stations share a res-5 cell
    urban = ["aotizhongxin", "dongsi", "guanyuan", "nongzhanguan", "tiantan", "wanliu", "wanshouxigong"]
    assert len({got[f"sensor-{u}"] for u in urban}) < len(urban)


def test_hourly_means_match_pandas(prsa):
    store, sensors, obs, raw = prsa
    v = station_values(obs, sensors, store.crs, "pm25", 8, 3600).to_pandas()
    v["sensor_id"] = v["cell"].map(_cell_station(sensors, store.crs, 8))
    ref = raw.dropna(subset=["PM2.5"]).groupby(["sensor_id", "t"])["PM2.5"].agg(["mean", "count"]).reset_index()
    m = ref.merge(v, on=["sensor_id", "t"], how="outer", indicator=True)
    assert (m["_merge"] == "both").all() and len(m) == N_ROWS - N_MISSING
    np.testing.assert_allclose(m["value"], m["mean"], rtol=1e-12)
    assert (m["count_x"] == m["count_y"]).all()


def test_daily_means_in_beijing_days_match_pandas(prsa):
    store, sensors, obs, raw = prsa
    v = station_values(obs, sensors, store.crs, "pm25", 8, 86400, origin=BEIJING_MIDNIGHT).to_pandas()
    v["sensor_id"] = v["cell"].map(_cell_station(sensors, store.crs, 8))
    # a bucket starts at Beijing midnight = 16:00 UTC the day before
    assert (v["t"].dt.hour == 16).all()
    v["local_day"] = (v["t"] + pd.Timedelta(hours=8)).dt.tz_localize(None)
    ref = raw.dropna(subset=["PM2.5"]).groupby(["sensor_id", "local_day"])["PM2.5"].agg(["mean", "count"])
    m = ref.reset_index().merge(v, on=["sensor_id", "local_day"], how="outer", indicator=True)
    assert (m["_merge"] == "both").all()
    np.testing.assert_allclose(m["value"], m["mean"], rtol=1e-12)
    assert (m["count_x"] == m["count_y"]).all()
    assert (m["local_day"] == pd.Timestamp("2016-02-29")).sum() == 12  # leap day present
    days_per_station = m.groupby("sensor_id")["local_day"].nunique()
    assert days_per_station.max() <= 1461  # 2013-03-01 .. 2017-02-28


def test_res5_cell_mean_is_count_weighted_station_mean(prsa):
    store, sensors, obs, _ = prsa
    fine = station_values(obs, sensors, store.crs, "pm25", 8, 3600)
    coarse = station_values(obs, sensors, store.crs, "pm25", 5, 3600)
    n5 = len(set(coarse["cell"].to_pylist()))
    per_hour = coarse.group_by("t").aggregate([("cell", "count")])["cell_count"].to_numpy()
    assert per_hour.max() <= n5 < 12
    # members of a res-5 cell: the stations whose own position falls in it (not the parent of their res-8 cell)
    member = {c8: c5 for c8, c5 in zip(station_cells(sensors, store.crs, 8)["cell"].to_pylist(),
                                       station_cells(sensors, store.crs, 5)["cell"].to_pylist(), strict=True)}
    f = fine.to_pandas()
    f["cell5"] = f["cell"].map(member)
    f["vc"] = f["value"] * f["count"]
    g = f.groupby(["cell5", "t"])[["vc", "count"]].sum()
    hand = (g["vc"] / g["count"]).rename("hand").reset_index().rename(columns={"cell5": "cell", "count": "n"})
    hand["n"] = g["count"].to_numpy()
    m = coarse.to_pandas().merge(hand, on=["cell", "t"], how="outer", indicator=True)
    assert (m["_merge"] == "both").all() and len(m) == coarse.num_rows
    np.testing.assert_allclose(m["value"], m["hand"], rtol=1e-12)
    assert (m["count"] == m["n"]).all()
    # the same through the values-table aggregation (count-weighted mean of the stations' cells moved to res 5)
    moved = fine.set_column(0, "cell", pa.array(f["cell5"].to_numpy(np.uint64)))
    moved = moved.set_column(1, "res", pa.array(np.full(fine.num_rows, 5, np.int8)))
    ref = aggregate(moved, Aggregation.mean)
    assert ref["cell"].equals(coarse["cell"]) and ref["t"].equals(coarse["t"])
    np.testing.assert_allclose(ref["value"].to_numpy(), coarse["value"].to_numpy(), rtol=1e-12)


def test_h3_parent_is_not_always_the_coarse_cell_of_a_point(prsa):
    """Dongsi's res-5 cell is not the parent of its res-8 cell: direct indexing and roll-up place it differently."""
    store, sensors, _, _ = prsa
    c5 = dict(zip(*station_cells(sensors, store.crs, 5).select(["sensor_id", "cell"]).to_pydict().values(),
                  strict=True))
    c8 = station_cells(sensors, store.crs, 8)
    parents = dict(zip(c8["sensor_id"].to_pylist(), cells_to_parent(c8["cell"].to_numpy(), 5).tolist(), strict=True))
    assert [s for s in c5 if c5[s] != parents[s]] == ["sensor-dongsi"]


def test_station_series_daily(prsa):
    store, sensors, obs, raw = prsa
    s = station_series(obs, sensors, store.crs, "pm25", 86400, origin=BEIJING_MIDNIGHT)
    assert s.column_names == ["sensor_id", "lat", "lng", "t", "value", "count"]
    d = s.filter(pc.equal(s["sensor_id"], "sensor-dongsi")).to_pandas()
    assert d["lat"].iloc[0] == pytest.approx(39.929, abs=1e-6) and d["lng"].iloc[0] == pytest.approx(116.417, abs=1e-6)
    ref = raw[raw["sensor_id"] == "sensor-dongsi"].dropna(subset=["PM2.5"])
    assert (d["value"] * d["count"]).sum() / d["count"].sum() == pytest.approx(ref["PM2.5"].mean(), rel=1e-9)
    assert ref["PM2.5"].mean() == pytest.approx(86.19, abs=0.01)  # SOURCE.md station mean


def _sensor(sid: str, x: float, y: float) -> dict:
    return {"id": sid, "type": "Sensor", "geometry": {"type": "Point", "coordinates": [x, y]}}


def test_missing_readings_never_count_as_zero():
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    times = [t0 + timedelta(minutes=m) for m in (0, 10, 20, 30, 70, 80)]
    obs = pa.table({
        "asset_id": ["a"] * 6,
        "sensor_id": ["sensor-a"] * 4 + ["sensor-ghost", "sensor-a"],
        "time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "variable": ["pm25"] * 6,
        "value": pa.array([10.0, None, 20.0, float("nan"), 99.0, None], pa.float64()),
        "unit": ["ug/m3"] * 6,
        "quality_flag": ["good"] * 6,
    })
    sensors = [_sensor("sensor-a", 116.4, 39.9)]
    v = station_values(obs, sensors, "EPSG:4326", "pm25", 8, 3600)
    assert v.num_rows == 1  # the second hour has only a missing reading; the unlocated sensor is left out
    assert v["value"][0].as_py() == 15.0 and v["count"][0].as_py() == 2 and v["weight"][0].as_py() == 2.0
    assert v["cell"][0].as_py() == h3.str_to_int(h3.latlng_to_cell(39.9, 116.4, 8))
    raw = station_values(obs, sensors, "EPSG:4326", "pm25", 8, None)
    assert raw.num_rows == 2 and raw["t"].to_pylist() == [times[0], times[2]]
    assert station_values(obs, sensors, "EPSG:4326", "no2", 8, 3600).num_rows == 0

