"""Interpolated surfaces: IDW and ordinary kriging on synthetic fields and on Beijing daily PM2.5 (leave-one-out)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import h3
import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import shared_data
from twin.layers.interpolate import (
    Variogram,
    cross_validate,
    fit_variogram,
    idw_predict,
    interpolate_surface,
    kriging_predict,
    local_xy,
    samples_matrix,
    station_spread,
)
from twin.layers.sensors import station_series
from twin.layers.values import VALUE_SCHEMA
from twin.pipeline.ingest import ingest_paths
from twin.store import Query, Store

TZ8 = timezone(timedelta(hours=8))
URBAN = ["aotizhongxin", "dongsi", "guanyuan", "gucheng", "nongzhanguan", "tiantan", "wanliu", "wanshouxigong"]


def _samples(lat, lng, values, t0=datetime(2020, 1, 1, tzinfo=UTC)) -> pa.Table:
    """A samples table from station positions and a (stations × buckets) matrix, NaN = no row."""
    values = np.asarray(values, float)
    n, nt = values.shape
    si, ti = np.nonzero(np.isfinite(values))
    times = np.array([np.datetime64(t0.replace(tzinfo=None), "us") + np.timedelta64(k, "D") for k in range(nt)])
    return pa.table({"sensor_id": pa.array([f"s{i:02d}" for i in si]), "lat": np.asarray(lat)[si],
                     "lng": np.asarray(lng)[si], "t": pa.array(times[ti], pa.timestamp("us", tz="UTC")),
                     "value": values[si, ti]})


def _area_cells(res: int = 8) -> np.ndarray:
    poly = h3.LatLngPoly([(39.86, 116.16), (39.86, 116.48), (40.0, 116.48), (40.0, 116.16)])
    return np.array([h3.str_to_int(c) for c in h3.polygon_to_cells(poly, res)], np.uint64)


@pytest.fixture(scope="module")
def urban_jan2015(tmp_path_factory: pytest.TempPathFactory):
    """Daily PM2.5 means (Beijing days) of the 8 urban stations in January 2015, through ingest + station_series."""
    store = Store.init(tmp_path_factory.mktemp("prsa") / "store")
    ingest_paths(store, [shared_data("sensors_beijing_air_quality")], options={"tz": "+08:00"})
    sensors = [s for s in store.features(query=Query(types=["Sensor"])) if s["id"].removeprefix("sensor-") in URBAN]
    obs = store.read_table("observations", where="variable = 'pm25' AND time >= ? AND time < ?",
                           params=[datetime(2015, 1, 1, tzinfo=TZ8), datetime(2015, 2, 1, tzinfo=TZ8)])
    return station_series(obs, sensors, store.crs, "pm25", 86400, origin=datetime(2013, 3, 1, tzinfo=TZ8))


def test_leave_one_out_urban_stations(urban_jan2015):
    ids, lat, lng, mat, times = samples_matrix(urban_jan2015)
    assert len(ids) == 8 and mat.shape == (8, 31)
    xy = local_xy(lat, lng, lat.mean(), lng.mean())
    spatial_mad = station_spread(mat)  # |station − mean of the stations that day|, averaged
    overall_mad = float(np.nanmean(np.abs(mat - np.nanmean(mat))))  # spread of all station-day values
    base = cross_validate(xy, mat, "idw", power=0.0)  # mean of the other stations
    idw = cross_validate(xy, mat, "idw", power=2.0)
    krig = cross_validate(xy, mat, "kriging")
    print(f"Jan 2015 daily PM2.5, 8 urban stations: spatial MAD {spatial_mad:.2f}, overall MAD {overall_mad:.2f}, "
          f"mean-of-others MAE {base['mae']:.2f}; IDW MAE {idw['mae']:.2f} RMSE {idw['rmse']:.2f}; "
          f"kriging MAE {krig['mae']:.2f} RMSE {krig['rmse']:.2f}")
    assert idw["n"] == krig["n"] == int(np.isfinite(mat).sum())
    for r in (idw, krig):
        assert r["mae"] < 0.25 * overall_mad  # much smaller than the station-to-station spread of values
        assert r["mae"] < base["mae"]  # distance weighting beats the plain mean of the other stations
        assert r["rmse"] >= r["mae"]
    assert krig["mae"] < spatial_mad  # and kriging beats the day's own spatial spread


def test_surface_over_urban_area(urban_jan2015):
    cells = _area_cells(8)
    for method in ("idw", "kriging"):
        s = interpolate_surface(urban_jan2015, cells, method)
        assert s.values.schema == VALUE_SCHEMA
        assert s.values.num_rows == len(cells) * 31
        assert set(s.values["res"].to_pylist()) == {8}
        md = s.metadata
        assert md["method"] == ("idw" if method == "idw" else "ordinary_kriging")
        assert md["n_stations"] == 8 and md["n_buckets"] == 31 and md["cv_mae"] > 0 and md["cv_rmse"] >= md["cv_mae"]
        json.dumps(md)  # storable in a layer description / lineage
        ids, lat, lng, mat, _ = samples_matrix(urban_jan2015)
        v = s.values["value"].to_numpy()
        if method == "idw":  # a weighted mean stays within the day's station range
            assert v.min() >= np.nanmin(mat) - 1e-9 and v.max() <= np.nanmax(mat) + 1e-9
            assert s.variance is None
        else:
            assert "variogram" in md["params"] and md["params"]["variogram"]["range_m"] > 0
            assert s.variance is not None and s.variance.num_rows == s.values.num_rows
            assert (s.variance["value"].to_numpy() >= 0).all()


def test_idw_exact_at_stations():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 10_000, (9, 2))
    vals = rng.normal(50, 10, (9, 6))
    vals[2, 1] = vals[5, 3] = np.nan
    for params in ({}, {"power": 1.0}, {"max_neighbours": 3}, {"radius_m": 2_000.0}):
        est = idw_predict(xy, vals, xy, **params)
        np.testing.assert_allclose(est[np.isfinite(vals)], vals[np.isfinite(vals)], rtol=0, atol=1e-12)
    # a station in the centre of a cell gives that cell its value exactly, through the whole pipeline
    cells = _area_cells(8)[:40]
    lat, lng = zip(*(h3.cell_to_latlng(h3.int_to_str(int(c))) for c in cells[[3, 17, 30]]), strict=True)
    s = interpolate_surface(_samples(lat, lng, vals[:3, :2]), cells, "idw", cv=False)
    got = {(c, t.day): v for c, t, v in zip(s.values["cell"].to_pylist(), s.values["t"].to_pylist(),
                                             s.values["value"].to_pylist(), strict=True)}
    for k, c in enumerate(cells[[3, 17, 30]]):
        assert got[(int(c), 1)] == pytest.approx(vals[k, 0], abs=1e-9)
        if np.isfinite(vals[k, 1]):
            assert got[(int(c), 2)] == pytest.approx(vals[k, 1], abs=1e-9)
        else:  # no reading that day: interpolated from the other stations
            assert min(vals[0, 1], vals[1, 1]) <= got[(int(c), 2)] <= max(vals[0, 1], vals[1, 1])
    assert s.metadata["cv_mae"] is None


def test_idw_neighbours_and_radius():
    xy = np.array([[0.0, 0.0], [1000.0, 0.0], [5000.0, 0.0]])
    vals = np.array([[1.0], [2.0], [9.0]])
    tgt = np.array([[100.0, 0.0], [20_000.0, 0.0]])
    assert idw_predict(xy, vals, tgt, max_neighbours=1)[:, 0].tolist() == [1.0, 9.0]
    est = idw_predict(xy, vals, tgt, radius_m=1_500.0)[:, 0]
    assert 1.0 < est[0] < 2.0 and np.isnan(est[1])  # nothing within the radius: no estimate
    w = np.array([1 / 100**2, 1 / 900**2, 1 / 4900**2])
    assert idw_predict(xy, vals, tgt[:1])[0, 0] == pytest.approx((w @ vals[:, 0]) / w.sum())


def test_constant_field_returns_constant():
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 20_000, (7, 2))
    tgt = rng.uniform(-5_000, 25_000, (50, 2))
    vals = np.full((7, 4), 42.0)
    vals[1, 2] = np.nan
    np.testing.assert_allclose(idw_predict(xy, vals, tgt), 42.0, rtol=1e-12)
    vg = fit_variogram(xy, vals)
    assert vg.sill == 0
    est, var = kriging_predict(xy, vals, tgt, vg)
    np.testing.assert_allclose(est, 42.0, rtol=1e-9)
    np.testing.assert_allclose(var, 0.0, atol=1e-9)
    # with any variogram the kriging weights sum to one
    est, _ = kriging_predict(xy, vals, tgt, Variogram("spherical", 1.0, 5.0, 8_000.0), relative=False)
    np.testing.assert_allclose(est, 42.0, rtol=1e-9)
    cells = _area_cells(8)[:30]
    ll = [h3.cell_to_latlng(h3.int_to_str(int(c))) for c in _area_cells(8)[100:107]]
    lat, lng = np.array(ll).T
    for method in ("idw", "kriging"):
        s = interpolate_surface(_samples(lat, lng, vals), cells, method)
        np.testing.assert_allclose(s.values["value"].to_numpy(), 42.0, rtol=1e-9)
        assert s.metadata["cv_mae"] == pytest.approx(0.0, abs=1e-9)


def _gaussian_field(xy: np.ndarray, vg: Variogram, n_real: int, rng) -> np.ndarray:
    d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    cov = vg.sill - vg(d)
    return np.linalg.cholesky(cov + 1e-9 * np.eye(len(xy))) @ rng.standard_normal((len(xy), n_real))


def test_variogram_fit_recovers_parameters_and_variance_is_non_negative():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 30_000, (60, 2))
    true = Variogram("exponential", 0.5, 4.0, 12_000.0)
    vals = 100.0 + _gaussian_field(xy, true, 300, rng)
    vals[rng.random(vals.shape) < 0.1] = np.nan
    for model in ("exponential", "spherical"):
        vg = fit_variogram(xy, vals, model=model, n_lags=12, relative=False)
        assert vg.sill == pytest.approx(true.sill, rel=0.2)
        if model == "exponential":
            assert vg.range_m == pytest.approx(true.range_m, rel=0.35)
            assert vg.nugget < 1.5
    vg = fit_variogram(xy, vals, relative=False)
    tgt = np.vstack([xy[:5], rng.uniform(-10_000, 40_000, (200, 2))])
    est, var = kriging_predict(xy, vals, tgt, vg, relative=False)
    assert np.isfinite(est).all() and (var >= 0).all()
    ok = np.isfinite(vals[:5])
    np.testing.assert_allclose(est[:5][ok], vals[:5][ok], atol=1e-6)  # exact at the data points
    assert var[:5][ok].max() < 1e-6
    assert var[5:].max() <= vg.sill * 1.5  # bounded by about the sill far from data
    # leave-one-out: kriging with the fitted variogram beats the mean of the others on a correlated field
    idw = cross_validate(xy, vals, "idw")
    krig = cross_validate(xy, vals, "kriging", relative=False, n_lags=12)
    base = cross_validate(xy, vals, "idw", power=0.0)
    assert krig["mae"] < base["mae"] and idw["mae"] < base["mae"]


def test_errors():
    with pytest.raises(ValueError, match="unknown interpolation method"):
        interpolate_surface(_samples([39.9], [116.4], [[1.0]]), _area_cells(8)[:3], "spline")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same H3 resolution"):
        cells = np.concatenate([_area_cells(8)[:2], _area_cells(7)[:2]])
        interpolate_surface(_samples([39.9], [116.4], [[1.0]]), cells)
    with pytest.raises(ValueError, match="variogram model"):
        fit_variogram(np.zeros((2, 2)), np.ones((2, 1)), model="gaussian")  # type: ignore[arg-type]
