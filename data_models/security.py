"""Principals: who reads and writes the twin, with which roles, up to which classification and inside which area."""

from enum import StrEnum

from pydantic import Field, model_validator

from .common import Classification, EntityId, Geometry, Slug, TwinModel, UtcDatetime, utc_now

__all__ = ["ApiKey", "Principal", "PrincipalKind", "Role"]


class Role(StrEnum):
    """What a principal may do (``twin.security.roles`` maps each to its permissions)."""

    viewer = "viewer"  # read
    gis = "gis"  # read and export products
    analyst = "analyst"  # read, export, edit scenarios, run simulations
    admin = "admin"  # everything, including ingest, build and managing principals


class PrincipalKind(StrEnum):
    user = "user"
    service = "service"


class ApiKey(TwinModel):
    """One API key of a principal: only its id (the public part of the key) and a slow hash of its secret."""

    id: str = Field(pattern=r"^[A-Za-z0-9]{8,32}$", description="public key id, the key's first part")
    hash: str = Field(min_length=20, description="argon2id hash of the key's secret part")
    created: UtcDatetime = Field(default_factory=utc_now)
    revoked: bool = False


class Principal(TwinModel):
    """A user or service account. ``area`` (a polygon in the store CRS) limits what it sees to objects that
    intersect it; None: no limit."""

    id: EntityId
    name: Slug
    kind: PrincipalKind = PrincipalKind.user
    roles: list[Role] = Field(min_length=1)
    clearance: Classification = Classification.public
    area: Geometry | None = None
    disabled: bool = False
    keys: list[ApiKey] = Field(default_factory=list)
    created: UtcDatetime = Field(default_factory=utc_now)
    description: str = ""

    @model_validator(mode="after")
    def _area(self):
        if self.area is not None and self.area.type not in ("Polygon", "MultiPolygon"):
            raise ValueError(f"area must be a Polygon or MultiPolygon, got {self.area.type}")
        return self
