"""Layer specifications: declared H3 spatiotemporal layers."""

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .common import Classification, Slug, TwinModel
from .security import Policy

__all__ = [
    "LayerSpec",
    "Aggregation",
    "VariableKind",
    "EXTENSIVE_AGGREGATIONS",
    "INTENSIVE_AGGREGATIONS",
    "TIME_BUCKET_PATTERN",
    "parse_time_bucket",
]


class Aggregation(StrEnum):
    sum = "sum"
    mean = "mean"
    max = "max"
    min = "min"
    count = "count"
    area_weighted_mean = "area_weighted_mean"


VariableKind = Literal["extensive", "intensive"]

EXTENSIVE_AGGREGATIONS = frozenset({Aggregation.sum, Aggregation.count})
INTENSIVE_AGGREGATIONS = frozenset(
    {Aggregation.mean, Aggregation.max, Aggregation.min, Aggregation.area_weighted_mean}
)

TIME_BUCKET_PATTERN = r"^[1-9][0-9]*(s|min|h|d|w)$"
_BUCKET_RE = re.compile(TIME_BUCKET_PATTERN)
_ISO_RE = re.compile(r"^P(?:([1-9][0-9]*)([DW])|T([1-9][0-9]*)([HMS]))$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_ISO_UNITS = {"D": "d", "W": "w", "H": "h", "M": "min", "S": "s"}


MAX_TIME_BUCKET = timedelta(days=3660)  # about ten years: longer is no bucket, and it keeps durations in range


def _normalise_time_bucket(value: str) -> str:
    """``value`` as ``<n><unit>``, or a ValueError saying what a time bucket must be (a fixed duration of at least
    one second and at most :data:`MAX_TIME_BUCKET`)."""
    if not isinstance(value, str):
        raise ValueError(f"time_bucket {value!r} is not a fixed duration: give text such as '1h' or 'PT1H'")
    v = value.strip()
    if _BUCKET_RE.fullmatch(v):
        out = v
    elif m := _ISO_RE.fullmatch(v):
        n, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        out = f"{int(n)}{_ISO_UNITS[unit.upper()]}"
    else:
        raise ValueError(
            f"time_bucket {value[:40]!r} is not a fixed duration: use <n><unit> with n >= 1 and unit s, min, h, d "
            "or w (e.g. '15min', '1h', '1d'), or a single-unit ISO-8601 duration ('PT15M', 'PT1H', 'P1D'); "
            "months and years are not fixed lengths"
        )
    digits, unit = re.fullmatch(r"(\d+)(s|min|h|d|w)", out).groups()  # type: ignore[union-attr]
    # compare as digits first: int() of a huge digit string is slow, and timedelta refuses it with an OverflowError
    if len(digits) > 12 or int(digits) * _UNIT_SECONDS[unit] > MAX_TIME_BUCKET.total_seconds():
        raise ValueError(f"time_bucket {value[:40]!r} is too long: at most {MAX_TIME_BUCKET.days}d "
                         f"({MAX_TIME_BUCKET.days * 86400} s)")
    return out


def parse_time_bucket(value: str) -> timedelta:
    """The duration of a time bucket string (``'15min'`` → 15 minutes; ISO-8601 ``'PT1H'`` also accepted); a
    ValueError for anything else, for zero and for more than :data:`MAX_TIME_BUCKET`."""
    m = re.fullmatch(r"(\d+)(s|min|h|d|w)", _normalise_time_bucket(value))
    assert m is not None
    return timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)])


class LayerSpec(TwinModel):
    """A declared layer: values ``(cell, t, value)`` of one variable on H3 cells at the given resolutions.

    ``kind`` says how the variable combines when cells or time buckets are merged: *extensive* quantities
    (counts, totals: population, rainfall volume) add up and use ``sum`` or ``count``; *intensive* ones
    (concentrations, fractions, heights, temperatures) use ``mean``, ``max``, ``min`` or
    ``area_weighted_mean``.
    When ``kind`` is omitted it is inferred from the aggregation.
    """

    name: Slug = Field(description="layer name, a slug; the layer's id")
    variable: str = Field(min_length=1)
    unit: str = Field(description="unit of the values, UCUM-like, e.g. 'm', 'mm', 'ug/m3', '1' for counts")
    kind: VariableKind | None = Field(
        default=None, description="extensive or intensive; inferred when omitted"
    )
    aggregation: Aggregation
    resolutions: list[Annotated[int, Field(ge=0, le=15)]] = Field(
        min_length=1, description="H3 resolutions 0..15; stored sorted and unique"
    )
    time_bucket: str | None = Field(
        default=None,
        description="fixed time bucket: <n><unit>, unit in s, min, h, d, w (e.g. '1h'); None = static layer",
        json_schema_extra={"pattern": TIME_BUCKET_PATTERN},
    )
    lineage: list[str] = Field(default_factory=list, description="ids of source assets / layers / runs used")
    classification: Classification = Classification.public
    public_form: Policy | None = Field(default=None, description="how a public form of the layer is made for "
                                       "principals below its classification (twin.security.generalise); None: "
                                       "there is none, the layer does not exist for them")
    description: str = ""

    @field_validator("resolutions")
    @classmethod
    def _sort_resolutions(cls, value: list[int]) -> list[int]:
        return sorted(set(value))

    @field_validator("time_bucket")
    @classmethod
    def _check_bucket(cls, value: str | None) -> str | None:
        return None if value is None else _normalise_time_bucket(value)

    @model_validator(mode="after")
    def _check_aggregation(self):
        agg = self.aggregation
        if self.kind is None:
            self.kind = "extensive" if agg in EXTENSIVE_AGGREGATIONS else "intensive"
            return self
        allowed = EXTENSIVE_AGGREGATIONS if self.kind == "extensive" else INTENSIVE_AGGREGATIONS
        if agg not in allowed:
            names = ", ".join(sorted(a.value for a in allowed))
            why = (
                "extensive quantities add up across cells and time"
                if self.kind == "extensive"
                else "intensive quantities (concentrations, fractions, heights) do not add up; summing them "
                "across cells or time buckets gives meaningless values"
            )
            raise ValueError(
                f"aggregation '{agg.value}' does not fit {self.kind} variable '{self.variable}': {why}; "
                f"use one of: {names}"
            )
        return self

    @property
    def time_bucket_delta(self) -> timedelta | None:
        return None if self.time_bucket is None else parse_time_bucket(self.time_bucket)

    @property
    def finest_resolution(self) -> int:
        return self.resolutions[-1]
