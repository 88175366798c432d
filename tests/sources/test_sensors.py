"""Sensor CSV reader: the real Beijing PRSA data against SOURCE.md and pandas, the demo files, options, bad input."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyproj
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_models import ObservationFlag, Sensor
from tests.conftest import shared_data
from twin.pipeline.ingest import ingest_paths
from twin.sources import ReadContext, SourceError, sensors
from twin.store import Query, Store

STORE_CRS = "EPSG:4548"
PRSA_COLUMNS = ["PM2.5", "PM10", "SO2", "NO2", "CO", "O3", "TEMP", "PRES", "DEWP", "RAIN", "WSPM"]
PRSA_VARIABLES = ["pm25", "pm10", "so2", "no2", "co", "o3", "temp", "pres", "dewp", "rain", "wspm"]


def ctx_for(path: Path, store_crs: str = STORE_CRS, crs: str | None = None, **options) -> ReadContext:
    return ReadContext(path=path, store_crs=store_crs, asset_id=f"src-{path.stem.lower()}", crs=crs,
                       options=options)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def fails(path: Path, *words: str, **kw) -> SourceError:
    """Reading ``path`` raises a SourceError that names the file and contains ``words``."""
    with pytest.raises(SourceError) as exc:
        sensors.read(ctx_for(path, **kw))
    msg = str(exc.value)
    assert exc.value.path == str(path) and msg.startswith(str(path))
    for w in words:
        assert w in msg, msg
    return exc.value


# ----------------------------------------------------------------------------------------------------------------
# Real data: UCI Beijing Multi-Site Air-Quality (PRSA)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prsa_dir() -> Path:
    return shared_data("sensors_beijing_air_quality")


@pytest.fixture(scope="module")
def prsa_files(prsa_dir) -> list[Path]:
    files = sorted(prsa_dir.glob("PRSA_Data_*/*.csv"))
    assert len(files) == 12
    return files


@pytest.fixture(scope="module")
def prsa(prsa_dir, prsa_files):
    """Our tables for the 12 files, and a plain pandas read of the same files as the reference."""
    opts = {"tz": "+08:00", "stations": str(prsa_dir / "stations.csv")}
    reads = [sensors.read(ctx_for(f, **opts)) for f in prsa_files]
    obs = pa.concat_tables([r.tables["observations"] for r in reads])
    text = pa.concat_tables([r.tables["observations_text"] for r in reads])
    ref = pd.concat([pd.read_csv(f, na_values=["NA"], keep_default_na=False) for f in prsa_files], ignore_index=True)
    return {"reads": reads, "obs": obs, "text": text, "ref": ref, "files": prsa_files, "options": opts}


def _per_variable(obs: pa.Table) -> dict[str, dict[str, float]]:
    g = obs.group_by("variable").aggregate([("value", "count"), ([], "count_all"), ("value", "mean")])
    return {v: {"n": n, "valid": c, "mean": m} for v, c, n, m in zip(
        g.column("variable").to_pylist(), g.column("value_count").to_pylist(), g.column("count_all").to_pylist(),
        g.column("value_mean").to_pylist(), strict=True)}


def test_prsa_every_reading_ingests_with_source_null_counts(prsa) -> None:
    obs, ref = prsa["obs"], prsa["ref"]
    assert len(ref) == 420_768
    assert obs.num_rows == 420_768 * 11
    stats = _per_variable(obs)
    assert sorted(stats) == sorted(PRSA_VARIABLES)
    assert all(s["n"] == 420_768 for s in stats.values())
    # SOURCE.md
    assert stats["pm25"]["n"] - stats["pm25"]["valid"] == 8_739
    assert stats["co"]["n"] - stats["co"]["valid"] == 20_701
    assert stats["o3"]["n"] - stats["o3"]["valid"] == 13_277
    # and every variable against pandas: nulls kept as nulls, never dropped or zero-filled
    for col, var in zip(PRSA_COLUMNS, PRSA_VARIABLES, strict=True):
        assert stats[var]["n"] - stats[var]["valid"] == int(ref[col].isna().sum()), var
        assert stats[var]["mean"] == pytest.approx(float(ref[col].mean()), rel=1e-12), var
    flags = pc.value_counts(obs.column("quality_flag")).to_pylist()
    assert {f["values"]: f["counts"] for f in flags}[ObservationFlag.missing.value] == int(ref[PRSA_COLUMNS].isna()
                                                                                          .sum().sum())
    units = dict(zip(*[c.to_pylist() for c in obs.group_by(["variable", "unit"]).aggregate([]).columns], strict=True))
    assert units["pm25"] == "ug/m3" and units["temp"] == "degC" and units["wspm"] == "m/s" and units["pres"] == "hPa"


def test_prsa_means_match_source(prsa) -> None:
    obs, ref = prsa["obs"], prsa["ref"]
    pm = obs.filter(pc.equal(obs.column("variable"), "pm25"))
    assert pc.mean(pm.column("value")).as_py() == pytest.approx(79.793, abs=5e-4)
    g = pm.group_by("sensor_id").aggregate([("value", "mean")])
    means = dict(zip(g.column("sensor_id").to_pylist(), g.column("value_mean").to_pylist(), strict=True))
    assert len(means) == 12
    assert round(means["sensor-dongsi"], 2) == 86.19
    assert round(means["sensor-dingling"], 2) == 65.99
    assert round(means["sensor-huairou"], 2) == 69.63
    expect = ref.groupby("station")["PM2.5"].mean()
    for station, m in expect.items():
        assert means[f"sensor-{station.lower()}"] == pytest.approx(m, rel=1e-12)


def test_prsa_times_are_utc_of_beijing_local_time(prsa) -> None:
    first = prsa["reads"][0]
    t = first.tables["observations"]
    assert t.schema.field("time").type == pa.timestamp("us", tz="UTC")
    assert t.column("time")[0].as_py() == datetime(2013, 2, 28, 16, tzinfo=UTC)
    assert first.info["start"] == "2013-02-28T16:00:00+00:00" and first.info["end"] == "2017-02-28T15:00:00+00:00"
    # every row of the file against pandas (local time minus 8 h)
    df = pd.read_csv(prsa["files"][0])
    local = pd.to_datetime(df[["year", "month", "day", "hour"]])
    pm = t.filter(pc.equal(t.column("variable"), "pm25"))
    ours = pm.column("time").to_numpy().astype("datetime64[us]")
    assert np.array_equal(ours, (local - pd.Timedelta(hours=8)).to_numpy().astype("datetime64[us]"))
    # 2016-02-29 (leap day), local day = 2016-02-28 16:00Z .. 2016-02-29 15:00Z, 24 hours at each of 12 stations
    obs = prsa["obs"]
    lo, hi = datetime(2016, 2, 28, 16, tzinfo=UTC), datetime(2016, 2, 29, 16, tzinfo=UTC)
    day = obs.filter(pc.and_(pc.greater_equal(obs.column("time"), pa.scalar(lo, pa.timestamp("us", tz="UTC"))),
                             pc.less(obs.column("time"), pa.scalar(hi, pa.timestamp("us", tz="UTC")))))
    assert day.num_rows == 24 * 12 * 11


def test_prsa_wind_direction_is_kept_as_text(prsa) -> None:
    text, ref = prsa["text"], prsa["ref"]
    assert set(text.column("variable").to_pylist()) == {"wd"}
    assert text.num_rows == 420_768
    assert text.column("value").null_count == int(ref["wd"].isna().sum())
    ours = {d["values"]: d["counts"] for d in pc.value_counts(text.column("value")).to_pylist() if d["values"]}
    assert ours == ref["wd"].value_counts().to_dict()
    assert prsa["reads"][0].info["text_variables"] == ["wd"]


def test_prsa_station_list_gives_twelve_sensors_in_place(prsa_dir) -> None:
    path = prsa_dir / "stations.csv"
    got = sensors.read(ctx_for(path, station_kind="air_quality"))
    ref = pd.read_csv(path)
    assert len(got.entities) == 12 and all(isinstance(e, Sensor) for e in got.entities)
    x, y = pyproj.Transformer.from_crs("EPSG:4326", STORE_CRS, always_xy=True).transform(ref["lon"], ref["lat"])
    by_id = {e.id: e for e in got.entities}
    for station, xi, yi in zip(ref["station"], x, y, strict=True):
        e = by_id[f"sensor-{station.lower()}"]
        assert e.geometry.coordinates == pytest.approx([xi, yi], abs=1e-6)
        assert e.station_kind == "air_quality" and e.attributes["station_id"] == station
        assert e.provenance[0].source_asset_id == "src-stations"
    assert by_id["sensor-dongsi"].attributes["name_zh"] == "东四"
    assert got.info["crs"] == "EPSG:4326" and got.info["bbox"] == pytest.approx([116.176, 39.878, 116.655, 40.328])


def test_prsa_through_the_store_and_reingest_is_a_no_op(prsa, prsa_dir, tmp_path) -> None:
    store = Store.init(tmp_path / "store", STORE_CRS)
    files = [*prsa["files"], prsa_dir / "stations.csv"]
    c = ingest_paths(store, files, options=prsa["options"])
    assert c is not None
    assert store.count(query=Query(types=["Sensor"])) == 12
    stored = store.read_table("observations")
    assert stored.num_rows == prsa["obs"].num_rows
    stats = _per_variable(stored)
    assert stats["pm25"]["n"] - stats["pm25"]["valid"] == 8_739
    assert stats["co"]["n"] - stats["co"]["valid"] == 20_701
    assert stats["pm25"]["mean"] == pytest.approx(79.793, abs=5e-4)
    dongsi = store.read_table("observations", where="variable = ? AND sensor_id = ?", params=["pm25", "sensor-dongsi"],
                              columns="avg(value) AS m")
    assert round(dongsi.column("m")[0].as_py(), 2) == 86.19
    assert store.read_table("observations_text", columns="count(*) AS n").column("n")[0].as_py() == 420_768
    head = store.head()
    assert ingest_paths(store, files, options=prsa["options"]) is None
    assert store.head() == head and store.read_table("observations", columns="count(*) AS n")["n"][0].as_py() \
        == prsa["obs"].num_rows


def test_prsa_needs_a_declared_zone(prsa_files) -> None:
    e = fails(prsa_files[0], "no zone", "tz=")
    assert "never guessed" in e.problem


def test_prsa_station_missing_from_the_location_file_is_refused(prsa_dir, prsa_files, tmp_path) -> None:
    rows = (prsa_dir / "stations.csv").read_text(encoding="utf-8").splitlines()
    partial = write(tmp_path / "stations_partial.csv", "\n".join(r for r in rows if not r.startswith("Dongsi")) + "\n")
    dongsi = next(f for f in prsa_files if "Dongsi" in f.name)
    fails(dongsi, "Dongsi", "no location", "stations_partial.csv", tz="+08:00", stations=str(partial))
    # the same file with the full list is fine, and its catalog extent is the station's position
    got = sensors.read(ctx_for(dongsi, tz="+08:00", stations=str(prsa_dir / "stations.csv")))
    assert got.info["bbox"] == pytest.approx([116.417, 39.929, 116.417, 39.929])


# ----------------------------------------------------------------------------------------------------------------
# The demo city's sensor files
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sensor_demo(city) -> Path:
    """The sources/sensors folder of the session's small demo city."""
    return city["dir"] / "sources" / "sensors"


def test_demo_stations(sensor_demo) -> None:
    path = sensor_demo / "stations.csv"
    got = sensors.read(ctx_for(path))
    ref = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert len(got.entities) == len(ref)
    by_id = {e.id: e for e in got.entities}
    for _, r in ref.iterrows():
        e = by_id[f"sensor-{r['station_id'].lower()}"]
        assert e.station_kind == r["kind"] and e.name == r["name"]
        assert e.geometry.coordinates == pytest.approx([float(r["x_epsg4548"]), float(r["y_epsg4548"])], abs=1e-6)
        assert e.attributes["lon_wgs84"] == pytest.approx(float(r["lon_wgs84"]), abs=1e-6)
        assert e.attributes.get("road_id") == (r["road_id"] or None)
    assert got.info["crs"] == "EPSG:4548"


@pytest.mark.parametrize("name", ["air_quality_hourly.csv", "traffic_counts_hourly.csv"])
def test_demo_series_match_pandas(sensor_demo, name) -> None:
    path = sensor_demo / name
    got = sensors.read(ctx_for(path))
    obs = got.tables["observations"]
    ref = pd.read_csv(path, dtype={"station_id": str})
    value_cols = [c for c in ref.columns if c not in ("timestamp", "station_id", "road_id")]
    assert obs.num_rows == len(ref) * len(value_cols)
    for col in value_cols:
        var, unit = sensors.variable_name(col)
        part = obs.filter(pc.equal(obs.column("variable"), var))
        assert part.num_rows == len(ref)
        assert part.column("value").null_count == int(ref[col].isna().sum()) > 0  # gaps stay null
        assert set(part.column("unit").to_pylist()) == {unit}
        np.testing.assert_array_equal(part.column("value").to_numpy(zero_copy_only=False), ref[col].to_numpy())
        times = pd.to_datetime(ref["timestamp"], utc=True).dt.tz_convert(None).to_numpy().astype("datetime64[us]")
        np.testing.assert_array_equal(part.column("time").to_numpy().astype("datetime64[us]"), times)
        assert part.column("sensor_id").to_pylist() == ["sensor-" + s.lower() for s in ref["station_id"]]
    if name.startswith("traffic"):
        assert got.info["station_attributes"] == ["road_id"] and got.info["variables"] == {"vehicles": "1/h"}
    else:
        assert got.info["variables"] == {"pm25": "ug/m3", "pm10": "ug/m3", "no2": "ug/m3"}


def test_demo_folder_ingests_without_options(sensor_demo, tmp_path) -> None:
    store = Store.init(tmp_path / "store", STORE_CRS)
    assert ingest_paths(store, [sensor_demo]) is not None
    n_stations = len(pd.read_csv(sensor_demo / "stations.csv"))
    assert store.count(query=Query(types=["Sensor"])) == n_stations
    rows = sum(len(pd.read_csv(sensor_demo / n)) * k for n, k in
               (("air_quality_hourly.csv", 3), ("traffic_counts_hourly.csv", 1)))
    assert store.read_table("observations", columns="count(*) AS n")["n"][0].as_py() == rows
    # and with the station list declared, every series station must be located (they are)
    store2 = Store.init(tmp_path / "store2", STORE_CRS)
    assert ingest_paths(store2, [sensor_demo], options={"stations": str(sensor_demo / "stations.csv")}) is not None


# ----------------------------------------------------------------------------------------------------------------
# Formats and options
# ----------------------------------------------------------------------------------------------------------------


def test_long_format_with_units_text_and_mapping(tmp_path) -> None:
    path = write(tmp_path / "long.csv",
                 "when;site;param;reading;uom\n"
                 "2024-05-27 08:00;S 1;PM2.5;12.5;µg/m³\n"
                 "2024-05-27 08:00;S 1;wind dir;NNW;\n"
                 "2024-05-27 09:00;S 1;PM2.5;;µg/m³\n"
                 "2024-05-27 09:00;S-2;Temp;21;°C\n")
    got = sensors.read(ctx_for(path, columns="time=when,station=site,variable=param,value=reading,unit=uom",
                               tz="Asia/Shanghai"))
    obs, text = got.tables["observations"], got.tables["observations_text"]
    assert obs.column("variable").to_pylist() == ["pm25", "pm25", "temp"]
    assert obs.column("value").to_pylist() == [12.5, None, 21.0]
    assert obs.column("unit").to_pylist() == ["ug/m3", "ug/m3", "degC"]
    assert obs.column("quality_flag").to_pylist() == ["good", "missing", "good"]
    assert obs.column("sensor_id").to_pylist() == ["sensor-s-1", "sensor-s-1", "sensor-s-2"]
    assert obs.column("time")[0].as_py() == datetime(2024, 5, 27, 0, tzinfo=UTC)
    assert text.column("variable").to_pylist() == ["wind_dir"] and text.column("value").to_pylist() == ["NNW"]
    models = sensors.to_observations(obs)
    assert models[1].value is None and models[1].quality_flag is ObservationFlag.missing
    assert models[0].time == datetime(2024, 5, 27, 0, tzinfo=UTC)


def test_wide_series_with_coordinates_gives_sensors_with_variables(tmp_path) -> None:
    path = tmp_path / "aq.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("date,time,site,longitude,latitude,Temp [°C],no2_ppb,-999 col\n"
                "2024-01-02,10:00:00Z,A,116.40,39.90,1.5,20,-999\n"
                "2024-01-02,11:00:00Z,A,116.40,39.90,-999,22,3\n"
                "2024-01-02,10:00:00Z,B,116.45,39.95,2.5,18,4\n")
    got = sensors.read(ctx_for(path, na="-999", units={"-999 col": "mm"}, station_kind="weather"))
    assert got.info["columns"]["time"] == "date+time"
    by_id = {e.id: e for e in got.entities}
    assert set(by_id) == {"sensor-a", "sensor-b"}
    a = by_id["sensor-a"]
    assert a.units == {"temp": "degC", "no2": "ppb", "999_col": "mm"} and a.station_kind == "weather"
    x, y = pyproj.Transformer.from_crs("EPSG:4326", STORE_CRS, always_xy=True).transform(116.40, 39.90)
    assert a.geometry.coordinates == pytest.approx([x, y], abs=1e-6)
    obs = got.tables["observations"]
    temp = obs.filter(pc.equal(obs.column("variable"), "temp"))
    assert temp.column("value").to_pylist() == [1.5, None, 2.5]  # -999 declared missing: null, not a number
    assert temp.column("time")[1].as_py() == datetime(2024, 1, 2, 11, tzinfo=UTC)


def test_zone_spellings_agree_and_dst_gaps_are_refused(tmp_path) -> None:
    path = write(tmp_path / "s.csv", "timestamp,station_id,v\n2024-05-27 08:00:00,A,1\n")
    times = {tz: sensors.read(ctx_for(path, tz=tz)).tables["observations"].column("time")[0].as_py()
             for tz in ("+08:00", "+0800", "UTC+8", "Asia/Shanghai")}
    assert set(times.values()) == {datetime(2024, 5, 27, 0, tzinfo=UTC)}
    gap = write(tmp_path / "gap.csv", "timestamp,station_id,v\n2021-03-28 02:30:00,A,1\n")
    fails(gap, "Europe/Berlin", tz="Europe/Berlin")
    fails(path, "unknown time zone", tz="Mars/Olympus")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)), min_size=1,
                max_size=20),
       st.integers(min_value=-12 * 4, max_value=14 * 4))
def test_times_with_offsets_parse_to_the_same_instant(naive, quarter_hours) -> None:
    tz = timezone(timedelta(minutes=15 * quarter_hours))
    aware = [d.replace(tzinfo=tz) for d in naive]
    text = pa.array([d.isoformat() for d in aware])
    got = sensors.parse_times(Path("x.csv"), text, None)
    assert got.to_pylist() == [d.astimezone(UTC) for d in aware]


def test_time_format_and_epoch(tmp_path) -> None:
    fmt = write(tmp_path / "fmt.csv", "time,station,v\n27/05/2024 13:00,A,1\n")
    got = sensors.read(ctx_for(fmt, tz="UTC", time_format="%d/%m/%Y %H:%M"))
    assert got.tables["observations"].column("time")[0].as_py() == datetime(2024, 5, 27, 13, tzinfo=UTC)
    epoch = write(tmp_path / "epoch.csv", "time,station,v\n1716814800,A,1\n")
    assert sensors.read(ctx_for(epoch)).tables["observations"].column("time")[0].as_py() == \
        datetime(2024, 5, 27, 13, tzinfo=UTC)


def test_variables_option_selects_and_renames(tmp_path) -> None:
    path = write(tmp_path / "w.csv", "timestamp,station_id,PM2.5,junk\n2024-05-27T00:00:00Z,A,5,7\n")
    got = sensors.read(ctx_for(path, variables="PM2.5=pm2_5_fine", units="pm2_5_fine=ug/m3"))
    obs = got.tables["observations"]
    assert obs.column("variable").to_pylist() == ["pm2_5_fine"] and obs.column("unit").to_pylist() == ["ug/m3"]


# ----------------------------------------------------------------------------------------------------------------
# Bad input: SourceError naming the file and the problem
# ----------------------------------------------------------------------------------------------------------------


def test_empty_and_header_only_files(tmp_path) -> None:
    fails(write(tmp_path / "empty.csv", ""), "empty")
    fails(write(tmp_path / "blank.csv", "\n\n"), "empty")
    fails(write(tmp_path / "header.csv", "timestamp,station_id,pm25\n"), "no rows")


def test_missing_columns(tmp_path) -> None:
    fails(write(tmp_path / "nostation.csv", "timestamp,pm25\n2024-05-27T00:00:00Z,5\n"), "no station column")
    fails(write(tmp_path / "fixes.csv", "lat,lng,datetime,uid\n39.9,116.4,2008-10-23T05:53:05Z,1\n"),
          "--kind trajectories")
    fails(write(tmp_path / "nothing.csv", "a,b\n1,2\n"), "neither a station list", "a, b")
    fails(write(tmp_path / "map.csv", "timestamp,station_id,pm25\n2024-05-27T00:00:00Z,A,5\n"), "'when'",
          "not in the file", columns="time=when")
    fails(write(tmp_path / "role.csv", "timestamp,station_id,pm25\n2024-05-27T00:00:00Z,A,5\n"), "unknown role",
          columns="colour=pm25")
    fails(write(tmp_path / "half.csv", "timestamp,station_id,variable\n2024-05-27T00:00:00Z,A,pm25\n"),
          "value column")
    fails(write(tmp_path / "lonly.csv", "station_id,lon\nA,116.4\n"), "both columns")
    fails(write(tmp_path / "novars.csv", "timestamp,station_id\n2024-05-27T00:00:00Z,A\n"), "no variable columns")
    fails(write(tmp_path / "nodata.csv", "timestamp,station_id,pm25\n2024-05-27T00:00:00Z,,5\n"), "no station id")


def test_unparseable_and_unzoned_times(tmp_path) -> None:
    fails(write(tmp_path / "bad.csv", "timestamp,station_id,v\n2024-05-27T00:00:00Z,A,1\nyesterday,A,2\n"),
          "'yesterday'", "cannot parse")
    fails(write(tmp_path / "naive.csv", "timestamp,station_id,v\n2024-05-27 00:00:00,A,1\n"), "no zone")
    fails(write(tmp_path / "mixed.csv", "timestamp,station_id,v\n2024-05-27T00:00:00+08:00,A,1\n"
                                        "2024-05-27T01:00:00,A,1\n"), "some times carry a zone")
    fails(write(tmp_path / "feb30.csv", "year,month,day,hour,station,v\n2015,2,30,0,A,1\n"), "2015-02-30",
          "not a date", tz="+08:00")
    fails(write(tmp_path / "hour.csv", "year,month,day,hour,station,v\n2015,2,3,25,A,1\n"), "hour 25", tz="+08:00")
    fails(write(tmp_path / "notime.csv", "timestamp,station_id,v\n,A,1\n"), "no time")


def test_bad_coordinates(tmp_path) -> None:
    head = "station_id,lon,lat\n"
    fails(write(tmp_path / "west.csv", head + "A,116.4,39.9\nB,-116.4,39.9\n"), "outside the area of use",
          "wrong hemisphere", "(B)")
    fails(write(tmp_path / "south.csv", head + "A,116.4,-39.9\n"), "outside the area of use")
    fails(write(tmp_path / "swapped.csv", head + "A,39.9,116.4\n"), "not valid longitude/latitude")
    fails(write(tmp_path / "text.csv", head + "A,east,39.9\n"), "'east' is not a number")
    fails(write(tmp_path / "nocrs.csv", "station_id,x,y\nA,448000,4418000\n"), "without a CRS", "--crs")
    ok = sensors.read(ctx_for(tmp_path / "nocrs.csv", crs="EPSG:4548"))
    assert ok.entities[0].geometry.coordinates == [448000.0, 4418000.0]
    fails(write(tmp_path / "disagree.csv", "station_id,lon,lat,x_epsg4548,y_epsg4548\nA,116.4,39.9,448000,4417000\n"),
          "disagree")
    fails(write(tmp_path / "dup.csv", head + "A,116.4,39.9\nA,116.5,39.9\n"), "'A' is listed 2 times")
    fails(write(tmp_path / "clash.csv", head + "A 1,116.4,39.9\na-1,116.5,39.9\n"), "both become 'sensor-a-1'")
    fails(write(tmp_path / "hole.csv", head + "A,116.4,39.9\nB,,39.9\n"), "'B' has no usable coordinates")


def test_json_that_is_not_sensorthings(tmp_path) -> None:
    fails(write(tmp_path / "f.json", '{"type": "FeatureCollection", "features": []}'), "SensorThings")


def test_station_option_must_name_a_file(tmp_path) -> None:
    path = write(tmp_path / "s.csv", "timestamp,station_id,v\n2024-05-27T00:00:00Z,A,1\n")
    fails(path, "no file 'nowhere.csv'", stations="nowhere.csv")
    fails(path, "not name=value", columns="time")


def test_series_mapping_does_not_break_the_station_list_it_names(tmp_path) -> None:
    stations = write(tmp_path / "where.csv", "station,lon,lat\nS1,116.40,39.90\n")
    series = write(tmp_path / "obs.csv", "ts,site,pm25_ugm3\n2024-05-27T00:00:00+08:00,S1,5\n")
    opts = {"columns": "time=ts,station=site", "stations": str(stations)}
    got = sensors.read(ctx_for(series, **opts))
    assert got.info["stations_file"] == str(stations) and got.info["bbox"] == [116.40, 39.90, 116.40, 39.90]
    assert [e.id for e in sensors.read(ctx_for(stations, **opts)).entities] == ["sensor-s1"]
