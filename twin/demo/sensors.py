"""Ground sensors: air-quality stations and traffic counters with hourly series (local time, +08:00).

Series have realistic gaps: single empty values, missing hours (rows absent) and one multi-hour outage.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import shapely

from . import crs
from .layout import City

START = dt.datetime(2024, 5, 27, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def _hours(days: int):
    n = days * 24
    stamps = [(START + dt.timedelta(hours=h)).isoformat() for h in range(n)]
    hod = np.arange(n) % 24
    dow = (np.arange(n) // 24 + START.weekday()) % 7  # 0 = Monday
    return stamps, hod, dow


def _fmt(v: float, nd: int) -> str:
    return "" if not np.isfinite(v) else f"{v:.{nd}f}"


def _ar1(rng, n, rho, sigma):
    e = rng.normal(0.0, sigma, n)
    out = np.empty(n)
    acc = 0.0
    for i in range(n):  # n = hours (a few hundred), not points
        acc = rho * acc + e[i]
        out[i] = acc
    return out


def generate_sensors(city: City, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([city.seed, 300])
    spec = city.spec
    to_ll = crs.to_wgs84()
    stations = []
    # air-quality stations: in blocks, spread over the city
    blocks = [b for b in city.blocks if b["poly"].area > 2000]
    pick = rng.choice(len(blocks), size=min(spec.n_air_stations, len(blocks)), replace=False)
    for k, bi in enumerate(sorted(pick.tolist())):
        p = blocks[bi]["poly"].representative_point()
        stations.append(
            {
                "station_id": f"AQ{k + 1:03d}",
                "kind": "air_quality",
                "name": f"Dongcheng AQ {k + 1}",
                "x": p.x,
                "y": p.y,
                "road_id": "",
            }
        )
    major = [r for r in city.roads if r["class"] in ("primary", "secondary")] or city.roads
    pick = rng.choice(len(major), size=min(spec.n_traffic_stations, len(major)), replace=False)
    for k, ri in enumerate(sorted(pick.tolist())):
        road = major[ri]
        p = shapely.line_interpolate_point(road["geom"], rng.uniform(0.2, 0.8), normalized=True)
        stations.append(
            {
                "station_id": f"TC{k + 1:03d}",
                "kind": "traffic",
                "name": f"{road['name']} counter",
                "x": p.x,
                "y": p.y,
                "road_id": road["road_id"],
                "class": road["class"],
                "lanes": road["lanes"],
            }
        )
    with open(out_dir / "stations.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(
            ["station_id", "kind", "name", "lon_wgs84", "lat_wgs84", "x_epsg4548", "y_epsg4548", "road_id"]
        )
        for s in stations:
            lon, lat = to_ll.transform(s["x"], s["y"])
            w.writerow(
                [
                    s["station_id"],
                    s["kind"],
                    s["name"],
                    f"{lon:.6f}",
                    f"{lat:.6f}",
                    f"{s['x']:.2f}",
                    f"{s['y']:.2f}",
                    s["road_id"],
                ]
            )

    stamps, hod, dow = _hours(spec.days)
    n = len(stamps)
    weekday = dow < 5
    # regional pollution episodes shared by all stations (synoptic), plus local variation
    regional = np.exp(_ar1(rng, n, 0.985, 0.09))
    diurnal_pm = (
        1.0 + 0.25 * np.cos(2 * np.pi * (hod - 22) / 24) + 0.12 * np.exp(-0.5 * ((hod - 8) / 1.5) ** 2)
    )
    diurnal_no2 = (
        1.0
        + 0.45 * np.exp(-0.5 * ((hod - 8) / 1.5) ** 2)
        + 0.55 * np.exp(-0.5 * ((hod - 19) / 2) ** 2)
        - 0.3 * np.exp(-0.5 * ((hod - 14) / 2.5) ** 2)
    )
    week = np.where(weekday, 1.08, 0.85)
    aq_rows = []
    n_aq_gaps = n_missing = 0
    for s in stations:
        if s["kind"] != "air_quality":
            continue
        base = rng.uniform(28, 45)
        local = np.exp(_ar1(rng, n, 0.8, 0.12))
        pm25 = base * regional * diurnal_pm * week * local
        pm10 = pm25 * rng.uniform(1.4, 1.8) * np.exp(rng.normal(0, 0.1, n)) + rng.gamma(2.0, 4.0, n)
        no2 = rng.uniform(25, 40) * diurnal_no2 * week * np.exp(_ar1(rng, n, 0.7, 0.15))
        vals = np.column_stack([pm25, pm10, no2])
        gaps = rng.random(vals.shape) < 0.03
        vals[gaps] = np.nan
        n_aq_gaps += int(gaps.sum())
        missing = rng.random(n) < 0.015
        o = int(rng.integers(0, n - 12))
        missing[o : o + int(rng.integers(4, 12))] = True  # an outage of several hours
        n_missing += int(missing.sum())
        for h in np.nonzero(~missing)[0]:
            aq_rows.append(
                (stamps[h], s["station_id"], _fmt(vals[h, 0], 1), _fmt(vals[h, 1], 1), _fmt(vals[h, 2], 1))
            )
    aq_rows.sort(key=lambda r: (r[0], r[1]))
    with open(out_dir / "air_quality_hourly.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["timestamp", "station_id", "pm25_ugm3", "pm10_ugm3", "no2_ugm3"])
        w.writerows(aq_rows)

    wd_profile = (
        0.15
        + 0.9 * np.exp(-0.5 * ((hod - 8) / 1.3) ** 2)
        + 0.95 * np.exp(-0.5 * ((hod - 18) / 1.6) ** 2)
        + 0.45 * np.exp(-0.5 * ((hod - 13) / 3.0) ** 2)
        - 0.12 * np.exp(-0.5 * ((hod - 3) / 2.0) ** 2)
    )
    we_profile = 0.12 + 0.75 * np.exp(-0.5 * ((hod - 14) / 3.5) ** 2)
    profile = np.where(weekday, wd_profile, we_profile)
    tr_rows = []
    n_tr_gaps = 0
    for s in stations:
        if s["kind"] != "traffic":
            continue
        cap = {"primary": 1700.0, "secondary": 1100.0}.get(s["class"], 500.0) * s["lanes"] / 2
        lam = cap * np.clip(profile, 0.02, None) * rng.uniform(0.7, 1.1)
        counts = rng.poisson(lam).astype(np.float64)
        gaps = rng.random(n) < 0.02
        counts[gaps] = np.nan
        n_tr_gaps += int(gaps.sum())
        missing = rng.random(n) < 0.01
        n_missing += int(missing.sum())
        for h in np.nonzero(~missing)[0]:
            tr_rows.append((stamps[h], s["station_id"], s["road_id"], _fmt(counts[h], 0)))
    tr_rows.sort(key=lambda r: (r[0], r[1]))
    with open(out_dir / "traffic_counts_hourly.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["timestamp", "station_id", "road_id", "vehicles_per_hour"])
        w.writerows(tr_rows)
    return {
        "stations": len(stations),
        "air_quality_rows": len(aq_rows),
        "traffic_rows": len(tr_rows),
        "empty_values": n_aq_gaps + n_tr_gaps,
        "missing_hours": n_missing,
        "period": [stamps[0], stamps[-1]],
    }
