"""The local-inertial kernels (Bates et al. 2010; θ-weighted momentum of de Almeida et al. 2012): face discharges,
the positivity limiter and the depth update. See :mod:`twin.sim.flood.solver`."""

import math

import numpy as np
from numba import njit, prange

from twin.sim.flood.cellwise import TINY, G, record, sources, totals


@njit(cache=True, inline="always")
def _face(q, q_lo, q_hi, q_perp, eta_a, eta_b, hc, c3, n2, dt, dx, theta, hf_min, open_face):
    """The new unit discharge through a face from cell a to cell b (positive: a → b), from its flow depth
    ``hc`` (≥ hf_min; water moves when above it) and ``c3`` = hc^⅓. Written without branches (the compiler makes
    selects of them): at a wet/dry front a branch per face mispredicts half the time."""
    qm = theta * q + 0.5 * (1.0 - theta) * (q_lo + q_hi)
    norm = math.sqrt(q * q + q_perp * q_perp)
    val = (qm - G * hc * dt * (eta_b - eta_a) / dx) / (1.0 + G * dt * n2 * norm / (hc * hc * c3))
    return val if (hc > hf_min) & open_face & (abs(val) > TINY) else 0.0


@njit(cache=True, parallel=True)
def face_depths(h, z, hx, hy, hf_min):
    """The flow depth max(η) − max(z) of every inner face, at least ``hf_min`` (boundary faces: hf_min). Kept
    apart so that numpy takes the cube roots of all of them at once: its SIMD cbrt is ~15× faster than a scalar
    pow per face in the flux loop, which was three quarters of a step."""
    ny, nx = h.shape
    for i in prange(ny + 1):
        if i < ny:
            hx[i, 0] = hf_min
            hx[i, nx] = hf_min
            for j in range(1, nx):
                hx[i, j] = max(max(z[i, j - 1] + h[i, j - 1], z[i, j] + h[i, j]) - max(z[i, j - 1], z[i, j]),
                               hf_min)
        if 0 < i < ny:
            for j in range(nx):
                hy[i, j] = max(max(z[i - 1, j] + h[i - 1, j], z[i, j] + h[i, j]) - max(z[i - 1, j], z[i, j]),
                               hf_min)
        else:
            for j in range(nx):
                hy[i, j] = hf_min


@njit(cache=True, inline="always")
def _edge(q, eta_in, z_in, eta_next, z_next, n2, kind, level, dt, dx, hf_min, open_slope):
    """The discharge out of the domain through a boundary face of a cell (positive: out); ``eta_next`` and
    ``z_next`` are the water level and bed of the cell's inner neighbour (NaN: none)."""
    if kind == 0:
        return 0.0
    if kind == 1:  # open: the water leaves down the steepest of the water surface, the bed and open_slope
        hf = eta_in - z_in
        slope = open_slope
        if not math.isnan(eta_next):
            slope = max(slope, (eta_next - eta_in) / dx, (z_next - z_in) / dx)
        if hf <= hf_min or slope <= 0.0:
            return 0.0
        return (q + G * hf * dt * slope) / (1.0 + G * dt * n2 * abs(q) / (hf ** (7.0 / 3.0)))
    hf = max(eta_in, level) - z_in  # fixed level
    if hf <= hf_min:
        return 0.0
    return (q - G * hf * dt * (level - eta_in) / dx) / (1.0 + G * dt * n2 * abs(q) / (hf ** (7.0 / 3.0)))


@njit(cache=True, parallel=True)
def fluxes(h, z, n2, active, qx, qy, qx_new, qy_new, hx, hy, cx, cy, bk_n, bk_s, bk_w, bk_e, bl_n, bl_s, bl_w,
           bl_e, dt, dx, theta, hf_min, open_slope):
    """New face discharges from the old ones and the faces' depths (``hx``, ``hy``) and their cube roots. qx:
    (ny, nx + 1), face j between columns j-1 and j (positive east); qy: (ny + 1, nx), face i between rows i-1 and
    i (positive south)."""
    ny, nx = h.shape
    for i in prange(ny + 1):
        if i < ny:
            for j in range(1, nx):
                a = j - 1
                perp = 0.25 * (qy[i, a] + qy[i + 1, a] + qy[i, j] + qy[i + 1, j])
                qx_new[i, j] = _face(qx[i, j], qx[i, j - 1], qx[i, j + 1], perp, z[i, a] + h[i, a], z[i, j] + h[i, j],
                                     hx[i, j], cx[i, j], 0.5 * (n2[i, a] + n2[i, j]), dt, dx, theta, hf_min,
                                     active[i, a] & active[i, j])
            ok = nx > 1 and active[i, 1]
            qx_new[i, 0] = -_edge(-qx[i, 0], z[i, 0] + h[i, 0], z[i, 0], z[i, 1] + h[i, 1] if ok else np.nan,
                                  z[i, 1], n2[i, 0], bk_w[i], bl_w[i], dt, dx, hf_min, open_slope) \
                if active[i, 0] else 0.0
            c = nx - 1
            ok = nx > 1 and active[i, c - 1]
            qx_new[i, nx] = _edge(qx[i, nx], z[i, c] + h[i, c], z[i, c], z[i, c - 1] + h[i, c - 1] if ok else np.nan,
                                  z[i, c - 1], n2[i, c], bk_e[i], bl_e[i], dt, dx, hf_min, open_slope) \
                if active[i, c] else 0.0
        if 0 < i < ny:
            a = i - 1
            for j in range(nx):
                perp = 0.25 * (qx[a, j] + qx[a, j + 1] + qx[i, j] + qx[i, j + 1])
                qy_new[i, j] = _face(qy[i, j], qy[i - 1, j], qy[i + 1, j], perp, z[a, j] + h[a, j], z[i, j] + h[i, j],
                                     hy[i, j], cy[i, j], 0.5 * (n2[a, j] + n2[i, j]), dt, dx, theta, hf_min,
                                     active[a, j] & active[i, j])
        elif i == 0:
            for j in range(nx):
                ok = ny > 1 and active[1, j]
                qy_new[0, j] = -_edge(-qy[0, j], z[0, j] + h[0, j], z[0, j], z[1, j] + h[1, j] if ok else np.nan,
                                      z[1, j], n2[0, j], bk_n[j], bl_n[j], dt, dx, hf_min, open_slope) \
                    if active[0, j] else 0.0
        else:
            r = ny - 1
            for j in range(nx):
                ok = ny > 1 and active[r - 1, j]
                qy_new[ny, j] = _edge(qy[ny, j], z[r, j] + h[r, j], z[r, j],
                                      z[r - 1, j] + h[r - 1, j] if ok else np.nan, z[r - 1, j], n2[r, j], bk_s[j],
                                      bl_s[j], dt, dx, hf_min, open_slope) if active[r, j] else 0.0


@njit(cache=True, parallel=True)
def limit(h, qx, qy, scale, dt, dx):
    """Per cell the factor (≤ 1) that keeps its outflow within the water it holds."""
    ny, nx = h.shape
    for i in prange(ny):
        for j in range(nx):
            out = (max(qx[i, j + 1], 0.0) + max(-qx[i, j], 0.0) + max(qy[i + 1, j], 0.0)
                   + max(-qy[i, j], 0.0)) * dt / dx
            scale[i, j] = h[i, j] / out if out > h[i, j] else 1.0


@njit(cache=True, parallel=True)
def apply_limit(qx, qy, scale, row_out):
    """Scale every face by its donor cell's factor (branch-free: flow directions are random at a wet/dry front);
    per row the net boundary outflow (m²/s·m)."""
    ny, nx = scale.shape
    for i in prange(ny + 1):
        acc = 0.0
        if i < ny:
            q = qx[i, 0]
            qx[i, 0] = min(q, 0.0) * scale[i, 0] + max(q, 0.0)
            for j in range(1, nx):
                q = qx[i, j]
                qx[i, j] = max(q, 0.0) * scale[i, j - 1] + min(q, 0.0) * scale[i, j]
            q = qx[i, nx]
            qx[i, nx] = max(q, 0.0) * scale[i, nx - 1] + min(q, 0.0)
            acc += qx[i, nx] - qx[i, 0]
        if i == 0:
            for j in range(nx):
                q = qy[0, j]
                qy[0, j] = min(q, 0.0) * scale[0, j] + max(q, 0.0)
                acc -= qy[0, j]
        elif i == ny:
            for j in range(nx):
                q = qy[ny, j]
                qy[ny, j] = max(q, 0.0) * scale[ny - 1, j] + min(q, 0.0)
                acc += qy[ny, j]
        else:
            for j in range(nx):
                q = qy[i, j]
                qy[i, j] = max(q, 0.0) * scale[i - 1, j] + min(q, 0.0) * scale[i, j]
        row_out[i] = acc


@njit(cache=True, parallel=True)
def update(h, qx, qy, active, rain_weight, loss_rate, drain_rate, src, dt, dx, rain, t_end, hvel_min,
            max_depth, max_speed, t_max, row_stats):
    """Depths from the fluxes, then rain and inflows in, infiltration and drainage out; the maxima; per row
    (rain in, source in, infiltrated, drained, max depth)."""
    ny, nx = h.shape
    for i in prange(ny):
        r_in = 0.0
        s_in = 0.0
        inf = 0.0
        dra = 0.0
        hmax = 0.0
        for j in range(nx):
            if not active[i, j]:
                continue
            hh = h[i, j] + dt / dx * (qx[i, j] - qx[i, j + 1] + qy[i, j] - qy[i + 1, j])
            if hh < 0.0:
                hh = 0.0
            hh, add, s, f, dr = sources(hh, rain * dt * rain_weight[i, j], src[i, j] * dt, loss_rate[i, j] * dt,
                                         drain_rate[i, j] * dt)
            r_in += add
            s_in += s
            inf += f
            dra += dr
            h[i, j] = hh
            if hh > hmax:
                hmax = hh
            sp = 0.0
            if hh > hvel_min:
                u = 0.5 * (qx[i, j] + qx[i, j + 1]) / hh
                v = 0.5 * (qy[i, j] + qy[i + 1, j]) / hh
                sp = math.sqrt(u * u + v * v)
            record(max_depth, t_max, max_speed, i, j, hh, sp, t_end, hvel_min)
        row_stats[i, 0] = r_in
        row_stats[i, 1] = s_in
        row_stats[i, 2] = inf
        row_stats[i, 3] = dra
        row_stats[i, 4] = hmax


@njit(cache=True)
def advance(h, z, n2, active, qx, qy, qx_new, qy_new, hx, hy, cx, cy, bk_n, bk_s, bk_w, bk_e, bl_n, bl_s, bl_w,
            bl_e, scale, rain_weight, loss_rate, drain_rate, src, dt, dx, theta, hf_min, open_slope, rain, t_end,
            hvel_min, max_depth, max_speed, t_max, row_stats, row_out, out):
    """One step after :func:`face_depths` and the cube roots: new fluxes into ``qx_new``/``qy_new``, limited, the
    depths and sources, the step's totals into ``out``. One call from Python per step: dispatching the kernels
    one by one cost ~10 µs a step, a third of a small grid's step."""
    fluxes(h, z, n2, active, qx, qy, qx_new, qy_new, hx, hy, cx, cy, bk_n, bk_s, bk_w, bk_e, bl_n, bl_s, bl_w, bl_e,
           dt, dx, theta, hf_min, open_slope)
    limit(h, qx_new, qy_new, scale, dt, dx)
    apply_limit(qx_new, qy_new, scale, row_out)
    update(h, qx_new, qy_new, active, rain_weight, loss_rate, drain_rate, src, dt, dx, rain, t_end, hvel_min,
           max_depth, max_speed, t_max, row_stats)
    totals(row_stats, row_out, out)
