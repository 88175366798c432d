"""Scenarios: named branches from a base version, holding a list of edits."""

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, field_validator, model_validator

from .city_objects import Building, LandCoverClass, RoofType
from .common import EntityId, Geometry, Slug, TwinModel, UtcDatetime, utc_now

__all__ = [
    "Scenario",
    "ScenarioEdit",
    "AddBuilding",
    "RemoveBuilding",
    "ModifyBuilding",
    "CloseRoad",
    "ChangeLandCover",
    "RainfallEvent",
    "DemandChange",
    "parse_edit",
]

_AREA_TYPES = ("Polygon", "MultiPolygon")


def _check_area(value: Geometry | None, what: str) -> Geometry | None:
    if value is not None and value.type not in _AREA_TYPES:
        raise ValueError(f"{what} must be a Polygon or MultiPolygon, got {value.type}")
    return value


class AddBuilding(TwinModel):
    """Add a new building (its ``id`` must not exist on the branch)."""

    kind: Literal["add_building"] = "add_building"
    building: Building


class RemoveBuilding(TwinModel):
    kind: Literal["remove_building"] = "remove_building"
    building_id: EntityId


class ModifyBuilding(TwinModel):
    """Change some fields of an existing building. ``attributes`` are merged into the existing attributes
    (a ``None`` value deletes the key); fields left ``None`` are unchanged."""

    kind: Literal["modify_building"] = "modify_building"
    building_id: EntityId
    geometry: Geometry | None = None
    height: float | None = Field(default=None, ge=0)
    roof_type: RoofType | None = None
    storeys: int | None = Field(default=None, ge=0)
    use: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("geometry")
    @classmethod
    def _area(cls, value: Geometry | None) -> Geometry | None:
        return _check_area(value, "geometry (a building footprint)")

    @model_validator(mode="after")
    def _something(self):
        fields = ("geometry", "height", "roof_type", "storeys", "use")
        if all(getattr(self, f) is None for f in fields) and not self.attributes:
            raise ValueError(
                "modify_building changes nothing: set geometry, height, roof_type, storeys, use or attributes"
            )
        return self

    def apply(self, building: Building) -> Building:
        """The modified copy of ``building`` (validated). LoD solids are dropped when the footprint or height
        changes, since they no longer match; rebuild them downstream."""
        if building.id != self.building_id:
            raise ValueError(f"edit targets {self.building_id!r}, not {building.id!r}")
        data = building.model_dump()
        for f in ("height", "roof_type", "storeys", "use"):
            v = getattr(self, f)
            if v is not None:
                data[f] = v
        if self.geometry is not None:
            data["geometry"] = self.geometry.model_dump()
        if self.geometry is not None or self.height is not None:
            data["lods"] = {}
        attrs = dict(data.get("attributes") or {})
        for k, v in self.attributes.items():
            if v is None:
                attrs.pop(k, None)
            else:
                attrs[k] = v
        data["attributes"] = attrs
        return type(building).model_validate(data)


class CloseRoad(TwinModel):
    kind: Literal["close_road"] = "close_road"
    road_id: EntityId


class ChangeLandCover(TwinModel):
    """Set the land cover inside ``geometry`` (Polygon / MultiPolygon) to ``new_class``."""

    kind: Literal["change_land_cover"] = "change_land_cover"
    geometry: Geometry
    new_class: LandCoverClass

    @field_validator("geometry")
    @classmethod
    def _area(cls, value: Geometry) -> Geometry:
        return _check_area(value, "geometry")  # type: ignore[return-value]


class RainfallEvent(TwinModel):
    """A design storm. Without ``hyetograph`` the intensity is uniform over ``duration_min``; with it, the
    hyetograph gives intensities (mm/h) over equal consecutive steps spanning the duration, and
    ``intensity_mm_h`` is its peak. ``area`` limits the rain to a region (None: everywhere)."""

    kind: Literal["rainfall_event"] = "rainfall_event"
    intensity_mm_h: float = Field(ge=0, description="uniform (or peak) intensity, mm/h")
    duration_min: float = Field(gt=0, description="duration in minutes")
    hyetograph: list[Annotated[float, Field(ge=0)]] | None = Field(
        default=None, min_length=1, description="intensity (mm/h) per equal time step over the duration"
    )
    start: UtcDatetime | None = None
    area: Geometry | None = None

    @field_validator("area")
    @classmethod
    def _area(cls, value: Geometry | None) -> Geometry | None:
        return _check_area(value, "area")

    @model_validator(mode="after")
    def _peak(self):
        if self.hyetograph is not None and abs(max(self.hyetograph) - self.intensity_mm_h) > 1e-9:
            raise ValueError(
                f"intensity_mm_h ({self.intensity_mm_h}) must equal the hyetograph peak "
                f"({max(self.hyetograph)})"
            )
        return self

    @property
    def step_min(self) -> float:
        return self.duration_min / len(self.hyetograph) if self.hyetograph else self.duration_min

    def total_depth_mm(self) -> float:
        """Total rainfall depth in millimetres."""
        if self.hyetograph:
            return sum(self.hyetograph) * self.step_min / 60.0
        return self.intensity_mm_h * self.duration_min / 60.0


class DemandChange(TwinModel):
    """Scale travel demand from/to a zone (``zone_id``) or an area (``geometry``) by ``factor``."""

    kind: Literal["demand_change"] = "demand_change"
    zone_id: str | None = None
    geometry: Geometry | None = None
    factor: float = Field(ge=0, description="multiplier on demand: 1.2 = +20 %, 0 = none")

    @field_validator("geometry")
    @classmethod
    def _area(cls, value: Geometry | None) -> Geometry | None:
        return _check_area(value, "geometry")

    @model_validator(mode="after")
    def _where(self):
        if self.zone_id is None and self.geometry is None:
            raise ValueError("demand_change needs a zone_id or a geometry")
        return self


ScenarioEdit = Annotated[
    AddBuilding
    | RemoveBuilding
    | ModifyBuilding
    | CloseRoad
    | ChangeLandCover
    | RainfallEvent
    | DemandChange,
    Field(discriminator="kind"),
]
"""One scenario edit, discriminated by ``kind``."""

_EDIT_ADAPTER: TypeAdapter = TypeAdapter(ScenarioEdit)


def parse_edit(data: dict[str, Any]) -> Any:
    """Validate a dict into the right edit model by its ``kind``."""
    return _EDIT_ADAPTER.validate_python(data)


class Scenario(TwinModel):
    """A what-if scenario: the branch ``branch`` from ``base_branch`` at ``base_version`` (None: latest at
    creation), holding ``edits`` applied in order."""

    id: EntityId
    name: str = Field(min_length=1)
    description: str = ""
    base_branch: Slug = "main"
    base_version: int | None = Field(default=None, ge=1)
    branch: Slug
    edits: list[ScenarioEdit] = Field(default_factory=list)
    created: UtcDatetime = Field(default_factory=utc_now)
    author: str = Field(min_length=1)

    @model_validator(mode="after")
    def _branch(self):
        if self.branch == self.base_branch:
            raise ValueError(f"branch {self.branch!r} must differ from base_branch")
        return self
