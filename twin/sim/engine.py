"""The simulation engine: one :class:`Simulator` interface, one registry, one runner.

A simulator declares its name, a pydantic parameter model (defaults and JSON Schema for the CLI, Python and OGC API
Processes), what it reads (entity types and asset ids, whose digests key its inputs) and what it writes (layers,
per-entity tables, files). :func:`run` validates the parameters, reuses an earlier run with the same key
(simulator, code version, parameters, inputs), else runs the simulator and commits, in one version on the run's
branch, the :class:`~data_models.SimulationRun` record, its H3 layers, its per-entity result tables (rows keyed by
run id and entity id; entities are never overwritten) and its files. A failed run is recorded with its error; a
cancelled one leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ValidationError

from data_models import Classification, Extent, RunStatus, SimulationRun, SourceAsset, SourceKind
from twin import __version__
from twin.catalog.assets import sha256_file
from twin.errors import BadInput, NotFound
from twin.geo.crs import bbox_wgs84
from twin.sim.base import (  # noqa: F401 - the interface, re-exported: twin.sim.engine is what users import
    ASSET_PREFIX,
    BadParameters,
    Cancelled,
    Outputs,
    Previous,
    ProductFile,
    Progress,
    RunContext,
    Simulator,
    UnknownRun,
    UnknownSimulator,
    find_run,
    result_table,
)
from twin.store import ASSETS, MAIN, RUNS, Query, Store
from twin.store.files import claim

ENTRY_POINT_GROUP = "twin.simulators"

# ---------------------------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Simulator] = {}
_LOADED = False


def register(sim: Simulator) -> Simulator:
    """Add a simulator (an instance or class implementing :class:`Simulator`) to the one registry."""
    missing = [a for a in ("name", "Parameters", "reads", "writes", "version", "run") if not hasattr(sim, a)]
    if missing:
        raise TypeError(f"{sim!r} is not a Simulator: it lacks {', '.join(missing)}")
    _REGISTRY[sim.name] = sim
    return sim


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from twin.sim.flood.simulator import FloodSimulator
    from twin.sim.sunlight import SunlightSimulator
    from twin.sim.traffic.simulator import TrafficSimulator

    register(SunlightSimulator())
    register(FloodSimulator())
    register(TrafficSimulator())
    plugins = [ep.load for ep in entry_points(group=ENTRY_POINT_GROUP)]
    # TWIN_SIMULATORS="pkg.module:Name,…": simulators of a script or notebook, loaded in every process (job workers)
    for ref in filter(None, (r.strip() for r in os.environ.get("TWIN_SIMULATORS", "").split(","))):
        plugins.append(lambda ref=ref: _object(ref))
    for load in plugins:
        obj = load()
        register(obj() if isinstance(obj, type) else obj)


def _object(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    if not attr:
        raise BadInput(f"TWIN_SIMULATORS: {ref!r} must be module:attribute")
    return getattr(importlib.import_module(module), attr)


def simulators() -> dict[str, Simulator]:
    """Every registered simulator by name (built-ins and the ``twin.simulators`` entry points)."""
    _load()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Simulator:
    sims = simulators()
    if name not in sims:
        raise UnknownSimulator(f"unknown simulator {name!r}; simulators: {', '.join(sims) or 'none'}")
    return sims[name]


def parameters(sim: Simulator, params: dict[str, Any] | BaseModel | None) -> BaseModel:
    """Validated parameters; a :class:`BadParameters` naming every bad one (``step_min: must be > 0``)."""
    if isinstance(params, sim.Parameters):
        return params
    data = params.model_dump() if isinstance(params, BaseModel) else dict(params or {})
    known = sim.Parameters.model_fields
    unknown = [k for k in data if k not in known]
    if unknown:  # a misspelt parameter must not silently run with the default
        raise BadParameters(f"{sim.name} parameters: {', '.join(f'{k}: unknown parameter' for k in unknown)}; "
                            f"parameters: {', '.join(known)}")
    try:
        return sim.Parameters.model_validate(data)
    except ValidationError as exc:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or "parameters"
            parts.append(f"{where}: {e['msg']}" + (f" (got {e['input']!r})" if e["type"] != "missing" else ""))
        raise BadParameters(f"{sim.name} parameters: " + "; ".join(parts)) from None


def describe(sim: Simulator) -> dict[str, Any]:
    """A JSON-ready description: name, title, what it reads and writes, the parameters' JSON Schema."""
    return {"name": sim.name, "title": sim.title, "description": sim.description, "version": sim.version,
            "reads": list(sim.reads), "writes": dict(sim.writes), "parameters": sim.Parameters.model_json_schema()}


def code_version(sim: Simulator) -> str:
    """The package version, the simulator's version and a digest of its module's source: a code change is a new
    code version, so runs of older code are never reused for it."""
    try:
        src = Path(inspect.getsourcefile(type(sim)) or "").read_bytes()
    except (OSError, TypeError):
        src = b""
    return f"twin {__version__}; {sim.name} {sim.version}; src {hashlib.sha256(src).hexdigest()[:12]}"


# ---------------------------------------------------------------------------------------------- inputs and keys
def input_digests(store: Store, sim: Simulator, branch: str, version: int, params: BaseModel | None = None
                  ) -> dict[str, str]:
    """id -> digest of every entity and asset the simulator reads at that state, and of what its optional
    ``extra_inputs(store, branch, version, params)`` names (a user's files, a scenario's rain)."""
    types = [r for r in sim.reads if not r.startswith(ASSET_PREFIX)]
    assets = [r[len(ASSET_PREFIX):] for r in sim.reads if r.startswith(ASSET_PREFIX)]
    out = store.digests(branch, version, Query(types=types)) if types else {}
    if assets:
        out.update({f"{ASSET_PREFIX}{k}": v for k, v in
                    store.digests(branch, version, Query(collection=ASSETS, ids=assets)).items()})
    extra = getattr(sim, "extra_inputs", None)
    if extra is not None and params is not None:
        out.update(extra(store, branch, version, params))
    return out


def input_classification(store: Store, sim: Simulator, branch: str, version: int) -> Classification:
    """The highest classification among what the simulator reads: the run and its results carry it."""
    types = [r for r in sim.reads if not r.startswith(ASSET_PREFIX)]
    assets = [r[len(ASSET_PREFIX):] for r in sim.reads if r.startswith(ASSET_PREFIX)]
    found = store.classifications(branch, version, Query(types=types)) if types else set()
    if assets:
        found |= store.classifications(branch, version, Query(collection=ASSETS, ids=assets))
    return max((Classification(c) for c in found), key=lambda c: c.rank, default=Classification.public)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def run_key(sim: Simulator, params: BaseModel, inputs_digest: str) -> str:
    return _digest({"simulator": sim.name, "code": code_version(sim), "params": params.model_dump(mode="json"),
                    "inputs": inputs_digest})


def _params_key(sim: Simulator, params: BaseModel) -> str:
    return _digest({"simulator": sim.name, "code": code_version(sim), "params": params.model_dump(mode="json")})


# ---------------------------------------------------------------------------------------------- finding runs
def runs(store: Store, branch: str | None = None, simulator: str | None = None) -> list[SimulationRun]:
    """Recorded runs, newest first: of one branch (with the runs it sees of its base) or of every branch."""
    seen: dict[str, SimulationRun] = {}
    for b in [branch] if branch else [b.name for b in store.branches()]:
        for r in store.features(b, query=Query(collection=RUNS)):
            r.pop("_store", None)
            if simulator is None or r["simulator"] == simulator:
                seen.setdefault(r["id"], SimulationRun.model_validate(r))
    return sorted(seen.values(), key=lambda r: (r.submitted, r.id), reverse=True)


def result_file(store: Store, run: SimulationRun, name: str) -> tuple[Path, dict[str, Any]]:
    """The path and asset record of a file a run wrote (e.g. sunlight's ``ground-hours`` COG)."""
    asset_id = f"{run.id}-{name}"
    asset = store.get(asset_id, run.branch, collection=ASSETS) if asset_id in run.outputs else None
    if asset is None:
        files = [o[len(run.id) + 1:] for o in run.outputs if o.startswith(f"{run.id}-")]
        raise NotFound(f"run {run.id} has no file {name!r}; its files: {', '.join(files) or 'none'}")
    return store.asset_path(asset), asset


def _recorded(store: Store) -> list[tuple[SimulationRun, int]]:
    """Every run on the branch it ran on, with the version holding its results, newest first (read once per run:
    reuse and the incremental hint both search it)."""
    out = []
    for b in store.branches():
        for r in store.features(b.name, query=Query(collection=RUNS)):
            version = r.pop("_store")["version"]
            if r["branch"] == b.name:  # not one seen through a fork
                out.append((SimulationRun.model_validate(r), version))
    return sorted(out, key=lambda rv: (rv[0].submitted, rv[0].id), reverse=True)


def _reusable(recorded: list[tuple[SimulationRun, int]], key: str) -> tuple[SimulationRun, int] | None:
    """The newest successful run with this key."""
    return next(((r, v) for r, v in recorded if r.key == key and r.status == RunStatus.succeeded), None)


def _previous(store: Store, sim: Simulator, params_key: str, branch: str, inputs: dict[str, str],
              recorded: list[tuple[SimulationRun, int]]) -> Previous | None:
    """The newest successful run of the same simulator, code and parameters (of those this branch sees first, else
    any), with the inputs that changed since."""
    same = [(r, v) for r, v in recorded if r.simulator == sim.name and r.status == RunStatus.succeeded
            and r.summary.get("params_key") == params_key]
    if not same:
        return None
    visible = {r.id for r in runs(store, branch, sim.name)}
    run, version = next(((r, v) for r, v in same if r.id in visible), same[0])
    before = input_digests(store, sim, run.branch, run.version)
    changed = {k for k in set(before) | set(inputs) if before.get(k) != inputs.get(k)}
    return Previous(run=run, branch=run.branch, version=version, changed=changed)


# ---------------------------------------------------------------------------------------------- running
def new_run_id() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


def run(store: Store, simulator: str, params: dict[str, Any] | BaseModel | None = None, *, branch: str | None = None,
        scenario: str | None = None, as_of: Any = None, progress: Progress | None = None, workers: int | None = None,
        author: str = "twin", reuse: bool = True, run_id: str | None = None,
        scenario_id: str | None = None) -> SimulationRun:
    """Run ``simulator`` on ``branch`` or on the branch of ``scenario`` (default: main; at ``as_of``, default the
    head) and record the run; returns the :class:`SimulationRun` (an earlier one when its key matches and
    ``reuse`` is on). ``scenario_id`` only records the scenario of a branch the caller resolved already."""
    sim = get(simulator)
    p = parameters(sim, params)
    if scenario is not None:
        from twin.sim.scenarios import get as get_scenario

        if branch is not None:
            raise BadInput("branch, scenario: give one of them, not both")
        branch, scenario_id = get_scenario(store, scenario).branch, scenario
    branch = branch or MAIN
    version = store.resolve_version(branch, as_of)
    inputs = input_digests(store, sim, branch, version, p)
    inputs_digest = _digest(sorted(inputs.items()))
    key = run_key(sim, p, inputs_digest)
    recorded = _recorded(store) if reuse else []
    if (found := _reusable(recorded, key)) is not None:
        if progress:
            progress(1.0, f"reused run {found[0].id}")
        return found[0]
    rid = run_id or new_run_id()
    record = SimulationRun(id=rid, simulator=sim.name, branch=branch, version=version, scenario_id=scenario_id,
                           parameters=p.model_dump(mode="json"), code_version=code_version(sim),
                           status=RunStatus.running, started=datetime.now(UTC), inputs_digest=inputs_digest, key=key,
                           classification=input_classification(store, sim, branch, version))
    params_key = _params_key(sim, p)
    previous = _previous(store, sim, params_key, branch, inputs, recorded) if reuse else None
    with claim(store.root / "tmp", "sim"):
        workdir = store.root / "tmp" / f"sim-{rid}"
        workdir.mkdir(parents=True, exist_ok=True)
        ctx = RunContext(store=store, branch=branch, version=version, params=p, run_id=rid, workdir=workdir,
                         workers=workers, previous=previous, _progress=progress)
        t0 = time.perf_counter()
        try:
            try:
                out = sim.run(ctx)
            except Cancelled:
                raise
            except Exception as exc:
                _record_failure(store, record, ctx, t0, exc, author)
                raise
            ctx.progress(1.0, "committing results")
            return _commit(store, sim, record, ctx, out, t0, author, params_key)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _record_failure(store: Store, record: SimulationRun, ctx: RunContext, t0: float, exc: BaseException,
                    author: str) -> None:
    ctx.timings["total"] = round(time.perf_counter() - t0, 4)
    failed = record.model_copy(update={"status": RunStatus.failed, "finished": datetime.now(UTC),
                                       "timings": dict(ctx.timings), "error": f"{type(exc).__name__}: {exc}"[:2000]})
    try:
        store.commit([failed], message=f"sim {record.simulator}: run {record.id} failed", author=author,
                     branch=record.branch)
    except Exception:  # noqa: BLE001 - the original error is what the caller must see
        pass


def _commit(store: Store, sim: Simulator, record: SimulationRun, ctx: RunContext, out: Outputs, t0: float,
            author: str, params_key: str) -> SimulationRun:
    from twin.layers.registry import TABLE, Layers

    put: list[Any] = []
    tables: dict[str, pa.Table] = {}
    outputs: list[str] = []
    reg = Layers(store)
    prepared = []
    for spec, values in out.layers:
        spec = spec.model_copy(update={"lineage": sorted({*spec.lineage, record.id}), "classification": max(
            spec.classification, record.classification, key=lambda c: c.rank)})
        put.append(spec)
        prepared.append(reg.prepare(spec, values))
        outputs.append(spec.name)
    if prepared:
        tables[TABLE] = pa.concat_tables(prepared)
    for name, t in out.tables.items():
        if name not in sim.writes:
            raise TypeError(f"simulator {sim.name} wrote table {name!r}, which it does not declare in writes")
        if "entity_id" not in t.column_names:
            raise TypeError(f"result table {name!r} of {sim.name} has no entity_id column")
        n = t.num_rows
        if not n:
            continue  # the store keeps no empty table: a run without such rows lists no such table
        t = t.append_column("run_id", pa.array([record.id] * n, pa.string()))
        tables[name] = t.append_column("asset_id", pa.array([record.id] * n, pa.string()))
        outputs.append(name)
    folder_rel = Path("products") / "runs" / record.id
    moved: Path | None = None
    if out.files:
        moved = store.root / folder_rel
        moved.mkdir(parents=True, exist_ok=True)
        for f in out.files:
            dst = moved / f"{f.name}{f.path.suffix}"
            shutil.move(str(f.path), dst)
            bbox = f.bbox or [0.0, 0.0, 0.0, 0.0]
            aid = f"{record.id}-{f.name}"
            put.append(SourceAsset(
                id=aid, kind=SourceKind.product, path=str(folder_rel / dst.name), crs=f.crs or store.crs,
                extent=Extent(bbox=bbox, bbox_wgs84=bbox_wgs84(bbox, f.crs or store.crs)),
                checksum=sha256_file(dst), size_bytes=dst.stat().st_size, classification=record.classification,
                producer=f"twin sim {sim.name}", ingested=datetime.now(UTC),
                properties={"product": f.name, "description": f.description, "run_id": record.id, **f.properties}))
            outputs.append(aid)
    ctx.timings["total"] = round(time.perf_counter() - t0, 4)
    done = record.model_copy(update={
        "status": RunStatus.succeeded, "finished": datetime.now(UTC), "timings": dict(ctx.timings),
        "outputs": outputs, "reused_from": out.reused_from, "layers": [s.name for s, _ in out.layers],
        "tables": [n for n, t in out.tables.items() if t.num_rows],
        "summary": {**out.summary, "params_key": params_key}})
    try:
        store.commit([done, *put], message=f"sim {sim.name}: run {record.id}", author=author, branch=record.branch,
                     tables=tables)
    except BaseException:
        if moved is not None:
            shutil.rmtree(moved, ignore_errors=True)
        raise
    return done


# ---------------------------------------------------------------------------------------------- comparing
@dataclass
class Comparison:
    """Per-entity differences (one table per result table) and per-cell differences (one per layer) of two runs."""

    run_a: SimulationRun
    run_b: SimulationRun
    entities: dict[str, pa.Table]
    cells: dict[str, pa.Table]
    totals: dict[str, dict[str, float]]  # the summaries' numbers both runs have: a, b, diff (b - a)


def _totals(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The top-level numbers of two run summaries (vehicle-hours, rain, …) side by side with their difference."""
    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    return {k: {"a": a[k], "b": b[k], "diff": b[k] - a[k]} for k in sorted(a)
            if k in b and number(a[k]) and number(b[k])}


def compare(store: Store, run_a: str, run_b: str) -> Comparison:
    """``b - a`` in total (the summaries' numbers), per entity (the key columns, then ``<col>_a``, ``<col>_b`` and
    ``<col>_diff`` for numbers, and a ``status`` of added / removed / changed / same) and per H3 cell of every
    layer both runs wrote (the layer registry's ``value``, ``other`` and ``difference`` columns at the finest
    resolution, ``difference = b - a``)."""
    from twin.layers.registry import Layers

    a, branch_a, va = find_run(store, run_a)
    b, branch_b, vb = find_run(store, run_b)
    if a.simulator != b.simulator:
        raise BadInput(f"runs {a.id} ({a.simulator}) and {b.id} ({b.simulator}) are of different simulators")
    sim = get(a.simulator)
    entities = {}
    for name in [t for t in a.tables if t in b.tables]:
        keys = tuple(getattr(sim, "keys", {}).get(name, ("entity_id",)))
        entities[name] = _diff_tables(result_table(store, a, name), result_table(store, b, name), keys)
    cells = {}
    reg = Layers(store)
    for name in [n for n in a.layers if n in b.layers]:
        cells[name] = reg.query(name, branch=branch_b, as_of=vb, compare_branch=branch_a, compare_as_of=va)
    return Comparison(a, b, entities, cells, _totals(a.summary, b.summary))


def _diff_tables(ta: pa.Table, tb: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    import duckdb

    skip = set(keys) | {"run_id"}
    cols = [c for c in ta.column_names if c not in skip and c in tb.column_names]
    numeric = [c for c in cols if pa.types.is_integer(ta.schema.field(c).type) or pa.types.is_floating(
        ta.schema.field(c).type)]
    con = duckdb.connect()
    con.register("a", ta)
    con.register("b", tb)
    on = " AND ".join(f'a."{k}" IS NOT DISTINCT FROM b."{k}"' for k in keys)
    key_sel = ", ".join(f'coalesce(a."{k}", b."{k}") AS "{k}"' for k in keys)
    sel = []
    for c in cols:
        sel += [f'a."{c}" AS "{c}_a"', f'b."{c}" AS "{c}_b"']
        if c in numeric:
            sel.append(f'b."{c}" - a."{c}" AS "{c}_diff"')
    changed = " OR ".join(f'a."{c}" IS DISTINCT FROM b."{c}"' for c in cols) or "false"
    status = (f"CASE WHEN a.\"{keys[0]}\" IS NULL THEN 'added' WHEN b.\"{keys[0]}\" IS NULL THEN 'removed' "
              f"WHEN {changed} THEN 'changed' ELSE 'same' END AS status")
    sql = (f"SELECT {key_sel}, {status}{', ' if sel else ''}{', '.join(sel)} FROM a FULL OUTER JOIN b ON {on} "
           f"ORDER BY {', '.join(f'{chr(34)}{k}{chr(34)}' for k in keys)}")
    out = con.execute(sql).to_arrow_table()
    con.close()
    return out


def changed_only(t: pa.Table) -> pa.Table:
    """The rows of a per-entity comparison whose status is not ``same``."""
    return t.filter(pc.not_equal(t["status"], "same"))
