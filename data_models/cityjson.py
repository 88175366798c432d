"""Build CityJSON 2.0 documents from CIM objects (buildings with LoD solids)."""

from collections.abc import Iterable
from typing import Any

from .city_objects import Building

__all__ = ["cityjson_document", "CITYJSON_VERSION"]

CITYJSON_VERSION = "2.0"


def cityjson_document(
    buildings: Iterable[Building],
    *,
    epsg: int | None = None,
    scale: float = 0.001,
    translate: list[float] | None = None,
) -> dict[str, Any]:
    """A CityJSON 2.0 document holding ``buildings`` (and their parts) with quantised integer vertices.

    Each building's solids are appended to one shared vertex list via :meth:`Building.to_cityjson`, then the
    vertices are quantised with ``transform`` (``scale`` in CRS units, ``translate`` defaulting to the minimum
    corner). ``epsg`` sets ``metadata.referenceSystem``. Parts (``BuildingPart``) are listed in their
    parent's ``children``.
    """
    real: list[list[float]] = []
    objects: dict[str, Any] = {}
    for b in buildings:
        if b.id in objects:
            raise ValueError(f"duplicate city object id {b.id!r}")
        objects[b.id] = b.to_cityjson(real)
    for oid, obj in objects.items():
        for parent in obj.get("parents", []):
            if parent not in objects:
                raise ValueError(f"{oid!r} names parent {parent!r}, which is not in the document")
            objects[parent].setdefault("children", []).append(oid)
    if translate is None:
        translate = [min(v[i] for v in real) for i in range(3)] if real else [0.0, 0.0, 0.0]
    vertices = [[round((v[i] - translate[i]) / scale) for i in range(3)] for v in real]
    doc: dict[str, Any] = {
        "type": "CityJSON",
        "version": CITYJSON_VERSION,
        "transform": {"scale": [scale, scale, scale], "translate": list(translate)},
        "CityObjects": objects,
        "vertices": vertices,
    }
    if epsg is not None:
        doc["metadata"] = {"referenceSystem": f"https://www.opengis.net/def/crs/EPSG/0/{epsg}"}
    return doc
