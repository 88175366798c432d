"""H3 indexing of coordinate arrays (cells as uint64), identical to h3-py's ``latlng_to_cell`` for every point.

Bulk indexing (``latlng_to_cells``) is exact and fast without a compiled helper:

1. H3 places a point on the icosahedron face with the nearest centre, projects it gnomonically onto that face and
   rounds the resulting 2D "hex2d" coordinates to the nearest hexagon centre of the resolution's lattice. The cell id
   is a deterministic function of (face, lattice point).
2. Over the data's bounding box we evaluate that projection (same formulas and constants as the H3 C library) exactly
   on a coarse node grid and interpolate it bilinearly elsewhere; the interpolation error ``eps`` is measured on the
   grid (edge midpoints, with a safety factor) and is ~1e-6 of a cell spacing.
3. A fine pixel grid (about 1/16 of the hexagon edge) is classified once: a pixel whose four interpolated corners fall
   in the same hexagon with a margin larger than ``eps`` lies wholly inside that hexagon (bilinear images are convex
   combinations of the corners and the hexagon is convex), so its points need one table look-up.
4. Points in the other pixels get their own interpolated hex2d coordinates and are rounded in numpy; those closer than
   the error bound to a hexagon edge, near an icosahedron face edge, near the poles or in sparse far-away areas go
   through ``h3.latlng_to_cell`` itself.
5. Each distinct lattice point is turned into its H3 id by one ``h3.latlng_to_cell`` call on a point proven to lie
   inside it, and checked: the returned cell's centre must project back onto that lattice point (else its points go
   through the exact path too).

Face-centre tables and constants come from the H3 C library (``faceijk.c``, ``constants.h``; Apache-2.0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import h3
import numpy as np
from h3.api import basic_int as _h3i

__all__ = ["FastIndexStats", "cell_boundaries", "cell_centers", "cells_to_parent", "estimate_polygon_cells",
           "latlng_to_cells", "polygon_cells", "aggregate_points"]

# icosahedron face centres (lat, lng radians), unit vectors and the azimuth of each face's Class II i-axis
_FACE_GEO = np.array([
    [0.803582649718989942, 1.248397419617396099], [1.307747883455638156, 2.536945009877921159],
    [1.054751253523952054, -1.347517358900396623], [0.600191595538186799, -0.450603909469755746],
    [0.491715428198773866, 0.401988202911306943], [0.172745327415618701, 1.678146885280433686],
    [0.605929321571350690, 2.953923329812411617], [0.427370518328979641, -1.888876200336285401],
    [-0.079066118549212831, -0.733429513380867741], [-0.230961644455383637, 0.506495587332349035],
    [0.079066118549212831, 2.408163140208925497], [0.230961644455383637, -2.635097066257444203],
    [-0.172745327415618701, -1.463445768309359553], [-0.605929321571350690, -0.187669323777381622],
    [-0.427370518328979641, 1.252716453253507838], [-0.600191595538186799, 2.690988744120037492],
    [-0.491715428198773866, -2.739604450678486295], [-0.803582649718989942, -1.893195233972397139],
    [-1.307747883455638156, -0.604647643711872080], [-1.054751253523952054, 1.794075294689396615],
])
_FACE_XYZ = np.array([
    [0.2199307791404606, 0.6583691780274996, 0.7198475378926182],
    [-0.2139234834501421, 0.1478171829550703, 0.9656017935214205],
    [0.1092625278784797, -0.4811951572873210, 0.8697775121287253],
    [0.7428567301586791, -0.3593941678278028, 0.5648005936517033],
    [0.8112534709140969, 0.3448953237639384, 0.4721387736413930],
    [-0.1055498149613921, 0.9794457296411413, 0.1718874610009365],
    [-0.8075407579970092, 0.1533552485898818, 0.5695261994882688],
    [-0.2846148069787907, -0.8644080972654206, 0.4144792552473539],
    [0.7405621473854482, -0.6673299564565524, -0.0789837646326737],
    [0.8512303986474293, 0.4722343788582681, -0.2289137388687808],
    [-0.7405621473854481, 0.6673299564565524, 0.0789837646326737],
    [-0.8512303986474292, -0.4722343788582682, 0.2289137388687808],
    [0.1055498149613919, -0.9794457296411413, -0.1718874610009365],
    [0.8075407579970092, -0.1533552485898819, -0.5695261994882688],
    [0.2846148069787908, 0.8644080972654204, -0.4144792552473539],
    [-0.7428567301586791, 0.3593941678278027, -0.5648005936517033],
    [-0.8112534709140971, -0.3448953237639382, -0.4721387736413930],
    [-0.2199307791404607, -0.6583691780274996, -0.7198475378926182],
    [0.2139234834501420, -0.1478171829550704, -0.9656017935214205],
    [-0.1092625278784796, 0.4811951572873210, -0.8697775121287253],
])
_FACE_AZ0 = np.array([
    5.619958268523939882, 5.760339081714187279, 0.780213654393430055, 0.430469363979999913, 6.130269123335111400,
    2.692877706530642877, 2.982963003477243874, 3.532912002790141181, 3.494305004259568154, 3.003214169499538391,
    5.930472956509811562, 0.138378484090254847, 0.448714947059150361, 0.158629650112549365, 5.891865957979238535,
    2.711123289609793325, 3.294508837434268316, 3.804819692245439833, 3.664438879055192436, 2.361378999196363184,
])
_RES0_U_GNOMONIC = 0.38196601125010500003
_AP7_ROT_RADS = 0.333473172251832115336090755351601070065900389
_SQRT7 = 2.6457513110645905905016157536392604257102
_SQRT3_2 = math.sqrt(3.0) / 2.0
_TWO_PI = 2.0 * math.pi
_EARTH_R_M = 6371007.180918475
_M_PER_DEG = _EARTH_R_M * math.pi / 180.0

_MIN_FAST = 2048  # below this many points the exact loop is as fast as any set-up
_MAX_SPAN_DEG = 3.0  # a fast region covers at most this much latitude/longitude
_MAX_ABS_LAT = 80.0  # nearer the poles everything goes through the exact path
_PIXELS_PER_EDGE = 16.0
_MAX_PIXELS = 4_000_000
_EPS_TARGET = 1e-6  # aimed bilinear interpolation error in lattice units (hexagon centre spacing = 1)
_DENSE_KEYS = 1 << 25


class FastIndexStats(dict):
    """Counters of the last bulk indexing (points, fast table hits, numpy-rounded points, exact h3 calls)."""


LAST_STATS = FastIndexStats()


def _exact(lat: np.ndarray, lng: np.ndarray, res: int) -> np.ndarray:
    """Cells via h3-py one point at a time (the reference the fast path must equal)."""
    f = _h3i.latlng_to_cell
    return np.fromiter((f(a, b, res) for a, b in zip(lat.tolist(), lng.tolist(), strict=True)), dtype=np.uint64,
                       count=len(lat))


def _pos_angle(a: np.ndarray) -> np.ndarray:
    """Angle normalised to [0, 2π) like H3's ``_posAngleRads``."""
    t = np.where(a < 0.0, a + _TWO_PI, a)
    return np.where(t >= _TWO_PI, t - _TWO_PI, t)


def _hex2d(lat_deg: np.ndarray, lng_deg: np.ndarray, face: int, res: int) -> tuple[np.ndarray, np.ndarray]:
    """H3's gnomonic hex2d coordinates of positions on ``face`` at ``res`` (H3's ``_geoToHex2d`` in numpy)."""
    lat = np.radians(lat_deg)
    lng = np.radians(lng_deg)
    clat, slat = np.cos(lat), np.sin(lat)
    fx, fy, fz = _FACE_XYZ[face]
    sqd = (clat * np.cos(lng) - fx) ** 2 + (clat * np.sin(lng) - fy) ** 2 + (slat - fz) ** 2
    r = np.arccos(1.0 - sqd * 0.5)
    flat, flng = _FACE_GEO[face]
    dl = lng - flng
    az = np.arctan2(clat * np.sin(dl), math.cos(flat) * slat - math.sin(flat) * clat * np.cos(dl))
    theta = _pos_angle(_FACE_AZ0[face] - _pos_angle(az))
    if res % 2 == 1:
        theta = _pos_angle(theta - _AP7_ROT_RADS)
    r = np.tan(r) / _RES0_U_GNOMONIC
    for _ in range(res):
        r = r * _SQRT7
    return r * np.cos(theta), r * np.sin(theta)


def _hex_round(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest lattice point (i, j) of hex2d coordinates and the distance to that hexagon's edge (lattice units)."""
    jf = y * (1.0 / _SQRT3_2)
    q = x + 0.5 * jf
    r = -jf
    s = -q - r
    rq, rr, rs = np.rint(q), np.rint(r), np.rint(s)
    dq, dr, ds = np.abs(rq - q), np.abs(rr - r), np.abs(rs - s)
    fix_q = (dq > dr) & (dq > ds)
    fix_r = ~fix_q & (dr > ds)
    rq = np.where(fix_q, -rr - rs, rq)
    rr = np.where(fix_r, -rq - rs, rr)
    i, j = rq, -rr
    dx = x - (i - 0.5 * j)
    dy = y - j * _SQRT3_2
    a = np.abs(dx)
    h = 0.5 * dx
    v = _SQRT3_2 * dy
    m = np.maximum(a, np.maximum(np.abs(h + v), np.abs(v - h)))
    return i.astype(np.int64), j.astype(np.int64), 0.5 - m


def _closest_face(lat_deg: float, lng_deg: float) -> int:
    """Icosahedron face whose centre is nearest to a position."""
    la, ln = math.radians(lat_deg), math.radians(lng_deg)
    v = np.array([math.cos(la) * math.cos(ln), math.cos(la) * math.sin(ln), math.sin(la)])
    return int(np.argmin(((_FACE_XYZ - v) ** 2).sum(axis=1)))


def _face_certain(lat_deg: np.ndarray, lng_deg: np.ndarray, rho: np.ndarray, face: int) -> np.ndarray:
    """Whether every position within angular radius ``rho`` of each centre is nearest to ``face`` (with a margin)."""
    la, ln = np.broadcast_arrays(np.radians(lat_deg), np.radians(lng_deg))
    v = np.stack([np.cos(la) * np.cos(ln), np.cos(la) * np.sin(ln), np.sin(la)], axis=-1)
    ang = np.arccos(np.clip(v @ _FACE_XYZ.T, -1.0, 1.0))
    own = ang[..., face].copy()
    ang[..., face] = np.inf
    return own + 2.0 * rho + 1e-9 < ang.min(axis=-1)


def _bilinear(gx: np.ndarray, gy: np.ndarray, cu: np.ndarray, cv: np.ndarray, tu: np.ndarray,
              tv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear interpolation of node grids ``gx``/``gy`` (shape (my+1, mx+1)) in coarse cell (cv, cu)."""
    w = gx.shape[1]
    k = cv * w + cu
    fx, fy = gx.ravel(), gy.ravel()
    su, sv = 1.0 - tu, 1.0 - tv
    x = sv * (su * fx[k] + tu * fx[k + 1]) + tv * (su * fx[k + w] + tu * fx[k + w + 1])
    y = sv * (su * fy[k] + tu * fy[k + 1]) + tv * (su * fy[k + w] + tu * fy[k + w + 1])
    return x, y


def _fast_region(lat: np.ndarray, lng: np.ndarray, res: int, out: np.ndarray, stats: dict) -> np.ndarray:
    """Index points of one compact region into ``out``; returns the positions (into lat) that still need h3."""
    n = len(lat)
    la0, la1 = float(lat.min()), float(lat.max())
    ln0, ln1 = float(lng.min()), float(lng.max())
    lat_c = 0.5 * (la0 + la1)
    coslat = max(math.cos(math.radians(max(abs(la0), abs(la1)))), 1e-3)
    edge = h3.average_hexagon_edge_length(res, "m")
    spacing = edge * math.sqrt(3.0)
    w_m = max((ln1 - ln0) * _M_PER_DEG * coslat, 1.0)
    h_m = max((la1 - la0) * _M_PER_DEG, 1.0)
    cap = max(1024, min(_MAX_PIXELS, n // 2))
    p = max(edge / _PIXELS_PER_EDGE, math.sqrt(w_m * h_m / cap))
    coarse = math.sqrt(8.0 * spacing * _EARTH_R_M * _EPS_TARGET)
    m = max(1, min(64, int(coarse / p)))
    dlat = p / _M_PER_DEG
    dlng = p / (_M_PER_DEG * coslat)
    mx = max(1, math.ceil((ln1 - ln0) / (m * dlng) + 1e-9))
    my = max(1, math.ceil((la1 - la0) / (m * dlat) + 1e-9))
    # pad so that every point falls strictly inside the grid
    ln0 -= 0.25 * dlng
    la0 -= 0.25 * dlat
    mx += 1
    my += 1
    nx, ny = mx * m, my * m
    face = _closest_face(lat_c, 0.5 * (ln0 + ln1))

    # exact projection on the coarse nodes, and the measured interpolation error on coarse edge midpoints
    cl = ln0 + np.arange(mx + 1) * (m * dlng)
    ca = la0 + np.arange(my + 1) * (m * dlat)
    gx, gy = _hex2d(ca[:, None], cl[None, :], face, res)
    mid_l = 0.5 * (cl[:-1] + cl[1:])
    mid_a = 0.5 * (ca[:-1] + ca[1:])
    hx, hy = _hex2d(ca[:, None], mid_l[None, :], face, res)
    vx, vy = _hex2d(mid_a[:, None], cl[None, :], face, res)
    err = max(np.abs(hx - 0.5 * (gx[:, :-1] + gx[:, 1:])).max(), np.abs(hy - 0.5 * (gy[:, :-1] + gy[:, 1:])).max(),
              np.abs(vx - 0.5 * (gx[:-1] + gx[1:])).max(), np.abs(vy - 0.5 * (gy[:-1] + gy[1:])).max())
    scale = float(max(np.abs(gx).max(), np.abs(gy).max(), 1.0))
    tol = 3.0 * 2.0 * float(err) + 1e-13 * scale + 1e-9
    stats["eps"] = tol
    if not tol < 0.05:  # projection too curved for the grid (should not happen below 80° latitude)
        return np.arange(n)

    # coarse cells wholly on ``face`` (angular half-diagonal, generous)
    half = 0.5 * math.hypot(m * p, m * p) / _EARTH_R_M * 1.01 + 1e-12
    face_ok = _face_certain(mid_a[:, None], mid_l[None, :], np.full((my, mx), half), face)

    # classify pixels from their interpolated corners
    a = np.arange(nx + 1)
    b = np.arange(ny + 1)
    cu = np.minimum(a // m, mx - 1)
    cv = np.minimum(b // m, my - 1)
    tu = (a - cu * m) / m
    tv = (b - cv * m) / m
    # separable bilinear: along latitude on the coarse columns, then along longitude
    colx = (1.0 - tv)[:, None] * gx[cv] + tv[:, None] * gx[cv + 1]
    coly = (1.0 - tv)[:, None] * gy[cv] + tv[:, None] * gy[cv + 1]
    nxx = (1.0 - tu) * colx[:, cu] + tu * colx[:, cu + 1]
    nyy = (1.0 - tu) * coly[:, cu] + tu * coly[:, cu + 1]
    ni, nj, nm = _hex_round(nxx, nyy)
    i_lo, i_hi = int(ni.min()) - 1, int(ni.max()) + 1
    j_lo, j_hi = int(nj.min()) - 1, int(nj.max()) + 1
    span_j = j_hi - j_lo + 1
    nkey = (ni - i_lo) * span_j + (nj - j_lo)
    k00, k01, k10, k11 = nkey[:-1, :-1], nkey[:-1, 1:], nkey[1:, :-1], nkey[1:, 1:]
    mmin = np.minimum(np.minimum(nm[:-1, :-1], nm[:-1, 1:]), np.minimum(nm[1:, :-1], nm[1:, 1:]))
    pix_face = np.repeat(np.repeat(face_ok, m, axis=0), m, axis=1)
    good = (k00 == k01) & (k00 == k10) & (k00 == k11) & (mmin > tol) & pix_face
    pixkey = np.where(good, k00, -1).ravel()

    # per point: the pixel's key, or numpy rounding of its own interpolated coordinates
    inv_x, inv_y = 1.0 / dlng, 1.0 / dlat
    u = np.subtract(lng, ln0)
    u *= inv_x
    v = np.subtract(lat, la0)
    v *= inv_y
    ity = np.int32 if (nx + 1) * (ny + 1) < 2**31 - 1 else np.int64
    pix = v.astype(ity)  # the grid has a spare coarse row/column, so no point falls past its end
    pix *= ity(nx)
    pix += u.astype(ity)
    keys = pixkey[pix]
    unc = np.flatnonzero(keys < 0)
    stats["table"] = stats.get("table", 0) + n - len(unc)
    if len(unc):
        uu = u[unc] * (1.0 / m)
        vv = v[unc] * (1.0 / m)
        pcu = np.minimum(uu.astype(np.int64), mx - 1)
        pcv = np.minimum(vv.astype(np.int64), my - 1)
        px, py = _bilinear(gx, gy, pcu, pcv, uu - pcu, vv - pcv)
        pi, pj, pm = _hex_round(px, py)
        ok = (pm > tol) & face_ok[pcv, pcu] & (pi >= i_lo) & (pi <= i_hi) & (pj >= j_lo) & (pj <= j_hi)
        keys[unc] = np.where(ok, (pi - i_lo) * span_j + (pj - j_lo), -1)
        stats["rounded"] = stats.get("rounded", 0) + int(ok.sum())

    # one h3 call per distinct lattice point, on a position proven inside it, checked by projecting its centre back
    fast = keys >= 0
    n_keys = (i_hi - i_lo + 1) * span_j
    if n_keys <= _DENSE_KEYS:
        rep = np.full(n_keys, -1, np.int64)
        gk = pixkey >= 0
        rep_pix = np.flatnonzero(gk)
        rep[pixkey[rep_pix]] = -2 - rep_pix  # pixel centres as representatives (encoded negative)
        if len(unc):
            ku = keys[unc]
            sel = ku >= 0
            rep[ku[sel]] = unc[sel]
        used = np.flatnonzero(rep != -1)
        codes_of_key = None
    else:
        uk, inv = np.unique(keys[fast], return_inverse=True)
        first = np.full(len(uk), -1, np.int64)
        fpos = np.flatnonzero(fast)
        first[inv[::-1]] = fpos[::-1]
        rep = first
        used = np.arange(len(uk))
        codes_of_key = (uk, inv)
    r_sel = rep[used]
    r_lat = np.empty(len(used))
    r_lng = np.empty(len(used))
    by_pt = r_sel >= 0
    r_lat[by_pt] = lat[r_sel[by_pt]]
    r_lng[by_pt] = lng[r_sel[by_pt]]
    pp = -2 - r_sel[~by_pt]
    r_lat[~by_pt] = la0 + (pp // nx + 0.5) * dlat
    r_lng[~by_pt] = ln0 + (pp % nx + 0.5) * dlng
    cells = _exact(r_lat, r_lng, res)
    # self-check: the cell's centre must project onto the lattice point of the key
    if codes_of_key is None:
        ki, kj = used // span_j + i_lo, used % span_j + j_lo
    else:
        ki, kj = codes_of_key[0] // span_j + i_lo, codes_of_key[0] % span_j + j_lo
    centres = np.array([_h3i.cell_to_latlng(int(c)) for c in cells.tolist()]).reshape(-1, 2)
    cx, cy = _hex2d(centres[:, 0], centres[:, 1], face, res)
    bad = (np.abs(cx - (ki - 0.5 * kj)) > 1e-6) | (np.abs(cy - kj * _SQRT3_2) > 1e-6)
    cells[bad] = 0
    stats["keys"] = stats.get("keys", 0) + len(used)
    stats["bad_keys"] = stats.get("bad_keys", 0) + int(bad.sum())
    if codes_of_key is None:
        # slot 0 of the table stands for key -1 (unresolved): one gather straight into ``out``
        table = np.zeros(n_keys + 1, np.uint64)
        table[used + 1] = cells
        keys += 1
        np.take(table, keys, out=out)
    else:
        out[:] = 0
        out[fast] = cells[codes_of_key[1]]
    return np.flatnonzero(out == 0)


def _regions(lat: np.ndarray, lng: np.ndarray) -> list[np.ndarray]:
    """Index groups of compact regions (whole input when it is compact, else 1° tiles)."""
    if (lat.max() - lat.min() <= _MAX_SPAN_DEG) and (lng.max() - lng.min() <= _MAX_SPAN_DEG):
        return [np.arange(len(lat))]
    tile = (np.floor(lat).astype(np.int64) + 90) * 400 + (np.floor(lng).astype(np.int64) + 200)
    order = np.argsort(tile, kind="stable")
    st = tile[order]
    cuts = np.flatnonzero(np.diff(st)) + 1
    return np.split(order, cuts)


def latlng_to_cells(lat: np.ndarray, lng: np.ndarray, res: int) -> np.ndarray:
    """H3 cells (uint64) of WGS84 positions at ``res``, identical to ``h3.latlng_to_cell``; NaN positions give 0."""
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    lng = np.ascontiguousarray(lng, dtype=np.float64)
    if not 0 <= int(res) <= 15:
        raise ValueError(f"resolution {res} outside 0..15")
    res = int(res)
    out = np.zeros(lat.shape, dtype=np.uint64)
    flat_out = out.reshape(-1)
    la, ln = lat.reshape(-1), lng.reshape(-1)
    if len(la) and -_MAX_ABS_LAT <= la.min() and la.max() <= _MAX_ABS_LAT and -180.0 <= ln.min() and ln.max() <= 180.0:
        # the common case, decided by four reductions (NaN fails them): every point may take the fast path
        stats = FastIndexStats(points=len(la), table=0, rounded=0)
        exact_idx, idx = [np.zeros(0, np.int64)], None
        fast = None
    else:
        finite = np.isfinite(la) & np.isfinite(ln)
        fast = finite & (np.abs(la) <= _MAX_ABS_LAT) & (np.abs(ln) <= 180.0)
        stats = FastIndexStats(points=int(finite.sum()), table=0, rounded=0)
        exact_idx = [np.flatnonzero(finite & ~fast)]
        idx = np.flatnonzero(fast)
    if res >= 1 and (len(la) if idx is None else len(idx)) >= _MIN_FAST:
        sla, sln = (la, ln) if idx is None else (la[idx], ln[idx])
        for grp in _regions(sla, sln):
            gidx = grp if idx is None else idx[grp]
            if len(grp) < _MIN_FAST:
                exact_idx.append(gidx)
                continue
            whole = idx is None and len(grp) == len(la)
            glat, glng = (sla, sln) if whole else (sla[grp], sln[grp])
            part = flat_out if whole else np.zeros(len(grp), np.uint64)
            left = _fast_region(glat, glng, res, part, stats)
            if not whole:
                flat_out[gidx] = part
            exact_idx.append(gidx[left])
    else:
        exact_idx.append(np.arange(len(la)) if fast is None else np.flatnonzero(fast))
    ex = np.concatenate(exact_idx)
    if len(ex):
        flat_out[ex] = _exact(la[ex], ln[ex], res)
    stats["exact"] = len(ex)
    LAST_STATS.clear()
    LAST_STATS.update(stats)
    return out


def _parent_bits(cells: np.ndarray, res: int) -> np.ndarray:
    """Parents by rewriting the resolution field and setting finer digits to 7 (H3 v4 bit layout)."""
    c = np.asarray(cells, dtype=np.uint64)
    own = ((c >> np.uint64(52)) & np.uint64(15)).astype(np.int64)
    nz = c != 0
    if np.any(own[nz] < res):
        raise ValueError(f"parent resolution {res} is finer than some cells' resolution")
    fill = np.uint64((1 << (3 * (15 - res))) - 1)
    out = (c | fill) & ~np.uint64(15 << 52) | np.uint64(res << 52)
    return np.where(nz, out, np.uint64(0))


def cells_to_parent(cells: np.ndarray, res: int) -> np.ndarray:
    """Parent cells at coarser ``res`` (bit arithmetic on the index, vectorised; 0 stays 0)."""
    if not 0 <= int(res) <= 15:
        raise ValueError(f"resolution {res} outside 0..15")
    return _parent_bits(cells, int(res))


def cell_centers(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre latitude and longitude (degrees) of each cell, computed once per distinct cell."""
    c = np.asarray(cells, dtype=np.uint64)
    uniq, inv = np.unique(c, return_inverse=True)
    ll = np.array([_h3i.cell_to_latlng(int(x)) if x else (np.nan, np.nan) for x in uniq.tolist()],
                  dtype=np.float64).reshape(-1, 2)
    return ll[inv.reshape(c.shape), 0], ll[inv.reshape(c.shape), 1]


def cell_boundaries(cells: Iterable[int]) -> list[dict[str, Any]]:
    """GeoJSON Polygons ([lng, lat], closed ring, counter-clockwise) of cells, for serving and viewing."""
    out = []
    for c in cells:
        ring = [[lng, lat] for lat, lng in _h3i.cell_to_boundary(int(c))]
        ring.append(ring[0])
        out.append({"type": "Polygon", "coordinates": [ring]})
    return out


def _ring_area_m2(ring: Sequence[Sequence[float]]) -> float:
    """Spherical area (m²) of a closed lng/lat ring (the formula of Chamberlain & Duquette)."""
    pts = np.radians(np.asarray(ring, dtype=np.float64)[:, :2])
    if len(pts) < 3:
        return 0.0
    lng, lat = pts[:, 0], pts[:, 1]
    lng2, lat2 = np.roll(lng, -1), np.roll(lat, -1)
    dl = (lng2 - lng + np.pi) % (2 * np.pi) - np.pi
    return float(abs(np.sum(dl * (2.0 + np.sin(lat) + np.sin(lat2)))) * _EARTH_R_M ** 2 / 2.0)


def _polygons(geojson: dict[str, Any]) -> list[list[Any]]:
    """Polygon coordinate lists of a GeoJSON Polygon / MultiPolygon (or a Feature holding one)."""
    g = geojson.get("geometry", geojson) if geojson.get("type") == "Feature" else geojson
    if g.get("type") == "Polygon":
        return [g["coordinates"]]
    if g.get("type") == "MultiPolygon":
        return list(g["coordinates"])
    raise ValueError(f"expected a GeoJSON Polygon or MultiPolygon, got {g.get('type')!r}")


def estimate_polygon_cells(geojson_polygon_wgs84: dict[str, Any], res: int) -> float:
    """Expected number of cells covering a polygon (area / average cell area) — cheap, no h3 polyfill."""
    area, cell_area = 0.0, h3.average_hexagon_area(int(res), "m^2")
    for rings in _polygons(geojson_polygon_wgs84):
        if rings and len(rings[0]):
            area += max(_ring_area_m2(rings[0]) - sum(_ring_area_m2(h) for h in rings[1:]), 0.0)
            lng0, lat0 = float(rings[0][0][0]), float(rings[0][0][1])
            # cell areas vary about 2x over the globe: use the local one where the polygon starts
            cell_area = h3.cell_area(h3.latlng_to_cell(lat0, lng0, int(res)), "m^2")
    return area / cell_area


def polygon_cells(geojson_polygon_wgs84: dict[str, Any], res: int, max_cells: int = 1_000_000) -> np.ndarray:
    """Sorted cells (uint64) whose centres lie in a WGS84 GeoJSON polygon; ValueError above ``max_cells``."""
    est = estimate_polygon_cells(geojson_polygon_wgs84, res)
    if est > max_cells:
        raise ValueError(f"polygon needs about {est:,.0f} cells at res {res}, more than the limit max_cells="
                         f"{max_cells:,}")
    out: list[int] = []
    for rings in _polygons(geojson_polygon_wgs84):
        if not rings:
            continue
        poly = h3.LatLngPoly([(p[1], p[0]) for p in rings[0]], *[[(p[1], p[0]) for p in h] for h in rings[1:]])
        out.extend(h3.str_to_int(c) for c in h3.polygon_to_cells(poly, int(res)))
    cells = np.unique(np.array(out, dtype=np.uint64))
    if len(cells) > max_cells:
        raise ValueError(f"polygon needs {len(cells):,} cells at res {res}, more than the limit "
                         f"max_cells={max_cells:,}")
    return cells


def aggregate_points(lat: np.ndarray, lng: np.ndarray, t_us: np.ndarray, value: np.ndarray, res: int,
                     bucket_s: int = 3600) -> Any:
    """Count and mean of ``value`` per (cell, time bucket) as an Arrow table — fast indexing, then a DuckDB group-by."""
    import duckdb
    import pyarrow as pa

    cells = latlng_to_cells(lat, lng, res)
    step = np.int64(bucket_s) * np.int64(1_000_000)
    bucket = np.floor_divide(np.asarray(t_us, dtype=np.int64), step)
    tbl = pa.table({"cell": cells, "b": bucket, "value": np.asarray(value, np.float64)})
    con = duckdb.connect()
    con.register("_p", tbl)
    return con.execute(f"SELECT cell, b * {int(step)} AS t_us, count(*) AS count, avg(value) AS mean "
                       "FROM _p GROUP BY cell, b").to_arrow_table()
