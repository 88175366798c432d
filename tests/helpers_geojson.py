"""Write small GeoJSON sources with a declared CRS, as a city would deliver them."""

from __future__ import annotations

import json
from pathlib import Path


def write_buildings_geojson(path: Path, n: int, x0: float = 448_000.0, y0: float = 4_428_000.0,
                            crs: str | None = "EPSG:4548", height_shift: float = 0.0) -> Path:
    feats = []
    for i in range(n):
        x, y = x0 + (i % 10) * 30, y0 + (i // 10) * 30
        ring = [[x, y], [x + 12, y], [x + 12, y + 9], [x, y + 9], [x, y]]
        feats.append({"type": "Feature", "properties": {"cadastre_id": f"C{i:04d}", "use": "residential",
                                                        "floor_hint": height_shift},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}})
    doc: dict = {"type": "FeatureCollection", "features": feats}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{crs.split(':')[1]}"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path
