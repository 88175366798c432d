"""Shared building blocks of the city information model (CIM).

Classification levels, provenance, quality, validated time stamps, identifiers, slugs and a GeoJSON-style
:class:`Geometry` with shapely conversion.
"""

import math
import numbers
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "TwinModel",
    "Classification",
    "UtcDatetime",
    "EntityId",
    "Slug",
    "SLUG_PATTERN",
    "LoDKey",
    "LOD_PATTERN",
    "Provenance",
    "Quality",
    "Geometry",
    "GeometryType",
    "GEOMETRY_TYPES",
    "utc_now",
]


class TwinModel(BaseModel):
    """Base of all CIM models: unknown fields are rejected (typos surface as errors, not silently dropped)."""

    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------------------------------
# Classification
# ----------------------------------------------------------------------------------------------------

_CLASSIFICATION_ORDER = ("public", "internal", "confidential", "secret")


class Classification(StrEnum):
    """Security classification, totally ordered: ``public < internal < confidential < secret``.

    Comparisons (``<``, ``<=``, ``>``, ``>=``) use the rank, not the alphabetical order of the strings.
    Parsing is case-insensitive (``Classification("Internal")`` and ``Classification.parse(" SECRET ")`` both
    work).
    """

    public = "public"
    internal = "internal"
    confidential = "confidential"
    secret = "secret"

    @property
    def rank(self) -> int:
        return _CLASSIFICATION_ORDER.index(self.value)

    @classmethod
    def parse(cls, value: "str | Classification") -> "Classification":
        """Parse a level name (case and surrounding whitespace ignored); raises ``ValueError`` if unknown."""
        if isinstance(value, cls):
            return value
        return cls(value)

    @classmethod
    def _missing_(cls, value: object) -> "Classification | None":
        if isinstance(value, str):
            key = value.strip().lower()
            for member in cls:
                if member.value == key:
                    return member
        return None

    @classmethod
    def max_of(cls, *levels: "str | Classification") -> "Classification":
        """The most restrictive of the given levels (``public`` when none are given); for derived products."""
        parsed = [cls.parse(level) for level in levels]
        return max(parsed, key=lambda c: c.rank) if parsed else cls.public

    def allows(self, level: "str | Classification") -> bool:
        """True when a clearance of ``self`` may read data classified ``level``."""
        return self.rank >= Classification.parse(level).rank

    def _other_rank(self, other: object) -> int | None:
        if isinstance(other, Classification):
            return other.rank
        if isinstance(other, str):
            try:
                return Classification.parse(other).rank
            except ValueError:
                return None
        return None

    def __lt__(self, other: object) -> bool:
        r = self._other_rank(other)
        if r is None:
            return NotImplemented
        return self.rank < r

    def __le__(self, other: object) -> bool:
        r = self._other_rank(other)
        if r is None:
            return NotImplemented
        return self.rank <= r

    def __gt__(self, other: object) -> bool:
        r = self._other_rank(other)
        if r is None:
            return NotImplemented
        return self.rank > r

    def __ge__(self, other: object) -> bool:
        r = self._other_rank(other)
        if r is None:
            return NotImplemented
        return self.rank >= r

    def __str__(self) -> str:
        return self.value


# ----------------------------------------------------------------------------------------------------
# Scalars
# ----------------------------------------------------------------------------------------------------


def utc_now() -> datetime:
    """Current time, timezone-aware UTC (use as ``default_factory``)."""
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalised to UTC. Naive datetimes are rejected (they are ambiguous: the demo
city is in UTC+08:00)."""

EntityId = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^\S+$")]
"""A stable identifier: 1-256 characters, no whitespace."""

SLUG_PATTERN = r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$"
_SLUG_RE = re.compile(SLUG_PATTERN)


def _check_slug(value: str) -> str:
    if not _SLUG_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a slug: use lowercase letters, digits, and single '-' or '_' between them "
            "(e.g. 'main', 'park-scenario', 'pm25_hourly')"
        )
    return value


Slug = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    AfterValidator(_check_slug),
    Field(json_schema_extra={"pattern": SLUG_PATTERN}),
]
"""Lowercase slug for branch, layer and simulator names: ``[a-z0-9]+`` joined by single ``-`` or ``_``."""

LOD_PATTERN = r"^[0-3](\.[0-3])?$"
_LOD_RE = re.compile(LOD_PATTERN)


def _check_lod(value: str) -> str:
    if not _LOD_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a CityJSON LoD: use '0'..'3' or '0.0'..'3.3' (e.g. '1.2', '2.2')")
    return value


LoDKey = Annotated[str, AfterValidator(_check_lod), Field(json_schema_extra={"pattern": LOD_PATTERN})]
"""A CityJSON level of detail string such as ``"1.2"``, ``"1.3"`` or ``"2.2"``."""


# ----------------------------------------------------------------------------------------------------
# Provenance and quality
# ----------------------------------------------------------------------------------------------------


class Provenance(TwinModel):
    """Where a value came from: the source asset, when it was acquired, how it was derived, how sure."""

    source_asset_id: EntityId = Field(description="id of the SourceAsset the value was derived from")
    acquired: UtcDatetime | None = Field(default=None, description="acquisition time of the source data")
    method: str = Field(min_length=1, description="how the value was derived, e.g. 'lidar-percentile-95'")
    confidence: float = Field(default=1.0, ge=0.0, le=1.0, description="confidence in [0, 1]")
    attribute: str | None = Field(
        default=None, description="the attribute this supports; None = whole object"
    )
    note: str | None = None


class Quality(BaseModel):
    """Quality metrics of an object (mostly reconstructed buildings). Extra keys are allowed."""

    model_config = ConfigDict(extra="allow")

    point_density: float | None = Field(default=None, ge=0, description="points per square metre")
    nodata_fraction: float | None = Field(default=None, ge=0, le=1, description="fraction of no-data cells")
    rmse: dict[LoDKey, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="root-mean-square error in metres, keyed by LoD ('1.2', '2.2', …)"
    )
    valid: bool | None = Field(
        default=None, description="geometric validity (e.g. val3dity); None = not checked"
    )
    errors: list[str] = Field(default_factory=list, description="validation error codes or messages")


# ----------------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------------

GeometryType = Literal["Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon"]
GEOMETRY_TYPES: tuple[str, ...] = GeometryType.__args__  # type: ignore[attr-defined]


def _position(value: Any, path: str) -> list[float]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{path}: a position must be an array of 2 or 3 numbers, got {value!r}")
    if len(value) not in (2, 3):
        raise ValueError(f"{path}: a position must have 2 (x, y) or 3 (x, y, z) numbers, got {len(value)}")
    out: list[float] = []
    for i, c in enumerate(value):
        if isinstance(c, bool) or not isinstance(c, numbers.Real):
            raise ValueError(f"{path}[{i}]: coordinate must be a number, got {c!r}")
        f = float(c)
        if not math.isfinite(f):
            raise ValueError(f"{path}[{i}]: coordinate must be finite, got {c!r}")
        out.append(f)
    return out


def _array(value: Any, path: str, what: str) -> list | tuple:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{path}: expected an array of {what}, got {value!r}")
    return value


def _line(value: Any, path: str) -> list[list[float]]:
    pts = [_position(p, f"{path}[{i}]") for i, p in enumerate(_array(value, path, "positions"))]
    if len(pts) < 2:
        raise ValueError(f"{path}: a line needs at least 2 positions, got {len(pts)}")
    return pts


def _ring(value: Any, path: str) -> list[list[float]]:
    pts = [_position(p, f"{path}[{i}]") for i, p in enumerate(_array(value, path, "positions"))]
    if len(pts) < 4:
        raise ValueError(f"{path}: a polygon ring needs at least 4 positions (first = last), got {len(pts)}")
    if pts[0] != pts[-1]:
        raise ValueError(f"{path}: polygon ring is not closed: first position {pts[0]} != last {pts[-1]}")
    return pts


def _polygon(value: Any, path: str) -> list[list[list[float]]]:
    rings = [_ring(r, f"{path}[{i}]") for i, r in enumerate(_array(value, path, "rings"))]
    if not rings:
        raise ValueError(f"{path}: a polygon needs at least one ring")
    return rings


def _normalise(gtype: str, coords: Any) -> list:
    p = "coordinates"
    if gtype == "Point":
        return _position(coords, p)
    if gtype == "LineString":
        return _line(coords, p)
    if gtype == "Polygon":
        return _polygon(coords, p)
    if gtype == "MultiPoint":
        return [_position(c, f"{p}[{i}]") for i, c in enumerate(_array(coords, p, "positions"))]
    if gtype == "MultiLineString":
        return [_line(c, f"{p}[{i}]") for i, c in enumerate(_array(coords, p, "lines"))]
    if gtype == "MultiPolygon":
        return [_polygon(c, f"{p}[{i}]") for i, c in enumerate(_array(coords, p, "polygons"))]
    raise ValueError(f"unsupported geometry type {gtype!r}")  # pragma: no cover - guarded by the Literal


def _iter_positions(coords: Any):
    if coords and isinstance(coords[0], float | int):
        yield coords
    else:
        for c in coords:
            yield from _iter_positions(c)


def _strip_z(coords: Any) -> Any:
    if coords and isinstance(coords[0], float | int):
        return list(coords[:2])
    return [_strip_z(c) for c in coords]


def _to_lists(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_to_lists(v) for v in value]
    return value


class Geometry(TwinModel):
    """A GeoJSON-style geometry: ``{"type": ..., "coordinates": ...}`` with 2D or 3D positions.

    Validated: the type is one of Point, LineString, Polygon, MultiPoint, MultiLineString, MultiPolygon;
    positions have 2 or 3 finite numbers and all positions of one geometry have the same dimension; lines have
    ≥ 2 positions; polygon rings have ≥ 4 positions and are closed. Coordinates are in the CRS of the context
    (the store's CRS for city objects). Topological validity (self-intersection) is *not* checked here: see
    :class:`Quality`.
    """

    type: GeometryType
    coordinates: list[Any] = Field(
        description="GeoJSON coordinates for the type: a position, or nested arrays of positions"
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_bbox(cls, data: Any) -> Any:
        # GeoJSON allows an optional "bbox" member on geometries; it is derived data, so accept and drop it.
        if isinstance(data, dict) and "bbox" in data:
            data = {k: v for k, v in data.items() if k != "bbox"}
        return data

    @field_validator("coordinates", mode="before")
    @classmethod
    def _check_coordinates(cls, value: Any, info: ValidationInfo) -> Any:
        gtype = info.data.get("type")
        if gtype is None:  # the type itself failed validation; that error is reported
            return _to_lists(value) if isinstance(value, list | tuple) else value
        coords = _normalise(gtype, value)
        dims = {len(pos) for pos in _iter_positions(coords)} if gtype != "Point" else {len(coords)}
        if len(dims) > 1:
            raise ValueError("coordinates: mixes 2D and 3D positions; use one dimension per geometry")
        return coords

    # ---- helpers -----------------------------------------------------------------------------------------

    @property
    def has_z(self) -> bool:
        return any(len(pos) == 3 for pos in self.positions())

    def positions(self) -> list[list[float]]:
        """All positions, flattened (ring closing positions included)."""
        if self.type == "Point":
            return [self.coordinates]
        return list(_iter_positions(self.coordinates))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """2D bounding box ``(minx, miny, maxx, maxy)``; raises ``ValueError`` for an empty geometry."""
        pts = self.positions()
        if not pts:
            raise ValueError("empty geometry has no bounds")
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        return (min(xs), min(ys), max(xs), max(ys))

    def to_2d(self) -> "Geometry":
        """A copy with z dropped from every position."""
        if self.type == "Point":
            return Geometry(type="Point", coordinates=self.coordinates[:2])
        return Geometry(type=self.type, coordinates=_strip_z(self.coordinates))

    def to_shapely(self):
        """This geometry as a shapely geometry."""
        from shapely.geometry import shape

        return shape({"type": self.type, "coordinates": self.coordinates})

    @classmethod
    def from_shapely(cls, geom: Any) -> "Geometry":
        """Build from a shapely geometry (or anything with ``__geo_interface__``). Empty geometries and
        GeometryCollections are rejected."""
        if getattr(geom, "is_empty", False):
            raise ValueError("cannot build a Geometry from an empty shapely geometry")
        mapping = geom.__geo_interface__ if hasattr(geom, "__geo_interface__") else geom
        if mapping.get("type") not in GEOMETRY_TYPES:
            raise ValueError(
                f"unsupported geometry type {mapping.get('type')!r}; expected one of {GEOMETRY_TYPES}"
            )
        return cls(type=mapping["type"], coordinates=_to_lists(mapping["coordinates"]))

    @property
    def __geo_interface__(self) -> dict[str, Any]:
        return {"type": self.type, "coordinates": self.coordinates}
