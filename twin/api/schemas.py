"""Response models of the JSON documents the API answers, for its OpenAPI description.

Routes return their documents directly (``JSONDoc``: compact, NaN-safe), so FastAPI never validates or re-encodes
them with these models: the models describe the bodies, and the schemathesis run (``tests/api``) checks that every
answer matches them. ``extra="allow"`` where a document carries the fields of a store record, which grow with the
CIM schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(BaseModel):
    """Every error answer (400, 404, 431, 503 …): what is wrong, naming the parameter where one is at fault."""

    detail: str = Field(description="what is wrong, e.g. 'limit: Input should be less than or equal to 10000'")


class Health(BaseModel):
    status: Literal["ok"]
    version: str = Field(description="twin's version")
    store_version: int = Field(description="the latest version of the main branch (0: empty store)")


class Link(_Open):
    href: str
    rel: str
    type: str | None = None
    title: str | None = None


class LandingPage(BaseModel):
    title: str
    description: str
    time_zone: str | None = Field(description="the city's IANA time zone (e.g. Asia/Shanghai), for local times")
    links: list[Link]


class Conformance(BaseModel):
    conformsTo: list[str]  # noqa: N815 (OGC's name)


class SpatialExtent(BaseModel):
    bbox: list[list[float]] = Field(description="one CRS84 box: [west, south, east, north]")
    crs: str


class TemporalExtent(BaseModel):
    interval: list[list[str | None]] = Field(description="one [start, end] interval, RFC 3339; null: open")
    trs: str


class Extent(BaseModel):
    spatial: SpatialExtent
    temporal: TemporalExtent


class CollectionDoc(BaseModel):
    """An OGC collection: an entity type, the building parts, or an H3 layer (``layer-<name>``)."""

    id: str
    title: str
    description: str
    itemType: Literal["feature"]  # noqa: N815
    crs: list[str]
    storageCrs: str  # noqa: N815
    links: list[Link]
    extent: Extent | None = Field(default=None, description="absent when the collection is empty")
    numberOfFeatures: int = Field(description="features the items answer without parameters (for entities: "  # noqa: N815
                                              "those not ended by now)")


class Collections(BaseModel):
    links: list[Link]
    collections: list[CollectionDoc]


class Queryables(_Open):
    """A JSON Schema (2020-12) of the flat columns one can filter on (``?name=value``, ``filter``)."""

    schema_: str = Field(alias="$schema")
    id_: str = Field(alias="$id")
    type: Literal["object"]
    title: str
    properties: dict[str, dict[str, Any]]
    additionalProperties: bool  # noqa: N815


class CollectionSchema(_Open):
    """A JSON Schema (2020-12) of a collection's features: OGC API Features Part 5 (one entry per flat property,
    with ``type``, ``format``, ``x-ogc-unit``, ``x-ogc-propertySeq``, ``x-ogc-role``), or with ``level=feature``
    the schema of one GeoJSON Feature whose ``properties.properties`` are those columns."""

    schema_: str = Field(alias="$schema")
    id_: str = Field(alias="$id")
    type: Literal["object"]
    title: str
    properties: dict[str, dict[str, Any]]


_GEOMETRY_TYPES = Literal["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                          "GeometryCollection"]


class Geometry(_Open):
    """A GeoJSON geometry (coordinates nested to its type's depth; ``geometries`` for a GeometryCollection)."""

    type: _GEOMETRY_TYPES
    coordinates: list[Any] | None = None
    geometries: list[dict[str, Any]] | None = None


class Feature(BaseModel):
    type: Literal["Feature"]
    id: str = Field(description="the store entity id (also the 3D Tiles feature id)")
    geometry: Geometry | None
    properties: dict[str, Any]
    links: list[Link] | None = None


class FeatureCollection(BaseModel):
    type: Literal["FeatureCollection"]
    features: list[Feature]
    numberMatched: int  # noqa: N815
    numberReturned: int  # noqa: N815
    timeStamp: str  # noqa: N815
    links: list[Link]


class StoreInfo(_Open):
    """Where a record's state comes from: the version that wrote it and how."""

    version: int
    op: str
    collection: str


class EntityRecord(_Open):
    """One stored city object: the fields of its CIM type (geometry in the store CRS) and its store facts."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    type: str | None = None
    geometry: Geometry | None = None
    store: StoreInfo = Field(alias="_store")


class Change(BaseModel):
    collection: str
    id: str
    op: Literal["add", "modify", "remove"]


class AssetRecord(_Open):
    """A source or product file's catalog record; ``path`` only for files inside the store (relative to it)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    kind: str | None = None
    checksum: str | None = None
    file: str | None = Field(default=None, description="the file's name")
    path: str | None = Field(default=None, description="the file relative to the store, for files kept in it")
    store: StoreInfo = Field(alias="_store")


# Models the OpenAPI document names without a route's ``response_model`` (error bodies, the landing page as JSON).
EXTRA_MODELS: list[type[BaseModel]] = [ErrorDetail, LandingPage]


def asset_view(record: dict[str, Any], root: Path) -> dict[str, Any]:
    """What the API shows of an asset record: never an absolute server path. A file inside the store keeps its
    path relative to the store; any file keeps its name."""
    out = dict(record)
    raw = out.pop("path", None)
    if raw:
        p = Path(raw)
        out["file"] = p.name
        inside = next((p.relative_to(r) for r in (root, root.resolve()) if p.is_relative_to(r)), None)
        if not p.is_absolute() and ".." not in p.parts:
            out["path"] = p.as_posix()
        elif p.is_absolute() and inside is not None and ".." not in inside.parts:
            out["path"] = inside.as_posix()
    return out
