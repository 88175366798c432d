"""CityJSON 2.0 export of the store's buildings: every LoD with semantic surfaces, quality and provenance.

The store's entity ids are the CityObject ids, so an exported building can be traced back (and forward: the
CityJSON reader of ``twin.sources.cityjson`` ingests the file under the same ids).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_models import Building, cityjson_document
from data_models.common import LOD_PATTERN
from twin.errors import BadInput
from twin.geo.crs import normalise
from twin.store import MAIN, Query, Store


class ExportError(BadInput):
    """An export that cannot be made (bad LoD, nothing to export, a CRS without an EPSG code)."""


def export_cityjson(store: Store, out: Path, *, bbox: list[float] | None = None, lods: list[str] | None = None,
                    branch: str = MAIN, as_of: Any = None) -> dict[str, int]:
    """Write the buildings in ``bbox`` (store CRS) with the requested LoDs (default all) as CityJSON 2.0."""
    import re

    for lod in lods or []:
        if not re.fullmatch(LOD_PATTERN, lod):
            raise ExportError(f"LoD {lod!r} is not a CityJSON LoD such as 1.2, 1.3 or 2.2")
    code = normalise(store.crs)
    if not code.startswith("EPSG:"):
        raise ExportError(f"the store CRS has no EPSG code ({store.crs}); CityJSON needs one")
    rows = store.features(branch, as_of, Query(types=["Building", "BuildingPart"], bbox=bbox))
    buildings = []
    for row in rows:
        data = {k: v for k, v in row.items() if k != "_store"}
        if lods is not None:
            data["lods"] = {k: v for k, v in (data.get("lods") or {}).items() if k in lods}
        if not data.get("lods"):
            continue
        attrs = dict(data.get("attributes") or {})
        # 3D BAG-style flat quality attributes, plus the full records for provenance-aware clients
        q = data.get("quality") or {}
        for lod, rmse in (q.get("rmse") or {}).items():
            attrs[f"twin_rmse_lod{lod.replace('.', '')}"] = rmse
        for key in ("point_density", "nodata_fraction", "valid"):
            if q.get(key) is not None:
                attrs[f"twin_{key}"] = q[key]
        attrs["twin_quality"] = q
        attrs["twin_provenance"] = data.get("provenance") or []
        attrs["twin_version"] = row["_store"]["version"]
        data["attributes"] = attrs
        buildings.append(Building.model_validate(data))
    if not buildings:
        raise ExportError("no buildings with 3D geometry in the requested area and LoDs; run `twin build` first")
    doc = cityjson_document(buildings, epsg=int(code.split(":")[1]))
    doc.setdefault("metadata", {})["title"] = f"twin export of {store.root.name} ({branch})"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, separators=(",", ":")))
    return {"buildings": len(buildings), "vertices": len(doc["vertices"])}
