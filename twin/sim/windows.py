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
    """Window points of every residential building, party-wall points dropped."""
    w = concat([building_windows(b, i, spacing_m, storey_height_m, sill_height_m)
                for i, b in enumerate(buildings) if b.residential])
    if not len(w):
        return w
    footprints = [p for b in buildings for p in b.polygons]
    tree = shapely.STRtree(footprints)
    probe = shapely.points(w.xyz[:, :2] + PARTY_WALL_PROBE_M * w.normal[:, :2])
    hit, _ = tree.query(probe, predicate="within")
    keep = np.ones(len(w), bool)
    keep[hit] = False
    return w.take(np.flatnonzero(keep))
