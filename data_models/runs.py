"""Simulation runs: everything needed to reproduce and compare a result."""

from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from .common import Classification, EntityId, Slug, TwinModel, UtcDatetime, utc_now

__all__ = ["SimulationRun", "RunStatus"]


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class SimulationRun(TwinModel):
    """One run of a simulator on ``branch`` at ``version``."""

    id: EntityId
    simulator: Slug = Field(description="simulator name: sunlight, flood, traffic, …")
    branch: Slug = "main"
    version: int = Field(ge=1, description="store version the run read")
    scenario_id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    code_version: str = Field(min_length=1, description="package version and/or git commit of the simulator")
    classification: Classification = Field(default=Classification.public, description="the highest "
                                           "classification of what the run read; its results carry it")
    status: RunStatus = RunStatus.queued
    submitted: UtcDatetime = Field(default_factory=utc_now)
    started: UtcDatetime | None = None
    finished: UtcDatetime | None = None
    timings: dict[str, float] = Field(
        default_factory=dict, description="seconds per stage, e.g. {'solve': 1.2}"
    )
    outputs: list[str] = Field(default_factory=list, description="ids of output layers / assets")
    layers: list[str] = Field(default_factory=list, description="names of the H3 layers the run wrote")
    tables: list[str] = Field(default_factory=list, description="per-entity result tables (rows keyed by run id "
                                                                "and entity id)")
    error: str | None = None
    inputs_digest: str | None = Field(default=None, description="digest of the entities and assets the run read")
    key: str | None = Field(default=None, description="digest of simulator, code version, parameters and inputs: "
                                                       "a run with the same key is reused, not recomputed")
    reused_from: str | None = Field(default=None, description="id of the earlier run whose unchanged results "
                                                              "this incremental run kept")
    summary: dict[str, Any] = Field(default_factory=dict, description="headline numbers of the result")

    @model_validator(mode="after")
    def _check(self):
        if self.started is not None and self.finished is not None and self.finished < self.started:
            raise ValueError("finished must not be before started")
        bad = {k: v for k, v in self.timings.items() if v < 0}
        if bad:
            raise ValueError(f"timings must be non-negative seconds, got {bad}")
        return self

    @property
    def duration_s(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return (self.finished - self.started).total_seconds()
