"""Principals: who reads and writes the twin, with which roles, up to which classification and inside which area."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .common import Classification, EntityId, Geometry, Slug, TwinModel, UtcDatetime, utc_now

__all__ = ["PROTECTED_FIELDS", "ApiKey", "Policy", "Principal", "PrincipalKind", "Role"]


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


PROTECTED_FIELDS = frozenset({"id", "type", "geometry", "classification", "_store", "_generalised"})
"""Feature keys a policy may not blank: what identifies a feature, places it and says how it may be shared."""


class Policy(BaseModel):
    """How a public form of a layer or a collection is made. Declared data: ``Policy.model_validate_json(
    p.model_dump_json()) == p``. Glob patterns (``fnmatch``: ``*``, ``?``, ``[...]``) match case-insensitively."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="custom", min_length=1, max_length=100, description="names the policy in notes")
    res: int | None = Field(
        default=None, ge=0, le=15,
        description="finest H3 resolution a public layer may have: finer values are rolled up to it (None: keep the "
                    "data's finest resolution)")
    k_min: int = Field(
        default=0, ge=0,
        description="cells (per time bucket) whose count, after the roll-up, is below k_min are suppressed "
                    "(k-anonymity); 0 or 1: none")
    simplify_m: float = Field(
        default=0.0, ge=0, allow_inf_nan=False,
        description="Douglas-Peucker tolerance in store-CRS metres, topology-preserving; 0: geometries unchanged")
    drop_attributes: tuple[str, ...] = Field(
        default=(), description="attribute keys removed from attributes (at any depth), glob patterns")
    drop_types: tuple[str, ...] = Field(default=(), description="entity types removed entirely, glob patterns")
    drop_fields: tuple[str, ...] = Field(
        default=(), description="feature fields blanked (the model's default, else [] / {} / null), glob patterns; "
                                "never id, type, geometry, classification (globs skip them, naming them is an error)")
    round_height_m: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="heights rounded to a multiple of this (None: exact)")
    keep_lods: bool = Field(default=False, description="keep the 3D LoD solids (else they are removed)")
    source_max: Classification = Field(
        default=Classification.confidential,
        description="highest classification this policy may generalise: data above it has no public form")
    classification: Classification = Field(
        default=Classification.public, description="classification of the generalised product")
    description: str = ""

    @field_validator("drop_attributes", "drop_types", "drop_fields")
    @classmethod
    def _check_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [p for p in value if not isinstance(p, str) or not p.strip()]
        if bad:
            raise ValueError(f"patterns must be non-empty text; got {bad!r}")
        return tuple(p.strip() for p in value)

    @model_validator(mode="after")
    def _check(self) -> Policy:
        protected = sorted(p for p in self.drop_fields if p.lower() in PROTECTED_FIELDS)
        if protected:  # named outright; a glob that happens to match them just leaves them alone
            raise ValueError(f"drop_fields: {', '.join(protected)} cannot be blanked (a feature needs its id, type, "
                             "geometry and classification)")
        if self.classification.rank > self.source_max.rank:
            raise ValueError(f"classification {self.classification.value} is above source_max "
                             f"{self.source_max.value}: a generalised product is never classified above its source")
        if self.keep_lods and (self.round_height_m is not None or self.simplify_m > 0):
            raise ValueError("keep_lods: the 3D solids would reveal the exact heights and footprints that "
                             "round_height_m and simplify_m generalise; drop them or do not generalise those")
        return self
