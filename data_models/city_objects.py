"""City objects: buildings, roads, land cover, water, vegetation, sensors — plus sensor observations.

Every city object has a stable ``id``, a ``type`` discriminator, a 2D ``geometry`` used for spatial indexing
(footprint, centre line or point), free ``attributes``, bitemporal valid time, provenance, quality and a
classification. Buildings also carry CityJSON-like 3D solids per level of detail (:class:`Solid`).
"""

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, TypeAdapter, field_validator, model_validator

from .common import (
    Classification,
    EntityId,
    Geometry,
    LoDKey,
    Provenance,
    Quality,
    TwinModel,
    UtcDatetime,
)

__all__ = [
    "CityObject",
    "Building",
    "BuildingPart",
    "RoofType",
    "Solid",
    "SolidSemantics",
    "SemanticSurface",
    "SemanticSurfaceType",
    "Road",
    "LandCover",
    "LandCoverClass",
    "WaterBody",
    "Vegetation",
    "Sensor",
    "Observation",
    "ObservationFlag",
    "AnyCityObject",
    "CITY_OBJECT_TYPES",
    "parse_city_object",
]


# ----------------------------------------------------------------------------------------------------
# Base
# ----------------------------------------------------------------------------------------------------


class CityObject(TwinModel):
    """Base of all city objects. Use a subclass (or :data:`AnyCityObject` / :func:`parse_city_object`)."""

    allowed_geometry_types: ClassVar[tuple[str, ...] | None] = None

    id: EntityId = Field(description="stable identifier: store key, 3D Tiles feature id, OGC API item id")
    type: str
    geometry: Geometry = Field(description="2D footprint / centre line / point used for spatial indexing")
    attributes: dict[str, Any] = Field(default_factory=dict, description="free attributes")
    valid_from: UtcDatetime | None = Field(default=None, description="valid time start (true in the city)")
    valid_to: UtcDatetime | None = Field(
        default=None, description="valid time end, exclusive; None = still valid"
    )
    provenance: list[Provenance] = Field(default_factory=list)
    quality: Quality | None = None
    classification: Classification = Classification.public

    @field_validator("geometry")
    @classmethod
    def _check_geometry_type(cls, value: Geometry) -> Geometry:
        allowed = cls.allowed_geometry_types
        if allowed is not None and value.type not in allowed:
            raise ValueError(
                f"a {cls.__name__} geometry must be one of {', '.join(allowed)}; got {value.type}"
            )
        return value

    @model_validator(mode="after")
    def _check_valid_time(self):
        if self.valid_from is not None and self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError(
                f"valid_to ({self.valid_to.isoformat()}) must be after "
                f"valid_from ({self.valid_from.isoformat()})"
            )
        return self

    def is_valid_at(self, t: datetime) -> bool:
        """True when ``valid_from <= t < valid_to`` (open bounds when unset). ``t`` must be timezone-aware."""
        if self.valid_from is not None and t < self.valid_from:
            return False
        return not (self.valid_to is not None and t >= self.valid_to)

    def provenance_for(self, attribute: str | None) -> list[Provenance]:
        """Provenance records supporting ``attribute`` (``None``: records about the whole object)."""
        return [p for p in self.provenance if p.attribute == attribute]


# ----------------------------------------------------------------------------------------------------
# Solids (CityJSON-like)
# ----------------------------------------------------------------------------------------------------

SemanticSurfaceType = Literal[
    "RoofSurface",
    "GroundSurface",
    "WallSurface",
    "ClosureSurface",
    "OuterCeilingSurface",
    "OuterFloorSurface",
    "Window",
    "Door",
    "InteriorWallSurface",
    "CeilingSurface",
    "FloorSurface",
]


class SemanticSurface(TwinModel):
    """A CityJSON semantic surface object. Extra keys (surface attributes) are allowed."""

    model_config = ConfigDict(extra="allow")

    type: SemanticSurfaceType


class SolidSemantics(TwinModel):
    """CityJSON semantics for a Solid: ``values[shell][face]`` indexes ``surfaces`` (or is ``null``)."""

    surfaces: list[SemanticSurface]
    values: list[list[Annotated[int, Field(ge=0)] | None]]


Vertex3 = Annotated[list[float], Field(min_length=3, max_length=3)]


class Solid(TwinModel):
    """A CityJSON-like Solid with its own vertex list.

    ``boundaries`` is ``[shell][face][ring][vertex index]`` (depth 4, as in CityJSON): the first shell is the
    exterior, further shells are voids; the first ring of a face is its exterior, further rings are holes.
    Rings do not repeat their first vertex. Faces are oriented counter-clockwise seen from outside (normals
    point out).
    Indices refer to :attr:`vertices` (real coordinates, metres, in the store CRS).
    """

    vertices: list[Vertex3]
    boundaries: list[list[list[list[Annotated[int, Field(ge=0)]]]]]
    semantics: SolidSemantics | None = None

    @model_validator(mode="after")
    def _check(self):
        n = len(self.vertices)
        for i, v in enumerate(self.vertices):
            if not all(math.isfinite(c) for c in v):
                raise ValueError(f"vertices[{i}]: coordinates must be finite, got {v}")
        if not self.boundaries:
            raise ValueError("boundaries: a Solid needs at least one shell")
        for s, shell in enumerate(self.boundaries):
            if len(shell) < 4:
                raise ValueError(f"boundaries[{s}]: a closed shell needs at least 4 faces, got {len(shell)}")
            for f, face in enumerate(shell):
                if not face:
                    raise ValueError(f"boundaries[{s}][{f}]: a face needs at least one ring")
                for r, ring in enumerate(face):
                    if len(ring) < 3:
                        raise ValueError(f"boundaries[{s}][{f}][{r}]: a ring needs at least 3 vertices")
                    bad = [i for i in ring if i >= n]
                    if bad:
                        raise ValueError(
                            f"boundaries[{s}][{f}][{r}]: vertex index {bad[0]} out of range "
                            f"(have {n} vertices)"
                        )
        if self.semantics is not None:
            values = self.semantics.values
            m = len(self.semantics.surfaces)
            if len(values) != len(self.boundaries):
                raise ValueError(
                    f"semantics.values has {len(values)} shells but boundaries has {len(self.boundaries)}"
                )
            for s, (vals, shell) in enumerate(zip(values, self.boundaries, strict=True)):
                if len(vals) != len(shell):
                    raise ValueError(f"semantics.values[{s}] has {len(vals)} entries for {len(shell)} faces")
                for f, v in enumerate(vals):
                    if v is not None and v >= m:
                        raise ValueError(f"semantics.values[{s}][{f}] = {v} but there are only {m} surfaces")
        return self

    def bounds(self) -> tuple[float, float, float, float, float, float]:
        """``(minx, miny, minz, maxx, maxy, maxz)`` of the vertices used by the boundaries."""
        used = sorted({i for shell in self.boundaries for face in shell for ring in face for i in ring})
        pts = [self.vertices[i] for i in used]
        xs, ys, zs = zip(*pts, strict=True)
        return (min(xs), min(ys), min(zs), max(xs), max(ys), max(zs))

    def face_count(self) -> int:
        return sum(len(shell) for shell in self.boundaries)

    @classmethod
    def extrude(cls, footprint: Any, base_z: float, top_z: float) -> "Solid":
        """A prismatic LoD1-style solid: ``footprint`` (a Polygon :class:`Geometry` or shapely Polygon, 2D)
        extruded from ``base_z`` to ``top_z``, with GroundSurface / RoofSurface / WallSurface semantics."""
        from shapely.geometry import Polygon
        from shapely.geometry.polygon import orient

        poly = footprint.to_shapely() if isinstance(footprint, Geometry) else footprint
        if not isinstance(poly, Polygon) or poly.is_empty:
            raise ValueError(
                "extrude needs a non-empty Polygon footprint (use one solid per part of a MultiPolygon)"
            )
        if not top_z > base_z:
            raise ValueError(f"top_z ({top_z}) must be greater than base_z ({base_z})")
        poly = orient(poly, sign=1.0)  # exterior counter-clockwise, holes clockwise (seen from above)
        rings2d = [list(poly.exterior.coords)[:-1]] + [list(r.coords)[:-1] for r in poly.interiors]
        vertices: list[list[float]] = []
        bottom: list[list[int]] = []
        top: list[list[int]] = []
        for ring in rings2d:
            b_idx, t_idx = [], []
            for x, y, *_ in ring:
                b_idx.append(len(vertices))
                vertices.append([float(x), float(y), float(base_z)])
            for x, y, *_ in ring:
                t_idx.append(len(vertices))
                vertices.append([float(x), float(y), float(top_z)])
            bottom.append(b_idx)
            top.append(t_idx)
        ground = [list(reversed(r)) for r in bottom]
        roof = [list(r) for r in top]
        walls = []
        for b_idx, t_idx in zip(bottom, top, strict=True):
            k = len(b_idx)
            for i in range(k):
                j = (i + 1) % k
                walls.append([[b_idx[i], b_idx[j], t_idx[j], t_idx[i]]])
        faces = [ground, roof, *walls]
        semantics = SolidSemantics(
            surfaces=[
                SemanticSurface(type="GroundSurface"),
                SemanticSurface(type="RoofSurface"),
                SemanticSurface(type="WallSurface"),
            ],
            values=[[0, 1] + [2] * len(walls)],
        )
        return cls(vertices=vertices, boundaries=[faces], semantics=semantics)


# ----------------------------------------------------------------------------------------------------
# Buildings
# ----------------------------------------------------------------------------------------------------


class RoofType(StrEnum):
    flat = "flat"
    gable = "gable"
    hip = "hip"
    shed = "shed"
    mansard = "mansard"
    dome = "dome"
    complex = "complex"
    unknown = "unknown"


def _lod_sort_key(lod: str) -> tuple[int, ...]:
    return tuple(int(p) for p in lod.split("."))


class Building(CityObject):
    """A building: footprint geometry plus optional 3D solids per LoD (``lods["1.2"]``, ``"1.3"``,
    ``"2.2"``)."""

    allowed_geometry_types: ClassVar[tuple[str, ...] | None] = ("Polygon", "MultiPolygon")

    type: Literal["Building"] = "Building"
    height: float | None = Field(default=None, ge=0, description="measured height above ground, metres")
    roof_type: RoofType = RoofType.unknown
    storeys: int | None = Field(default=None, ge=0, description="storeys above ground")
    use: str | None = Field(default=None, description="function / usage, e.g. 'residential', 'office'")
    lods: dict[LoDKey, Solid] = Field(default_factory=dict, description="3D solids keyed by CityJSON LoD")

    def to_cityjson(self, vertices: list[list[float]] | None = None) -> dict[str, Any]:
        """This building as a CityJSON 2.0 CityObject dict (without its id: that is the key in
        ``CityObjects``).

        Vertices are the caller's business: pass the document-wide ``vertices`` list and each solid's vertices
        are appended to it (in LoD order) and its boundary indices offset accordingly, so the result indexes
        that list.
        Without ``vertices`` each geometry's indices refer to ``self.lods[lod].vertices``. Vertices are real
        coordinates; quantising them with a ``transform`` is the caller's job too (see
        :func:`data_models.cityjson.cityjson_document`).
        """
        attributes: dict[str, Any] = dict(self.attributes)
        if self.height is not None:
            attributes["measuredHeight"] = self.height
        if self.roof_type is not RoofType.unknown:
            attributes["roofType"] = self.roof_type.value
        if self.storeys is not None:
            attributes["storeysAboveGround"] = self.storeys
        if self.use is not None:
            attributes["function"] = self.use
        geometries = []
        for lod in sorted(self.lods, key=_lod_sort_key):
            solid = self.lods[lod]
            offset = 0
            if vertices is not None:
                offset = len(vertices)
                vertices.extend([list(v) for v in solid.vertices])
            boundaries = [
                [[[i + offset for i in ring] for ring in face] for face in shell]
                for shell in solid.boundaries
            ]
            geometry: dict[str, Any] = {"type": "Solid", "lod": lod, "boundaries": boundaries}
            if solid.semantics is not None:
                geometry["semantics"] = solid.semantics.model_dump(mode="json", exclude_none=True)
                geometry["semantics"]["values"] = [list(v) for v in solid.semantics.values]
            geometries.append(geometry)
        out: dict[str, Any] = {"type": "Building"}
        if attributes:
            out["attributes"] = attributes
        out["geometry"] = geometries
        return out


class BuildingPart(Building):
    """A part of a building (CityJSON BuildingPart); ``parent_id`` is the id of its Building."""

    type: Literal["BuildingPart"] = "BuildingPart"  # type: ignore[assignment]
    parent_id: EntityId

    def to_cityjson(self, vertices: list[list[float]] | None = None) -> dict[str, Any]:
        out = super().to_cityjson(vertices)
        out["type"] = "BuildingPart"
        out["parents"] = [self.parent_id]
        return out


# ----------------------------------------------------------------------------------------------------
# Other city objects
# ----------------------------------------------------------------------------------------------------


class Road(CityObject):
    """A road: centre line (LineString / MultiLineString) or area (Polygon / MultiPolygon)."""

    allowed_geometry_types: ClassVar[tuple[str, ...] | None] = (
        "LineString",
        "MultiLineString",
        "Polygon",
        "MultiPolygon",
    )

    type: Literal["Road"] = "Road"
    road_class: str = Field(
        default="unclassified",
        min_length=1,
        description="OSM-style highway class, lowercase: motorway, trunk, primary, secondary, tertiary, "
        "residential, service, footway, cycleway, …",
    )
    name: str | None = None
    lanes: int | None = Field(default=None, ge=1)
    width_m: float | None = Field(default=None, gt=0)
    oneway: bool = False
    speed_limit_kmh: float | None = Field(default=None, gt=0)
    closed: bool = Field(default=False, description="closed to traffic (e.g. by a scenario)")

    @field_validator("road_class")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


class LandCoverClass(StrEnum):
    building = "building"
    road = "road"
    impervious = "impervious"
    grass = "grass"
    tree = "tree"
    water = "water"
    bare = "bare"


class LandCover(CityObject):
    """A land-cover polygon of one class."""

    allowed_geometry_types: ClassVar[tuple[str, ...] | None] = ("Polygon", "MultiPolygon")

    type: Literal["LandCover"] = "LandCover"
    cover_class: LandCoverClass
    confidence: float = Field(default=1.0, ge=0, le=1)


class WaterBody(CityObject):
    """A lake, pond, river or canal: area (Polygon / MultiPolygon) or centre line (LineString /
    MultiLineString)."""

    allowed_geometry_types: ClassVar[tuple[str, ...] | None] = (
        "Polygon",
        "MultiPolygon",
        "LineString",
        "MultiLineString",
    )

    type: Literal["WaterBody"] = "WaterBody"
    water_class: str | None = Field(default=None, description="e.g. lake, pond, river, canal, reservoir")
    name: str | None = None


class Vegetation(CityObject):
    """A solitary tree (Point) or a vegetated area (Polygon / MultiPolygon)."""

    allowed_geometry_types: ClassVar[tuple[str, ...] | None] = ("Point", "Polygon", "MultiPolygon")

    type: Literal["Vegetation"] = "Vegetation"
    height: float | None = Field(default=None, ge=0, description="metres")
    crown_radius: float | None = Field(default=None, ge=0, description="metres")
    species: str | None = None


class Sensor(CityObject):
    """A sensor station at a point, measuring ``variables`` with a unit each (``units[variable]``)."""

    allowed_geometry_types: ClassVar[tuple[str, ...] | None] = ("Point",)

    type: Literal["Sensor"] = "Sensor"
    station_kind: str = Field(
        min_length=1, description="e.g. weather, air_quality, traffic_counter, water_level"
    )
    name: str | None = None
    variables: list[str] = Field(default_factory=list, description="variables measured, e.g. ['pm25', 'no2']")
    units: dict[str, str] = Field(
        default_factory=dict, description="unit per variable, e.g. {'pm25': 'ug/m3'}"
    )

    @model_validator(mode="after")
    def _check_units(self):
        if len(set(self.variables)) != len(self.variables):
            raise ValueError(f"variables has duplicates: {self.variables}")
        missing = [v for v in self.variables if v not in self.units]
        if missing:
            raise ValueError(f"units: no unit for variable(s) {missing}")
        extra = [k for k in self.units if k not in self.variables]
        if extra:
            raise ValueError(f"units: unit given for unknown variable(s) {extra}; add them to variables")
        return self


class ObservationFlag(StrEnum):
    good = "good"
    suspect = "suspect"
    bad = "bad"
    missing = "missing"


class Observation(TwinModel):
    """One sensor reading. Not a city object: it references a :class:`Sensor` by ``sensor_id``.

    ``value`` ``None`` (or NaN, normalised to ``None``) means no reading; its flag then defaults to
    ``missing``.
    """

    sensor_id: EntityId
    time: UtcDatetime
    variable: str = Field(min_length=1)
    value: float | None
    unit: str
    quality_flag: ObservationFlag = ObservationFlag.good

    @field_validator("value", mode="before")
    @classmethod
    def _nan_to_none(cls, value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        return value

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"value must be finite or null, got {value}")
        return value

    @model_validator(mode="after")
    def _flag_missing(self):
        if self.value is None and self.quality_flag is ObservationFlag.good:
            self.quality_flag = ObservationFlag.missing
        return self


# ----------------------------------------------------------------------------------------------------
# Union
# ----------------------------------------------------------------------------------------------------

AnyCityObject = Annotated[
    Building | BuildingPart | Road | LandCover | WaterBody | Vegetation | Sensor,
    Field(discriminator="type"),
]
"""Any concrete city object, discriminated by ``type``."""

CITY_OBJECT_TYPES: dict[str, type[CityObject]] = {
    "Building": Building,
    "BuildingPart": BuildingPart,
    "Road": Road,
    "LandCover": LandCover,
    "WaterBody": WaterBody,
    "Vegetation": Vegetation,
    "Sensor": Sensor,
}

_CITY_OBJECT_ADAPTER: TypeAdapter = TypeAdapter(AnyCityObject)


def parse_city_object(data: dict[str, Any] | str | bytes) -> CityObject:
    """Validate a dict (or a JSON string) into the right :class:`CityObject` subclass by its ``type``."""
    if isinstance(data, str | bytes):
        return _CITY_OBJECT_ADAPTER.validate_json(data)
    return _CITY_OBJECT_ADAPTER.validate_python(data)
