"""2-D shallow-water flow on a regular grid: rain, inflows, infiltration, drainage, buildings as walls, open /
closed / fixed-level boundaries, and an exact mass balance.

Two schemes share this driver:

* ``inertial`` (default): the local-inertial scheme (Bates et al. 2010, with the θ-weighted momentum of de Almeida
  et al. 2012, as in LISFLOOD-FP and Itzi), :mod:`twin.sim.flood.inertial`. Per face the unit discharge q (m²/s) is
  advanced from the water-surface slope, the flow depth at the face and an implicit Manning friction::

      q⁺ = (θ q + (1-θ)/2 (q₋ + q₊) − g h_f Δt ∂η/∂x) / (1 + g Δt n² |q| / h_f^{7/3})

  with h_f = max(η) − max(z) of the two cells (zero over a dry crest, so still water over any terrain stays still)
  and Δt = α Δx / √(g h_max). A cell's outflow is scaled down when it would take more water than the cell holds, so
  no depth goes negative.
* ``swe``: the full shallow-water equations by a Godunov finite-volume scheme (HLL, hydrostatic reconstruction),
  :mod:`twin.sim.flood.godunov`, for fronts over dry beds and supercritical flow; Δt = CFL Δx / max(|u| + √(gh)).

Depths change only by fluxes that two cells share, so mass is conserved to round-off; every volume put in or taken
out is counted and :class:`Result` closes the balance. The kernels are compiled by numba (``parallel=True``: rows are
split over threads; every sum is formed per row and added in order, so results are identical bit for bit whatever
the thread count).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from twin.sim.flood import godunov, inertial
from twin.sim.flood.cellwise import G

CLOSED, OPEN, FIXED = 0, 1, 2
SIDES = ("north", "south", "west", "east")


@dataclass
class Boundary:
    """The type of every boundary face per side (CLOSED, OPEN or FIXED) and, for FIXED, the water level (m).
    North is the first row, west the first column."""

    kinds: dict[str, np.ndarray]
    levels: dict[str, np.ndarray]

    @classmethod
    def uniform(cls, shape: tuple[int, int], kind: int | dict[str, int] = CLOSED,
                level: float | dict[str, float] = 0.0) -> Boundary:
        """One kind (and level) for every side, or one per side (sides not named are closed)."""
        ny, nx = shape
        size = {"north": nx, "south": nx, "west": ny, "east": ny}
        kinds = kind if isinstance(kind, dict) else dict.fromkeys(SIDES, kind)
        levels = level if isinstance(level, dict) else dict.fromkeys(SIDES, level)
        return cls({s: np.full(size[s], kinds.get(s, CLOSED), np.int8) for s in SIDES},
                   {s: np.full(size[s], float(levels.get(s, 0.0)), np.float64) for s in SIDES})


@dataclass
class Inflow:
    """A discharge (m³/s) into some cells: piecewise-linear in time through (``times_s``, ``q_m3s``), spread over
    ``cells`` (flat indices) by ``weights`` (summing to 1)."""

    cells: np.ndarray
    weights: np.ndarray
    times_s: np.ndarray
    q_m3s: np.ndarray

    def at(self, t: float) -> float:
        if len(self.times_s) == 1:
            return float(self.q_m3s[0])
        return float(np.interp(t, self.times_s, self.q_m3s))


@dataclass
class Domain:
    """Everything the solver reads. Arrays are (rows, cols), row 0 to the north; ``active`` false for walls
    (building footprints) and cells off the terrain. Rates in m/s."""

    z: np.ndarray
    dx: float
    active: np.ndarray
    manning: np.ndarray
    loss_rate: np.ndarray  # infiltration capacity, m/s
    drain_rate: np.ndarray  # sewer capacity, m/s
    rain_weight: np.ndarray  # rain multiplier per cell: the rain area, plus the roofs whose water it takes
    rain_edges_s: np.ndarray  # piecewise-constant rain: edges (n + 1) and rates (n), m/s
    rain_rates: np.ndarray
    boundary: Boundary
    inflows: list[Inflow] = field(default_factory=list)
    h0: np.ndarray | None = None

    def rain_at(self, t: float) -> float:
        e = self.rain_edges_s
        if not len(self.rain_rates) or t < e[0] or t >= e[-1]:
            return 0.0
        return float(self.rain_rates[min(bisect.bisect_right(e, t) - 1, len(self.rain_rates) - 1)])


@dataclass
class Result:
    """The final depth, the maxima over the run, the mass balance (m³) and the run's statistics."""

    h: np.ndarray
    max_depth: np.ndarray
    max_speed: np.ndarray
    time_of_max_s: np.ndarray  # NaN where the cell never got wet
    balance: dict[str, float]
    steps: int
    dt_min_s: float
    dt_mean_s: float
    wall_s: float

    @property
    def cell_updates_per_s(self) -> float:
        return self.steps * self.h.size / self.wall_s if self.wall_s > 0 else 0.0


class TimeStepTooSmall(RuntimeError):
    """The CFL step fell below the smallest allowed one (deep water on a fine grid, or an unstable input)."""


# --------------------------------------------------------------------------------------------- driver
Recorder = Callable[[float, np.ndarray], None]
SCHEMES = ("inertial", "swe")
PARALLEL_MIN_CELLS = 40_000  # smaller grids run on one thread


@dataclass
class Numerics:
    """Solver settings: the scheme, its CFL factor (``alpha``: 0.6 for inertial, 0.45 for swe), θ (inertial),
    the depth below which water does not move (``hf_min``) or has no velocity worth reporting (``hvel_min``),
    the step bounds and the least slope an open boundary lets water leave by."""

    scheme: str = "inertial"
    alpha: float | None = None
    theta: float = 0.7
    hf_min: float = 1e-3
    hvel_min: float = 0.01
    dt_max_s: float = 5.0
    dt_min_s: float = 1e-3
    open_slope: float = 1e-3

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme: {self.scheme!r} is not one of {', '.join(SCHEMES)}")
        if self.alpha is None:  # 0.7 (Bates' 1-D value) grew round-off into a checkerboard over a 4 m deep lake
            self.alpha = 0.6 if self.scheme == "inertial" else 0.45


class _State:
    """The arrays of a run and the per-step kernels of its scheme."""

    def __init__(self, d: Domain, num: Numerics) -> None:
        ny, nx = d.z.shape
        self.num = num
        self.dx = float(d.dx)
        self.active = np.ascontiguousarray(d.active, dtype=np.bool_)
        a = self.active
        self.z = np.ascontiguousarray(np.where(a, d.z, 0.0), dtype=np.float64)
        self.n2 = np.ascontiguousarray(np.where(a, np.square(d.manning), 0.0), dtype=np.float64)
        self.h = np.zeros((ny, nx)) if d.h0 is None else np.ascontiguousarray(np.where(a, d.h0, 0.0), np.float64)
        self.rw = np.ascontiguousarray(np.where(a, d.rain_weight, 0.0), dtype=np.float64)
        self.loss = np.ascontiguousarray(np.where(a, d.loss_rate, 0.0), dtype=np.float64)
        self.drain = np.ascontiguousarray(np.where(a, d.drain_rate, 0.0), dtype=np.float64)
        self.bk = [np.ascontiguousarray(d.boundary.kinds[s], dtype=np.int8) for s in SIDES]
        self.bl = [np.ascontiguousarray(d.boundary.levels[s], dtype=np.float64) for s in SIDES]
        self.src = np.zeros((ny, nx))
        self.max_depth = self.h.copy()
        self.max_speed = np.zeros((ny, nx))
        self.t_max = np.where(self.h > 0, 0.0, np.nan)
        self.row_out = np.zeros(ny + 1)
        self.row_stats = np.zeros((ny, 6))
        self.sums = np.zeros(7)
        if num.scheme == "inertial":
            self.qx, self.qy = np.zeros((ny, nx + 1)), np.zeros((ny + 1, nx))
            self.qx2, self.qy2 = np.zeros_like(self.qx), np.zeros_like(self.qy)
            self.scale = np.ones((ny, nx))
            self.hx, self.hy = np.zeros_like(self.qx), np.zeros_like(self.qy)
            self.cx, self.cy = np.zeros_like(self.qx), np.zeros_like(self.qy)
        else:
            self.hu, self.hv = np.zeros((ny, nx)), np.zeros((ny, nx))
            self.fx, self.fy = godunov.empty_fluxes((ny, nx))
        self.hmax = float(self.h.max(initial=0.0))
        self.speed = math.sqrt(G * self.hmax)  # the largest |u| + c (swe)

    def dt(self) -> float:
        """The CFL step."""
        num = self.num
        if num.scheme == "inertial":
            return num.alpha * self.dx / math.sqrt(G * self.hmax) if self.hmax > num.hf_min else num.dt_max_s
        return num.alpha * self.dx / self.speed if self.speed > 0 else num.dt_max_s

    def step(self, dt: float, rain: float, t_end: float) -> float:
        """One step; returns the net boundary outflow volume (m³); ``self.sums`` holds the step's totals."""
        num, dx, out = self.num, self.dx, self.sums
        bk, bl = self.bk, self.bl
        if num.scheme == "inertial":
            inertial.face_depths(self.h, self.z, self.hx, self.hy, num.hf_min)
            np.cbrt(self.hx, out=self.cx)
            np.cbrt(self.hy, out=self.cy)
            inertial.advance(self.h, self.z, self.n2, self.active, self.qx, self.qy, self.qx2, self.qy2, self.hx,
                             self.hy, self.cx, self.cy, *bk, *bl, self.scale, self.rw, self.loss, self.drain,
                             self.src, dt, dx, num.theta, num.hf_min, num.open_slope, rain, t_end, num.hvel_min,
                             self.max_depth, self.max_speed, self.t_max, self.row_stats, self.row_out, out)
            self.qx, self.qx2 = self.qx2, self.qx
            self.qy, self.qy2 = self.qy2, self.qy
        else:
            godunov.advance(self.h, self.hu, self.hv, self.z, self.active, self.n2, *self.fx, *self.fy, *bk, *bl,
                            self.rw, self.loss, self.drain, self.src, dt, dx, rain, t_end, 1e-6, num.hvel_min,
                            self.max_depth, self.max_speed, self.t_max, self.row_stats, self.row_out, out)
            self.speed = float(out[5])
        self.hmax = float(out[4])
        return float(out[6]) * dt * dx


def simulate(d: Domain, duration_s: float, numerics: Numerics | None = None, *, record_s: float | None = None,
             on_record: Recorder | None = None, progress: Callable[[float], None] | None = None,
             threads: int | None = None) -> Result:
    """Run the flow for ``duration_s`` seconds. ``on_record(t, h)`` is called at t = 0, every ``record_s`` seconds
    and at the end, with the depths (read them, do not keep them: the array is reused). Raises
    :class:`TimeStepTooSmall` when the CFL step drops below ``numerics.dt_min_s``."""
    import numba

    num = numerics or Numerics()
    before = numba.get_num_threads()
    want = numba.config.NUMBA_NUM_THREADS if not threads else int(threads)
    if d.z.size < PARALLEL_MIN_CELLS:  # a fork-join per kernel costs more than the work (and a busy core stalls it)
        want = 1
    numba.set_num_threads(max(1, min(want, numba.config.NUMBA_NUM_THREADS)))
    try:
        return _run(d, duration_s, num, record_s, on_record, progress)
    finally:
        numba.set_num_threads(before)


def _run(d: Domain, duration_s: float, num: Numerics, record_s: float | None, on_record: Recorder | None,
         progress: Callable[[float], None] | None) -> Result:
    st = _State(d, num)
    area = st.dx * st.dx
    v0 = float(st.h.sum()) * area
    events = sorted({float(e) for e in d.rain_edges_s if 0 < e < duration_s}
                    | {float(x) for f in d.inflows for x in f.times_s if 0 < x < duration_s})
    totals = dict.fromkeys(("rain", "inflow", "infiltration", "drainage", "outflow"), 0.0)
    t, steps, dt_min, ev = 0.0, 0, math.inf, 0
    next_rec = record_s if record_s else math.inf
    if on_record is not None:
        on_record(0.0, st.h)
    wall0 = last_report = time.perf_counter()
    flat_src = st.src.reshape(-1)
    steady = None
    while t < duration_s - 1e-9:
        while ev < len(events) and events[ev] <= t + 1e-9:
            ev += 1
        limit = min(duration_s, next_rec, events[ev] if ev < len(events) else math.inf)
        dt = min(st.dt(), num.dt_max_s, limit - t)
        if dt < num.dt_min_s and t + dt < limit - 1e-9:
            raise TimeStepTooSmall(f"the time step fell to {dt:.3g} s at t = {t:.1f} s (depth {st.hmax:.2f} m on "
                                   f"{st.dx:g} m cells); use a coarser resolution_m or a smaller dt_min_s")
        if d.inflows and (steady is None or not steady):
            flat_src[:] = 0.0
            for f in d.inflows:
                q = 0.5 * (f.at(t) + f.at(t + dt))  # the mean of the linear hydrograph over the step
                np.add.at(flat_src, f.cells, q * f.weights / area)
            steady = all(len(f.times_s) == 1 for f in d.inflows)  # constant inflows: the same every step
        totals["outflow"] += st.step(dt, d.rain_at(t), t + dt)
        sums = st.sums
        totals["rain"] += sums[0] * area
        totals["inflow"] += sums[1] * area
        totals["infiltration"] += sums[2] * area
        totals["drainage"] += sums[3] * area
        t += dt
        steps += 1
        dt_min = min(dt_min, dt)
        if t >= next_rec - 1e-9:
            if on_record is not None:
                on_record(t, st.h)
            next_rec += record_s  # type: ignore[operator]
        if progress is not None and time.perf_counter() - last_report > 0.5:
            progress(t / duration_s)
            last_report = time.perf_counter()
    wall = time.perf_counter() - wall0
    if on_record is not None and record_s and abs(t / record_s - round(t / record_s)) > 1e-9:
        on_record(t, st.h)
    stored = float(st.h.sum()) * area - v0
    into = totals["rain"] + totals["inflow"]
    err = into - totals["infiltration"] - totals["drainage"] - totals["outflow"] - stored
    base = into if into > 0 else v0
    balance = {"rain_m3": totals["rain"], "inflow_m3": totals["inflow"], "infiltration_m3": totals["infiltration"],
               "drainage_m3": totals["drainage"], "outflow_m3": totals["outflow"], "initial_m3": v0,
               "stored_m3": stored, "error_m3": err, "error_pct": 100.0 * err / base if base > 0 else 0.0}
    return Result(h=st.h, max_depth=st.max_depth, max_speed=st.max_speed,
                  time_of_max_s=np.where(st.max_depth > 0, st.t_max, np.nan), balance=balance, steps=steps,
                  dt_min_s=dt_min if steps else 0.0, dt_mean_s=t / steps if steps else 0.0, wall_s=wall)
