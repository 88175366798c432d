"""The sun's position for the sunlight simulator: the NREL Solar Position Algorithm, vectorised in numpy.

The algorithm is Reda & Andreas (2004, rev. 2008), *Solar Position Algorithm for Solar Radiation Applications*,
NREL/TP-560-34302 (the "SPA"; equation numbers below are the paper's): Earth heliocentric position from the VSOP87
periodic terms of Table A4.2, nutation (Table A4.3), aberration, apparent sidereal time, parallax for the observer's
height, and atmospheric refraction. Its stated uncertainty is ±0.0003° over −2000..6000.

The work splits in two: everything that depends on the instant only (:func:`geocentric`: the sun's apparent right
ascension and declination, sidereal time, equation of time) is computed once for an array of instants and cached,
so that many sites over the same time steps pay only the cheap topocentric part (:func:`solar_position`).

Conventions: times are UTC (numpy ``datetime64``; naive values count as UTC, aware datetimes are converted);
angles in degrees; azimuth clockwise from (true) north; elevation above the horizon; ``delta_t`` = TT − UT in
seconds, by default :func:`delta_t_espenak_meeus` of each instant's year and month.

Besides the position: the equation of time and true (apparent) solar time, the UTC instants of a window given in
true solar time (:func:`steps`), unit vectors toward the sun in a projected CRS (:func:`sun_vectors` with
:func:`true_north_bearing`), and the standard days of the Chinese sunlight codes, 大寒 and 冬至
(:func:`standard_days`). See docs/sunlight.md.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from twin.geo.crs import parse as parse_crs
from twin.sim import _spa_terms as terms
from twin.times import to_utc

__all__ = [
    "Geocentric",
    "StandardDays",
    "SunPosition",
    "apparent_sun_longitude",
    "clock_from_true_solar",
    "delta_t_espenak_meeus",
    "equation_of_time",
    "geocentric",
    "grid_azimuth",
    "julian_day",
    "julian_day_calendar",
    "shadow_vectors",
    "solar_position",
    "solar_term",
    "spa",
    "standard_days",
    "steps",
    "sun_vectors",
    "to_datetime64",
    "true_north_bearing",
    "true_solar_time",
]

J2000 = np.datetime64("2000-01-01T12:00:00", "us")  # JD 2451545.0 (UT)
_US_PER_DAY = 86_400e6
#: the default atmospheric refraction at sunrise and sunset (degrees), SPA's ``atmos_refract``
ATMOS_REFRACT = 0.5667
SUN_RADIUS = 0.26667  # degrees
_CACHE_MAX_N = 50_000  # geocentric results for at most this many instants are cached
_CHUNK = 4096  # instants per block in the periodic-term sums (memory: ~200 terms x chunk doubles)


class SunPosition(NamedTuple):
    """Topocentric sun position, degrees: zenith and elevation (apparent, with refraction unless it was turned
    off), azimuth clockwise from true north."""

    zenith: np.ndarray
    azimuth: np.ndarray
    elevation: np.ndarray


class StandardDays(NamedTuple):
    """大寒日 (the sun's apparent longitude reaches 300°) and 冬至日 (270°) of a year, as local dates."""

    dahan: _dt.date
    dongzhi: _dt.date


# ---------------------------------------------------------------------------------------------------------- times


def to_datetime64(times) -> np.ndarray:
    """Instants as a 1-d ``datetime64[us]`` UTC array: numpy datetime64 (naive = UTC), ISO 8601 text, or
    datetimes (aware ones converted to UTC, naive = UTC, via :func:`twin.times.to_utc`)."""
    a = np.atleast_1d(np.asarray(times))
    if a.dtype.kind == "M":
        return a.astype("datetime64[us]").ravel()
    if a.dtype.kind in "OU":
        out = [to_utc(v) if isinstance(v, _dt.datetime | str) else v for v in a.ravel()]
        return np.array([np.datetime64(v.replace(tzinfo=None), "us") if isinstance(v, _dt.datetime) else
                         np.datetime64(v, "us") for v in out], dtype="datetime64[us]")
    raise TypeError(f"times must be datetime64, datetimes or ISO 8601 text, not {a.dtype}")


def _days_since_j2000(t: np.ndarray) -> np.ndarray:
    """UT days since J2000.0 from integer microseconds (exact to well under a microsecond)."""
    return (t - J2000).astype(np.int64) / _US_PER_DAY


def julian_day(times) -> np.ndarray:
    """Julian day (UT) of instants (SPA eq. 4 on the proleptic Gregorian calendar of numpy)."""
    return _days_since_j2000(to_datetime64(times)) + 2451545.0


def julian_day_calendar(year, month, day, hour=0, minute=0, second=0.0, tz_hours=0.0):
    """SPA eq. 4: the Julian day of a calendar date and time (local, ``tz_hours`` east of UTC), on the Julian
    calendar before 1582-10-15 and the Gregorian from then on; years are astronomical (1 BC = year 0)."""
    year, month = np.asarray(year, dtype=float), np.asarray(month, dtype=float)
    day_decimal = np.asarray(day) + (np.asarray(hour) - np.asarray(tz_hours)
                                     + (np.asarray(minute) + np.asarray(second) / 60.0) / 60.0) / 24.0
    early = month < 3
    y = np.where(early, year - 1, year)
    m = np.where(early, month + 12, month)
    jd = np.floor(365.25 * (y + 4716.0)) + np.floor(30.6001 * (m + 1)) + day_decimal - 1524.5
    a = np.trunc(y / 100)
    return np.where(jd > 2299160.0, jd + 2 - a + np.floor(a / 4), jd)


def delta_t_espenak_meeus(year, month=6.5):
    """ΔT = TT − UT (seconds) from the polynomial expressions of Espenak & Meeus (2006, *Five Millennium Canon
    of Solar Eclipses*, NASA/TP-2006-214141; the NASA eclipse site's "Polynomial expressions for Delta T"), at
    the decimal year ``y = year + (month - 0.5) / 12``.

    Past values are fits to observations (±1 s since 1900); from 2005 on it is their extrapolation, which runs
    about 5 s above the observed ΔT in the 2020s — harmless here: ΔT moves only the slow ephemeris terms
    (5 s ≈ 0.00006° of solar longitude), not the Earth's rotation (the hour angle uses UT).
    """
    y = np.asarray(year, dtype=float) + (np.asarray(month, dtype=float) - 0.5) / 12.0
    piece = np.searchsorted(_DT_EDGES, y, side="right")
    out = np.empty(np.shape(y))
    for k in np.unique(piece):
        sel = piece == k
        out[sel] = _DT_PIECES[k](y[sel])
    return out[()] if out.ndim == 0 else out


def _parabola(y):
    return -20 + 32 * ((y - 1820) / 100) ** 2


_DT_EDGES = np.array([-500, 500, 1600, 1700, 1800, 1860, 1900, 1920, 1941, 1961, 1986, 2005, 2050, 2150], float)
_DT_PIECES = (
    _parabola,
    lambda y: np.polyval([0.0090316521, 0.022174192, -0.1798452, -5.952053, 33.78311, -1014.41, 10583.6], y / 100),
    lambda y: np.polyval([0.0083572073, -0.005050998, -0.8503463, 0.319781, 71.23472, -556.01, 1574.2],
                         (y - 1000) / 100),
    lambda y: np.polyval([1 / 7129, -0.01532, -0.9808, 120], y - 1600),
    lambda y: np.polyval([-1 / 1174000, 0.00013336, -0.0059285, 0.1603, 8.83], y - 1700),
    lambda y: np.polyval([0.000000000875, -0.0000001699, 0.0000121272, -0.00037436, 0.0041116, 0.0068612,
                          -0.332447, 13.72], y - 1800),
    lambda y: np.polyval([1 / 233174, -0.0004473624, 0.01680668, -0.251754, 0.5737, 7.62], y - 1860),
    lambda y: np.polyval([-0.000197, 0.0061966, -0.0598939, 1.494119, -2.79], y - 1900),
    lambda y: np.polyval([0.0020936, -0.0761, 0.84493, 21.2], y - 1920),
    lambda y: np.polyval([1 / 2547, -1 / 233, 0.407, 29.07], y - 1950),
    lambda y: np.polyval([-1 / 718, -1 / 260, 1.067, 45.45], y - 1975),
    lambda y: np.polyval([0.00002373599, 0.000651814, 0.0017275, -0.060374, 0.3345, 63.86], y - 2000),
    lambda y: np.polyval([0.005589, 0.32217, 62.92], y - 2000),
    lambda y: _parabola(y) - 0.5628 * (2150 - y),
    _parabola,
)


def _delta_t_for(t: np.ndarray, delta_t) -> np.ndarray:
    if delta_t is None:  # once per calendar month present
        months, inverse = np.unique(t.astype("datetime64[M]").astype(np.int64), return_inverse=True)
        return delta_t_espenak_meeus(months // 12 + 1970, months % 12 + 1)[inverse].reshape(t.shape)
    return np.broadcast_to(np.asarray(delta_t, dtype=float), t.shape)


# ---------------------------------------------------------------------------------- the geocentric sun (SPA 3.1-3.11)

def _series_table(groups: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows = [r for g in groups for r in g]
    a, b, c = (np.array([r[i] for r in rows], dtype=float) for i in range(3))
    starts = np.cumsum([0] + [len(g) for g in groups[:-1]])
    return a, b, c, starts


_L, _B, _R = (_series_table(g) for g in (terms.EARTH_L, terms.EARTH_B, terms.EARTH_R))
_NUT_Y = np.array(terms.NUTATION_Y, dtype=float)  # (63, 5)
_NUT_ABCD = np.array(terms.NUTATION_ABCD, dtype=float)  # (63, 4)


def _earth_value(table, jme: np.ndarray) -> np.ndarray:
    """SPA eqs. 9-11: sum_i jme**i * sum_k A cos(B + C jme), / 1e8 (radians or AU)."""
    a, b, c, starts = table
    per_power = np.add.reduceat(a[:, None] * np.cos(b[:, None] + c[:, None] * jme[None, :]), starts, axis=0)
    return np.polynomial.polynomial.polyval(jme, per_power, tensor=False) / 1e8


def _limit(deg):
    return np.mod(deg, 360.0)


@dataclass(frozen=True)
class Geocentric:
    """What the SPA computes from the instant alone (arrays over the instants; degrees unless said).

    jd, jde: Julian (ephemeris) day; jc, jce, jme: Julian (ephemeris) century and millennium since J2000;
    L, B (degrees), R (AU): Earth heliocentric longitude, latitude, radius vector; theta, beta: geocentric
    longitude and latitude; x: the five nutation arguments X0..X4 (shape (5, n)); dpsi, deps: nutation in
    longitude and obliquity; eps0 (arc seconds), eps: mean and true obliquity; dtau: aberration; lam: apparent
    sun longitude; nu0, nu: mean and apparent sidereal time at Greenwich; alpha, delta: geocentric right
    ascension and declination; eot: equation of time (minutes, SPA appendix A.1).
    """

    jd: np.ndarray
    jde: np.ndarray
    jc: np.ndarray
    jce: np.ndarray
    jme: np.ndarray
    L: np.ndarray
    B: np.ndarray
    R: np.ndarray
    theta: np.ndarray
    beta: np.ndarray
    x: np.ndarray
    dpsi: np.ndarray
    deps: np.ndarray
    eps0: np.ndarray
    eps: np.ndarray
    dtau: np.ndarray
    lam: np.ndarray
    nu0: np.ndarray
    nu: np.ndarray
    alpha: np.ndarray
    delta: np.ndarray
    eot: np.ndarray


def _nutation_args(jce: np.ndarray) -> np.ndarray:
    """SPA 3.4.1-3.4.5: X0..X4 (degrees, not reduced), shape (5, n)."""
    jce2, jce3 = jce * jce, jce * jce * jce
    return np.stack([
        297.85036 + 445267.111480 * jce - 0.0019142 * jce2 + jce3 / 189474.0,
        357.52772 + 35999.050340 * jce - 0.0001603 * jce2 - jce3 / 300000.0,
        134.96298 + 477198.867398 * jce + 0.0086972 * jce2 + jce3 / 56250.0,
        93.27191 + 483202.017538 * jce - 0.0036825 * jce2 + jce3 / 327270.0,
        125.04452 - 1934.136261 * jce + 0.0020708 * jce2 + jce3 / 450000.0,
    ])


def _slow_exact(d_tt: np.ndarray) -> np.ndarray:
    """The slow, TT-only part of the SPA, exactly, for TT days since J2000: rows L (radians, not reduced), B
    (radians), R (AU), Δψ and Δε (degrees); shape (5, n). Periodic sums in blocks of ``_CHUNK`` instants."""
    out = np.empty((5, len(d_tt)))
    for i in range(0, len(d_tt), _CHUNK):
        d = d_tt[i:i + _CHUNK]
        jce = d / 36525.0
        jme = jce / 10.0
        arg = np.radians(_NUT_Y @ _nutation_args(jce))  # (63, n)
        s, c = np.sin(arg), np.cos(arg)
        a_, b_, c_, d_ = _NUT_ABCD.T
        out[:, i:i + _CHUNK] = (_earth_value(_L, jme), _earth_value(_B, jme), _earth_value(_R, jme),
                                (a_ @ s + jce * (b_ @ s)) / 36_000_000.0, (c_ @ c + jce * (d_ @ c)) / 36_000_000.0)
    return out


# Chebyshev interpolation of the slow part: blocks of _SPAN TT days, _NODES nodes each. Its fastest terms are the
# ~5.5-day nutation terms (under 1e-6 deg) and L0's and R0's 14.25-day term (5e-5 deg); 16 nodes over 8 days
# reproduce them to ~1e-15 deg, and tests/sim check the interpolation against _slow_exact to 1e-9 deg. It pays off
# once there are more instants than nodes.
_SPAN = 8.0
_NODES = 16
_CHEB_X = np.cos(np.pi * (np.arange(_NODES) + 0.5) / _NODES)  # nodes in [-1, 1]
_CHEB_T = np.cos(np.pi * np.outer(np.arange(_NODES), np.arange(_NODES) + 0.5) / _NODES)  # T_k(x_j)


def _slow(d_tt: np.ndarray, exact: bool | None = None) -> np.ndarray:
    """The slow part (as :func:`_slow_exact`), exact for few instants, else Chebyshev-interpolated per block."""
    block = np.floor(d_tt / _SPAN)
    blocks, inverse = np.unique(block, return_inverse=True)
    if exact or (exact is None and len(blocks) * _NODES >= len(d_tt)):
        return _slow_exact(d_tt)
    half = _SPAN / 2.0
    centres = blocks * _SPAN + half
    values = _slow_exact((centres[:, None] + half * _CHEB_X[None, :]).ravel()).reshape(5, len(blocks), _NODES)
    coef = np.einsum("qbj,kj->qbk", values, _CHEB_T) * (2.0 / _NODES)
    coef[..., 0] /= 2.0
    u = (d_tt - centres[inverse]) / half
    order = None if np.all(np.diff(inverse) >= 0) else np.argsort(inverse, kind="stable")
    if order is not None:
        u, inverse = u[order], inverse[order]
    bounds = np.searchsorted(inverse, np.arange(len(blocks) + 1))
    out = np.empty((5, len(d_tt)))
    for b in range(len(blocks)):  # one Clenshaw sum per block over its (contiguous) instants
        out[:, bounds[b]:bounds[b + 1]] = np.polynomial.chebyshev.chebval(u[bounds[b]:bounds[b + 1]], coef[:, b, :].T)
    if order is not None:
        out[:, order] = out.copy()
    return out


def _geocentric_block(d_ut: np.ndarray, delta_t: np.ndarray, exact: bool | None = None) -> dict[str, np.ndarray]:
    """SPA sections 3.1-3.9 and A.1 for UT days since J2000 ``d_ut`` and ΔT (seconds)."""
    jc = d_ut / 36525.0
    d_tt = d_ut + delta_t / 86400.0
    jce = d_tt / 36525.0
    jme = jce / 10.0
    l_rad, b_rad, R, dpsi, deps = _slow(d_tt, exact)
    L = _limit(np.degrees(l_rad))
    B = np.degrees(b_rad)
    theta = _limit(L + 180.0)
    beta = -B
    u = jme / 10.0
    eps0 = 84381.448 + u * (-4680.93 + u * (-1.55 + u * (1999.25 + u * (-51.38 + u * (-249.67 + u * (
        -39.05 + u * (7.12 + u * (27.87 + u * (5.79 + u * 2.45)))))))))
    eps = eps0 / 3600.0 + deps
    dtau = -20.4898 / (3600.0 * R)
    lam = theta + dpsi + dtau
    nu0 = _limit(280.46061837 + 360.98564736629 * d_ut + jc * jc * (0.000387933 - jc / 38710000.0))
    eps_r, lam_r, beta_r = np.radians(eps), np.radians(lam), np.radians(beta)
    cos_eps, sin_eps = np.cos(eps_r), np.sin(eps_r)
    nu = nu0 + dpsi * cos_eps
    alpha = _limit(np.degrees(np.arctan2(np.sin(lam_r) * cos_eps - np.tan(beta_r) * sin_eps, np.cos(lam_r))))
    delta = np.degrees(np.arcsin(np.sin(beta_r) * cos_eps + np.cos(beta_r) * sin_eps * np.sin(lam_r)))
    m = _limit(280.4664567 + jme * (360007.6982779 + jme * (0.03032028 + jme * (1 / 49931.0 + jme * (
        -1 / 15300.0 - jme / 2000000.0)))))
    eot = 4.0 * (m - 0.0057183 - alpha + dpsi * cos_eps)
    eot = np.where(eot < -20.0, eot + 1440.0, np.where(eot > 20.0, eot - 1440.0, eot))
    return dict(jd=d_ut + 2451545.0, jde=d_tt + 2451545.0, jc=jc, jce=jce, jme=jme, L=L, B=B, R=R, theta=theta,
                beta=beta, x=_nutation_args(jce), dpsi=dpsi, deps=deps, eps0=eps0, eps=eps, dtau=dtau,
                lam=_limit(lam), nu0=nu0, nu=_limit(nu), alpha=alpha, delta=delta, eot=eot)


def _compute_geocentric(t: np.ndarray, dt: np.ndarray, exact: bool | None = None) -> Geocentric:
    out = _geocentric_block(_days_since_j2000(t), dt, exact)
    for v in out.values():
        v.setflags(write=False)
    return Geocentric(**out)


@lru_cache(maxsize=16)
def _geocentric_cached(t_bytes: bytes, dt_bytes: bytes | None) -> Geocentric:
    t = np.frombuffer(t_bytes, dtype="datetime64[us]")
    dt = np.frombuffer(dt_bytes) if dt_bytes is not None else None
    return _compute_geocentric(t, np.ascontiguousarray(_delta_t_for(t, dt), dtype=float))


def geocentric(times, delta_t=None, exact: bool | None = None) -> Geocentric:
    """The SPA's time-only quantities for instants (cached for up to 50,000 instants: repeated calls with the same
    instants and ΔT, e.g. one per site, reuse them). The arrays are read-only.

    The slow terms (L, B, R, Δψ, Δε: the ~260 periodic terms) are summed exactly for few instants and, for many,
    exactly at 16 Chebyshev nodes per 8-day block and interpolated (to ~1e-10°); ``exact=True`` always sums them.
    """
    t = to_datetime64(times)
    if exact is None and len(t) <= _CACHE_MAX_N:
        dt = None if delta_t is None else np.ascontiguousarray(delta_t, dtype=float).tobytes()
        return _geocentric_cached(t.tobytes(), dt)
    return _compute_geocentric(t, np.ascontiguousarray(_delta_t_for(t, delta_t), dtype=float), exact)


# -------------------------------------------------------------------------------- the topocentric sun (SPA 3.10-3.15)

def _topocentric(g: Geocentric, lat, lon, elevation_m, pressure_hpa, temperature_c, refraction: bool,
                 atmos_refract: float) -> dict[str, np.ndarray]:
    phi = np.radians(lat)
    h = _limit(g.nu + lon - g.alpha)  # observer local hour angle (3.9)
    xi = np.radians(8.794 / (3600.0 * g.R))  # equatorial horizontal parallax (3.12.1)
    u = np.arctan(0.99664719 * np.tan(phi))
    x = np.cos(u) + elevation_m / 6378140.0 * np.cos(phi)
    y = 0.99664719 * np.sin(u) + elevation_m / 6378140.0 * np.sin(phi)
    h_r, delta_r = np.radians(h), np.radians(g.delta)
    denom = np.cos(delta_r) - x * np.sin(xi) * np.cos(h_r)
    dalpha_r = np.arctan2(-x * np.sin(xi) * np.sin(h_r), denom)
    delta_p_r = np.arctan2((np.sin(delta_r) - y * np.sin(xi)) * np.cos(dalpha_r), denom)
    hp_r = h_r - dalpha_r
    e0 = np.degrees(np.arcsin(np.sin(phi) * np.sin(delta_p_r) + np.cos(phi) * np.cos(delta_p_r) * np.cos(hp_r)))
    de = np.zeros_like(e0)
    if refraction:  # (3.14.2), only for the sun above the horizon as refraction lifts it
        up = e0 >= -(SUN_RADIUS + atmos_refract)
        de = np.where(up, pressure_hpa / 1010.0 * 283.0 / (273.0 + temperature_c) * 1.02
                      / (60.0 * np.tan(np.radians(e0 + 10.3 / (e0 + 5.11)))), 0.0)
    e = e0 + de
    gamma = _limit(np.degrees(np.arctan2(np.sin(hp_r), np.cos(hp_r) * np.sin(phi) - np.tan(delta_p_r) * np.cos(phi))))
    return dict(H=h, xi=np.degrees(xi), dAlpha=np.degrees(dalpha_r), alpha_prime=g.alpha + np.degrees(dalpha_r),
                delta_prime=np.degrees(delta_p_r), H_prime=np.degrees(hp_r), e0=e0, delta_e=de, e=e, zenith=90.0 - e,
                Gamma=gamma, azimuth=_limit(gamma + 180.0))


def spa(times, lat: float, lon: float, elevation_m: float = 0.0, pressure_hpa: float = 1013.25,
        temperature_c: float = 12.0, delta_t=None, refraction: bool = True,
        atmos_refract: float = ATMOS_REFRACT) -> dict[str, np.ndarray]:
    """Every SPA intermediate for instants at one site, by the paper's names (``JD``, ``L``, ``dPsi``, ``alpha``,
    ``H_prime``, ``e0``, ``zenith``, ``azimuth`` …): for checks against the paper's worked example and for docs."""
    g = geocentric(times, delta_t)
    out = {f.name: getattr(g, f.name) for f in fields(g)}
    names = dict(jd="JD", jde="JDE", jc="JC", jce="JCE", jme="JME", theta="Theta", dpsi="dPsi", deps="dEpsilon",
                 eps0="epsilon0", eps="epsilon", dtau="dTau", lam="lambda", alpha="alpha", delta="delta")
    out = {names.get(k, k): v for k, v in out.items()}
    out.update(_topocentric(g, lat, lon, elevation_m, pressure_hpa, temperature_c, refraction, atmos_refract))
    return out


def solar_position(times_utc, lat: float, lon: float, elevation_m: float = 0.0, pressure_hpa: float = 1013.25,
                   temperature_c: float = 12.0, delta_t=None, refraction: bool = True,
                   atmos_refract: float = ATMOS_REFRACT) -> SunPosition:
    """The sun seen from ``(lat, lon, elevation_m)`` at UTC instants, by the NREL SPA: ``(zenith, azimuth,
    elevation)`` in degrees, azimuth clockwise from true north; apparent (refracted, for the given pressure in hPa
    and temperature in °C) unless ``refraction=False``. ``delta_t`` (s): scalar, per instant, or None for
    :func:`delta_t_espenak_meeus`."""
    if not -90.0 <= lat <= 90.0 or not -180.0 <= lon <= 180.0:
        raise ValueError(f"latitude {lat} / longitude {lon} out of range")
    g = geocentric(times_utc, delta_t)
    topo = _topocentric(g, lat, lon, elevation_m, pressure_hpa, temperature_c, refraction, atmos_refract)
    return SunPosition(topo["zenith"], topo["azimuth"], topo["e"])


# ------------------------------------------------------------------------------------------------ solar time

def equation_of_time(times, delta_t=None) -> np.ndarray:
    """The equation of time (minutes): apparent minus mean solar time, SPA appendix A.1 (−14.3 in February, +16.4
    in early November)."""
    return np.array(geocentric(times, delta_t).eot)


def true_solar_time(times_utc, lon: float, delta_t=None) -> np.ndarray:
    """True (apparent) solar time at longitude ``lon`` (degrees east), in hours in [0, 24): UT + lon/15 + E/60.
    12:00 is the sun's transit (hour angle 0)."""
    t = to_datetime64(times_utc)
    ut_hours = (t - t.astype("datetime64[D]")).astype(np.int64) / 3.6e9
    return np.mod(ut_hours + lon / 15.0 + equation_of_time(t, delta_t) / 60.0, 24.0)


def _as_day(day) -> np.datetime64:
    if isinstance(day, np.datetime64):
        return day.astype("datetime64[D]")
    if isinstance(day, _dt.datetime):
        day = day.date()
    return np.datetime64(day, "D")


def clock_from_true_solar(day, tst_hours, lon: float, delta_t=None) -> np.ndarray:
    """The UTC instants (``datetime64[us]``) at which true solar time at ``lon`` is ``tst_hours`` on ``day`` (the
    local solar date): UT = tst − lon/15 − E/60, with E taken at the instant itself (three fixed-point steps;
    E changes by under 30 s a day, so this converges to well under a millisecond)."""
    base = _as_day(day).astype("datetime64[us]")
    tst_us = np.round(np.atleast_1d(np.asarray(tst_hours, dtype=float)) * 3.6e9 - lon / 15.0 * 3.6e9)
    t = base + tst_us.astype(np.int64).astype("timedelta64[us]")
    for _ in range(3):
        eot = equation_of_time(t, delta_t)
        t = base + np.round(tst_us - eot * 6e7).astype(np.int64).astype("timedelta64[us]")
    return t


def steps(day, start_tst: float, end_tst: float, step_min: float, lon: float, endpoint: bool = True,
          delta_t=None) -> np.ndarray:
    """The UTC instants of a window given in true solar time, e.g. 8:00-16:00 on 大寒日, every ``step_min``
    minutes: ``start_tst, start_tst + step, …`` up to ``end_tst`` (included when ``endpoint``)."""
    if step_min <= 0 or end_tst < start_tst:
        raise ValueError(f"bad window {start_tst}-{end_tst} h every {step_min} min")
    span = (end_tst - start_tst) * 60.0
    n = int(np.floor(span / step_min + 1e-9))
    whole = abs(n * step_min - span) < 1e-6
    k = np.arange(n + 1 if endpoint or not whole else n)
    return clock_from_true_solar(day, start_tst + k * step_min / 60.0, lon, delta_t)


# ------------------------------------------------------------------------------------------ vectors and CRS

def sun_vectors(zenith, azimuth, north_bearing: float | np.ndarray = 0.0) -> np.ndarray:
    """Unit vectors toward the sun, shape ``(n, 3)``: (east, north, up) in the local horizon frame or, with the
    grid bearing of true north from :func:`true_north_bearing`, (x, y, up) of a projected CRS."""
    z = np.radians(np.asarray(zenith, dtype=float))
    a = np.radians(grid_azimuth(azimuth, north_bearing))
    s = np.sin(z)
    return np.stack([s * np.sin(a), s * np.cos(a), np.cos(z)], axis=-1).reshape(-1, 3)


def shadow_vectors(zenith, azimuth, north_bearing: float | np.ndarray = 0.0) -> np.ndarray:
    """The horizontal shadow of a vertical pole of unit height, shape ``(n, 2)`` in (east, north) or grid (x, y):
    length ``1 / tan(elevation)``, pointing away from the sun (azimuth + 180°); NaN with the sun at or below the
    horizon."""
    v = sun_vectors(zenith, azimuth, north_bearing)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v[:, 2:] > 0, -v[:, :2] / v[:, 2:], np.nan)


def grid_azimuth(azimuth, north_bearing: float | np.ndarray = 0.0) -> np.ndarray:
    """A true azimuth as a bearing from grid north in a projected CRS (degrees in [0, 360))."""
    return _limit(np.asarray(azimuth, dtype=float) + north_bearing)


def true_north_bearing(crs, lon, lat) -> np.ndarray:
    """The grid bearing of true north (degrees, clockwise from the CRS's grid north) at geographic ``lon, lat``.

    It is the negative of PROJ's meridian convergence (``pyproj.Proj.get_factors(...).meridian_convergence``,
    the angle from true north to grid north): in EPSG:4548 (Gauss-Krüger CM 117°E) at Beijing (116.4°E, 39.9°N)
    true north lies 0.385° east of grid north, so a 50 m shadow cast along true bearings would be 0.34 m off.
    Add it to true azimuths (:func:`grid_azimuth`, ``north_bearing`` of :func:`sun_vectors`) before casting in
    that CRS.
    """
    import pyproj

    proj = pyproj.Proj(parse_crs(crs))
    return -np.asarray(proj.get_factors(lon, lat).meridian_convergence, dtype=float)


# -------------------------------------------------------------------------------------- solar terms and standard days

def apparent_sun_longitude(times, delta_t=None) -> np.ndarray:
    """The sun's apparent geocentric longitude λ (degrees, of date: nutation and aberration included, SPA 3.7)."""
    return np.array(geocentric(times, delta_t).lam)


def solar_term(year: int, longitude_deg: float, delta_t=None) -> np.datetime64:
    """The first UTC instant on or after 1 January of ``year`` at which the sun's apparent longitude reaches
    ``longitude_deg`` (a 节气 is every 15°: 冬至 270°, 大寒 300°, 春分 0°), by Newton steps on λ(t) to < 1 ms."""
    t = np.datetime64(f"{year:04d}-01-01T00:00:00", "us")
    lam0 = apparent_sun_longitude(t, delta_t)[0]
    t = t + np.timedelta64(int(np.mod(longitude_deg - lam0, 360.0) / 0.9856 * _US_PER_DAY), "us")
    hour = np.timedelta64(3_600_000_000, "us")
    for _ in range(8):
        lam, lam1 = apparent_sun_longitude(np.array([t, t + hour]), delta_t)
        rate = np.mod(lam1 - lam, 360.0) * 24.0  # degrees per day
        step = (np.mod(longitude_deg - lam + 180.0, 360.0) - 180.0) / rate
        t = t + np.timedelta64(int(round(step * _US_PER_DAY)), "us")
        if abs(step) * 86400.0 < 1e-3:
            break
    return t


def standard_days(year: int, utc_offset_hours: float = 8.0, delta_t=None) -> StandardDays:
    """大寒日 and 冬至日 of ``year``: the local dates (Beijing time, UTC+8, as the Chinese calendar reckons them,
    GB/T 33661-2017) on which the sun's apparent longitude reaches 300° and 270°."""
    offset = np.timedelta64(int(round(utc_offset_hours * 3.6e9)), "us")

    def local_date(lon: float) -> _dt.date:
        t = solar_term(year, lon, delta_t) + offset
        return t.astype("datetime64[D]").item()

    return StandardDays(dahan=local_date(300.0), dongzhi=local_date(270.0))

