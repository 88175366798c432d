"""Window points on the façades of residential buildings, where the sunlight standard is judged.

Every exterior-ring edge of a footprint is a façade (edges shorter than ``MIN_FACADE_M`` are skipped). Along it,
``n = max(1, floor(length / spacing))`` points ``spacing`` apart, centred on the façade; one per storey at the
windowsill: ``base_z + storey * storey_height + sill_height`` for storeys ``0 .. storeys − 1`` whose sill lies below
the building's top. A point whose outward offset falls inside any footprint (a party wall with a neighbour) has no
sky and no window: it is dropped. ``window_id`` is ``f<facade>-s<storey>-w<index>``, stable for a footprint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from twin.sim.scene import BuildingGeom

MIN_FACADE_M = 0.5
PARTY_WALL_PROBE_M = 0.1  # a window is dropped when this far out from it lies inside a footprint


@dataclass
class WindowPoints:
    """Window points: building index, ids, storey, façade, position (n, 3), outward unit normal (n, 3)."""

    building: np.ndarray
    window_id: np.ndarray
    storey: np.ndarray
    facade: np.ndarray
    xyz: np.ndarray
    normal: np.ndarray

    def __len__(self) -> int:
        """Number of windows."""
        return len(self.building)

    @property
    def azimuth(self) -> np.ndarray:
        """Grid azimuth of each façade normal, degrees clockwise from grid north in [0, 360)."""
        return np.mod(np.degrees(np.arctan2(self.normal[:, 0], self.normal[:, 1])), 360.0)

    def take(self, idx: np.ndarray) -> WindowPoints:
        """The windows at ``idx``."""
        return WindowPoints(self.building[idx], self.window_id[idx], self.storey[idx], self.facade[idx],
                            self.xyz[idx], self.normal[idx])


def _facades(b: BuildingGeom) -> list[tuple[np.ndarray, np.ndarray]]:
    """Start and end (x, y) of every exterior-ring edge, rings counter-clockwise so the outward normal is right."""
    out = []
    for p in b.polygons:
        xy = np.asarray(shapely.geometry.polygon.orient(p, 1.0).exterior.coords)[:, :2]
        out += [(xy[i], xy[i + 1]) for i in range(len(xy) - 1)]
    return out


def building_windows(b: BuildingGeom, index: int, spacing_m: float, storey_height_m: float,
                     sill_height_m: float) -> WindowPoints:
    """The window points of one building (all façades, all storeys), before the party-wall filter."""
    rows_b, rows_id, rows_s, rows_f, rows_xyz, rows_n = [], [], [], [], [], []
    levels = b.base_z + np.arange(b.storeys) * storey_height_m + sill_height_m
    storeys = np.flatnonzero(levels < b.base_z + b.height)
    for fi, (a, c) in enumerate(_facades(b)):
        d = c - a
        length = float(np.hypot(*d))
        if length < MIN_FACADE_M:
            continue
        u = d / length
        normal = np.array([u[1], -u[0], 0.0])
        n = max(1, int(np.floor(length / spacing_m + 1e-9)))
        pos = (length - (n - 1) * spacing_m) / 2.0 + np.arange(n) * spacing_m if n > 1 else np.array([length / 2])
        xy = a[None, :] + pos[:, None] * u[None, :]
        for s in storeys:
            rows_xyz.append(np.column_stack([xy, np.full(n, levels[s])]))
            rows_n.append(np.tile(normal, (n, 1)))
            rows_id += [f"f{fi}-s{s}-w{k}" for k in range(n)]
            rows_s.append(np.full(n, s, np.int32))
            rows_f.append(np.full(n, fi, np.int32))
            rows_b.append(np.full(n, index, np.int64))
    if not rows_b:
        return empty_windows()
    return WindowPoints(np.concatenate(rows_b), np.asarray(rows_id, dtype=object), np.concatenate(rows_s),
                        np.concatenate(rows_f), np.concatenate(rows_xyz), np.concatenate(rows_n))


def empty_windows() -> WindowPoints:
    """No windows."""
    return WindowPoints(np.zeros(0, np.int64), np.zeros(0, dtype=object), np.zeros(0, np.int32),
                        np.zeros(0, np.int32), np.zeros((0, 3)), np.zeros((0, 3)))


def concat(parts: list[WindowPoints]) -> WindowPoints:
    """Windows of many buildings as one set."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_windows()
    return WindowPoints(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                          ("building", "window_id", "storey", "facade", "xyz", "normal")))


def window_points(buildings: list[BuildingGeom], spacing_m: float, storey_height_m: float,
                  sill_height_m: float) -> WindowPoints:
    """Window points of every residential building, party-wall points dropped: the same points, in the same order
    and to the bit, as :func:`building_windows` per building, made for all façades of all buildings in numpy."""
    idx = [i for i, b in enumerate(buildings) if b.residential]
    polys = [p for i in idx for p in buildings[i].polygons]
    if not polys:
        return empty_windows()
    owner = np.repeat(np.asarray(idx, np.int64), [len(buildings[i].polygons) for i in idx])
    rings = shapely.get_exterior_ring(shapely.orient_polygons(np.asarray(polys, dtype=object), exterior_cw=False))
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[:-1] == ring[1:]  # consecutive corners of one ring are a façade
    a, c, eb = xy[:-1][same], xy[1:][same], owner[ring[:-1][same]]
    fi = np.arange(len(eb)) - np.searchsorted(eb, eb)  # façade number within its building (buildings ascend)
    d = c - a
    length = np.hypot(d[:, 0], d[:, 1])
    ok = length >= MIN_FACADE_M
    a, d, length, eb, fi = a[ok], d[ok], length[ok], eb[ok], fi[ok]
    u = d / length[:, None]
    normal = np.column_stack([u[:, 1], -u[:, 0], np.zeros(len(u))])
    n = np.maximum(1, np.floor(length / spacing_m + 1e-9).astype(np.int64))
    # storeys of each building whose sill lies below its top
    base = np.array([b.base_z for b in buildings])
    top = base + np.array([b.height for b in buildings])
    storeys = np.array([b.storeys for b in buildings], np.int64)
    s_of = [np.flatnonzero(base[i] + np.arange(storeys[i]) * storey_height_m + sill_height_m < top[i])
            for i in range(len(buildings))]
    ns = np.array([len(x) for x in s_of], np.int64)
    # (façade, storey) pairs in façade order, then storey order
    pe = np.repeat(np.arange(len(eb)), ns[eb])
    ps = np.concatenate([s_of[b] for b in eb]) if len(eb) else np.zeros(0, np.int64)
    # points: each pair repeated over its façade's n positions
    rep = n[pe]
    e = np.repeat(pe, rep)
    s = np.repeat(ps, rep)
    k = np.arange(len(e)) - np.repeat(np.cumsum(rep) - rep, rep)
    pos = (length[e] - (n[e] - 1) * spacing_m) / 2.0 + k * spacing_m
    b = eb[e]
    levels = base[b] + s * storey_height_m + sill_height_m
    xyz = np.column_stack([a[e] + pos[:, None] * u[e], levels])
    fe = fi[e]
    ids = np.array([f"f{x}-s{y}-w{z}" for x, y, z in zip(fe.tolist(), s.tolist(), k.tolist(), strict=True)],
                   dtype=object)
    w = WindowPoints(b.astype(np.int64), ids, s.astype(np.int32), fe.astype(np.int32), xyz, normal[e])
    if not len(w):
        return w
    footprints = [p for g in buildings for p in g.polygons]
    tree = shapely.STRtree(footprints)
    probe = shapely.points(w.xyz[:, :2] + PARTY_WALL_PROBE_M * w.normal[:, :2])
    hit, _ = tree.query(probe, predicate="within")
    keep = np.ones(len(w), bool)
    keep[hit] = False
    return w.take(np.flatnonzero(keep))
