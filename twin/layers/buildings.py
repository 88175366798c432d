"""The H3 layers of buildings and land cover (building-volume, population, impervious-fraction): specs and values.

Pure functions of geometries (shapely, store CRS), heights, uses and land-cover classes, shared by ``twin build``
(:mod:`twin.pipeline.steps_layers`, every cell) and the scenario edits (:mod:`twin.sim.scenarios`, only the cells an
edit touches). ``cells`` restricts the output to a set of cells at the finest resolution: a cell's value depends only
on the polygons overlapping it, so the values of those cells computed from the polygons that overlap them equal the
values of a full computation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from data_models import LayerSpec
from twin.layers import polygons
from twin.layers.values import VALUE_SCHEMA

M2_PER_PERSON = 35.0  # residential floor area per inhabitant, Beijing urban average order of magnitude
STOREY_M = 3.0
STATIC_RES = [8, 9, 10, 11]
FINEST = max(STATIC_RES)
IMPERVIOUS_CLASSES = ("building", "road", "impervious")

VOLUME = "building-volume"
POPULATION = "population"
IMPERVIOUS = "impervious-fraction"
BUILDING_LAYERS = (VOLUME, POPULATION)  # follow buildings
COVER_LAYERS = (IMPERVIOUS,)  # follow land cover

__all__ = ["BUILDING_LAYERS", "COVER_LAYERS", "FINEST", "IMPERVIOUS", "POPULATION", "STATIC_RES", "VOLUME",
           "impervious_values", "is_impervious", "is_residential", "is_standing", "merge_cells", "only_cells",
           "population_values", "spec", "touched_cells", "volume_values"]


def spec(name: str, lineage: Iterable[str] = ()) -> LayerSpec:
    """The declaration of one of these layers (as ``twin build`` publishes it), with its lineage."""
    common: dict[str, Any] = {"resolutions": STATIC_RES, "lineage": sorted(set(lineage))}
    if name == VOLUME:
        return LayerSpec(name=name, variable="building_volume", unit="m3", kind="extensive", aggregation="sum",
                         description="footprint area x LiDAR height, split by area", **common)
    if name == POPULATION:
        return LayerSpec(name=name, variable="population_proxy", unit="persons", kind="extensive", aggregation="sum",
                         description=f"residential floor area (height / {STOREY_M} m storeys) / {M2_PER_PERSON} m2 "
                                     "per person", **common)
    if name == IMPERVIOUS:
        return LayerSpec(name=name, variable="impervious_fraction", unit="1", kind="intensive",
                         aggregation="area_weighted_mean",
                         description="share of area covered by buildings, roads and other sealed land", **common)
    raise ValueError(f"unknown building layer {name!r}; known: {VOLUME}, {POPULATION}, {IMPERVIOUS}")


def is_standing(b: dict[str, Any]) -> bool:
    """A building that counts in the layers: a Building with a height, not a LiDAR candidate, not ended in valid
    time (the buildings ``twin build`` counts)."""
    return (b.get("type") == "Building" and not (b.get("attributes") or {}).get("candidate")
            and not b.get("valid_to") and bool(b.get("height")))


def is_residential(b: dict[str, Any]) -> bool:
    """True when the building's use (field, else attribute) is residential: it houses the population proxy."""
    return (b.get("use") or (b.get("attributes") or {}).get("use")) == "residential"


def is_impervious(cover_class: str) -> bool:
    """True for the land-cover classes that seal the ground (building, road, impervious)."""
    return str(cover_class) in IMPERVIOUS_CLASSES


def only_cells(values: pa.Table, cells: np.ndarray | None) -> pa.Table:
    """The rows of ``values`` whose cell is one of ``cells`` (all rows when None)."""
    if cells is None or not values.num_rows:
        return values
    return values.filter(pc.is_in(values["cell"], pa.array(np.asarray(cells, np.uint64), pa.uint64())))


def volume_values(geoms: np.ndarray, height: np.ndarray, crs: str, *, res: int = FINEST,
                  cells: np.ndarray | None = None) -> pa.Table:
    """Building volume (footprint area × height, m³) per cell, split by area share (aggregation ``sum``)."""
    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return VALUE_SCHEMA.empty_table()
    vals = polygons.building_values(geoms, crs, res, height=np.asarray(height, np.float64))
    return only_cells(vals["volume"], cells)


def population_values(geoms: np.ndarray, height: np.ndarray, residential: np.ndarray, crs: str, *,
                      res: int = FINEST, cells: np.ndarray | None = None) -> pa.Table:
    """Population proxy per cell: residential floor area (``height / STOREY_M`` storeys, at least one) over
    ``M2_PER_PERSON``, split by area share (aggregation ``sum``)."""
    geoms = np.asarray(geoms, dtype=object)
    resid = np.asarray(residential, bool)
    if not len(geoms) or not resid.any():
        return VALUE_SCHEMA.empty_table()
    storeys = np.maximum(1.0, np.round(np.asarray(height, np.float64) / STOREY_M))
    people = shapely.area(geoms[resid]) * storeys[resid] / M2_PER_PERSON
    return only_cells(polygons.sum_values(geoms[resid], people, crs, res), cells)


def impervious_values(geoms: np.ndarray, classes: Sequence[str], crs: str, *, res: int = FINEST,
                      cells: np.ndarray | None = None, domain: np.ndarray | None = None) -> pa.Table:
    """Share of each cell's area sealed by impervious land cover (``area_weighted_mean``), with rows of 0 for the
    cells of the domain (default: the candidate cells of all the land-cover polygons) that nothing seals."""
    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return VALUE_SCHEMA.empty_table()
    imp = np.asarray([is_impervious(c) for c in classes], bool)
    if domain is None:
        domain = polygons.candidate_cells(geoms, crs, res)
    if cells is not None:
        domain = np.intersect1d(np.asarray(domain, np.uint64), np.asarray(cells, np.uint64))
    return only_cells(polygons.area_fraction(geoms[imp], crs, res, cells=domain), cells)


def touched_cells(geoms: Iterable[shapely.Geometry | None], crs: str, res: int = FINEST) -> np.ndarray:
    """The cells at ``res`` that the polygons overlap with a positive area (an edit changes only these)."""
    gs = np.asarray([g for g in geoms if g is not None and not g.is_empty], dtype=object)
    if not len(gs):
        return np.empty(0, np.uint64)
    _, cells, _, _ = polygons.overlay(gs, crs, res)
    return np.unique(np.asarray(cells, np.uint64))


def merge_cells(old: pa.Table, new: pa.Table, cells: np.ndarray) -> pa.Table:
    """``old`` finest values with the rows of ``cells`` replaced by those of ``new`` (cells without a new row are
    dropped), sorted by cell: an incremental update of a layer."""
    cells = np.asarray(cells, np.uint64)
    old = old.select(VALUE_SCHEMA.names).cast(VALUE_SCHEMA) if old.num_rows else VALUE_SCHEMA.empty_table()
    new = new.select(VALUE_SCHEMA.names).cast(VALUE_SCHEMA) if new.num_rows else VALUE_SCHEMA.empty_table()
    keep = old.filter(pc.invert(pc.is_in(old["cell"], pa.array(cells, pa.uint64())))) if old.num_rows else old
    out = pa.concat_tables([keep, only_cells(new, cells)])
    return out.sort_by([("cell", "ascending"), ("t", "ascending")]) if out.num_rows else out
