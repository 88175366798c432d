"""twin.sim.sun against references it did not write: the NREL SPA's published worked example and reference-program
output, the SPA paper's Julian-day table, USGS Landsat sun angles, the NREL SPA calculator's transit times
(../shared/data/sun, see its SOURCE.md), pvlib's independent SPA implementation, and, for the standard days, the
Chinese-calendar library lunar-python and PyEphem's solstices."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from tests.conftest import shared_data
from twin.sim import sun

BEIJING = (39.9, 116.4)


@pytest.fixture(scope="module")
def ref() -> dict:
    return json.loads((shared_data("sun") / "nrel_spa_reference.json").read_text())


def _decimals(x: float) -> int:
    text = repr(float(x))
    return len(text.split(".")[1]) if "." in text and "e" not in text else 10


def _published_tol(x: float) -> float:
    """The published precision of a value: 1.5 units of its last printed digit (numpy's assert_almost_equal rule)."""
    return 1.5 * 10.0 ** -_decimals(x)


def _spa_case(ref) -> tuple[np.datetime64, dict]:
    i = ref["spa_tester_case"]["inputs"]
    t = np.datetime64(i["utc_datetime"].rstrip("Z"))
    kw = dict(lat=i["latitude"], lon=i["longitude"], elevation_m=i["elevation_m"], pressure_hpa=i["pressure_mbar"],
              temperature_c=i["temperature_C"], delta_t=i["delta_t_s"], atmos_refract=i["atmos_refract"])
    return t, kw


def _wrap(d):
    return (np.asarray(d) + 180.0) % 360.0 - 180.0


# ------------------------------------------------------------------------------------- NREL's published numbers

def test_spa_tester_zenith_and_azimuth(ref):
    t, kw = _spa_case(ref)
    exp = ref["spa_tester_case"]["expected_outputs"]
    z, a, e = sun.solar_position(t, **kw)
    assert abs(z[0] - exp["topocentric_zenith"]) < 1e-4
    assert abs(a[0] - exp["topocentric_azimuth_eastward_from_north"]) < 1e-4
    assert abs(e[0] - (90.0 - exp["topocentric_zenith"])) < 1e-4
    # the same instant inside a day of 1-minute steps goes through the interpolated slow terms
    day = np.arange(t - np.timedelta64(720, "m"), t + np.timedelta64(721, "m"), np.timedelta64(1, "m"))
    z2, a2, _ = sun.solar_position(day, **kw)
    assert abs(z2[720] - exp["topocentric_zenith"]) < 1e-4
    assert abs(a2[720] - exp["topocentric_azimuth_eastward_from_north"]) < 1e-4


# reference name -> name in sun.spa()
INTERMEDIATES = {
    "JD": "JD", "JC": "JC", "JDE": "JDE", "JCE": "JCE", "JME": "JME", "L": "L", "B": "B", "R": "R",
    "Theta": "Theta", "beta": "beta", "dPsi": "dPsi", "dEpsilon": "dEpsilon", "epsilon0_arcsec": "epsilon0",
    "epsilon": "epsilon", "dTau": "dTau", "lambda_apparent_sun_longitude": "lambda", "nu0": "nu0", "nu": "nu",
    "alpha": "alpha", "delta": "delta", "H": "H", "xi": "xi", "dAlpha": "dAlpha", "alpha_prime": "alpha_prime",
    "delta_prime": "delta_prime", "H_prime": "H_prime", "e0_elevation_no_refraction": "e0",
    "delta_e_refraction": "delta_e", "e_apparent_elevation": "e", "theta_topocentric_zenith": "zenith",
    "Gamma_astronomers_azimuth": "Gamma", "Phi_azimuth": "azimuth",
}


@pytest.mark.parametrize("exact", [True, False])
def test_spa_intermediates_within_published_precision(ref, exact):
    t, kw = _spa_case(ref)
    published = ref["spa_intermediate_values"]
    if exact:
        got = sun.spa(t, **kw)
        at = 0
    else:  # the interpolated path: the instant among 3 days of 10-minute steps
        times = np.concatenate([[t], t + np.arange(1, 433) * np.timedelta64(10, "m")])
        got = sun.spa(times, **kw)
        at = 0
    # the printed JC, JCE and JME were computed from the printed (rounded) JD: they carry its ±0.5e-6 d
    jd_tol = _published_tol(published["JD"])
    carried = {"JC": jd_tol / 36525, "JCE": jd_tol / 36525, "JME": jd_tol / 365250}
    for ref_name, name in INTERMEDIATES.items():
        value = float(np.asarray(got[name])[..., at])
        tol = max(_published_tol(published[ref_name]), carried.get(ref_name, 0.0))
        assert abs(value - published[ref_name]) <= tol, (ref_name, value)
    for k in range(5):
        x = published[f"X{k}"]
        assert abs(got["x"][k][at] - x) <= _published_tol(x), f"X{k}"


def test_multi_day_golden(ref):
    m = ref["multi_day_golden_co"]
    for row in m["rows"]:
        t = np.datetime64(row["local_mst"]) + np.timedelta64(7, "h")  # MST = UTC-7
        kw = dict(lat=m["latitude"], lon=m["longitude"], elevation_m=m["elevation_m"], pressure_hpa=820,
                  temperature_c=11, delta_t=67)
        z, a, e = sun.solar_position(t, **kw)
        _, _, e0 = sun.solar_position(t, refraction=False, **kw)
        assert abs(z[0] - row["apparent_zenith"]) < 1e-4
        assert abs(a[0] - row["azimuth"]) < 1e-4
        assert abs(e[0] - row["apparent_elevation"]) < 1e-4
        assert abs(e0[0] - row["elevation"]) < 1e-4


def test_julian_day_table(ref):
    cases = ref["julian_day_table"]["cases"]
    for (y, mo, d, h, mi, s), jd in cases:
        assert abs(sun.julian_day_calendar(y, mo, d, h, mi, s) - jd) < 1e-6, (y, mo, d)
    # numpy's datetime64 is the proleptic Gregorian calendar: it agrees from the switch (1582-10-15) on
    for (y, mo, d, h, mi, s), jd in cases:
        if y >= 1583:
            t = np.datetime64(f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}")
            assert abs(sun.julian_day(t)[0] - jd) < 1e-6
    # the calendar switch itself: 1582-10-04 (Julian) is followed by 1582-10-15 (Gregorian)
    assert sun.julian_day_calendar(1582, 10, 15) - sun.julian_day_calendar(1582, 10, 4) == 1.0


def test_landsat_scene_sun_angles(ref):
    ls = ref["real_world_crosscheck_landsat5"]
    lat, lon = ls["scene_center_lat_lon_mean_of_corners"]
    t = np.datetime64(ls["scene_center_utc"].rstrip("Z"))
    z, a, e = sun.solar_position(t, lat, lon, refraction=False)  # USGS gives the geometric elevation
    assert abs(a[0] - ls["sun_azimuth"]) < ls["suggested_tolerance_deg"]
    assert abs(e[0] - ls["sun_elevation"]) < ls["suggested_tolerance_deg"]


def test_true_solar_noon_is_the_published_transit(ref):
    """12:00 true solar time is the sun's transit: the NREL SPA calculator's transit times (rounded to the second,
    delta_t 65 s as pvlib reproduces them)."""
    for case in ref["sunrise_sunset_transit"]["cases"]:
        tz_h = 0 if case["tz"] == "UTC" else -7
        day = case.get("date_local_mst") or case["date_utc"]
        noon = sun.clock_from_true_solar(day, 12.0, case["longitude"], delta_t=65)[0]
        hh, mm, ss = (int(v) for v in case["transit"].split(":"))
        published = np.datetime64(day) + np.timedelta64((hh - tz_h) * 3600 + mm * 60 + ss, "s")
        assert abs((noon - published) / np.timedelta64(1, "s")) <= 1.0, case


# --------------------------------------------------------------------------------------- pvlib, independently

def test_against_pvlib_random_times_and_places():
    pd = pytest.importorskip("pandas")
    solarposition = pytest.importorskip("pvlib.solarposition")
    rng = np.random.default_rng(20260120)
    n = 500
    lo, hi = (np.datetime64(s, "s").astype(np.int64) for s in ("1950-01-01", "2050-12-31T23:59:59"))
    times = rng.integers(lo, hi, n).astype("datetime64[s]")
    lat = rng.uniform(-90, 90, n)
    lat[:40] = rng.choice([-1.0, 1.0], 40) * rng.uniform(80, 90, 40)  # polar days and nights
    lat[40:42] = (-90.0, 90.0)
    lon = rng.uniform(-180, 180, n)
    elev = rng.uniform(-100, 5000, n)
    hpa = rng.uniform(500, 1050, n)
    temp = rng.uniform(-40, 45, n)
    worst = np.zeros(5)
    for k in range(n):
        z, a, e = sun.solar_position(times[k], lat[k], lon[k], elev[k], hpa[k], temp[k])
        _, _, e0 = sun.solar_position(times[k], lat[k], lon[k], elev[k], hpa[k], temp[k], refraction=False)
        p = solarposition.spa_python(pd.DatetimeIndex([times[k]], tz="UTC"), lat[k], lon[k], altitude=elev[k],
                                     pressure=hpa[k] * 100, temperature=temp[k], delta_t=None)
        # at the pole itself azimuth is undefined; elsewhere compare it
        da = 0.0 if abs(lat[k]) == 90.0 else abs(_wrap(a[0] - p["azimuth"].iloc[0]))
        worst = np.maximum(worst, [abs(z[0] - p["apparent_zenith"].iloc[0]), da,
                                   abs(e[0] - p["apparent_elevation"].iloc[0]), abs(e0[0] - p["elevation"].iloc[0]),
                                   abs(sun.equation_of_time(times[k])[0] - p["equation_of_time"].iloc[0])])
    assert worst[0] < 1e-3 and worst[1] < 1e-3 and worst[2] < 1e-3 and worst[3] < 1e-3, worst
    assert worst[4] < 1e-3 / 15 * 60  # minutes: 0.001 degree of hour angle
    assert worst[:4].max() < 1e-5  # the agreement actually reached (float rounding of pvlib's Julian day)


def test_parallax_against_pvlib_high_above_the_ground():
    """The observer's height enters only the parallax (under 3e-6° for any city): an observer an Earth radius up
    makes it visible (~0.0025°), and pvlib agrees there too."""
    pd = pytest.importorskip("pandas")
    solarposition = pytest.importorskip("pvlib.solarposition")
    times = np.array(["2024-01-20T04:00", "2024-06-21T09:30", "1999-11-02T15:00"], dtype="datetime64[s]")
    lat, lon, height = 30.0, 100.0, 6_378_140.0
    p = solarposition.spa_python(pd.DatetimeIndex(times, tz="UTC"), lat, lon, altitude=height, delta_t=None)
    z, a, _ = sun.solar_position(times, lat, lon, height, refraction=False)
    z_ground, _, _ = sun.solar_position(times, lat, lon, 0.0, refraction=False)
    assert np.abs(z - p["zenith"].to_numpy()).max() < 1e-6
    assert np.abs(_wrap(a - p["azimuth"].to_numpy())).max() < 1e-5
    assert np.abs(z - z_ground).max() > 5e-4


def test_interpolated_path_against_exact_and_pvlib():
    pd = pytest.importorskip("pandas")
    solarposition = pytest.importorskip("pvlib.solarposition")
    times = np.arange(np.datetime64("2031-03-01T00:07"), np.datetime64("2032-03-01T00:07"), np.timedelta64(53, "m"))
    fast = sun.geocentric(times, exact=False)
    exact = sun.geocentric(times, exact=True)
    for name in ("L", "B", "R", "dpsi", "deps", "eps", "lam", "alpha", "delta", "nu", "eot"):
        diff = np.asarray(getattr(fast, name)) - np.asarray(getattr(exact, name))
        if name in ("L", "lam", "alpha", "nu"):
            diff = _wrap(diff)
        assert np.abs(diff).max() < 1e-9, name
    lat, lon = -33.9, 18.4
    z, a, _ = sun.solar_position(times, lat, lon, 10.0)
    p = solarposition.spa_python(pd.DatetimeIndex(times.astype("datetime64[ns]"), tz="UTC"), lat, lon, altitude=10.0,
                                 delta_t=None)
    assert np.abs(z - p["apparent_zenith"].to_numpy()).max() < 1e-3
    assert np.abs(_wrap(a - p["azimuth"].to_numpy())).max() < 1e-3


def test_delta_t_against_pvlib():
    spa = pytest.importorskip("pvlib.spa")
    years = np.arange(-1999, 3001, 7)
    for month in (1, 6, 12):
        mine = sun.delta_t_espenak_meeus(years, month)
        theirs = spa.calculate_deltat(years, month)
        assert np.abs(mine - theirs).max() < 1e-6
    # and as used by solar_position's default: ΔT of each instant's month
    t = np.array(["1900-03-01", "1975-07-01", "2024-01-20"], dtype="datetime64[s]")
    default = sun.geocentric(t)
    given = sun.geocentric(t, delta_t=spa.calculate_deltat(np.array([1900, 1975, 2024]), np.array([3, 7, 1])))
    assert np.allclose(default.jde, given.jde, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------------------------- true solar time

def test_beijing_true_solar_time_offset_on_dahan():
    """In Beijing on 大寒日 true solar time runs about 25 minutes behind Beijing time (UTC+8): the equation of time
    (about −10.8 min) plus the 3.6° of longitude west of 120°E (14.4 min). Checked against pvlib's SPA transit."""
    pd = pytest.importorskip("pandas")
    solarposition = pytest.importorskip("pvlib.solarposition")
    lat, lon = BEIJING
    day = "2024-01-20"
    noon_utc = sun.clock_from_true_solar(day, 12.0, lon)[0]
    beijing_noon_utc = np.datetime64(day + "T04:00")
    offset_min = (noon_utc - beijing_noon_utc) / np.timedelta64(1, "s") / 60.0
    transit = solarposition.sun_rise_set_transit_spa(pd.DatetimeIndex([day], tz="Asia/Shanghai"), lat, lon)
    pvlib_offset = (transit["transit"].iloc[0] - pd.Timestamp(day + " 12:00", tz="Asia/Shanghai")).total_seconds() / 60
    assert abs(offset_min - pvlib_offset) < 2.0 / 60  # within 2 s
    assert 24.0 < offset_min < 26.5
    eot = sun.equation_of_time(noon_utc)[0]
    assert abs(offset_min - ((120.0 - lon) * 4.0 - eot)) < 1e-3
    # true solar time at 12:00 Beijing time
    assert abs((12.0 - sun.true_solar_time(beijing_noon_utc, lon)[0]) * 60 - offset_min) < 0.05


def test_tst_window_steps_are_in_true_solar_time():
    """The 8:00-16:00 true-solar-time window on 大寒日: hour angle −60°..+60° (by pvlib's hour angle from its own
    equation of time), the sun due south at the middle, symmetric ends; a window in Beijing clock time (shifted by
    the ~25 min offset) fails each check."""
    pd = pytest.importorskip("pandas")
    solarposition = pytest.importorskip("pvlib.solarposition")
    lat, lon = BEIJING
    win = sun.steps("2024-01-20", 8.0, 16.0, 1.0, lon)
    clock = np.datetime64("2024-01-20T00:00", "us") + np.arange(481) * np.timedelta64(1, "m")  # 8:00-16:00 UTC+8
    assert len(win) == 481 and len(sun.steps("2024-01-20", 8.0, 16.0, 1.0, lon, endpoint=False)) == 480
    assert np.allclose(sun.true_solar_time(win, lon), 8.0 + np.arange(481) / 60.0, atol=1e-6)

    def checks(times) -> dict[str, float]:
        idx = pd.DatetimeIndex(times.astype("datetime64[ns]"), tz="UTC")
        eot = solarposition.spa_python(idx, lat, lon)["equation_of_time"].to_numpy()
        ha = solarposition.hour_angle(idx, lon, eot)
        _, az, _ = sun.solar_position(times, lat, lon)
        return {"ha_start": abs(ha[0] + 60.0), "ha_mid": abs(ha[240]), "ha_end": abs(ha[-1] - 60.0),
                "az_mid": abs(az[240] - 180.0), "symmetry": abs(az[0] + az[-1] - 360.0)}

    good = checks(win)
    assert good["ha_start"] < 0.01 and good["ha_mid"] < 0.01 and good["ha_end"] < 0.01, good
    assert good["az_mid"] < 0.01 and good["symmetry"] < 0.05, good
    bad = checks(clock)
    assert min(bad["ha_start"], bad["ha_mid"], bad["ha_end"]) > 5.0, bad
    assert bad["az_mid"] > 5.0 and bad["symmetry"] > 5.0, bad


def test_true_solar_time_round_trip():
    rng = np.random.default_rng(7)
    for _ in range(30):
        day = np.datetime64("1970-01-01") + np.timedelta64(int(rng.integers(0, 40000)), "D")
        lon = float(rng.uniform(-180, 180))
        hours = rng.uniform(0.5, 23.5, 5)
        t = sun.clock_from_true_solar(day, hours, lon)
        back = sun.true_solar_time(t, lon)
        assert np.abs(_wrap((back - hours) * 15.0)).max() / 15.0 < 1e-6
        # and the instants fall on the local solar date asked for (UT = tst - lon/15 - E, within a day of it)
        ut_days = (t - day.astype("datetime64[us]")) / np.timedelta64(1, "D")
        assert np.all(np.abs(ut_days - (hours - lon / 15.0) / 24.0) < 20 / 1440)


# ----------------------------------------------------------------------------------------------- standard days

PUBLISHED_DAYS = {  # published dates of 大寒 and 冬至 (Beijing time), as issue 12 lists them; lunar-python and
    # PyEphem confirm them independently below
    2024: (dt.date(2024, 1, 20), dt.date(2024, 12, 21)),
    2025: (dt.date(2025, 1, 20), dt.date(2025, 12, 21)),
    2026: (dt.date(2026, 1, 20), dt.date(2026, 12, 22)),
}


@pytest.mark.parametrize("year", sorted(PUBLISHED_DAYS))
def test_standard_days_published(year):
    days = sun.standard_days(year)
    assert (days.dahan, days.dongzhi) == PUBLISHED_DAYS[year]


def test_solar_terms_are_where_the_longitude_is():
    for year in (1901, 1999, 2024, 2077):
        for lam in (270.0, 300.0):
            t = sun.solar_term(year, lam)
            assert t.astype("datetime64[Y]").astype(int) + 1970 == year
            got = sun.apparent_sun_longitude(t)[0]
            assert abs(_wrap(got - lam)) < 1e-7
            # a minute either side is on either side of the longitude
            before, after = sun.apparent_sun_longitude(t + np.array([-60, 60]) * np.timedelta64(1, "s"))
            assert _wrap(before - lam) < 0 < _wrap(after - lam)


def test_standard_days_against_lunar_python():
    lunar = pytest.importorskip("lunar_python")
    worst = 0.0
    for year in range(1950, 2051):
        table = lunar.Solar.fromYmd(year, 6, 1).getLunar().getJieQiTable()
        dahan = dt.datetime.strptime(table["大寒"].toYmdHms(), "%Y-%m-%d %H:%M:%S")
        dongzhi = dt.datetime.strptime(table["DONG_ZHI"].toYmdHms(), "%Y-%m-%d %H:%M:%S")
        assert dahan.year == year and dongzhi.year == year
        ours = {lam: sun.solar_term(year, lam) + np.timedelta64(8, "h") for lam in (300.0, 270.0)}
        for lam, theirs in ((300.0, dahan), (270.0, dongzhi)):
            seconds = abs((ours[lam] - np.datetime64(theirs, "us")) / np.timedelta64(1, "s"))
            worst = max(worst, seconds)
            assert seconds < 120, (year, lam, ours[lam], theirs)
        days = sun.standard_days(year)
        for ours_date, theirs in ((days.dahan, dahan), (days.dongzhi, dongzhi)):
            near_midnight = min(theirs.hour * 60 + theirs.minute, 1440 - theirs.hour * 60 - theirs.minute) < 3
            assert near_midnight or ours_date == theirs.date(), (year, ours_date, theirs)
    assert worst < 120


def test_dongzhi_against_ephem_solstices():
    ephem = pytest.importorskip("ephem")
    for year in range(1950, 2051, 5):
        theirs = np.datetime64(ephem.Date(ephem.next_solstice(f"{year}/12/1")).datetime(), "us")
        seconds = abs((sun.solar_term(year, 270.0) - theirs) / np.timedelta64(1, "s"))
        assert seconds < 120, (year, seconds)


# --------------------------------------------------------------------------------- vectors, shadows and the CRS

def test_sun_vectors_and_pole_shadow(ref):
    t, kw = _spa_case(ref)
    times = t + np.arange(0, 600, 7) * np.timedelta64(1, "m")
    z, a, e = sun.solar_position(times, **kw)
    v = sun.sun_vectors(z, a)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0)
    assert np.allclose(v[:, 2], np.sin(np.radians(e)))
    h = 30.0
    shadow = h * sun.shadow_vectors(z, a)
    up = e > 0
    # the tip of a pole's shadow: the ray from the pole top away from the sun meets the ground
    tip = np.array([0.0, 0.0, h]) - (h / v[:, 2:]) * v
    assert np.allclose(shadow[up], tip[up, :2])
    length = np.hypot(shadow[up, 0], shadow[up, 1])
    assert np.allclose(length, h / np.tan(np.radians(e[up])))
    bearing = np.degrees(np.arctan2(shadow[up, 0], shadow[up, 1])) % 360.0
    assert np.abs(_wrap(bearing - (a[up] + 180.0))).max() < 1e-9
    assert np.isnan(shadow[~up]).all() and (~up).any() and up.any()
    # a sun due south at 30° elevation
    assert np.allclose(sun.sun_vectors(60.0, 180.0)[0], [0.0, -np.cos(np.radians(30)), 0.5], atol=1e-12)


def test_true_north_bearing_against_a_step_north():
    pyproj = pytest.importorskip("pyproj")
    for crs, lon, lat in (("EPSG:4548", 116.4, 39.9), ("EPSG:4548", 117.8, 40.5), ("EPSG:32650", 116.4, 39.9),
                          ("EPSG:3857", 116.4, 39.9), ("EPSG:32733", 16.0, -30.0)):
        tr = pyproj.Transformer.from_crs(pyproj.CRS(crs).geodetic_crs, crs, always_xy=True)
        (x0, x1), (y0, y1) = tr.transform([lon, lon], [lat, lat + 1e-5])
        step = np.degrees(np.arctan2(x1 - x0, y1 - y0))
        assert abs(float(sun.true_north_bearing(crs, lon, lat)) - step) < 1e-4, crs
    # west of the central meridian (117°E) true north leans east of grid north, east of it west
    assert sun.true_north_bearing("EPSG:4548", 116.4, 39.9) > 0.3
    assert sun.true_north_bearing("EPSG:4548", 117.6, 39.9) < -0.3


def test_shadow_in_the_store_crs_follows_the_ground():
    """A shadow cast in EPSG:4548 with the grid bearing lands where a geodesic along the true azimuth lands."""
    pyproj = pytest.importorskip("pyproj")
    lat, lon = BEIJING
    crs = "EPSG:4548"
    times = sun.steps("2024-01-20", 8.0, 16.0, 60.0, lon)
    z, a, e = sun.solar_position(times, lat, lon)
    north = sun.true_north_bearing(crs, lon, lat)
    h = 100.0
    grid_shadow = h * sun.shadow_vectors(z, a, north)
    geod = pyproj.Geod(ellps="GRS80")
    length = h / np.tan(np.radians(e))
    lon2, lat2, _ = geod.fwd(np.full_like(a, lon), np.full_like(a, lat), (a + 180.0) % 360.0, length)
    tr = pyproj.Transformer.from_crs("EPSG:4490", crs, always_xy=True)
    x0, y0 = tr.transform(lon, lat)
    x2, y2 = tr.transform(lon2, lat2)
    k = float(pyproj.Proj(crs).get_factors(lon, lat).meridional_scale)  # grid distances carry the scale factor
    miss = np.hypot(x0 + k * grid_shadow[:, 0] - x2, y0 + k * grid_shadow[:, 1] - y2)
    assert miss.max() < 0.01  # 1 cm on shadows of 130-420 m
    unrotated = h * sun.shadow_vectors(z, a)
    assert np.hypot(x0 + k * unrotated[:, 0] - x2, y0 + k * unrotated[:, 1] - y2).max() > 0.5


# ------------------------------------------------------------------------------------------------- inputs, cache

def test_time_inputs_agree():
    t = np.datetime64("2024-06-21T04:00:00")
    aware = dt.datetime(2024, 6, 21, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    for value in (aware, "2024-06-21T04:00:00Z", "2024-06-21T12:00:00+08:00", t.astype("datetime64[ns]")):
        assert sun.to_datetime64(value)[0] == t
        assert np.allclose(sun.solar_position(value, *BEIJING).zenith, sun.solar_position(t, *BEIJING).zenith)
    with pytest.raises(ValueError):
        sun.solar_position(t, 91.0, 0.0)
    with pytest.raises(TypeError):
        sun.to_datetime64(np.array([1.5]))


def test_cached_geocentric_is_shared_and_read_only():
    times = sun.steps("2025-01-20", 8.0, 16.0, 1.0, 116.4)
    g1 = sun.geocentric(times)
    g2 = sun.geocentric(times.copy())
    assert g1 is g2
    assert sun.geocentric(times, delta_t=60.0) is not g1
    with pytest.raises(ValueError):
        g1.alpha[0] = 0.0
    # different sites over the same instants differ only by the site
    a = sun.solar_position(times, 39.9, 116.4)
    b = sun.solar_position(times, 31.2, 121.5)
    assert np.abs(a.zenith - b.zenith).max() > 1.0


def test_refraction_only_above_the_horizon():
    times = np.arange(np.datetime64("2024-03-20T00:00"), np.datetime64("2024-03-21T00:00"), np.timedelta64(5, "m"))
    _, _, e = sun.solar_position(times, *BEIJING)
    _, _, e0 = sun.solar_position(times, *BEIJING, refraction=False)
    lifted = e - e0
    assert (lifted[e0 > 0] > 0).all()
    assert (lifted[e0 < -(sun.SUN_RADIUS + sun.ATMOS_REFRACT)] == 0).all()
    # near the horizon, about half a degree (the standard 34')
    near = np.abs(e0) < 0.3
    assert near.any() and np.all((lifted[near] > 0.3) & (lifted[near] < 0.75))
