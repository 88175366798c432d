"""A small, fast simulator for the OGC API Processes tests, loaded with TWIN_SIMULATORS=tests.api.sim_fixture:Sleepy.

"sleepy" sleeps ``steps`` times ``step_s`` seconds reporting progress after each, then writes one row per building
(``sleepy_buildings``: entity id, its height times ``factor``); ``fail`` makes it raise half-way.
"""

from __future__ import annotations

import time
from typing import ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from twin.sim.engine import Outputs, RunContext
from twin.store import Query


class SleepyParameters(BaseModel):
    """The parameters of "sleepy": ranges and an enum, so bad inputs can be tested."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(4, ge=1, le=200, description="how many sleeps")
    step_s: float = Field(0.05, gt=0, le=1.0, description="seconds per sleep")
    factor: float = Field(1.0, ge=0, le=100, description="multiplies each building's height")
    mode: Literal["plain", "fancy"] = Field("plain", description="an enum input")
    fail: bool = Field(False, description="raise half-way through")


class Sleepy:
    """A simulator that mostly sleeps."""

    name: ClassVar[str] = "sleepy"
    title: ClassVar[str] = "Sleepy test simulator"
    description: ClassVar[str] = "Sleeps with progress, then writes each building's height times a factor."
    version: ClassVar[str] = "1"
    Parameters: ClassVar[type[BaseModel]] = SleepyParameters
    reads: ClassVar[tuple[str, ...]] = ("Building",)
    writes: ClassVar[dict[str, str]] = {"sleepy_buildings": "per building: height times factor"}
    keys: ClassVar[dict[str, tuple[str, ...]]] = {"sleepy_buildings": ("entity_id",)}

    def run(self, ctx: RunContext) -> Outputs:
        """Sleep, report, then one row per building."""
        p = ctx.params
        for i in range(p.steps):
            time.sleep(p.step_s)
            ctx.progress((i + 1) / p.steps, f"step {i + 1} of {p.steps}")
            if p.fail and i + 1 >= p.steps / 2:
                raise RuntimeError(f"sleepy failed on purpose at step {i + 1}")
        rows = ctx.store.features(ctx.branch, ctx.version, Query(types=["Building"]))
        table = pa.table({"entity_id": pa.array([r["id"] for r in rows], pa.string()),
                          "value": pa.array([float(r.get("height") or 0) * p.factor for r in rows], pa.float64())})
        return Outputs(tables={"sleepy_buildings": table}, summary={"buildings": len(rows)})
