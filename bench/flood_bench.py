"""Flood-solver benchmark: twin.sim.flood against landlab's OverlandFlow and ANUGA on the MacDonald long channel.

The case (shared/data/flood/macdonald_analytic, see its SOURCE.md): a 1 km channel of 5 m cells, 200 along by 3
across (3×200 in the tables: rows × columns), Manning n 0.033, an inflow of 0.2 m/s per cell (5 m³/s a cell) into
the upstream column, closed sides, open outlet to the east, with rain (0.001 m/s, 40 min) and without (20 min); the
analytic steady water surface is known. Every engine runs the same channel in the same process, one after another:

* twin: both schemes (``inertial``: local inertial, ``swe``: Godunov HLL), with 1 thread and with all threads.
* landlab ``OverlandFlow`` (the same de Almeida local-inertial scheme, θ and α set to twin's 0.7) on a
  RasterModelGrid whose perimeter nodes are the boundary: closed, except the east column, FIXED_VALUE nodes whose
  bed continues the channel's slope and whose depth is copied from the last cell after every step (a zero-gradient,
  transmissive outlet: the water leaves down the bed slope, as twin's open boundary does). landlab has no inflow
  term: the inflow volume (q × Δt) is added to the upstream cells' ``surface_water__depth`` after each step. Its
  own adaptive step (``calc_time_step()``), capped at twin's ``dt_max_s`` (5 s: landlab's first step over the
  1e-5 m film would be minutes long), ``steep_slopes=False``. Cells: core nodes.
* ANUGA (``rectangular_cross_domain``: 4 triangles a 5 m cell, default flow algorithm DE0 = one Euler step a
  step): Manning friction, rain by ``Rate_operator``, the inflow by an ``Inlet_operator`` over the first 5 m,
  reflective sides and, at the outlet, the analytic outlet stage (``Transmissive_n_momentum_zero_t_momentum_set_stage
  _boundary``): its plain ``Transmissive_boundary`` backs the water up by metres at the outlet in this subcritical
  flow, so ANUGA is given the level the others find themselves. Cells: triangles.

Per run: steps, wall seconds (the time loop only, after a warm-up that compiles the numba kernels), cell updates per
second (steps × cells / wall) and, on the small channel, the mean absolute error of the water surface along the
middle row against the analytic one (the equal-accuracy check). The small channel is all Python overhead, so the
same channel is also replicated across (600 × 200 cells; ANUGA 150 × 200 cells = 120,000 triangles, the same number
of unknowns), started from the analytic steady depth at rest and run for 5 min, for throughput. Last, twin alone on
a synthetic city (1000 × 1000 cells of 2 m, random building blocks as walls, 100 mm/h rain for 10 min).

Run: .venv/bin/python bench/flood_bench.py [--quick]   (prints Markdown tables for docs/benchmarks.md; --quick: the
small channel and a 250 × 250 city only, under a minute). landlab and ANUGA are in the ``bench`` extra; without them
only twin's rows are printed. The 2-thread rows (numba and ANUGA both run OpenMP) want both cores idle: with
another busy process they spin at every barrier and come out slower than 1 thread (each table gives the load).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from twin.sim.flood.solver import OPEN, Boundary, Domain, Inflow, Numerics, simulate

DATA = Path(__file__).resolve().parents[1] / "shared" / "data" / "flood" / "macdonald_analytic"
if not DATA.exists():
    DATA = Path("/work/shared/data/flood/macdonald_analytic")
MANNING = 0.033
DT_MAX = 5.0  # twin's Numerics.dt_max_s, also the cap of landlab's step
ALL = os.cpu_count() or 1


@dataclass
class Case:
    """A channel: bed (rows, cols), inflow (m/s per cell), rain (m/s), duration, the analytic wse per column and an
    optional initial depth."""

    name: str
    z: np.ndarray
    q: np.ndarray
    rain: float
    duration_s: float
    wse: np.ndarray
    dx: float = 5.0
    h0: np.ndarray | None = None
    group: str = ""  # rows of one group are compared with twin inertial's rows of that group


@dataclass
class Row:
    engine: str
    threads: int
    case: str
    cells: int
    unit: str
    steps: int
    wall_s: float
    mae: float | None = None
    note: str = ""
    group: str = ""

    @property
    def cups(self) -> float:
        return self.steps * self.cells / self.wall_s if self.wall_s > 0 else 0.0


def macdonald(which: str) -> Case:
    d = DATA / which
    z = rasterio.open(d / "dem.asc").read(1).astype(np.float64)
    q = rasterio.open(d / "q.asc").read(1).astype(np.float64)
    rain = which == "with_rain"
    with open(d / ("mcdo_rain.csv" if rain else "mcdo_norain.csv")) as f:
        wse = np.array([float(r["wse"]) for r in csv.DictReader(f)])
    assert wse.shape == (z.shape[1],) and np.ptp(z, axis=0).max() == 0.0  # the bed is the same on every row
    return Case(f"MacDonald {'rain' if rain else 'no rain'} {z.shape[0]}×{z.shape[1]}", z, q,
                0.001 if rain else 0.0, 2400.0 if rain else 1200.0, wse, group=which)


def tiled(c: Case, n: int, duration_s: float) -> Case:
    """The channel replicated n times across, started from the analytic steady depth at rest."""
    z, q = np.tile(c.z, (n, 1)), np.tile(c.q, (n, 1))
    h0 = np.maximum(c.wse[None, :] - z, 0.0)
    return Case(f"tiled {z.shape[0]}×{z.shape[1]}, steady start, {duration_s / 60:g} min", z, q, c.rain, duration_s,
                c.wse, c.dx, h0, group="tiled")


def mae(wse_row: np.ndarray, analytic: np.ndarray) -> float:
    return float(np.abs(wse_row - analytic).mean())


# ------------------------------------------------------------------------------------------------ twin
def twin_domain(c: Case) -> Domain:
    z = c.z
    cells = np.flatnonzero(c.q.ravel() > 0)
    qc = c.q.ravel()[cells]
    one = np.ones_like(z)
    return Domain(z=z, dx=c.dx, active=np.ones(z.shape, bool), manning=np.full_like(z, MANNING),
                  loss_rate=np.zeros_like(z), drain_rate=np.zeros_like(z), rain_weight=one,
                  rain_edges_s=np.array([0.0, 1e9]), rain_rates=np.array([c.rain]),
                  boundary=Boundary.uniform(z.shape, {"east": OPEN}),
                  inflows=[Inflow(cells, qc / qc.sum(), np.array([0.0]), np.array([qc.sum() * c.dx * c.dx]))],
                  h0=c.h0)


def twin_run(c: Case, scheme: str, threads: int, repeat: int = 1) -> Row:
    dom = twin_domain(c)
    best = None
    for _ in range(repeat):
        r = simulate(dom, c.duration_s, Numerics(scheme=scheme), threads=threads)
        if best is None or r.wall_s < best.wall_s:
            best = r
    mid = c.z.shape[0] // 2
    return Row(f"twin {scheme}", threads, c.name, c.z.size, "cells", best.steps, best.wall_s,
               mae((c.z + best.h)[mid], c.wse), f"mass error {best.balance['error_pct']:.1e} %", c.group)


def twin_warmup() -> None:
    """Compile (or load from numba's cache) both schemes' kernels and start the thread pool, outside the timings."""
    c = macdonald("with_rain")
    c.duration_s = 30.0
    for scheme in ("inertial", "swe"):
        for th in sorted({1, ALL}):
            simulate(twin_domain(c), c.duration_s, Numerics(scheme=scheme), threads=th)


# ------------------------------------------------------------------------------------------------ landlab
def landlab_run(c: Case, repeat: int = 1) -> Row:
    from landlab import RasterModelGrid
    from landlab.components import OverlandFlow

    ny, nx = c.z.shape
    best: tuple[float, int, np.ndarray] | None = None
    for _ in range(repeat):
        g = RasterModelGrid((ny + 2, nx + 2), xy_spacing=c.dx)  # the perimeter nodes are the boundary
        zz = np.zeros((ny + 2, nx + 2))
        zz[1:-1, 1:-1] = c.z[::-1]  # landlab's row 0 is the south
        zz[1:-1, -1] = 2.0 * zz[1:-1, -2] - zz[1:-1, -3]  # the outlet nodes continue the bed's slope
        zz[:, 0], zz[0], zz[-1] = zz[:, 1], zz[1], zz[-2]
        g.add_field("topographic__elevation", zz.ravel(), at="node")
        h = g.add_zeros("surface_water__depth", at="node")
        hh = h.reshape(ny + 2, nx + 2)
        if c.h0 is not None:
            hh[1:-1, 1:-1] = c.h0[::-1]
            hh[1:-1, -1] = hh[1:-1, -2]
        g.status_at_node[g.boundary_nodes] = g.BC_NODE_IS_CLOSED
        east = np.arange(1, ny + 1) * (nx + 2) + nx + 1
        g.status_at_node[east] = g.BC_NODE_IS_FIXED_VALUE
        of = OverlandFlow(g, mannings_n=MANNING, alpha=0.7, theta=0.7, rainfall_intensity=c.rain)
        qq = np.zeros((ny + 2, nx + 2))
        qq[1:-1, 1:-1] = c.q[::-1]
        qq = qq.ravel()
        src = np.flatnonzero(qq > 0)
        qsrc = qq[src]
        t, steps = 0.0, 0
        t0 = time.perf_counter()
        while t < c.duration_s - 1e-9:
            dt = min(of.calc_time_step(), DT_MAX, c.duration_s - t)
            of.run_one_step(dt)  # dt is its own stable step: one internal step
            h[src] += qsrc * dt  # the inflow (m/s per cell) as depth
            h[east] = h[east - 1]  # zero-gradient outlet
            t += dt
            steps += 1
        wall = time.perf_counter() - t0
        if best is None or wall < best[0]:
            best = (wall, steps, hh[1:-1, 1:-1][::-1].copy())
    wall, steps, depth = best
    mid = ny // 2
    return Row("landlab OverlandFlow", 1, c.name, g.number_of_core_nodes, "core nodes", steps, wall,
               mae((c.z + depth)[mid], c.wse),
               "inflow added as depth, zero-gradient outlet", c.group)


def landlab_warmup() -> None:
    c = macdonald("without_rain")
    c.duration_s = 20.0
    landlab_run(c)


# ------------------------------------------------------------------------------------------------ ANUGA
def anuga_run(c: Case, threads: int) -> Row:
    with contextlib.redirect_stdout(io.StringIO()):
        import anuga

    ny, nx = c.z.shape
    dx = c.dx
    xs = (np.arange(nx) + 0.5) * dx
    bed = c.z[0]
    with contextlib.redirect_stdout(io.StringIO()):
        anuga.set_omp_num_threads(threads, verbose=False)
        dom = anuga.rectangular_cross_domain(nx, ny, len1=nx * dx, len2=ny * dx)
        dom.set_name("flood_bench")
        dom.set_store(False)
        dom.set_quantity("elevation", lambda x, y: np.interp(x, xs, bed), location="centroids")
        dom.set_quantity("friction", MANNING, location="centroids")
        if c.h0 is None:
            dom.set_quantity("stage", expression="elevation", location="centroids")
        else:
            dom.set_quantity("stage", lambda x, y: np.maximum(np.interp(x, xs, c.wse), np.interp(x, xs, bed)),
                             location="centroids")
        out_stage = float(c.wse[-1] + 0.5 * (c.wse[-1] - c.wse[-2]))  # the analytic level at the outlet face
        wall_bc = anuga.Reflective_boundary(dom)
        outlet = anuga.Transmissive_n_momentum_zero_t_momentum_set_stage_boundary(dom, lambda t: out_stage)
        dom.set_boundary({"left": wall_bc, "right": outlet, "top": wall_bc, "bottom": wall_bc})
        upstream = anuga.Region(dom, polygon=[[0.0, 0.0], [dx, 0.0], [dx, ny * dx], [0.0, ny * dx]])
        anuga.Inlet_operator(dom, upstream, Q=float(c.q[:, 0].sum() * dx * dx))
        if c.rain:
            anuga.Rate_operator(dom, rate=c.rain)
        steps = 0
        t0 = time.perf_counter()
        for _ in dom.evolve(yieldstep=c.duration_s, finaltime=c.duration_s):
            steps += dom.number_of_steps
        wall = time.perf_counter() - t0
    cen = dom.centroid_coordinates
    stage = dom.quantities["stage"].centroid_values
    row = min(ny // 2, ny - 1)  # the middle row of 5 m cells, each column the mean of its triangles
    sel = (cen[:, 1] > row * dx) & (cen[:, 1] < (row + 1) * dx)
    col = np.minimum((cen[sel, 0] // dx).astype(int), nx - 1)
    wse = np.bincount(col, stage[sel], nx) / np.maximum(np.bincount(col, None, nx), 1)
    return Row(f"ANUGA {dom.get_flow_algorithm()}", threads, c.name, len(dom), "triangles", steps, wall,
               mae(wse, c.wse), "outlet at the analytic stage",
               c.group)


# ------------------------------------------------------------------------------------------------ the city
def city(n: int, dx: float = 2.0, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Terrain falling 0.5 % to the south-east with smooth 1 m undulations, and blocks of buildings (walls) between
    streets."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n] * dx
    z = 30.0 - 0.005 * (xx + yy) / np.sqrt(2.0)
    for _ in range(12):
        k = rng.uniform(0.002, 0.02, 2)
        z += 0.3 * np.sin(k[0] * xx + rng.uniform(0, 6.3)) * np.sin(k[1] * yy + rng.uniform(0, 6.3))
    z += rng.normal(0.0, 0.02, z.shape)
    active = np.ones((n, n), bool)
    block, street = 40, 8  # cells: 80 m blocks, 16 m streets
    for bi in range(street, n - block, block + street):
        for bj in range(street, n - block, block + street):
            for _ in range(rng.integers(2, 6)):  # a few buildings a block
                h, w = rng.integers(5, 20, 2)
                i, j = bi + rng.integers(0, block - h), bj + rng.integers(0, block - w)
                active[i:i + h, j:j + w] = False
    return z, active


def city_rows(n: int, minutes: float, repeat: int = 2) -> tuple[list[Row], float]:
    z, active = city(n)
    dom = Domain(z=z, dx=2.0, active=active, manning=np.full_like(z, 0.02), loss_rate=np.zeros_like(z),
                 drain_rate=np.zeros_like(z), rain_weight=np.ones_like(z), rain_edges_s=np.array([0.0, 1e9]),
                 rain_rates=np.array([0.1 / 3600.0]), boundary=Boundary.uniform(z.shape, OPEN))
    label = f"city {n}×{n} at 2 m, 100 mm/h, {minutes:g} min"
    rows = []
    for scheme in ("inertial", "swe"):
        for th in sorted({1, ALL}):
            r = min((simulate(dom, minutes * 60.0, Numerics(scheme=scheme), threads=th) for _ in range(repeat)),
                    key=lambda r: r.wall_s)
            rows.append(Row(f"twin {scheme}", th, label, z.size, "cells", r.steps, r.wall_s, None,
                            f"max depth {r.max_depth.max():.2f} m, mass error {r.balance['error_pct']:.1e} %", "city"))
    return rows, float(1.0 - active.mean())


# ------------------------------------------------------------------------------------------------ output
def table(rows: list[Row]) -> None:
    print("| engine | threads | case | cells | steps | wall s | Mcups | MAE wse m | twin inertial 1 thread ÷ this "
          f"| twin inertial {ALL} threads ÷ this | note |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    ref = {(r.group, r.threads): r.cups for r in rows if r.engine == "twin inertial"}
    for r in rows:
        one, many = ref.get((r.group, 1)), ref.get((r.group, ALL))
        ratio1 = f"{one / r.cups:.2f}" if one and r.cups else ""
        ratio_all = f"{many / r.cups:.2f}" if many and r.cups else ""
        err = "" if r.mae is None else f"{r.mae:.4f}"
        print(f"| {r.engine} | {r.threads} | {r.case} | {r.cells:,} {r.unit} | {r.steps:,} | {r.wall_s:.3f} "
              f"| {r.cups / 1e6:.2f} | {err} | {ratio1} | {ratio_all} | {r.note} |")


def peer(name: str, f, *args, **kw) -> Row | None:
    try:
        return f(*args, **kw)
    except ImportError as exc:
        print(f"{name}: not installed ({exc}); not timed")
    except Exception as exc:  # a peer that fails: say why, keep twin's rows
        print(f"{name}: failed ({type(exc).__name__}: {exc}); not timed")
    return None


def load() -> str:
    """Other processes on the cores slow the 2-thread runs most: say how busy the machine was."""
    return f"1-min load average after these runs {os.getloadavg()[0]:.2f} on {ALL} cores (this run adds 1-2)"


def cpu() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def available(mod: str) -> bool:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            __import__(mod)
        return True
    except Exception as exc:  # not installed, or broken (e.g. a dependency that does not import)
        print(f"{mod}: cannot be imported ({type(exc).__name__}: {exc}); not timed")
        return False


def versions() -> str:
    out = [f"Python {platform.python_version()}", f"numpy {np.__version__}"]
    for mod in ("numba", "landlab", "anuga"):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                m = __import__(mod)
            out.append(f"{mod} {m.__version__}")
        except Exception as exc:
            out.append(f"{mod} missing ({type(exc).__name__})")
    return ", ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the small channel and a 250 × 250 city only (< 1 min)")
    a = ap.parse_args()
    t_start = time.perf_counter()
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    print(f"\n{cpu()}, {ALL} cores, load average {os.getloadavg()[0]:.2f}; "
          f"{versions()}")

    twin_warmup()
    have_landlab, have_anuga = available("landlab"), available("anuga")
    if have_landlab:
        landlab_warmup()

    small = [macdonald("with_rain"), macdonald("without_rain")]
    rows: list[Row] = []
    for c in small:
        for scheme in ("inertial", "swe"):
            for th in sorted({1, ALL}):
                rows.append(twin_run(c, scheme, th, repeat=3))
        if have_landlab:
            r = peer("landlab", landlab_run, c, repeat=3)
            rows += [r] if r else []
        if have_anuga:
            r = peer("ANUGA", anuga_run, c, 1)
            rows += [r] if r else []
    print("\n### MacDonald long channel (1 km, 5 m cells): equal accuracy; wall = best of 3 (ANUGA: 1 run); "
          f"{load()}\n")
    table(rows)

    if not a.quick:
        rain = small[0]
        big = tiled(rain, 200, 300.0)  # 600 × 200 = 120,000 cells
        rows = []
        for scheme in ("inertial", "swe"):
            for th in sorted({1, ALL}):
                rows.append(twin_run(big, scheme, th))
        if have_landlab:
            r = peer("landlab", landlab_run, big)
            rows += [r] if r else []
        small_tri = tiled(rain, 50, 300.0)  # 150 × 200 cells = 120,000 triangles
        for th in sorted({1, ALL}) if have_anuga else ():
            r = peer("ANUGA", anuga_run, small_tri, th)
            rows += [r] if r else []
        print("\n### Throughput: the rain channel replicated across (≥ 1e5 unknowns), 5 min from the analytic steady "
              f"depth at rest; one run each; {load()}\n")
        table(rows)

    n = 250 if a.quick else 1000
    rows, walls = city_rows(n, 10.0, 2 if a.quick else 1)
    print(f"\n### twin alone at city scale: {n}×{n} cells of 2 m ({walls:.0%} building walls, counted in cells), "
          "open edges, Manning 0.02, no losses; "
          f"{'best of 2' if a.quick else 'one run each'}; {load()}\n")
    table(rows)
    print(f"\nTotal {time.perf_counter() - t_start:.0f} s; load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
