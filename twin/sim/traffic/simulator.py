"""The ``traffic`` simulator: static equilibrium assignment of the branch's travel demand on its road network, per
hour of a weekday (see docs/traffic.md).

On a branch: the road network of :mod:`~twin.sim.traffic.network` (closed roads and, with ``flood_run``, the roads
that flood run marks impassable, left out), zones and demand of :mod:`~twin.sim.traffic.demand` (the scenario's
``demand_change`` edits applied), and per hour a user equilibrium (or system optimum, or all-or-nothing) with BPR
costs. Outputs: ``traffic_roads`` (per road and hour: volume, v/c, congested time, delay), ``traffic_zones`` (per
zone and hour: trips, mean congested and free-flow trip times), the ``traffic-load`` H3 layer (vehicle-km per hour
per cell) and the totals and convergence in the summary. ``compare`` of two runs gives the change per road.

On a TNTP study (``tntp_net`` and ``tntp_trips``): the network and trips as given; ``traffic_links`` (init, term,
volume, time per link) and ``assignment.json`` (objective, gap, iterations, history).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import shapely
from pydantic import BaseModel, Field, field_validator, model_validator

from data_models import DemandChange, LayerSpec, Scenario
from twin.catalog.assets import sha256_file
from twin.errors import BadInput
from twin.sim.base import BadParameters, Outputs, ProductFile, RunContext, find_run, result_table
from twin.sim.traffic import demand as dem
from twin.sim.traffic import network as rn
from twin.sim.traffic import tntp
from twin.sim.traffic.assign import Assignment, assign
from twin.store import Query

FILE_PARAMS = ("tntp_net", "tntp_trips", "zones")
LAYER = "traffic-load"
PARALLEL_MIN_WORK = 20_000_000  # links × zones × hours below which one process beats starting a pool (~8 s)


class Parameters(BaseModel):
    """Parameters of a traffic run."""

    hours: list[int] = Field(default=[8, 17], min_length=1, description="hours of the day to assign (0-23); "
                             "8 is the AM peak, 17 the PM peak; list(range(24)) for a whole day")
    day: date = Field(default=date(2025, 1, 6), description="the weekday the hourly layers are placed on")
    method: Literal["ue", "so", "aon"] = Field(default="ue", description="user equilibrium, system optimum or "
                                               "all-or-nothing on free-flow times")
    algorithm: Literal["paths", "bfw"] = Field(default="paths", description="path-based gradient projection "
                                               "(high precision) or bi-conjugate Frank-Wolfe")
    gap: float = Field(default=1e-6, gt=0, lt=1, description="target relative gap")
    max_iterations: int = Field(default=1000, ge=1, le=100_000)
    zone_res: int = Field(default=8, ge=5, le=10, description="H3 resolution of the zones")
    zones: str | None = Field(default=None, description="a polygon file of zones instead of H3 cells: "
                              "PATH[:id=FIELD]")
    mean_trip_km: float = Field(default=5.0, gt=0, description="target mean trip length of the gravity model")
    demand_factor: float = Field(default=1.0, ge=0, description="multiplier on every trip")
    trip_rates: dict[str, float] = Field(default_factory=dict, description="daily trip ends per 100 m² of floor "
                                         "area by use, overriding the defaults (docs/traffic.md)")
    hourly_share: list[float] | None = Field(default=None, description="24 shares of the day's trips per hour")
    road_classes: dict[str, dict[str, float]] = Field(default_factory=dict, description="per road class: "
                                                      "capacity_per_lane, speed_kmh, lanes (overrides)")
    connectors: int = Field(default=2, ge=1, le=8, description="junctions each zone's centroid joins")
    flood_run: str | None = Field(default=None, description="a flood run whose impassable roads are closed")
    layer_res: int = Field(default=10, ge=7, le=12, description="H3 resolution of the traffic-load layer")
    tntp_net: str | None = Field(default=None, description="a TNTP *_net.tntp file (a study on that network)")
    tntp_trips: str | None = Field(default=None, description="its TNTP *_trips.tntp file")

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: list[int]) -> list[int]:
        bad = [h for h in v if not 0 <= h <= 23]
        if bad:
            raise ValueError(f"hours are 0-23, got {bad}")
        return sorted(set(v))

    @field_validator("hourly_share")
    @classmethod
    def _share(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (len(v) != 24 or min(v) < 0 or sum(v) <= 0):
            raise ValueError("24 non-negative shares, not all zero")
        return v

    @model_validator(mode="after")
    def _study(self) -> Parameters:
        if (self.tntp_net is None) != (self.tntp_trips is None):
            raise ValueError("tntp_net and tntp_trips go together")
        return self


def scenario_demand(store: Any, branch: str, version: int) -> list[DemandChange]:
    """The ``demand_change`` edits of the scenario whose branch this is (none on a plain branch)."""
    from twin.sim.flood.simulator import scenario_record

    r = scenario_record(store, branch, version)
    return [] if r is None else [e for e in Scenario.model_validate(r).edits if isinstance(e, DemandChange)]


def _assign(net: tntp.Network, od: np.ndarray, p: Parameters) -> Assignment:
    """One assignment of ``od`` on ``net`` by the run's method and algorithm, without its paths (a worker's
    result crosses a pipe: a city's paths pickle slower than they assign)."""
    a = assign(net, od, method=p.method, algorithm=p.algorithm, gap=p.gap, max_iterations=p.max_iterations)
    return replace(a, paths={})


def skim(net: tntp.Network, cost: np.ndarray, origins: np.ndarray | None = None) -> np.ndarray:
    """Zone-to-zone shortest-path costs at ``cost``; zones below FIRST THRU NODE are never passed through."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    from twin.sim.traffic.assign import _ends

    a, b, n, dest = _ends(net)  # into a zone: its sink copy, with no way out
    order = np.lexsort((cost, b, a))  # parallel links: the cheaper (a sparse matrix would add them up)
    first = np.ones(len(order), bool)
    first[1:] = (a[order][1:] != a[order][:-1]) | (b[order][1:] != b[order][:-1])
    keep = order[first]
    g = csr_matrix((cost[keep] + 1e-300, (a[keep], b[keep])), shape=(n, n))
    o = np.arange(net.zones) if origins is None else origins
    return dijkstra(g, indices=o, min_only=False)[:, dest]


def _unreachable(net: tntp.Network, od: np.ndarray, what: str, warnings: list[str]) -> np.ndarray:
    """The OD table without the pairs that have demand but no path (reported, never silently dropped)."""
    origins = np.flatnonzero(od.sum(axis=1) > 0)
    if not len(origins):
        return od
    d = skim(net, net.cost(np.zeros(len(net))), origins)
    bad = ~np.isfinite(d) & (od[origins] > 0)
    if not bad.any():
        return od
    pairs = [(int(origins[i]) + 1, int(j) + 1) for i, j in zip(*np.nonzero(bad), strict=True)]
    lost = float(od[origins][bad].sum())
    warnings.append(f"{what}: {len(pairs)} zone pairs with demand have no path ({lost:g} trips dropped): "
                    + ", ".join(f"{o}→{t}" for o, t in pairs[:10]) + (" …" if len(pairs) > 10 else ""))
    out = od.copy()
    sub = out[origins]
    sub[bad] = 0.0
    out[origins] = sub
    return out


def _history(a: Assignment, keep: int = 60) -> list[list[float]]:
    h = a.history
    step = max(1, len(h) // keep)
    pick = h[::step] + ([h[-1]] if h and (len(h) - 1) % step else [])
    return [[int(i), float(g)] for i, g, _ in pick]


class TrafficSimulator:
    """Traffic: road network, demand from buildings, equilibrium assignment per hour."""

    name: ClassVar[str] = "traffic"
    title: ClassVar[str] = "Traffic assignment (static user equilibrium, per hour)"
    description: ClassVar[str] = (
        "A directed road network from the branch's roads (one-way rules, lanes, capacity and speed per road class; "
        "closed and flooded roads removed; the largest strongly connected part), zones as H3 cells with trips from "
        "the buildings' floor area by use, a gravity distribution calibrated to a mean trip length, the hours of a "
        "weekday, and per hour a user-equilibrium assignment with BPR costs (or a TNTP network and trips). Per road "
        "and hour volume, v/c, congested time and delay; per zone trip times; a traffic-load H3 layer per hour.")
    version: ClassVar[str] = "1"
    Parameters: ClassVar[type[BaseModel]] = Parameters
    reads: ClassVar[tuple[str, ...]] = ("Road", "Building")
    writes: ClassVar[dict[str, str]] = {
        "traffic_roads": "per road and hour: volume (both ways, and along / against its drawing), capacity, v/c, "
                         "free-flow and congested time, delay, speed",
        "traffic_zones": "per zone and hour: trips out and in, mean congested and free-flow trip time",
        "traffic_links": "per link of a TNTP study: init, term, volume, time",
        LAYER: "H3 layer: vehicle-km per hour per cell",
        "assignment": "JSON: objective, gap, iterations and history of a TNTP study",
    }
    file_parameters: ClassVar[tuple[str, ...]] = FILE_PARAMS
    keys: ClassVar[dict[str, tuple[str, ...]]] = {"traffic_roads": ("entity_id", "hour"),
                                                  "traffic_zones": ("entity_id", "hour"),
                                                  "traffic_links": ("entity_id",)}

    def standalone(self, params: Parameters) -> tuple[str, list[Path]] | None:
        """A study that needs no store: the CRS of its scratch store and the files to record (TNTP has no CRS)."""
        if params.tntp_net is None:
            return None
        return "EPSG:3857", [Path(params.tntp_net), Path(params.tntp_trips or "")]

    def extra_inputs(self, store: Any, branch: str, version: int, params: Parameters) -> dict[str, str]:
        """Digests of the user's files, of the scenario's demand changes and of the flood run it reads."""
        out = {}
        for key in FILE_PARAMS:
            value = getattr(params, key)
            if value:
                from twin.sim.flood.domain import FileRef

                out[f"file:{key}"] = sha256_file(FileRef.parse(value, key).path)
        changes = [c.model_dump(mode="json") for c in scenario_demand(store, branch, version)]
        if changes:
            out["scenario:demand"] = hashlib.sha256(json.dumps(changes, sort_keys=True).encode()).hexdigest()
        if params.flood_run:
            out["run:flood"] = find_run(store, params.flood_run)[0].key or params.flood_run
        return out

    def run(self, ctx: RunContext) -> Outputs:
        if ctx.params.tntp_net is not None:
            return _tntp_study(ctx)
        return _CityRun(ctx).run()


def _tntp_study(ctx: RunContext) -> Outputs:
    """A TNTP network and trips: link volumes and times, and the assignment's numbers as JSON."""
    p: Parameters = ctx.params
    warnings: list[str] = []
    with ctx.stage("read"):
        net = tntp.read_net(p.tntp_net)
        od = tntp.read_trips(p.tntp_trips, zones=net.zones) * p.demand_factor
        trips = float(od.sum())
        od = _unreachable(net, od, Path(p.tntp_trips).name, warnings)
    ctx.progress(0.05, f"assigning {od.sum():,.0f} trips on {len(net)} links")
    with ctx.stage("assign"):
        a = _assign(net, od, p)
    time = net.bpr(a.volume)
    ids = [f"{i}-{j}" for i, j in zip(net.init, net.term, strict=True)]
    seen: dict[str, int] = {}
    for k, s in enumerate(ids):  # parallel links get a suffix
        if s in seen:
            seen[s] += 1
            ids[k] = f"{s}#{seen[s]}"
        else:
            seen[s] = 0
    table = pa.table({"entity_id": ids, "init": net.init, "term": net.term, "volume": a.volume, "time": time,
                      "cost": a.cost})
    result = {"network": Path(p.tntp_net).name, "trips": trips, "trips_assigned": float(od.sum()),
              "method": p.method,
              "algorithm": p.algorithm, "objective": a.objective, "gap": a.gap, "iterations": a.iterations,
              "total_travel_time": float((a.volume * time).sum()), "history": _history(a, keep=10_000),
              "warnings": warnings}
    path = ctx.workdir / "assignment.json"
    path.write_text(json.dumps(result, indent=1))
    summary = {k: v for k, v in result.items() if k != "history"}
    return Outputs(tables={"traffic_links": table}, summary=summary,
                   files=[ProductFile("assignment", path, "objective, gap, iterations and history")])


class _CityRun:
    """One traffic run on a branch's roads and buildings."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.p: Parameters = ctx.params
        self.crs = ctx.store.crs
        self.warnings: list[str] = []

    def _features(self, types: list[str]) -> list[dict[str, Any]]:
        out = []
        for f in self.ctx.store.features(self.ctx.branch, self.ctx.version, Query(types=types)):
            f.pop("_store", None)
            out.append(f)
        return out

    def _flooded(self) -> set[str]:
        if not self.p.flood_run:
            return set()
        r, _, _ = find_run(self.ctx.store, self.p.flood_run)
        if r.simulator != "flood":
            raise BadParameters(f"flood_run: {r.id} is a {r.simulator} run, not a flood run")
        if "flood_roads" not in r.tables:
            return set()
        t = result_table(self.ctx.store, r, "flood_roads")
        return {i for i, x in zip(t["entity_id"].to_pylist(), t["impassable"].to_pylist(), strict=True) if x}

    def _zones(self, buildings: list[dict[str, Any]]) -> dem.Zones:
        if not self.p.zones:
            return dem.zones_of(buildings, self.crs, res=self.p.zone_res, rates=self.p.trip_rates)
        from twin.sim.flood.domain import FileRef, read_features

        ref = FileRef.parse(self.p.zones, "zones")
        field_name = ref.options.get("id")
        feats = [(g, props) for g, props in read_features(ref, self.crs, "zones") if g.area > 0]
        if not feats:
            raise BadParameters(f"zones: {ref.path.name} has no polygons")
        if field_name and any(field_name not in props for _, props in feats):
            raise BadParameters(f"zones: {ref.path.name} has no field {field_name!r}")
        polys = [g for g, _ in feats]
        ids = [str(props[field_name]) if field_name else str(i + 1) for i, (_, props) in enumerate(feats)]
        return dem.zones_of(buildings, self.crs, polygons=polys, polygon_ids=ids, rates=self.p.trip_rates)

    def problem(self) -> tuple[rn.RoadNetwork, dem.Zones, tntp.Network, np.ndarray, np.ndarray, dem.Distribution,
                               np.ndarray, set[str]]:
        """The road network, zones, assignment network (with its road-link index and free-flow costs), the
        distribution, the daily table after the scenario's demand changes, and the flooded roads."""
        ctx, p = self.ctx, self.p
        with ctx.stage("network"):
            flooded = self._flooded()
            roads = self._features(["Road"])
            road_net = rn.build(roads, closed=flooded, road_classes=p.road_classes)
        ctx.progress(0.05, f"network: {len(road_net)} links, {road_net.nodes} junctions")
        with ctx.stage("demand"):
            buildings = self._features(["Building"])
            zones = self._zones(buildings)
            if len(zones) < 2:
                raise BadInput(f"traffic: {len(zones)} zone(s) with buildings; trips need at least two zones "
                               "(a finer zone_res, or zones=FILE)")
            net, road_link = road_net.with_zones(zones.centroid, connectors=p.connectors)
            free = net.cost(np.zeros(len(net)))
            t_min = skim(net, free)
            d_km = skim(net, net.links["length"])
            dist = dem.gravity(zones.productions, zones.attractions, t_min, d_km, p.mean_trip_km)
            self.warnings += dist.warnings
            table, notes = dem.scale(dist.table, zones, scenario_demand(ctx.store, ctx.branch, ctx.version), self.crs)
            self.warnings += notes
            table = table * p.demand_factor
        return road_net, zones, net, road_link, free, dist, table, flooded

    def run(self) -> Outputs:
        ctx, p = self.ctx, self.p
        road_net, zones, net, road_link, free, dist, table, flooded = self.problem()
        share = np.asarray(p.hourly_share, np.float64) / sum(p.hourly_share) if p.hourly_share else dem.HOURLY_SHARE
        ctx.progress(0.1, f"{len(zones)} zones, {table.sum():,.0f} trips a day")
        results = self._assign_hours(net, table, share)
        out = Outputs()
        with ctx.stage("results"):
            out.tables["traffic_roads"] = self._roads_table(road_net, road_link, net, results)
            out.tables["traffic_zones"] = self._zones_table(zones, net, free, results)
            out.layers.append(self._layer(road_net, road_link, results))
        hours = []
        for h, od, a in results:
            road = road_link >= 0
            hours.append({
                "hour": h, "trips": round(float(od.sum()), 3), "gap": a.gap, "iterations": a.iterations,
                "vehicle_hours": round(float((a.volume * net.bpr(a.volume))[road].sum() / 60.0), 4),
                "vehicle_km": round(float((a.volume * net.links["length"])[road].sum()), 4),
                "objective": a.objective, "history": _history(a)})
        out.summary = {
            "hours": [h for h, _, _ in results], "method": p.method, "algorithm": p.algorithm,
            "vehicle_hours": round(sum(h["vehicle_hours"] for h in hours), 4),
            "vehicle_km": round(sum(h["vehicle_km"] for h in hours), 4),
            "trips_per_day": round(float(table.sum()), 3), "zones": len(zones),
            "beta_per_min": dist.beta, "mean_trip_km": round(dist.mean_km, 4),
            "network": {k: v for k, v in road_net.report.items() if k != "dropped_roads"},
            "dropped_roads": road_net.report.get("dropped_roads", []), "flooded_roads": len(flooded),
            "per_hour": hours, "warnings": self.warnings}
        return out

    def _assign_hours(self, net: tntp.Network, table: np.ndarray, share: np.ndarray
                      ) -> list[tuple[int, np.ndarray, Assignment]]:
        """One assignment per hour (in parallel on the one executor when there are workers and hours)."""
        from twin.compute import executor

        ctx, p = self.ctx, self.p
        ods = [dem.hourly(table, h, share) for h in p.hours]
        n = len(ods)
        work = len(net) * net.zones * n
        workers = ctx.workers if work >= PARALLEL_MIN_WORK else 1
        with ctx.stage("assign"):
            if workers == 1 or n == 1:  # in this process, with progress from within each assignment
                done = []
                for i, (h, od) in enumerate(zip(p.hours, ods, strict=True)):
                    def step(f: float, msg: str, i: int = i, h: int = h) -> None:
                        ctx.progress(0.1 + 0.8 * (i + f) / n, f"{h}:00 {msg}")

                    done.append(assign(net, od, method=p.method, algorithm=p.algorithm, gap=p.gap,
                                       max_iterations=p.max_iterations, progress=step))
            else:
                def progress(k: int, total: int | None) -> None:
                    ctx.progress(0.1 + 0.8 * k / max(total or n, 1), f"hour {k}/{n} assigned")

                with executor(workers, tasks=n, start="fork") as ex:
                    done = list(ex.map(_assign, [net] * n, ods, [p] * n, progress=progress))
        return list(zip(p.hours, ods, done, strict=True))

    def _pieces(self, road_net: rn.RoadNetwork, road_link: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per piece of a road link: the network link, the road, its metres, its share of the link's length and its
        direction (+1 along the road's drawing)."""
        link_of = {int(r): k for k, r in enumerate(road_link) if r >= 0}
        rows = [(link_of[k], r, m, m / max(road_net.length_m[k], 1e-9), d)
                for k, ps in enumerate(road_net.pieces) for r, m, d in ps]
        arr = np.asarray(rows, np.float64).reshape(-1, 5)
        return (arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2], arr[:, 3],
                arr[:, 4].astype(np.int64))

    def _roads_table(self, road_net: rn.RoadNetwork, road_link: np.ndarray, net: tntp.Network,
                     results: list[tuple[int, np.ndarray, Assignment]]) -> pa.Table:
        link, road, metres, frac, d = self._pieces(road_net, road_link)
        n = len(road_net.road_ids)
        used = np.unique(road)
        cap = net.links["capacity"][link]
        free_s = net.links["free_flow_time"][link] * 60.0 * frac
        cols: dict[str, list[Any]] = {k: [] for k in (
            "entity_id", "hour", "volume", "volume_ab", "volume_ba", "capacity", "vc", "free_time_s", "time_s",
            "delay_s", "speed_kmh", "length_m")}
        length = np.bincount(road[d > 0], metres[d > 0], n)
        length_ba = np.bincount(road[d < 0], metres[d < 0], n)
        length = np.where(length > 0, length, length_ba)
        capacity = np.full(n, np.inf)
        np.minimum.at(capacity, road, cap)
        for h, _, a in results:
            v = a.volume[link]
            t_s = net.bpr(a.volume)[link] * 60.0 * frac
            ab, ba, vc = np.zeros(n), np.zeros(n), np.zeros(n)
            np.maximum.at(ab, road[d > 0], v[d > 0])
            np.maximum.at(ba, road[d < 0], v[d < 0])
            np.maximum.at(vc, road, v / cap)
            t_ab = np.bincount(road[d > 0], t_s[d > 0], n)
            t_ba = np.bincount(road[d < 0], t_s[d < 0], n)
            f_ab = np.bincount(road[d > 0], free_s[d > 0], n)
            f_ba = np.bincount(road[d < 0], free_s[d < 0], n)
            worse = t_ba - f_ba > t_ab - f_ab  # the direction with the larger delay
            t = np.where(worse, t_ba, t_ab)
            f = np.where(worse, f_ba, f_ab)
            for i in used:
                cols["entity_id"].append(road_net.road_ids[i])
                cols["hour"].append(h)
                cols["volume"].append(float(ab[i] + ba[i]))
                cols["volume_ab"].append(float(ab[i]))
                cols["volume_ba"].append(float(ba[i]))
                cols["capacity"].append(float(capacity[i]))
                cols["vc"].append(float(vc[i]))
                cols["free_time_s"].append(float(f[i]))
                cols["time_s"].append(float(t[i]))
                cols["delay_s"].append(float(t[i] - f[i]))
                cols["speed_kmh"].append(float(length[i] / t[i] * 3.6) if t[i] > 0 else None)
                cols["length_m"].append(float(length[i]))
        types = {"entity_id": pa.string(), "hour": pa.int16()}
        return pa.table({k: pa.array(v, types.get(k, pa.float64())) for k, v in cols.items()})

    def _zones_table(self, zones: dem.Zones, net: tntp.Network, free: np.ndarray,
                     results: list[tuple[int, np.ndarray, Assignment]]) -> pa.Table:
        f_skim = skim(net, free)
        cols: dict[str, list[Any]] = {k: [] for k in ("entity_id", "hour", "trips_out", "trips_in",
                                                      "mean_time_min", "mean_free_time_min")}
        for h, od, a in results:
            c_skim = skim(net, a.cost)
            out = od.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                mt = np.where(out > 0, np.nansum(np.where(od > 0, od * c_skim, 0.0), axis=1) / out, np.nan)
                mf = np.where(out > 0, np.nansum(np.where(od > 0, od * f_skim, 0.0), axis=1) / out, np.nan)
            for i, zid in enumerate(zones.ids):
                cols["entity_id"].append(zid)
                cols["hour"].append(h)
                cols["trips_out"].append(float(out[i]))
                cols["trips_in"].append(float(od[:, i].sum()))
                cols["mean_time_min"].append(None if np.isnan(mt[i]) else float(mt[i]))
                cols["mean_free_time_min"].append(None if np.isnan(mf[i]) else float(mf[i]))
        types = {"entity_id": pa.string(), "hour": pa.int16()}
        return pa.table({k: pa.array(v, types.get(k, pa.float64())) for k, v in cols.items()})

    def _layer(self, road_net: rn.RoadNetwork, road_link: np.ndarray,
               results: list[tuple[int, np.ndarray, Assignment]]) -> tuple[LayerSpec, pa.Table]:
        """Vehicle-km per hour per H3 cell: each link cut into pieces of at most 20 m, summed per cell."""
        from twin.geo.crs import transform_xy
        from twin.layers.h3index import latlng_to_cells
        from twin.layers.values import make_values

        res = self.p.layer_res
        link_of = np.full(len(road_net), -1)
        link_of[road_link[road_link >= 0]] = np.flatnonzero(road_link >= 0)
        mids, owner, km = [], [], []
        for k, g in enumerate(road_net.geometry):
            n = max(1, int(np.ceil(g.length / 20.0)))
            at = (np.arange(n) + 0.5) / n
            pts = shapely.line_interpolate_point(g, at, normalized=True)
            mids.append(shapely.get_coordinates(pts))
            owner.append(np.full(n, link_of[k]))
            km.append(np.full(n, g.length / n / 1000.0))
        xy = np.concatenate(mids)
        lon, lat = transform_xy(xy[:, 0], xy[:, 1], self.crs, "EPSG:4326")
        cells = latlng_to_cells(np.asarray(lat), np.asarray(lon), res)
        owner_a, km_a = np.concatenate(owner), np.concatenate(km)
        uniq, inv = np.unique(cells, return_inverse=True)
        day = datetime.combine(self.p.day, datetime.min.time(), UTC).replace(tzinfo=None)
        all_cells, all_t, all_v = [], [], []
        for h, _, a in results:
            vkm = np.bincount(inv, a.volume[owner_a] * km_a, len(uniq))
            keep = vkm > 0
            all_cells.append(uniq[keep])
            all_v.append(vkm[keep])
            all_t.append(np.full(int(keep.sum()), np.datetime64(day + timedelta(hours=h), "us")))
        values = make_values(np.concatenate(all_cells), res, np.concatenate(all_v), t=np.concatenate(all_t))
        resolutions = sorted({max(res - 3, 0), max(res - 2, 0), max(res - 1, 0), res})
        spec = LayerSpec(name=LAYER, variable="vehicle_km", unit="veh·km/h", aggregation="sum",
                         resolutions=resolutions, time_bucket="1h",
                         description=f"vehicle-km driven per hour in the cell ({self.p.method}, "
                                     f"{len(results)} hour(s) of a weekday)")
        return spec, values


def city_problem(store: Any, hour: int = 8, branch: str = "main", **params: Any) -> tuple[tntp.Network, np.ndarray]:
    """The assignment network and the OD table of one hour of a branch, as a run with ``params`` builds them (for
    benchmarks and for exporting a city to TNTP)."""
    try:
        p = Parameters.model_validate({**params, "hours": [hour]})
    except ValueError as exc:
        raise BadParameters(f"traffic parameters: {exc}") from None
    ctx = RunContext(store=store, branch=branch, version=store.head(branch), params=p, run_id="problem",
                     workdir=Path("."))
    _, _, net, _, _, _, table, _ = _CityRun(ctx).problem()
    share = np.asarray(p.hourly_share, np.float64) / sum(p.hourly_share) if p.hourly_share else dem.HOURLY_SHARE
    return net, dem.hourly(table, hour, share)
