"""Polygon layers: exact polygon/hexagon overlays per H3 cell (covered area, area fractions, counts, area-share sums).

Hexagons are the H3 cell boundaries (WGS84 vertices) projected into the data's projected CRS with straight edges;
polygon/hexagon intersections are computed exactly with shapely 2 (vectorised, STRtree-paired). Areas are m² of the
data CRS. Candidate cells per polygon: the cells of its boundary densified to half a cell edge plus their
neighbours, and for polygons larger than half a cell the cells whose centres it contains — so every overlapping
cell is found and the intersection areas of a polygon sum to its area.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import h3
import numpy as np
import pyarrow as pa
import shapely

from data_models import Aggregation
from twin.geo.crs import horizontal, reproject, transform_xy
from twin.layers.h3index import latlng_to_cells
from twin.layers.points import WGS84, cell_values, to_lnglat
from twin.layers.values import VALUE_SCHEMA, aggregate, make_values


def _metres_per_unit(crs: str) -> float:
    """Metres per unit of a projected CRS; ValueError for geographic ones (areas need a projected CRS)."""
    h = horizontal(crs)
    if h.is_geographic:
        raise ValueError(f"polygon layers need a projected CRS (metres), got geographic {crs}")
    return float(h.axis_info[0].unit_conversion_factor) if h.axis_info else 1.0


def cell_polygons(cells: np.ndarray, crs: str) -> np.ndarray:
    """H3 cells as shapely polygons in ``crs`` (boundary vertices projected, straight edges between them)."""
    cells = np.asarray(cells, np.uint64)
    if not len(cells):
        return np.empty(0, dtype=object)
    bounds = [h3.cell_to_boundary(h3.int_to_str(int(c))) for c in cells.tolist()]
    sizes = np.fromiter((len(b) for b in bounds), np.int64, len(bounds))
    latlng = np.array([p for b in bounds for p in b], np.float64)
    x, y = transform_xy(latlng[:, 1], latlng[:, 0], WGS84, crs)
    ring = np.repeat(np.arange(len(cells)), sizes)
    # close each ring: repeat the first vertex of every cell
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    xs = np.insert(x, np.cumsum(sizes), x[first])
    ys = np.insert(y, np.cumsum(sizes), y[first])
    idx = np.insert(ring, np.cumsum(sizes), np.arange(len(cells)))
    return shapely.polygons(shapely.linearrings(np.column_stack([xs, ys]), indices=idx))


def _interior_cells(geoms: np.ndarray, crs: str, res: int) -> list[np.ndarray]:
    """Cells whose centres lie in each (large) polygon, through h3's polygon fill in WGS84."""
    out = []
    for g in shapely.get_parts(reproject(geoms, crs, WGS84)):
        if not isinstance(g, shapely.Polygon) or g.is_empty:
            continue
        outer = [(lat, lng) for lng, lat in g.exterior.coords[:-1]]
        holes = [[(lat, lng) for lng, lat in r.coords[:-1]] for r in g.interiors]
        found = h3.h3shape_to_cells(h3.LatLngPoly(outer, *holes), res)
        if found:
            out.append(np.array([h3.str_to_int(c) for c in found], np.uint64))
    return out


def candidate_cells(geoms: np.ndarray, crs: str, res: int) -> np.ndarray:
    """Distinct cells at ``res`` that may overlap any of the polygons (a superset of the overlapping cells)."""
    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return np.empty(0, np.uint64)
    unit = _metres_per_unit(crs)
    edge = h3.average_hexagon_edge_length(res, "m") / unit
    xy = shapely.get_coordinates(shapely.segmentize(geoms, edge / 2.0))
    lng, lat = to_lnglat(xy[:, 0], xy[:, 1], crs)
    ring = np.unique(latlng_to_cells(lat, lng, res))
    ring = ring[ring != 0]
    disk = [np.array([h3.str_to_int(n) for n in h3.grid_disk(h3.int_to_str(int(c)), 1)], np.uint64)
            for c in ring.tolist()]
    big = geoms[shapely.area(geoms) * unit * unit > 0.5 * h3.average_hexagon_area(res, "m^2")]
    return np.unique(np.concatenate([ring, *disk, *_interior_cells(big, crs, res)]))


def overlay(geoms: np.ndarray, crs: str, res: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact polygon × cell intersections: (polygon index, cell, intersection area m², cell area m²)."""
    geoms = np.asarray(geoms, dtype=object)
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        geoms = geoms.copy()
        geoms[bad] = shapely.make_valid(geoms[bad])
    unit = _metres_per_unit(crs)
    cells = candidate_cells(geoms, crs, res)
    hexes = cell_polygons(cells, crs)
    pi, hi = shapely.STRtree(hexes).query(geoms, predicate="intersects")
    area = shapely.area(shapely.intersection(geoms[pi], hexes[hi])) * unit * unit
    keep = area > 0
    return pi[keep], cells[hi[keep]], area[keep], shapely.area(hexes[hi[keep]]) * unit * unit


def _sum_per_cell(cells: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell, Σv, number of contributions) per distinct cell."""
    uniq, inv = np.unique(cells, return_inverse=True)
    return uniq, np.bincount(inv, v, len(uniq)), np.bincount(inv, minlength=len(uniq))


def area_values(geoms: np.ndarray, crs: str, res: int) -> pa.Table:
    """Covered area (m², aggregation ``sum``) of the polygons per cell; overlapping polygons count twice."""
    _, cells, area, _ = overlay(geoms, crs, res)
    if not len(cells):
        return VALUE_SCHEMA.empty_table()
    uniq, total, n = _sum_per_cell(cells, area)
    return make_values(uniq, res, total, count=n)


def area_fraction(geoms: np.ndarray, crs: str, res: int, *, cells: np.ndarray | None = None) -> pa.Table:
    """Fraction (0..1) of each cell's area covered by the union of the polygons (``area_weighted_mean``).

    ``weight`` is the cell's area (m²). ``cells`` adds rows of fraction 0 for cells of the layer's domain that no
    polygon touches — needed for consistent roll-ups of fractions (a parent mean counts its uncovered children).
    """
    geoms = np.asarray(geoms, dtype=object)
    parts = shapely.get_parts(shapely.union_all(shapely.make_valid(geoms))) if len(geoms) else geoms
    parts = parts[shapely.area(parts) > 0] if len(parts) else parts
    _, c, area, cell_area = overlay(parts, crs, res)
    uniq, covered, n = _sum_per_cell(c, area)
    cell_area_u = np.zeros(len(uniq))
    if len(c):
        cell_area_u[np.searchsorted(uniq, c)] = cell_area
    if cells is not None:
        extra = np.setdiff1d(np.asarray(cells, np.uint64), uniq)
        if len(extra):
            unit = _metres_per_unit(crs)
            uniq = np.concatenate([uniq, extra])
            covered = np.concatenate([covered, np.zeros(len(extra))])
            n = np.concatenate([n, np.zeros(len(extra), np.int64)])
            cell_area_u = np.concatenate([cell_area_u, shapely.area(cell_polygons(extra, crs)) * unit * unit])
    if not len(uniq):
        return VALUE_SCHEMA.empty_table()
    frac = np.clip(covered / cell_area_u, 0.0, 1.0)
    return aggregate(make_values(uniq, res, frac, count=n, weight=cell_area_u), Aggregation.area_weighted_mean)


def count_values(geoms: np.ndarray, crs: str, res: int) -> pa.Table:
    """Number of polygons per cell, each counted once in the cell holding its centroid (aggregation ``count``)."""
    c = shapely.get_coordinates(shapely.centroid(np.asarray(geoms, dtype=object)))
    lng, lat = to_lnglat(c[:, 0], c[:, 1], crs)
    return cell_values(latlng_to_cells(lat, lng, res), res)


def sum_values(geoms: np.ndarray, values: np.ndarray, crs: str, res: int) -> pa.Table:
    """Per-polygon quantities (e.g. volume) distributed to cells by area share and summed (aggregation ``sum``).

    A polygon's value is split in proportion to its intersection areas, so the cell totals add up to the total of
    the polygons. Polygons without area (points, lines, empty) go wholly to the cell of their centroid.
    """
    geoms = np.asarray(geoms, dtype=object)
    values = np.asarray(values, np.float64)
    ok = np.isfinite(values)
    geoms, values = geoms[ok], values[ok]
    area = shapely.area(geoms) * _metres_per_unit(crs) ** 2
    has = area > 0
    pi, cells, inter, _ = overlay(geoms[has], crs, res)
    share = values[has][pi] * inter / np.bincount(pi, inter, int(has.sum()))[pi]
    flat = ~has & ~shapely.is_empty(geoms)
    c = shapely.get_coordinates(shapely.centroid(geoms[flat]))
    lng, lat = to_lnglat(c[:, 0], c[:, 1], crs)
    cells = np.concatenate([cells, latlng_to_cells(lat, lng, res)])
    share = np.concatenate([share, values[flat]])
    keep = cells != 0
    if not keep.any():
        return VALUE_SCHEMA.empty_table()
    uniq, total, n = _sum_per_cell(cells[keep], share[keep])
    return make_values(uniq, res, total, count=n)


def geometries(features: Iterable[Mapping[str, Any]]) -> np.ndarray:
    """Shapely geometries of store features (their GeoJSON ``geometry``; None where absent)."""
    return np.array([shapely.geometry.shape(f["geometry"]) if f.get("geometry") else None for f in features],
                    dtype=object)


def building_values(geoms: np.ndarray, crs: str, res: int, *, height: np.ndarray | None = None,
                    storeys: np.ndarray | None = None) -> dict[str, pa.Table]:
    """Building layers per cell: count (centroid), footprint area, volume (area × height) and floor area
    (area × storeys), the last three distributed by area share (all ``sum``/``count`` layers)."""
    geoms = np.asarray(geoms, dtype=object)
    area = shapely.area(geoms) * _metres_per_unit(crs) ** 2
    out = {"count": count_values(geoms, crs, res), "footprint_area": area_values(geoms, crs, res)}
    if height is not None:
        out["volume"] = sum_values(geoms, area * np.asarray(height, np.float64), crs, res)
    if storeys is not None:
        out["floor_area"] = sum_values(geoms, area * np.asarray(storeys, np.float64), crs, res)
    return out
