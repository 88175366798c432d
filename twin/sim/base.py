"""The interface between the simulation engine and its simulators: what a simulator implements
(:class:`Simulator`), what it sees (:class:`RunContext`, :class:`Previous`) and what it returns (:class:`Outputs`,
:class:`ProductFile`), with the errors both raise. Simulators import this module, never the engine (whose registry
imports them)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import pyarrow as pa
from pydantic import BaseModel

from data_models import LayerSpec, SimulationRun
from twin.errors import BadInput, Conflict, NotFound
from twin.store import MAIN, RUNS, Query, Store

Progress = Callable[[float, str], None]  # fraction done in [0, 1], a message
ASSET_PREFIX = "asset:"  # in Simulator.reads: "asset:prd-dtm" is the asset with id prd-dtm


def split_file_param(value: str) -> tuple[str, str]:
    """A file parameter ``PATH`` or ``PATH:key=value[,key=value]`` as (path, options text); a path that exists
    with a colon in its name stays whole."""
    head, sep, tail = value.rpartition(":")
    if sep and "=" in tail and not Path(value).exists():
        return head, tail
    return value, ""


class UnknownSimulator(NotFound):
    """No simulator of that name is registered."""


class UnknownRun(NotFound):
    """No run of that id is in the store."""


class BadParameters(BadInput):
    """Parameters that do not validate; the message names each bad parameter."""


class Cancelled(Conflict):
    """The run was cancelled; nothing of it was committed."""


@dataclass
class ProductFile:
    """A file a simulator wrote into its work folder (a COG), kept under ``products/runs/<run id>/``."""

    name: str
    path: Path
    description: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    crs: str | None = None
    bbox: list[float] | None = None


@dataclass
class Outputs:
    """What a run produced: layers (spec, finest values), per-entity tables (an ``entity_id`` column each), files,
    and a summary of headline numbers."""

    layers: list[tuple[LayerSpec, pa.Table]] = field(default_factory=list)
    tables: dict[str, pa.Table] = field(default_factory=dict)
    files: list[ProductFile] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    reused_from: str | None = None  # the earlier run whose unchanged results an incremental run kept


@dataclass
class Previous:
    """An earlier successful run of the same simulator and parameters on other inputs, for incremental reruns:
    ``changed`` holds the ids (entities and assets) whose digest differs (added, removed or modified)."""

    run: SimulationRun
    branch: str
    version: int  # the version holding its results
    changed: set[str]

    def table(self, store: Store, name: str) -> pa.Table:
        return result_table(store, self.run, name)


@dataclass
class RunContext:
    """What a simulator sees: the store state to read, its parameters, progress, a work folder, timings."""

    store: Store
    branch: str
    version: int
    params: Any
    run_id: str
    workdir: Path
    workers: int | None = None
    previous: Previous | None = None
    timings: dict[str, float] = field(default_factory=dict)
    _progress: Progress | None = None

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress; raises :class:`Cancelled` when the caller's callback does (a cancelled job)."""
        if self._progress is not None:
            self._progress(min(max(float(fraction), 0.0), 1.0), message)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage of the run (seconds land in ``SimulationRun.timings``)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 4)


@runtime_checkable
class Simulator(Protocol):
    """The interface every simulator implements (see :mod:`twin.sim.sunlight`)."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    version: ClassVar[str]  # bump when results change for the same inputs
    Parameters: ClassVar[type[BaseModel]]
    reads: ClassVar[tuple[str, ...]]  # entity types, and asset ids prefixed "asset:"
    writes: ClassVar[dict[str, str]]  # output name (layer or table) -> description
    keys: ClassVar[dict[str, tuple[str, ...]]]  # result table -> key columns (default ("entity_id",))

    def run(self, ctx: RunContext) -> Outputs: ...


def result_table(store: Store, run: SimulationRun, name: str) -> pa.Table:
    """The rows of a run's per-entity result table ``name``."""
    if name not in run.tables:
        raise NotFound(f"run {run.id} has no table {name!r}; its tables: {', '.join(run.tables) or 'none'}")
    t = store.read_table(name, run.branch, where="run_id = ?", params=[run.id])
    return t.drop_columns([c for c in ("asset_id",) if c in t.column_names])


def find_run(store: Store, run_id: str) -> tuple[SimulationRun, str, int]:
    """A run by id with the branch that holds it and the version of its results."""
    for b in [MAIN] + [b.name for b in store.branches() if b.name != MAIN]:
        for r in store.features(b, query=Query(collection=RUNS, ids=[run_id])):
            if r["branch"] != b:
                continue  # seen through a fork: look it up on its own branch
            version = r.pop("_store")["version"]
            return SimulationRun.model_validate(r), b, version
    raise UnknownRun(f"unknown run {run_id!r}; `twin sim runs` lists them")
