"""The ``building_parts`` collection: stored BuildingPart entities, and the LoD1.3 parts of every other building.

The build does not store parts as entities: a building's parts live in its LoD1.3 solid, the planar partition of
the footprint into parts of different height (``twin/reality3d/lod1.py``; one part when the roof has no height
jump), each part one flat roof face over one ground face. So the parts are derived here, per version, one feature
per roof face of the LoD1.3 solid: the face's outline as footprint, ``height`` = roof − ground, ``roof_type`` flat,
the building's validity, classification and use, ``parent_id`` the building, id ``<building id>.part-<k>`` (k = 1
for the largest part). Buildings that have stored BuildingPart entities (e.g. from a CityJSON with parts) are
served from those instead; buildings without an LoD1.3 solid have no parts.
"""

from __future__ import annotations

from typing import Any

import shapely
import shapely.geometry
from shapely.geometry import Polygon

from data_models import BuildingPart, Solid
from twin.api import flatten, items
from twin.geo import crs as geocrs
from twin.store import CITY, Store
from twin.store import Query as StoreQuery

LOD = "1.3"


def _faces(solid: dict[str, Any], kind: str) -> list[list[list[int]]]:
    sem = solid.get("semantics") or {}
    surfaces = [s.get("type") for s in sem.get("surfaces") or []]
    values = (sem.get("values") or [[]])[0]
    shell = (solid.get("boundaries") or [[]])[0]
    return [face for face, v in zip(shell, values, strict=False) if v is not None and v < len(surfaces)
            and surfaces[v] == kind]


def lod13_parts(building: dict[str, Any]) -> list[tuple[Polygon, float, float]]:
    """(outline, ground z, roof z) of each part of a building's LoD1.3 solid, largest first."""
    solid = (building.get("lods") or {}).get(LOD)
    if not solid:
        return []
    verts = solid.get("vertices") or []
    grounds = _faces(solid, "GroundSurface")
    base = min((verts[i][2] for face in grounds for ring in face for i in ring), default=None)
    out = []
    for face in _faces(solid, "RoofSurface"):
        rings = [[(verts[i][0], verts[i][1]) for i in ring] for ring in face]
        if not rings or len(rings[0]) < 3:
            continue
        poly = Polygon(rings[0], rings[1:])
        if not poly.is_valid:
            fixed = shapely.make_valid(poly)
            polys = [g for g in getattr(fixed, "geoms", [fixed]) if isinstance(g, Polygon)]
            if not polys:
                continue
            poly = max(polys, key=lambda p: p.area)
        top = max(verts[i][2] for ring in face for i in ring)
        ground = base if base is not None else min(v[2] for v in verts)
        if poly.area > 0 and top > ground:
            out.append((shapely.geometry.polygon.orient(poly, 1.0), float(ground), float(top)))
    return sorted(out, key=lambda p: -p[0].area)


def derived_parts(building: dict[str, Any]) -> list[dict[str, Any]]:
    """The building's LoD1.3 parts as BuildingPart records (model shape plus the building's ``_store``)."""
    parts = lod13_parts(building)
    lods_prov = [p for p in building.get("provenance") or [] if p.get("attribute") == "lods"]
    out = []
    for k, (poly, ground, top) in enumerate(parts, start=1):
        pid = f"{building['id']}.part-{k}"
        out.append({
            "id": pid,
            "type": "BuildingPart",
            "parent_id": building["id"],
            "geometry": shapely.geometry.mapping(poly),
            "valid_from": building.get("valid_from"),
            "valid_to": building.get("valid_to"),
            "classification": building.get("classification"),
            "height": round(top - ground, 3),
            "roof_type": "flat",
            "storeys": None,
            "use": building.get("use"),
            "attributes": {"part": k, "parts": len(parts), "area_m2": round(poly.area, 2),
                           "ground_z": round(ground, 3), "roof_z": round(top, 3)},
            "quality": {},
            "provenance": [{**p, "attribute": None, "method": f"lod13-part:{p.get('method')}",
                            "note": f"part {k} of {len(parts)} of the LoD1.3 solid of {building['id']}"}
                           for p in lods_prov],
            "lods": {LOD: Solid.extrude(poly, ground, top).model_dump(mode="json", exclude_none=True)},
            "_store": building.get("_store"),
        })
    return out


def compute(store: Store, branch: str, version: int) -> items.Rows:
    """Every building part at a version: the stored ones, and the derived ones of buildings without stored parts."""
    stored = store.features(branch, version, StoreQuery(collection=CITY, types=["BuildingPart"]))
    with_parts = {p.get("parent_id") for p in stored}
    records = list(stored)
    for b in store.features(branch, version, StoreQuery(collection=CITY, types=["Building"])):
        if b["id"] not in with_parts:
            records += derived_parts(b)
    return items.rows_from(BuildingPart, records, geocrs.crs_uri(store.crs), flatten.BUILDING_QUALITY)
