"""Interpolated surfaces from station samples over H3 cells: IDW and ordinary kriging, checked by leave-one-out CV.

Distances are Euclidean in a local azimuthal equidistant projection centred on the stations (metres; exact for
distances from the centre and within ~0.1 % over a city). Values are a matrix ``(n stations × T buckets)`` with NaN
for a station without a reading in a bucket; each bucket is interpolated from the stations that have a value in
it. Work is grouped by the pattern of available stations, so weights are solved once per pattern (not per bucket
or per cell) and applied to all buckets of the pattern with one matrix product.

Ordinary kriging uses a variogram fitted once over all buckets (pooled pairs of stations). By default it is a
*relative* variogram — each bucket's values divided by the bucket's station mean — because concentrations vary
from day to day far more than across the city and their spread grows with their level (proportional effect);
kriging weights do not depend on the variogram's scale, and the kriging variance of a bucket is the relative one
times the bucket mean squared. The model (exponential or spherical, with nugget) is fitted by weighted least
squares on the binned empirical variogram, weights ``N(h) / h²`` (pairs over squared lag, as gstat's default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import h3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyproj import Transformer

from twin.layers.values import make_values

__all__ = [
    "Variogram",
    "Surface",
    "cell_centres",
    "local_xy",
    "empirical_variogram",
    "fit_variogram",
    "idw_predict",
    "kriging_predict",
    "cross_validate",
    "station_spread",
    "samples_matrix",
    "interpolate_surface",
]

Method = Literal["idw", "kriging"]
_EXACT_M = 1e-3  # a target closer than this (metres) to a station takes the station's value in IDW


@dataclass(frozen=True)
class Variogram:
    """An isotropic variogram model γ(h) = nugget + psill · f(h / range) (γ(0) = 0); range is the practical range."""

    model: Literal["exponential", "spherical"]
    nugget: float
    psill: float
    range_m: float

    @property
    def sill(self) -> float:
        return self.nugget + self.psill

    def __call__(self, h: np.ndarray) -> np.ndarray:
        """Semivariance at distances ``h`` (metres)."""
        h = np.asarray(h, np.float64)
        g = self.nugget + self.psill * _shape(self.model, h, self.range_m)
        return np.where(h > 0, g, 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "nugget": float(self.nugget), "psill": float(self.psill),
                "range_m": float(self.range_m)}


@dataclass
class Surface:
    """An interpolated layer: the values table, its metadata (method, params, CV errors) and kriging variance."""

    values: pa.Table
    metadata: dict[str, Any]
    variance: pa.Table | None = field(default=None)


def _shape(model: str, h: np.ndarray, r: float | np.ndarray) -> np.ndarray:
    """Unit-sill variogram shape: exponential with practical range r (95 % of sill), or spherical reaching 1 at r."""
    q = h / r
    if model == "exponential":
        return 1.0 - np.exp(-3.0 * q)
    if model == "spherical":
        return np.where(q < 1.0, 1.5 * q - 0.5 * q**3, 1.0)
    raise ValueError(f"unknown variogram model {model!r}; use 'exponential' or 'spherical'")


def cell_centres(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 lat, lng of the centres of H3 cells (uint64), computed once per distinct cell."""
    cells = np.asarray(cells, np.uint64)
    uniq, inv = np.unique(cells, return_inverse=True)
    ll = np.array([h3.cell_to_latlng(h3.int_to_str(int(c))) for c in uniq.tolist()], np.float64).reshape(-1, 2)
    return ll[inv, 0], ll[inv, 1]


def local_xy(lat: np.ndarray, lng: np.ndarray, lat0: float, lng0: float) -> np.ndarray:
    """Positions (n × 2, metres) in an azimuthal equidistant projection centred on (lat0, lng0)."""
    tr = Transformer.from_crs("EPSG:4326", f"+proj=aeqd +lat_0={lat0} +lon_0={lng0} +datum=WGS84 +units=m",
                              always_xy=True)
    x, y = tr.transform(np.asarray(lng, np.float64), np.asarray(lat, np.float64))
    return np.column_stack([np.asarray(x, np.float64), np.asarray(y, np.float64)])


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of a (n × 2) and b (m × 2)."""
    return np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])


def _patterns(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct availability patterns of the buckets (p × n bool) and each bucket's pattern index (T)."""
    avail = np.isfinite(values).T
    if avail.shape[0] == 0:
        return np.zeros((0, values.shape[0]), bool), np.zeros(0, np.int64)
    pats, inv = np.unique(avail, axis=0, return_inverse=True)
    return pats, inv.reshape(-1)


def _bucket_scale(values: np.ndarray) -> np.ndarray:
    """Each bucket's mean over the stations that have a value (T); NaN when none has."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.where(np.isfinite(values), values, np.nan), axis=0) if values.size else np.zeros(0)


def empirical_variogram(xy: np.ndarray, values: np.ndarray, *, n_lags: int = 8,
                        relative: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binned empirical semivariogram pooled over buckets: lag distance, semivariance, number of pair samples.

    Each station pair's semivariance is the mean over buckets where both have a value of ½(zᵢ − zⱼ)² (z divided by
    the bucket mean when ``relative``); pairs are binned into ``n_lags`` bins of equal pair count by distance.
    """
    v = np.asarray(values, np.float64)
    if relative:
        m = _bucket_scale(v)
        v = np.where(m > 0, v / np.where(m > 0, m, 1.0), np.nan)
    i, j = np.triu_indices(v.shape[0], k=1)
    if len(i) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
    d = np.hypot(*(xy[i] - xy[j]).T)
    sq = 0.5 * (v[i] - v[j]) ** 2  # pairs × buckets, NaN where either is missing
    npairs = np.isfinite(sq).sum(axis=1)
    ok = (npairs > 0) & (d > 0)
    gamma_pair = np.nansum(sq, axis=1)[ok] / npairs[ok]
    d, npairs = d[ok], npairs[ok]
    if len(d) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
    order = np.argsort(d)
    bins = np.array_split(order, min(n_lags, len(d)))
    h = np.array([np.average(d[b], weights=npairs[b]) for b in bins])
    g = np.array([np.average(gamma_pair[b], weights=npairs[b]) for b in bins])
    n = np.array([npairs[b].sum() for b in bins], np.int64)
    return h, g, n


def fit_variogram(xy: np.ndarray, values: np.ndarray, *, model: Literal["exponential", "spherical"] = "exponential",
                  n_lags: int = 8, relative: bool = True) -> Variogram:
    """Nugget, partial sill and range fitted by weighted least squares (weights N(h)/h²) on the empirical variogram.

    The range is searched on a grid (0.1 to 10 × the largest lag); for each range the model is linear in nugget and
    partial sill, solved in closed form with both kept non-negative. A flat (all-zero) variogram gives psill 0.
    """
    h, g, n = empirical_variogram(xy, values, n_lags=n_lags, relative=relative)
    _shape(model, np.zeros(1), 1.0)  # validates the model name
    if len(h) == 0 or not np.any(g > 0):
        rng = float(np.max(h)) if len(h) else 1.0
        return Variogram(model, 0.0, 0.0, rng)
    w = n / h**2
    ranges = np.geomspace(0.1 * h.max(), 10.0 * h.max(), 200)
    f = _shape(model, h[None, :], ranges[:, None])  # ranges × lags
    sw, swf, swff = w.sum(), (w * f).sum(1), (w * f * f).sum(1)
    swg, swfg = (w * g).sum(), (w * f * g).sum(1)
    det = sw * swff - swf**2
    with np.errstate(invalid="ignore", divide="ignore"):
        c0 = np.where(det > 0, (swff * swg - swf * swfg) / det, np.nan)
        c1 = np.where(det > 0, (sw * swfg - swf * swg) / det, np.nan)
        # constrained alternatives: nugget 0, or partial sill 0 (pure nugget)
        c1_only = np.where(swff > 0, swfg / swff, 0.0)
    c0_only = swg / sw
    cand_c0 = np.stack([c0, np.zeros_like(c0), np.full_like(c0, c0_only)])
    cand_c1 = np.stack([c1, np.maximum(c1_only, 0.0), np.zeros_like(c0)])
    valid = np.isfinite(cand_c0) & np.isfinite(cand_c1) & (cand_c0 >= 0) & (cand_c1 >= 0)
    pred = cand_c0[..., None] + cand_c1[..., None] * f[None]
    sse = np.where(valid, (w * (pred - g) ** 2).sum(-1), np.inf)
    k, r = np.unravel_index(np.argmin(sse), sse.shape)
    return Variogram(model, float(cand_c0[k, r]), float(cand_c1[k, r]), float(ranges[r]))


def idw_predict(xy_obs: np.ndarray, values: np.ndarray, xy_target: np.ndarray, *, power: float = 2.0,
                max_neighbours: int | None = None, radius_m: float | None = None) -> np.ndarray:
    """Inverse-distance-weighted estimates (targets × buckets) from station values (stations × buckets, NaN = none).

    Weights 1/dᵖ over the stations with a value in the bucket, restricted to those within ``radius_m`` and to the
    ``max_neighbours`` nearest; a target on a station (< 1 mm) takes its value; NaN where no station qualifies.
    """
    values = np.asarray(values, np.float64).reshape(len(xy_obs), -1)
    out = np.full((len(xy_target), values.shape[1]), np.nan)
    pats, inv = _patterns(values)
    d_all = _dist(np.asarray(xy_target, np.float64), np.asarray(xy_obs, np.float64))
    for p, avail in enumerate(pats):  # one solve per availability pattern
        cols = np.flatnonzero(inv == p)
        a = np.flatnonzero(avail)
        if len(a) == 0:
            continue
        d = d_all[:, a]
        keep = np.ones_like(d, bool)
        if radius_m is not None:
            keep &= d <= radius_m
        if max_neighbours is not None and max_neighbours < len(a):
            rank = np.argsort(np.argsort(d, axis=1, kind="stable"), axis=1, kind="stable")
            keep &= rank < max_neighbours
        with np.errstate(divide="ignore"):
            w = np.where(keep, 1.0 / np.maximum(d, _EXACT_M) ** power, 0.0)
        on = keep & (d < _EXACT_M)
        hit = on.any(axis=1)
        w[hit] = on[hit] / on[hit].sum(axis=1, keepdims=True)
        s = w.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, cols] = (w @ values[np.ix_(a, cols)]) / s
    return out


def kriging_predict(xy_obs: np.ndarray, values: np.ndarray, xy_target: np.ndarray, variogram: Variogram, *,
                    relative: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Ordinary kriging estimates and kriging variances (targets × buckets) from station values (NaN = none).

    The (a+1)² kriging system of each availability pattern is solved once with numpy for all targets. With a
    ``relative`` variogram the variance of a bucket is scaled by the square of its station mean.
    """
    values = np.asarray(values, np.float64).reshape(len(xy_obs), -1)
    xy_obs, xy_target = np.asarray(xy_obs, np.float64), np.asarray(xy_target, np.float64)
    est = np.full((len(xy_target), values.shape[1]), np.nan)
    var = np.full_like(est, np.nan)
    flat = variogram.sill <= 0
    vg = Variogram(variogram.model, 0.0, 1.0, variogram.range_m) if flat else variogram  # weights need a shape
    scale = _bucket_scale(values) ** 2 if relative else np.ones(values.shape[1])
    pats, inv = _patterns(values)
    g_all = vg(_dist(xy_obs, xy_target))  # stations × targets
    g_obs = vg(_dist(xy_obs, xy_obs))
    for p, avail in enumerate(pats):  # one solve per availability pattern
        cols = np.flatnonzero(inv == p)
        a = np.flatnonzero(avail)
        if len(a) == 0:
            continue
        k = np.zeros((len(a) + 1, len(a) + 1))
        k[:-1, :-1] = g_obs[np.ix_(a, a)]
        k[:-1, -1] = k[-1, :-1] = 1.0
        rhs = np.vstack([g_all[a], np.ones((1, len(xy_target)))])
        try:
            sol = np.linalg.solve(k, rhs)
        except np.linalg.LinAlgError:  # coincident stations: least-squares solution
            sol = np.linalg.lstsq(k, rhs, rcond=None)[0]
        lam, mu = sol[:-1], sol[-1]
        est[:, cols] = lam.T @ values[np.ix_(a, cols)]
        v0 = 0.0 if flat else 1.0
        var[:, cols] = np.maximum((lam * g_all[a]).sum(axis=0) + mu, 0.0)[:, None] * v0 * scale[cols][None, :]
    return est, var


def _predict(method: Method, xy_obs: np.ndarray, values: np.ndarray, xy_target: np.ndarray,
             params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None, Variogram | None]:
    """Estimates (and kriging variance and variogram) by ``method`` with its ``params``."""
    if method == "idw":
        est = idw_predict(xy_obs, values, xy_target, power=params.get("power", 2.0),
                          max_neighbours=params.get("max_neighbours"), radius_m=params.get("radius_m"))
        return est, None, None
    if method == "kriging":
        relative = params.get("relative", True)
        vg = fit_variogram(xy_obs, values, model=params.get("variogram_model", "exponential"),
                           n_lags=params.get("n_lags", 8), relative=relative)
        est, var = kriging_predict(xy_obs, values, xy_target, vg, relative=relative)
        return est, var, vg
    raise ValueError(f"unknown interpolation method {method!r}; use 'idw' or 'kriging'")


def cross_validate(xy: np.ndarray, values: np.ndarray, method: Method = "idw", **params: Any) -> dict[str, Any]:
    """Leave-one-out errors: each station predicted from the others in every bucket where it has a value.

    For kriging the variogram is refitted without the left-out station. Returns ``mae``, ``rmse``, ``n`` (number
    of station-buckets predicted) and ``per_station_mae`` (in station order).
    """
    values = np.asarray(values, np.float64)
    n = values.shape[0]
    errs: list[np.ndarray] = []
    per_station: list[float] = []
    for i in range(n):  # one fold per station
        rest = np.arange(n) != i
        est = _predict(method, xy[rest], values[rest], xy[i:i + 1], params)[0][0]
        e = est - values[i]
        e = e[np.isfinite(e)]
        errs.append(e)
        per_station.append(float(np.mean(np.abs(e))) if len(e) else float("nan"))
    e = np.concatenate(errs) if errs else np.zeros(0)
    if len(e) == 0:
        return {"mae": float("nan"), "rmse": float("nan"), "n": 0, "per_station_mae": per_station}
    return {"mae": float(np.mean(np.abs(e))), "rmse": float(np.sqrt(np.mean(e**2))), "n": int(len(e)),
            "per_station_mae": per_station}


def station_spread(values: np.ndarray) -> float:
    """Mean absolute deviation of station values from their bucket's station mean: the baseline CV must beat."""
    values = np.asarray(values, np.float64)
    dev = np.abs(values - _bucket_scale(values)[None, :])
    return float(np.nanmean(dev)) if np.isfinite(dev).any() else float("nan")


def samples_matrix(samples: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Station ids, lat, lng, values (stations × buckets, NaN = none) and bucket times (datetime64[us] or None).

    ``samples`` has columns sensor_id, lat, lng, t, value (e.g. ``twin.layers.sensors.station_series``); rows with
    a null or non-finite value are ignored; a null ``t`` everywhere means one static bucket.
    """
    v = samples["value"].to_numpy(zero_copy_only=False)
    v = np.where(pc.is_null(samples["value"]).to_numpy(zero_copy_only=False), np.nan, v).astype(np.float64)
    ids = pc.unique(samples["sensor_id"]).sort()
    si = pc.index_in(samples["sensor_id"], value_set=ids).to_numpy(zero_copy_only=False)
    static = samples["t"].null_count == samples.num_rows
    if not static and samples["t"].null_count:
        raise ValueError("samples mix static rows (t null) with timed rows")
    if static:
        times, ti = None, np.zeros(samples.num_rows, np.int64)
    else:
        tt = pc.cast(samples["t"], pa.timestamp("us", tz="UTC")).to_numpy().astype("datetime64[us]")
        times, ti = np.unique(tt, return_inverse=True)
    mat = np.full((len(ids), 1 if static else len(times)), np.nan)
    mat[si, ti.reshape(-1)] = v
    first = np.unique(si, return_index=True)[1]
    lat = samples["lat"].to_numpy(zero_copy_only=False)[first].astype(np.float64)
    lng = samples["lng"].to_numpy(zero_copy_only=False)[first].astype(np.float64)
    return np.asarray(ids.to_pylist(), dtype=object), lat, lng, mat, times


def interpolate_surface(samples: pa.Table, cells: np.ndarray, method: Method = "idw", *, power: float = 2.0,
                        max_neighbours: int | None = None, radius_m: float | None = None,
                        variogram_model: Literal["exponential", "spherical"] = "exponential", n_lags: int = 8,
                        relative: bool = True, cv: bool = True) -> Surface:
    """Interpolated values table over ``cells`` (uint64 H3, one resolution) for every time bucket of ``samples``.

    Each cell's centre gets the estimate (count 1, weight 1: one estimate per cell, so roll-ups average child cells
    equally); cells without an estimate in a bucket have no row. ``metadata`` holds method, params (with the fitted
    variogram for kriging), ``cv_mae``, ``cv_rmse`` (leave-one-out, see ``cross_validate``), ``cv_n``,
    ``station_mad`` (the spread CV is to be compared with), ``n_stations`` and ``n_buckets``. ``variance`` is the
    kriging variance as a values table (kriging only).
    """
    cells = np.unique(np.asarray(cells, np.uint64))
    res_all = ((cells >> np.uint64(52)) & np.uint64(0xF)).astype(np.int8)
    if len(cells) and np.any(res_all != res_all[0]):
        raise ValueError("cells must all have the same H3 resolution")
    res = int(res_all[0]) if len(cells) else 0
    ids, lat, lng, mat, times = samples_matrix(samples)
    if len(ids) == 0:
        raise ValueError("no station samples to interpolate")
    lat0, lng0 = float(np.mean(lat)), float(np.mean(lng))
    xy = local_xy(lat, lng, lat0, lng0)
    clat, clng = cell_centres(cells)
    xy_t = local_xy(clat, clng, lat0, lng0)
    params: dict[str, Any]
    if method == "idw":
        params = {"power": power, "max_neighbours": max_neighbours, "radius_m": radius_m}
    elif method == "kriging":
        params = {"variogram_model": variogram_model, "n_lags": n_lags, "relative": relative}
    else:
        raise ValueError(f"unknown interpolation method {method!r}; use 'idw' or 'kriging'")
    est, var, vg = _predict(method, xy, mat, xy_t, params)
    meta_params = dict(params, distance="local azimuthal equidistant projection, metres")
    if vg is not None:
        meta_params["variogram"] = vg.as_dict()
    cvr = cross_validate(xy, mat, method, **params) if cv and len(ids) > 1 else None
    meta = {"method": "idw" if method == "idw" else "ordinary_kriging", "params": meta_params,
            "cv_mae": None if cvr is None else cvr["mae"], "cv_rmse": None if cvr is None else cvr["rmse"],
            "cv_n": None if cvr is None else cvr["n"], "station_mad": station_spread(mat),
            "n_stations": len(ids), "n_buckets": mat.shape[1]}
    variance = None if var is None else _to_values(cells, res, var, times)
    return Surface(_to_values(cells, res, est, times), meta, variance)


def _to_values(cells: np.ndarray, res: int, grid: np.ndarray, times: np.ndarray | None) -> pa.Table:
    """A values table from a (cells × buckets) grid, leaving out NaN entries."""
    ok = np.isfinite(grid)
    ci, ti = np.nonzero(ok)
    t = None if times is None else times[ti]
    return make_values(cells[ci], res, grid[ci, ti], t=t)
