"""Source assets: the STAC-like catalog record of every input file (imagery, point clouds, vectors, …)."""

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator, model_validator

from .common import Classification, EntityId, TwinModel, UtcDatetime, utc_now

__all__ = ["SourceAsset", "SourceKind", "Extent", "Sha256"]


class SourceKind(StrEnum):
    imagery = "imagery"
    pointcloud = "pointcloud"
    vector = "vector"
    cityjson = "cityjson"
    sensors = "sensors"
    trajectories = "trajectories"
    product = "product"  # a raster the build derived (DTM, DSM, nDSM), kept under the store's products/ folder


# the terrain rasters `twin build` keeps as product assets, and their asset ids (read by the terrain tileset)
TERRAIN_PRODUCTS = ("dtm", "dsm", "ndsm")
TERRAIN_PRODUCT_IDS = {name: f"prd-{name}" for name in TERRAIN_PRODUCTS}


_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def _check_sha256(value: str) -> str:
    v = value.strip().lower()
    if v.startswith("sha256:"):
        v = v[len("sha256:") :]
    if not _SHA256_RE.fullmatch(v):
        raise ValueError(
            f"checksum must be a SHA-256 digest: 64 hexadecimal characters (optionally prefixed 'sha256:'), "
            f"got {value!r} ({len(v)} characters)"
        )
    return v


Sha256 = Annotated[str, AfterValidator(_check_sha256), Field(json_schema_extra={"pattern": "^[0-9a-f]{64}$"})]
"""A SHA-256 hex digest, normalised to lowercase without prefix."""

BBox = Annotated[list[float], Field(min_length=4, max_length=4)]


def _check_bbox(bbox: list[float], name: str) -> None:
    minx, miny, maxx, maxy = bbox
    if minx > maxx or miny > maxy:
        raise ValueError(f"{name} must be [minx, miny, maxx, maxy] with min <= max, got {bbox}")


class Extent(TwinModel):
    """Spatial and temporal extent of an asset."""

    bbox: BBox = Field(description="[minx, miny, maxx, maxy] in the asset CRS")
    bbox_wgs84: BBox | None = Field(default=None, description="[west, south, east, north] in WGS84 degrees")
    start: UtcDatetime | None = Field(
        default=None, description="first time covered (sensor series, trajectories)"
    )
    end: UtcDatetime | None = None

    @model_validator(mode="after")
    def _check(self):
        _check_bbox(self.bbox, "bbox")
        if self.bbox_wgs84 is not None:
            _check_bbox(self.bbox_wgs84, "bbox_wgs84")
            w, s, e, n = self.bbox_wgs84
            if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
                raise ValueError(f"bbox_wgs84 is outside [-180, -90, 180, 90]: {self.bbox_wgs84}")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError("extent end must not be before start")
        return self


class SourceAsset(TwinModel):
    """A catalogued input file. ``id`` plus ``asset_version`` identify one immutable version of the asset."""

    id: EntityId
    kind: SourceKind
    path: str = Field(min_length=1, description="path or URI of the file")
    crs: str | None = Field(
        default=None, description="CRS as 'EPSG:<code>' where possible, else WKT / PROJJSON"
    )
    extent: Extent | None = None
    acquired: UtcDatetime | None = Field(default=None, description="acquisition time of the data")
    checksum: Sha256
    size_bytes: int = Field(ge=0)
    licence: str | None = Field(default=None, description="SPDX id or licence text, e.g. 'CC-BY-4.0'")
    classification: Classification = Classification.public
    producer: str | None = Field(
        default=None, description="who produced the data (agency, vendor, sensor network)"
    )
    asset_version: int = Field(default=1, ge=1)
    ingested: UtcDatetime = Field(default_factory=utc_now)
    properties: dict[str, Any] = Field(default_factory=dict, description="kind-specific metadata")

    @field_validator("crs")
    @classmethod
    def _normalise_crs(cls, value: str | None) -> str | None:
        if value is None:
            return None
        v = value.strip()
        if not v:
            raise ValueError("crs must not be empty (use null when unknown)")
        m = re.fullmatch(r"(?i)epsg:(\d+)", v)
        return f"EPSG:{m.group(1)}" if m else v

    def to_stac_item(self) -> dict[str, Any]:
        """A STAC 1.0 Item dict (geometry and bbox from ``extent.bbox_wgs84`` when known)."""
        props: dict[str, Any] = {
            "datetime": _iso(self.acquired),
            "twin:kind": self.kind.value,
            "twin:classification": self.classification.value,
            "twin:asset_version": self.asset_version,
            "twin:ingested": _iso(self.ingested),
        }
        if self.acquired is None:
            start = self.extent.start if self.extent else None
            end = self.extent.end if self.extent else None
            props["start_datetime"] = _iso(start)
            props["end_datetime"] = _iso(end)
        if self.licence:
            props["license"] = self.licence
        if self.producer:
            props["providers"] = [{"name": self.producer, "roles": ["producer"]}]
        if self.crs and self.crs.startswith("EPSG:"):
            props["proj:epsg"] = int(self.crs.split(":", 1)[1])
        if self.extent is not None:
            props["proj:bbox"] = list(self.extent.bbox)
        props.update(self.properties)
        item: dict[str, Any] = {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": f"{self.id}@{self.asset_version}",
            "properties": props,
            "geometry": None,
            "links": [],
            "assets": {
                "data": {
                    "href": self.path,
                    "roles": ["data"],
                    "file:checksum": "1220" + self.checksum,  # multihash: sha2-256, 32 bytes
                    "file:size": self.size_bytes,
                }
            },
        }
        if self.extent is not None and self.extent.bbox_wgs84 is not None:
            w, s, e, n = self.extent.bbox_wgs84
            item["bbox"] = [w, s, e, n]
            item["geometry"] = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
        return item


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")
