"""Airborne LiDAR simulator: scan-line pattern in flight strips, multiple returns in trees, tiled LAZ output.

Strips are flown north-south (alternating direction), abutting without overlap. One tile is simulated at a
time,
so memory is bounded by the tile size whatever the city size.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import laspy
import numpy as np

from . import crs
from .layout import BARE, GRASS, WATER, City
from .render import BRIDGE, ROAD, Index
from .roofs import local_uv, roof_height

ACQUIRED = dt.datetime(2024, 6, 12, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
STRIP_WIDTH = 400.0  # m
FLY_HEIGHT = 750.0  # m above ground, gives about +-15 degrees scan angle
SPEED = 60.0  # m/s
ALONG = 0.32  # nominal along-track spacing of scan lines, m
RES = 0.2  # m, cell size of the classification rasters
SIGMA_Z = 0.04  # m, vertical noise
GPS_EPOCH = dt.datetime(1980, 1, 6, tzinfo=dt.UTC)
LEAP_SECONDS = 18
MATERIAL_INTENSITY = {
    "concrete": 1900,
    "red_tile": 1500,
    "grey_tile": 1200,
    "blue_metal": 2600,
    "white_membrane": 3200,
    "dark_bitumen": 700,
}
GROUND_INTENSITY = {2: 1400, GRASS: 2300, BARE: 1800, ROAD: 700, BRIDGE: 1100}


def gps_start() -> float:
    """Adjusted standard GPS time (GPS seconds - 1e9) of the start of the flight."""
    return (ACQUIRED - GPS_EPOCH).total_seconds() + LEAP_SECONDS - 1e9


def tiles(city: City) -> list[tuple[float, float, float, float]]:
    t = city.spec.lidar_tile_m
    n = int(round(city.side / t))
    return [
        (city.x0 + i * t, city.y0 + j * t, city.x0 + (i + 1) * t, city.y0 + (j + 1) * t)
        for j in range(n)
        for i in range(n)
    ]


def tile_name(tile) -> str:
    return f"als_2024_{int(tile[0])}_{int(tile[1])}.laz"


def _pulses(city: City, tile, rng: np.random.Generator):
    """Scan pattern inside the tile: x, y, gps_time, strip id, scan angle (deg), edge flag, scan direction."""
    tx0, ty0, tx1, ty1 = tile
    da = ALONG
    dc = 1.0 / (city.spec.lidar_density * da)
    n_lines_total = int(np.ceil(city.side / da))
    nj = int(np.ceil(STRIP_WIDTH / dc))
    line_dt = da / SPEED
    turn = 90.0
    out = []
    k0, k1 = int((tx0 - city.x0) // STRIP_WIDTH), int(np.ceil((tx1 - city.x0) / STRIP_WIDTH))
    for k in range(k0, k1):
        sx0 = city.x0 + k * STRIP_WIDTH
        t0 = gps_start() + k * (city.side / SPEED + turn)
        i = np.arange(
            max(0, int((ty0 - city.y0) / da) - 1), min(n_lines_total, int((ty1 - city.y0) / da) + 2)
        )
        j = np.arange(max(0, int((tx0 - sx0) / dc) - 1), min(nj, int((tx1 - sx0) / dc) + 2))
        if len(i) == 0 or len(j) == 0:
            continue
        ii, jj = np.meshgrid(i, j, indexing="ij")
        ii, jj = ii.ravel(), jj.ravel()
        frac = (jj + 0.5) / nj
        sweep = np.where(ii % 2 == 0, frac, 1.0 - frac)  # oscillating mirror: alternate sweep direction
        x = sx0 + (jj + 0.5) * dc + rng.normal(0.0, 0.08 * dc, len(ii))
        y = city.y0 + (ii + 0.5) * da + (sweep - 0.5) * 0.8 * da + rng.normal(0.0, 0.08 * da, len(ii))
        keep = (x >= tx0) & (x < tx1) & (y >= ty0) & (y < ty1) & (x < sx0 + STRIP_WIDTH) & (x >= sx0)
        ii, jj, x, y, sweep = ii[keep], jj[keep], x[keep], y[keep], sweep[keep]
        line_no = ii if k % 2 == 0 else (n_lines_total - 1 - ii)  # fly north on even strips, south on odd
        t = t0 + (line_no + sweep) * line_dt
        ang = np.degrees(np.arctan((x - (sx0 + STRIP_WIDTH / 2)) / FLY_HEIGHT))
        edge = (jj == 0) | (jj == nj - 1)
        direction = ii % 2 == 0
        out.append((x, y, t, np.full(len(x), k + 1), ang, edge, direction))
    cols = list(zip(*out, strict=True))
    return [np.concatenate(c) for c in cols]


def simulate_tile(city: City, index: Index, tile, rng: np.random.Generator) -> dict[str, np.ndarray]:
    tx0, ty0, tx1, ty1 = tile
    x, y, t, src, ang, edge, direction = _pulses(city, tile, rng)
    w, h = int(round((tx1 - tx0) / RES)), int(round((ty1 - ty0) / RES))
    ground_r, part_r, tree_r = index.rasterize(tx0, ty1, w, h, RES)
    col = np.clip(((x - tx0) / RES).astype(np.int64), 0, w - 1)
    row = np.clip(((ty1 - y) / RES).astype(np.int64), 0, h - 1)
    gcode, pid, tid = ground_r[row, col], part_r[row, col] - 1, tree_r[row, col] - 1
    n = len(x)
    zg = city.terrain.z(x, y)
    z = zg.copy()
    cls = np.full(n, 2, np.uint8)
    inten = np.zeros(n, np.float64)
    nret = np.ones(n, np.int64)
    # ground surfaces
    lut = np.zeros(256, np.float64)
    for code, val in GROUND_INTENSITY.items():
        lut[code] = val
    inten[:] = lut[gcode]
    cls[gcode == BRIDGE] = 17
    # water: specular, most pulses give no return
    water = (gcode == WATER) & (pid < 0) & (tid < 0)
    z[water] = city.water_level
    cls[water] = 9
    inten[water] = 80
    # roofs
    roof = (pid >= 0) & (tid < 0)
    p = city.parts
    q = pid[roof]
    u, v = local_uv(x[roof], y[roof], p["cx"][q], p["cy"][q], p["angle"][q])
    z[roof] = p["ground"][q] + roof_height(
        u, v, p["a"][q], p["b"][q], p["code"][q], p["eave"][q], p["rise"][q]
    )
    cls[roof] = 6
    mat = np.array([MATERIAL_INTENSITY[b["material"]] for b in city.buildings] or [0], np.float64)
    inten[roof] = mat[p["building"][q]]
    # trees: multiple returns
    tree = tid >= 0
    tr = city.trees
    ti = tid[tree]
    r = np.hypot(x[tree] - tr["x"][ti], y[tree] - tr["y"][ti])
    crown = np.sqrt(np.clip(1.0 - (r / tr["crown_r"][ti]) ** 2, 0.0, None))
    ztop = tr["ground"][ti] + tr["crown_base"][ti] + (tr["height"][ti] - tr["crown_base"][ti]) * crown
    nret[tree] = rng.choice(4, size=len(ti), p=[0.3, 0.35, 0.25, 0.1]) + 1
    keep = ~water | (rng.random(n) < 0.3)
    # expand pulses into returns
    nret = np.where(keep, nret, 0)
    total = int(nret.sum())
    pulse = np.repeat(np.arange(n), nret)
    first = np.cumsum(nret) - nret
    rn = np.arange(total) - np.repeat(first, nret) + 1
    nr = nret[pulse]
    zz, cc, ii = z[pulse], cls[pulse], inten[pulse]
    is_tree = tree[pulse]
    if is_tree.any():
        ztree = np.zeros(n)
        ztree[tree] = ztop
        zt = ztree[pulse][is_tree]
        zgr = zg[pulse][is_tree]
        k, m = rn[is_tree], nr[is_tree]
        z_first = zt - rng.exponential(0.25, len(zt))
        span = np.clip(z_first - (zgr + 0.3), 0.0, None)
        z_ret = z_first - span * ((k - 1) + 0.8 * rng.random(len(zt))) / m
        z_ret = np.where(k == 1, z_first, z_ret)
        to_ground = (k == m) & (m > 1) & (rng.random(len(zt)) < 0.55)
        z_ret = np.where(to_ground, zgr, z_ret)
        hag = z_ret - zgr
        veg_cls = np.where(hag < 2.0, 3, np.where(hag < 5.0, 4, 5)).astype(np.uint8)
        gcls = cc[is_tree]
        cc[is_tree] = np.where(to_ground, gcls, veg_cls)
        ground_int = ii[is_tree]
        ii[is_tree] = np.where(to_ground, ground_int * 0.5, (1800.0 + 600 * rng.random(len(zt))) / m)
        zz[is_tree] = z_ret
    zz = zz + rng.normal(0.0, SIGMA_Z, total)
    zz[cc == 9] = city.water_level + rng.normal(0.0, 0.015, int((cc == 9).sum()))
    ii = np.clip(ii * rng.normal(1.0, 0.08, total), 1, 65535)
    order = np.lexsort((rn, t[pulse]))
    pts = {
        "x": x[pulse],
        "y": y[pulse],
        "z": zz,
        "intensity": ii.astype(np.uint16),
        "return_number": rn.astype(np.uint8),
        "number_of_returns": nr.astype(np.uint8),
        "classification": cc,
        "gps_time": t[pulse],
        "point_source_id": src[pulse].astype(np.uint16),
        "scan_angle": np.round(ang[pulse] / 0.006).astype(np.int16),
        "edge_of_flight_line": edge[pulse].astype(np.uint8),
        "scan_direction_flag": direction[pulse].astype(np.uint8),
    }
    return {k_: val[order] for k_, val in pts.items()}


def write_laz(path: Path, pts: dict[str, np.ndarray], tile) -> None:
    header = laspy.LasHeader(point_format=6, version="1.4")
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.array([tile[0], tile[1], 0.0])
    header.creation_date = ACQUIRED.date()
    header.generating_software = "twin.demo simulator"
    header.system_identifier = "TWIN simulated ALS"
    header.global_encoding.gps_time_type = laspy.header.GpsTimeType.STANDARD
    header.global_encoding.wkt = True
    header.vlrs.append(laspy.vlrs.known.WktCoordinateSystemVlr(crs.wkt()))
    las = laspy.LasData(header)
    las.x, las.y, las.z = pts["x"], pts["y"], pts["z"]
    for name in (
        "intensity",
        "return_number",
        "number_of_returns",
        "classification",
        "gps_time",
        "point_source_id",
        "scan_angle",
        "edge_of_flight_line",
        "scan_direction_flag",
    ):
        setattr(las, name, pts[name])
    las.write(str(path))


def generate_lidar(city: City, out_dir: Path, progress=None) -> list[dict]:
    """Write one LAZ file per tile; returns per-file info (path, points, class counts)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = Index(city, 1)
    infos = []
    all_tiles = tiles(city)
    for n, tile in enumerate(all_tiles):
        rng = np.random.default_rng([city.seed, 100, int(tile[0] - city.x0), int(tile[1] - city.y0)])
        pts = simulate_tile(city, index, tile, rng)
        path = out_dir / tile_name(tile)
        write_laz(path, pts, tile)
        infos.append({"path": path, "points": int(len(pts["x"])), "tile": tile})
        del pts
        if progress:
            progress((n + 1) / len(all_tiles))
    return infos
