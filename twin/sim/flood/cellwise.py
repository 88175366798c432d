"""What both flood schemes do per cell: gravity, and the rain, inflow and losses of one step."""

from numba import njit

G = 9.80665
TINY = 1e-12  # m²/s: a discharge below this is round-off and is set to zero (subnormals are ~50× slower)


@njit(cache=True, inline="always")
def sources(hh, rain, inflow, loss, drain):
    """A cell's depth after rain and inflow in, then infiltration and drainage out (capacities, m, limited to the
    water there): (depth, rain in, inflow in, infiltrated, drained)."""
    hh += rain + inflow
    cap = loss + drain
    if cap > 0.0 and hh > 0.0:
        take = min(hh, cap)
        f = take * loss / cap
        return hh - take, rain, inflow, f, take - f
    return hh, rain, inflow, 0.0, 0.0


@njit(cache=True, inline="always")
def record(max_depth, t_max, max_speed, i, j, hh, speed, t_end, hvel_min):
    """A cell's running maxima: depth (and when), and speed where the water is deeper than ``hvel_min``."""
    if hh > max_depth[i, j]:
        max_depth[i, j] = hh
        t_max[i, j] = t_end
    if hh > hvel_min and speed > max_speed[i, j]:
        max_speed[i, j] = speed


@njit(cache=True)
def totals(row_stats, row_out, out):
    """The step's sums, row by row in order (the same bits whatever the thread count): rain, inflow, infiltrated,
    drained (m of depth summed over cells), the largest depth and |u| + c, and the net boundary outflow."""
    out[:] = 0.0
    for i in range(row_stats.shape[0]):
        for k in range(4):
            out[k] += row_stats[i, k]
        out[4] = max(out[4], row_stats[i, 4])
        out[5] = max(out[5], row_stats[i, 5])
    for i in range(row_out.shape[0]):
        out[6] += row_out[i]
