"""Travel demand from the buildings: zones, trip generation, a gravity distribution calibrated to a mean trip
length, and the hours of a weekday.

* **Zones**: H3 cells (resolution 8 by default, ~0.7 km²) holding buildings, or a user's polygons; a zone's
  centroid is the floor-area-weighted centre of its buildings, where its trips join the roads.
* **Generation**: daily vehicle trip ends per 100 m² of floor area (footprint × storeys; storeys from
  ``storeys``, else height / 3 m, else 1) by use, after the ITE Trip Generation Manual (10th ed.) weekday rates
  converted from 1,000 ft²: residential uses (multifamily housing, 220: 7.3 per dwelling of ~90 m²) produce
  trips, the others attract them (general office 710, shopping centre 820, light industrial 110, schools and
  public buildings); attractions are balanced to productions. A building with no use counts as residential (most
  OSM ``building=yes`` are houses). :data:`TRIP_RATES` is overridable.
* **Distribution**: doubly-constrained gravity ``T_ij = a_i P_i b_j A_j exp(-β c_ij)`` on free-flow network
  times (intrazonal trips are not assigned), β found by bisection so that the mean trip length along the network
  is the target; a target longer than the area allows gives β = 0 and a warning.
* **Hours**: :data:`HOURLY_SHARE` of the day's trips per hour (a typical urban weekday with AM and PM peaks, the
  shape of the FHWA Traffic Monitoring Guide's urban weekday profiles) and :data:`OUTBOUND_SHARE`, the share of an
  hour's trips that leave home (the AM peak towards work and shops, the PM peak back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from twin.errors import BadInput

RESIDENTIAL = frozenset({"residential", "house", "apartments", "detached", "semidetached_house", "terrace",
                         "dormitory", "bungalow", "farm", "houseboat", "static_caravan", "hut", "cabin"})
# daily vehicle trip ends per 100 m² of floor area, by use (ITE Trip Generation Manual, 10th ed., weekday)
TRIP_RATES: dict[str, float] = {
    "residential": 8.0, "commercial": 40.0, "retail": 40.0, "supermarket": 40.0, "office": 11.6,
    "industrial": 5.3, "warehouse": 1.9, "public": 10.0, "school": 10.0, "university": 8.0, "hospital": 11.6,
    "hotel": 8.5, "other": 10.0,
}
STOREY_M = 3.0
HOURLY_SHARE = np.array([0.008, 0.005, 0.004, 0.004, 0.007, 0.018, 0.045, 0.075, 0.085, 0.062, 0.052, 0.053,
                         0.056, 0.055, 0.057, 0.063, 0.076, 0.082, 0.066, 0.045, 0.034, 0.027, 0.022, 0.014])
HOURLY_SHARE = HOURLY_SHARE / HOURLY_SHARE.sum()
OUTBOUND_SHARE = np.array([0.3, 0.3, 0.3, 0.4, 0.6, 0.8, 0.85, 0.85, 0.8, 0.65, 0.55, 0.5, 0.5, 0.5, 0.45, 0.4,
                           0.3, 0.25, 0.3, 0.35, 0.35, 0.3, 0.3, 0.3])


@dataclass
class Zones:
    """Zones with their ids, centroids (store CRS), daily productions and attractions, and their outlines."""

    ids: list[str]
    centroid: np.ndarray
    productions: np.ndarray
    attractions: np.ndarray
    outline: list[shapely.Geometry] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def floor_area(b: dict[str, Any], footprint: shapely.Geometry) -> float:
    """A building's floor area: footprint × storeys (``storeys``, else height / 3 m, else 1)."""
    storeys = b.get("storeys") or (round(b["height"] / STOREY_M) if b.get("height") else 1)
    return float(footprint.area) * max(int(storeys), 1)


def use_of(b: dict[str, Any], rates: dict[str, float]) -> str:
    u = str(b.get("use") or "residential").lower()
    if u in RESIDENTIAL or u == "yes":
        return "residential"
    return u if u in rates else "other"


def zones_of(buildings: list[dict[str, Any]], crs: str, *, res: int = 8, polygons: list[shapely.Geometry] | None
             = None, polygon_ids: list[str] | None = None, rates: dict[str, float] | None = None) -> Zones:
    """Zones with their daily trip ends: H3 cells at ``res`` (default), or ``polygons`` (ids ``polygon_ids``)."""
    import h3

    from twin.geo.crs import transform_xy
    from twin.layers.h3index import latlng_to_cells

    r = {**TRIP_RATES, **(rates or {})}
    bad = [k for k, v in r.items() if not isinstance(v, int | float) or v < 0]
    if bad:
        raise BadInput(f"trip_rates: {', '.join(bad)}: rates are trip ends per 100 m² per day, ≥ 0")
    feet = [shapely.geometry.shape(b["geometry"]) for b in buildings]
    pts = shapely.centroid(np.asarray(feet, dtype=object)) if feet else np.zeros(0, object)
    xy = shapely.get_coordinates(pts) if feet else np.zeros((0, 2))
    area = np.array([floor_area(b, f) for b, f in zip(buildings, feet, strict=True)])
    use = [use_of(b, r) for b in buildings]
    prod = np.array([a * r["residential"] / 100 if u == "residential" else 0.0 for a, u in zip(area, use,
                                                                                            strict=True)])
    attr = np.array([0.0 if u == "residential" else a * r[u] / 100 for a, u in zip(area, use, strict=True)])
    if polygons is not None:
        tree = shapely.STRtree(polygons)
        b_idx, z_idx = tree.query(pts, predicate="within")
        zone = np.full(len(buildings), -1)
        zone[b_idx] = z_idx
        ids = list(polygon_ids or [str(i + 1) for i in range(len(polygons))])
        outlines = list(polygons)
    else:
        lon, lat = transform_xy(xy[:, 0], xy[:, 1], crs, "EPSG:4326")
        cells = latlng_to_cells(np.asarray(lat), np.asarray(lon), res)
        uniq, zone = np.unique(cells, return_inverse=True)
        ids = [h3.int_to_str(int(c)) for c in uniq]
        outlines = []
    inside = zone >= 0
    n = len(ids)
    w = np.bincount(zone[inside], area[inside], n)
    cx = np.bincount(zone[inside], area[inside] * xy[inside, 0], n)
    cy = np.bincount(zone[inside], area[inside] * xy[inside, 1], n)
    keep = w > 0
    centroid = np.column_stack([cx[keep] / w[keep], cy[keep] / w[keep]])
    P = np.bincount(zone[inside], prod[inside], n)[keep]
    A = np.bincount(zone[inside], attr[inside], n)[keep]
    if A.sum() > 0:
        A = A * P.sum() / A.sum()  # attractions balanced to productions
    return Zones([i for i, k in zip(ids, keep, strict=True) if k], centroid, P, A,
                 [o for o, k in zip(outlines, keep, strict=True) if k] if outlines else [])


def _furness(P: np.ndarray, A: np.ndarray, f: np.ndarray, iterations: int = 200) -> np.ndarray:
    """The doubly-constrained table with row sums P and column sums A (as far as ``f`` lets them be reached)."""
    b = np.ones(len(A))
    a = np.ones(len(P))
    for _ in range(iterations):
        ra = f @ (b * A)
        a = np.divide(1.0, ra, out=np.zeros_like(ra), where=ra > 0)
        rb = f.T @ (a * P)
        b_new = np.divide(1.0, rb, out=np.zeros_like(rb), where=rb > 0)
        if np.allclose(b_new, b, rtol=1e-10, atol=0):
            b = b_new
            break
        b = b_new
    return (a * P)[:, None] * f * (b * A)[None, :]


@dataclass
class Distribution:
    """The daily production-attraction table, its deterrence β (1/min), mean trip length and notes."""

    table: np.ndarray
    beta: float
    mean_km: float
    warnings: list[str] = field(default_factory=list)
    dropped: float = 0.0  # daily trips of zones that reach no other zone


def gravity(P: np.ndarray, A: np.ndarray, time_min: np.ndarray, dist_km: np.ndarray, target_km: float
            ) -> Distribution:
    """The gravity table whose trip-weighted mean of ``dist_km`` is ``target_km`` (β by bisection)."""
    reach = np.isfinite(time_min) & np.isfinite(dist_km)
    np.fill_diagonal(reach, False)  # intrazonal trips stay off the network
    t = np.where(reach, time_min, 0.0)
    d = np.where(reach, dist_km, 0.0)

    def table(beta: float) -> np.ndarray:
        return _furness(P, A, np.where(reach, np.exp(-beta * (t - t[reach].min() if reach.any() else 0)), 0.0))

    def mean(T: np.ndarray) -> float:
        s = T.sum()
        return float((T * d).sum() / s) if s > 0 else 0.0

    warnings = []
    if not reach.any() or P.sum() <= 0:
        return Distribution(np.zeros((len(P), len(A))), 0.0, 0.0, ["no zone pair with trips is connected"],
                            float(P.sum()))
    T0 = table(0.0)
    if mean(T0) <= target_km:
        warnings.append(f"mean_trip_km {target_km:g} is longer than the area allows (at most {mean(T0):.2f} km "
                        "with no distance deterrence): the trips are distributed without deterrence")
        T, beta = T0, 0.0
    else:
        lo, hi = 0.0, 1.0
        while mean(table(hi)) > target_km and hi < 1e3:
            lo, hi = hi, hi * 4
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if mean(table(mid)) > target_km:
                lo = mid
            else:
                hi = mid
        beta = 0.5 * (lo + hi)
        T = table(beta)
    dropped = float(P.sum() - T.sum())
    if dropped > 1e-6 * max(P.sum(), 1.0):
        warnings.append(f"{dropped:.0f} daily trips cannot be distributed (their zones reach no zone with "
                        "attractions)")
    return Distribution(T, beta, mean(T), warnings, max(dropped, 0.0))


def hourly(table: np.ndarray, hour: int, share: np.ndarray = HOURLY_SHARE,
           outbound: np.ndarray = OUTBOUND_SHARE) -> np.ndarray:
    """The origin-destination trips of one hour: its share of the day, leaving home or coming back."""
    return share[hour] * (outbound[hour] * table + (1.0 - outbound[hour]) * table.T)


def scale(table: np.ndarray, zones: Zones, changes: list[Any], crs: str) -> tuple[np.ndarray, list[str]]:
    """The table with the ``demand_change`` edits applied: trips from and to each zone they name (``zone_id``) or
    whose centroid lies in their ``geometry`` multiplied by their factor."""
    f = np.ones(len(zones))
    notes = []
    for ch in changes:
        if ch.zone_id is not None:
            hit = np.array([z == ch.zone_id for z in zones.ids])
            if not hit.any():
                raise BadInput(f"demand_change: zone {ch.zone_id!r} is not a zone of this run (zones are H3 cells "
                               "of the zone resolution, or the given polygons' ids)")
        else:
            g = shapely.geometry.shape(ch.geometry.model_dump() if hasattr(ch.geometry, "model_dump")
                                       else ch.geometry)
            hit = shapely.contains_xy(g, zones.centroid[:, 0], zones.centroid[:, 1])
            if not hit.any():
                notes.append("a demand_change area holds no zone centroid: it changes nothing")
        f[hit] *= ch.factor
    return table * f[:, None] * f[None, :], notes
