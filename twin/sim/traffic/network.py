"""The road network of a branch: a directed link graph from its :class:`~data_models.Road` entities.

* **Which roads**: the drivable OSM highway classes of :data:`ROAD_CLASSES` (footways, cycleways, paths, steps,
  tracks and roads tagged ``access=no|private``, ``motor_vehicle=no`` or ``motorcar=no`` are left out, as
  osmnx's ``drive_service`` network does); ``closed`` roads (the ``close_road`` edit) and the roads a flood run
  marks impassable are removed.
* **Junctions**: roads meet where they share a vertex (OSM ways share their nodes) and, for data drawn without
  shared vertices (the demo city, many CAD/GIS road layers), where they cross at the same level (``layer``,
  ``bridge`` and ``tunnel`` attributes keep a bridge off the road below it).
* **Directions**: ``oneway`` (OSM ``oneway=-1`` runs against the drawing; ``motorway`` implies one way); lanes per
  direction from ``lanes:forward`` / ``lanes:backward``, else ``lanes`` split between the directions, else the
  class default; capacity = lanes × the class's capacity per lane; free-flow speed = the speed limit, else the
  class default. BPR cost with b = 0.15, power 4 (the Bureau of Public Roads' values).
* **Cleaning**: chains through junctions of exactly two road pieces with the same attributes are merged into one
  link (turn-free intersections), and only the largest strongly connected component is kept; what was dropped is
  reported.

The model is a networkx ``MultiDiGraph`` (:meth:`RoadNetwork.graph`, for analyses); the assignment runs on the
compiled arrays (:class:`~twin.sim.traffic.tntp.Network`) that :meth:`RoadNetwork.with_zones` makes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString

from twin.errors import BadInput
from twin.sim.traffic.tntp import Network

# highway class -> (capacity per lane veh/h, free-flow speed km/h, lanes per direction): the defaults of MATSim's
# OSM network reader (OsmNetworkReader), with service roads added at a living street's capacity
ROAD_CLASSES: dict[str, tuple[float, float, float]] = {
    "motorway": (2000.0, 120.0, 2.0), "motorway_link": (1500.0, 80.0, 1.0),
    "trunk": (2000.0, 80.0, 1.0), "trunk_link": (1500.0, 50.0, 1.0),
    "primary": (1500.0, 80.0, 1.0), "primary_link": (1500.0, 60.0, 1.0),
    "secondary": (1000.0, 60.0, 1.0), "secondary_link": (1000.0, 60.0, 1.0),
    "tertiary": (600.0, 45.0, 1.0), "tertiary_link": (600.0, 45.0, 1.0),
    "unclassified": (600.0, 45.0, 1.0), "road": (600.0, 45.0, 1.0), "minor": (600.0, 45.0, 1.0),
    "residential": (600.0, 30.0, 1.0), "living_street": (300.0, 15.0, 1.0), "service": (300.0, 15.0, 1.0),
}
IMPLIED_ONEWAY = ("motorway",)
NO_ACCESS = {"access": ("no", "private"), "motor_vehicle": ("no",), "motorcar": ("no",)}
BPR_B, BPR_POWER = 0.15, 4.0
SNAP_M = 0.01  # vertices closer than this are one junction


@dataclass
class ClassDefaults:
    """Capacity per lane (veh/h), free-flow speed (km/h) and lanes per direction of one road class."""

    capacity_per_lane: float
    speed_kmh: float
    lanes: float


@dataclass
class RoadNetwork:
    """Directed links between junctions (0-based node indices), each with its length, capacity, free-flow time
    and the road pieces it runs along (road index, metres, +1 along the road's drawing or -1 against)."""

    node_xy: np.ndarray  # (n, 2), store CRS
    init: np.ndarray
    term: np.ndarray
    length_m: np.ndarray
    capacity: np.ndarray  # veh/h
    free_time_s: np.ndarray
    road_class: list[str]
    pieces: list[list[tuple[int, float, int]]]
    road_ids: list[str]
    geometry: list[LineString]  # along the link's direction
    report: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.init)

    @property
    def nodes(self) -> int:
        return len(self.node_xy)

    def graph(self) -> Any:
        """The networkx model (a ``MultiDiGraph``): junctions with x, y; one edge per link with its attributes
        (``key`` = link index)."""
        import networkx as nx

        g = nx.MultiDiGraph()
        for i, (x, y) in enumerate(self.node_xy):
            g.add_node(i, x=float(x), y=float(y))
        for k in range(len(self)):
            g.add_edge(int(self.init[k]), int(self.term[k]), key=k, length=float(self.length_m[k]),
                       capacity=float(self.capacity[k]), free_time_s=float(self.free_time_s[k]),
                       road_class=self.road_class[k], roads=[self.road_ids[r] for r, _, _ in self.pieces[k]])
        return g

    def with_zones(self, centroids: np.ndarray, connectors: int = 2, speed_kmh: float = 30.0) -> tuple[
            Network, np.ndarray]:
        """The assignment network: zones 1..Z (``centroids`` in the store CRS) joined to their ``connectors``
        nearest junctions by uncongested links at ``speed_kmh``, then the road links; junction i is node Z+1+i.
        Returns the network and the road-link index of each of its links (-1 for connectors); times in minutes."""
        z = len(centroids)
        from scipy.spatial import cKDTree

        # connectors join junctions on roads that are not motorways: a zone's trips start on its local streets
        local = np.zeros(self.nodes, bool)
        for k, cls in enumerate(self.road_class):
            if not cls.startswith(("motorway", "trunk")):
                local[self.init[k]] = local[self.term[k]] = True
        cand = np.flatnonzero(local) if local.any() else np.arange(self.nodes)
        tree = cKDTree(self.node_xy[cand])
        k = min(connectors, len(cand))
        dist, idx = tree.query(np.asarray(centroids, np.float64).reshape(-1, 2), k=k)
        dist, idx = np.asarray(dist).reshape(z, k), cand[np.asarray(idx).reshape(z, k)]
        zone = np.repeat(np.arange(z), k)
        node = idx.ravel() + z
        cd = np.maximum(dist.ravel(), 1.0)
        c_time = cd / (speed_kmh / 3.6) / 60.0
        init = np.concatenate([zone, node, self.init + z]) + 1
        term = np.concatenate([node, zone, self.term + z]) + 1
        n_c = len(zone)
        links = {
            "init_node": init.astype(np.int64), "term_node": term.astype(np.int64),
            "capacity": np.concatenate([np.full(2 * n_c, 1e9), self.capacity]),
            "length": np.concatenate([cd, cd, self.length_m]) / 1000.0,
            "free_flow_time": np.concatenate([c_time, c_time, self.free_time_s / 60.0]),
            "b": np.concatenate([np.zeros(2 * n_c), np.full(len(self), BPR_B)]),
            "power": np.full(2 * n_c + len(self), BPR_POWER),
            "speed": np.concatenate([np.full(2 * n_c, speed_kmh), self.length_m / np.maximum(
                self.free_time_s, 1e-9) * 3.6]),
            "toll": np.zeros(2 * n_c + len(self)),
            "link_type": np.concatenate([np.zeros(2 * n_c, np.int64), np.ones(len(self), np.int64)]),
        }
        meta = {"NUMBER OF ZONES": str(z), "NUMBER OF NODES": str(z + self.nodes), "FIRST THRU NODE": str(z + 1),
                "NUMBER OF LINKS": str(len(init))}
        road_link = np.concatenate([np.full(2 * n_c, -1), np.arange(len(self))])
        return Network(meta=meta, links=links), road_link


def class_defaults(overrides: dict[str, dict[str, float]] | None = None) -> dict[str, ClassDefaults]:
    """The per-class defaults with a user's overrides (``{"primary": {"capacity_per_lane": 1800}}``; a new class
    needs all three values)."""
    out = {k: ClassDefaults(*v) for k, v in ROAD_CLASSES.items()}
    for cls, values in (overrides or {}).items():
        base = out.get(cls)
        if base is None and set(values) < {"capacity_per_lane", "speed_kmh", "lanes"}:
            raise BadInput(f"road_classes: {cls!r} is a new class: give capacity_per_lane, speed_kmh and lanes")
        merged = {**(base.__dict__ if base else {}), **values}
        bad = [k for k, v in merged.items() if k not in ("capacity_per_lane", "speed_kmh", "lanes")
               or not isinstance(v, int | float) or v <= 0]
        if bad:
            raise BadInput(f"road_classes: {cls}: {', '.join(bad)} must be known fields with positive numbers")
        out[cls] = ClassDefaults(**merged)
    return out


def _num(v: Any) -> float | None:
    try:
        return float(str(v).split(";")[0].strip())
    except (TypeError, ValueError):
        return None


def _level(attrs: dict[str, Any]) -> int:
    """The vertical level of a road: OSM ``layer``, else +1 for a bridge and -1 for a tunnel, else 0."""
    lay = _num(attrs.get("layer"))
    if lay is not None:
        return int(lay)
    if str(attrs.get("bridge", "no")).lower() not in ("no", "false", "0", ""):
        return 1
    if str(attrs.get("tunnel", "no")).lower() not in ("no", "false", "0", ""):
        return -1
    return 0


def _drivable(road: dict[str, Any], classes: dict[str, ClassDefaults]) -> str | None:
    """Why a road is left out of the car network, or None when it is in."""
    if road.get("road_class") not in classes:
        return f"class {road.get('road_class')}"
    attrs = road.get("attributes") or {}
    for tag, values in NO_ACCESS.items():
        if str(attrs.get(tag, "")).lower() in values:
            return f"{tag}={attrs[tag]}"
    if road.get("geometry", {}).get("type") not in ("LineString", "MultiLineString"):
        return "area, not a centre line"
    return None


def _directions(road: dict[str, Any], cd: ClassDefaults) -> tuple[float, float]:
    """Lanes along and against the road's drawing (0 where it is one way)."""
    attrs = road.get("attributes") or {}
    tag = str(attrs.get("oneway", "")).strip().lower()
    oneway = bool(road.get("oneway")) or (road.get("road_class") in IMPLIED_ONEWAY and tag not in ("no", "false",
                                                                                                  "0"))
    reverse = tag == "-1"
    fwd, bwd = _num(attrs.get("lanes:forward")), _num(attrs.get("lanes:backward"))
    total = road.get("lanes") or _num(attrs.get("lanes"))
    if oneway:
        lanes = fwd or total or cd.lanes
        return (0.0, lanes) if reverse else (lanes, 0.0)
    if fwd and bwd:
        return fwd, bwd
    per = max(total / 2.0, 1.0) if total else cd.lanes
    return per, per


def _lines(geom: dict[str, Any]) -> list[np.ndarray]:
    g = shapely.geometry.shape(geom)
    return [np.asarray(p.coords, np.float64)[:, :2] for p in shapely.get_parts(g) if not p.is_empty and len(
        p.coords) >= 2]


def build(roads: list[dict[str, Any]], *, closed: set[str] | frozenset[str] = frozenset(),
          road_classes: dict[str, dict[str, float]] | None = None, node_crossings: bool = True,
          largest_component: bool = True) -> RoadNetwork:
    """The cleaned directed network of ``roads`` (Road records as the store returns them); ``closed`` road ids
    are left out as the ``closed`` flag's roads are; ``largest_component=False`` keeps every component."""
    classes = class_defaults(road_classes)
    report: dict[str, Any] = {"roads": len(roads), "left_out": defaultdict(int)}
    kept: list[dict[str, Any]] = []
    for r in roads:
        why = _drivable(r, classes)
        if why is None and (r.get("closed") or r["id"] in closed):
            why = "closed"
        if why is not None:
            report["left_out"][why] += 1
        else:
            kept.append(r)
    if not kept:
        raise BadInput("traffic: the branch has no drivable roads (" + ", ".join(
            f"{k}: {v}" for k, v in sorted(report["left_out"].items())) + ")")
    # every road part as a vertex array, with its road and level
    parts: list[np.ndarray] = []
    part_road: list[int] = []
    part_level: list[int] = []
    for i, r in enumerate(kept):
        for a in _lines(r["geometry"]):
            parts.append(a)
            part_road.append(i)
            part_level.append(_level(r.get("attributes") or {}))
    if node_crossings:
        parts = _node_crossings(parts, part_level)
    # junctions: part ends and vertices shared by two parts (snapped to SNAP_M)
    keys = [np.round(a / SNAP_M).astype(np.int64) for a in parts]
    count: dict[tuple[int, int], int] = defaultdict(int)
    for ka in keys:
        for t in {tuple(v) for v in ka.tolist()}:
            count[t] += 1
    node_of: dict[tuple[int, int], int] = {}
    xy: list[tuple[float, float]] = []

    def node(key: tuple[int, int], at: np.ndarray) -> int:
        if key not in node_of:
            node_of[key] = len(xy)
            xy.append((float(at[0]), float(at[1])))
        return node_of[key]

    # pieces between junctions: (from node, to node, road, coordinates)
    pieces: list[tuple[int, int, int, np.ndarray]] = []
    for a, ka, ri in zip(parts, keys, part_road, strict=True):
        cut = [0] + [j for j in range(1, len(a) - 1) if count[tuple(ka[j])] > 1] + [len(a) - 1]
        for s, e in zip(cut[:-1], cut[1:], strict=True):
            seg = a[s:e + 1]
            if np.hypot(*np.diff(seg, axis=0).T).sum() <= 0:
                continue
            pieces.append((node(tuple(ka[s]), a[s]), node(tuple(ka[e]), a[e]), ri, seg))
    lanes = [_directions(r, classes[r["road_class"]]) for r in kept]
    attrs_of = [_piece_key(r, classes, ln) for r, ln in zip(kept, lanes, strict=True)]
    chains = _merge(pieces, attrs_of, len(xy))
    # directed links
    L: dict[str, list[Any]] = defaultdict(list)
    for chain in chains:
        ri0 = pieces[chain[0][0]][2]
        cd = classes[kept[ri0]["road_class"]]
        coords = np.concatenate([pieces[p][3][::d][(1 if j else 0):] for j, (p, d) in enumerate(chain)])
        length = float(np.hypot(*np.diff(coords, axis=0).T).sum())
        speed = kept[ri0].get("speed_limit_kmh") or cd.speed_kmh
        first, last = pieces[chain[0][0]], pieces[chain[-1][0]]
        u = first[0] if chain[0][1] == 1 else first[1]
        v = last[1] if chain[-1][1] == 1 else last[0]
        along = [(pieces[p][2], float(np.hypot(*np.diff(pieces[p][3], axis=0).T).sum()), d) for p, d in chain]
        # the chain's direction relative to the first road's drawing: its lanes that way, the others back
        fwd, bwd = lanes[ri0] if chain[0][1] == 1 else lanes[ri0][::-1]
        for a_, b_, n_lanes, sign, c in ((u, v, fwd, 1, coords), (v, u, bwd, -1, coords[::-1])):
            if n_lanes <= 0:
                continue
            L["init"].append(a_)
            L["term"].append(b_)
            L["length"].append(length)
            L["capacity"].append(n_lanes * cd.capacity_per_lane)
            L["time"].append(length / (speed / 3.6))
            L["class"].append(kept[ri0]["road_class"])
            L["pieces"].append([(r, m, d * sign) for r, m, d in along])
            L["geom"].append(LineString(c))
    init, term = np.asarray(L["init"], np.int64), np.asarray(L["term"], np.int64)
    keep_nodes = _largest_scc(init, term, len(xy)) if largest_component else np.ones(len(xy), bool)
    ok = keep_nodes[init] & keep_nodes[term]
    report.update({"left_out": dict(report["left_out"]), "drivable_roads": len(kept),
                   "junctions": int(keep_nodes.sum()), "links": int(ok.sum()),
                   "dropped_junctions": int((~keep_nodes).sum()), "dropped_links": int((~ok).sum()),
                   "merged_pieces": len(pieces) - len(chains)})
    renum = np.cumsum(keep_nodes) - 1
    idx = np.flatnonzero(ok)
    in_roads = sorted({r for k in idx for r, _, _ in L["pieces"][k]})
    report["dropped_roads"] = [kept[i]["id"] for i in sorted(set(range(len(kept))) - set(in_roads))][:50]
    report["dropped_road_count"] = len(kept) - len(in_roads)
    return RoadNetwork(
        node_xy=np.asarray(xy, np.float64)[keep_nodes], init=renum[init[idx]], term=renum[term[idx]],
        length_m=np.asarray(L["length"])[idx], capacity=np.asarray(L["capacity"])[idx],
        free_time_s=np.asarray(L["time"])[idx], road_class=[L["class"][k] for k in idx],
        pieces=[L["pieces"][k] for k in idx], road_ids=[r["id"] for r in kept],
        geometry=[L["geom"][k] for k in idx], report=report)


def _piece_key(road: dict[str, Any], classes: dict[str, ClassDefaults], lanes: tuple[float, float]) -> tuple:
    cd = classes[road["road_class"]]
    return road["road_class"], road.get("speed_limit_kmh") or cd.speed_kmh, lanes


def _merge(pieces: list[tuple[int, int, int, np.ndarray]], attrs_of: list[tuple], n_nodes: int
           ) -> list[list[tuple[int, int]]]:
    """Chains of pieces (piece index, +1 along its drawing / -1 against) through junctions where exactly two
    pieces of the same attributes and direction meet; every piece is in one chain."""
    at: dict[int, list[int]] = defaultdict(list)
    for p, (u, v, _, _) in enumerate(pieces):
        at[u].append(p)
        at[v].append(p)

    def same(p: int, q: int, node: int) -> bool:
        (_, v1, r1, _), (u2, _, r2, _) = pieces[p], pieces[q]
        a1, a2 = attrs_of[r1], attrs_of[r2]
        if a1[:2] != a2[:2]:
            return False
        # a pass-through keeps the lanes' directions: leaving p at its end means entering q at its start
        flip = (v1 == node) != (u2 == node)
        return a1[2] == (a2[2][::-1] if flip else a2[2])

    through = {n for n, ps in at.items() if len(ps) == 2 and ps[0] != ps[1] and same(ps[0], ps[1], n)}
    used = [False] * len(pieces)
    chains: list[list[tuple[int, int]]] = []
    for start in range(len(pieces)):
        if used[start]:
            continue
        # walk back to the chain's beginning, then forward
        p, d = start, 1
        seen = {start}
        while True:
            node = pieces[p][0] if d == 1 else pieces[p][1]
            if node not in through:
                break
            q = next(x for x in at[node] if x != p)
            if q in seen:
                break  # a ring of through junctions
            seen.add(q)
            d = -1 if pieces[q][0] == node else 1  # q runs into node when the chain is read forwards
            p = q
        chain = []
        while True:
            used[p] = True
            chain.append((p, d))
            node = pieces[p][1] if d == 1 else pieces[p][0]
            if node not in through:
                break
            q = next(x for x in at[node] if x != p)
            if used[q]:
                break
            d = 1 if pieces[q][0] == node else -1
            p = q
        chains.append(chain)
    return chains


def _node_crossings(parts: list[np.ndarray], levels: list[int]) -> list[np.ndarray]:
    """The parts with a vertex added where two of the same level cross without sharing one."""
    lines = np.array([LineString(a) for a in parts], dtype=object)
    tree = shapely.STRtree(lines)
    a_idx, b_idx = tree.query(lines, predicate="intersects")
    extra: dict[int, list[np.ndarray]] = defaultdict(list)
    lv = np.asarray(levels)
    sel = (a_idx < b_idx) & (lv[a_idx] == lv[b_idx])
    for i, j in zip(a_idx[sel], b_idx[sel], strict=True):
        x = shapely.intersection(lines[i], lines[j])
        pts = [p for p in shapely.get_parts(x) if p.geom_type == "Point"]
        for p in pts:
            c = np.asarray(p.coords[0][:2])
            extra[i].append(c)
            extra[j].append(c)
    out = list(parts)
    for i, pts in extra.items():
        out[i] = _insert(parts[i], pts)
    return out


def _insert(a: np.ndarray, pts: list[np.ndarray]) -> np.ndarray:
    """A vertex array with points inserted in order along it (points at an existing vertex are skipped)."""
    line = LineString(a)
    seg = np.hypot(*np.diff(a, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    rows = [(float(c), 0, a[k]) for k, c in enumerate(cum)]
    for p in pts:
        d = float(line.project(shapely.Point(p)))
        if np.min(np.hypot(*(a - p).T)) <= SNAP_M:
            continue
        rows.append((d, 1, np.asarray(p, np.float64)))
    rows.sort(key=lambda r: (r[0], r[1]))
    return np.asarray([r[2] for r in rows])


def _largest_scc(init: np.ndarray, term: np.ndarray, n: int) -> np.ndarray:
    """A mask of the junctions in the largest strongly connected component (scipy's compiled search; the same
    components as networkx's ``strongly_connected_components``)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    g = csr_matrix((np.ones(len(init)), (init, term)), shape=(n, n))
    _, label = connected_components(g, directed=True, connection="strong")
    sizes = np.bincount(label)
    return label == int(np.argmax(sizes))
