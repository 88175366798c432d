"""Deterministic GeoJSON writing (sorted keys, coordinates rounded to millimetres, streamed)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from shapely.geometry import mapping

from . import crs


def _round(obj, nd: int):
    if isinstance(obj, (list, tuple)):
        if obj and isinstance(obj[0], (int, float)):
            return [round(float(v), nd) for v in obj]
        return [_round(o, nd) for o in obj]
    return obj


def geometry(geom, nd: int = 3) -> dict:
    m = mapping(geom)
    return {"type": m["type"], "coordinates": _round(m["coordinates"], nd)}


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def write_collection(path: Path, name: str, features: Iterable[dict]) -> int:
    """Write a FeatureCollection with the legacy ``crs`` member (EPSG:4548), one feature per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(
            '{"type":"FeatureCollection","name":' + json.dumps(name) + ',"crs":{"type":"name","properties":'
            '{"name":"' + crs.CRS_URN + '"}},"features":[\n'
        )
        for feat in features:
            f.write((",\n" if n else "") + dumps(feat))
            n += 1
        f.write("\n]}\n")
    return n
