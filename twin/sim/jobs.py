"""Jobs of OGC API Processes: simulator runs in worker processes, persisted in the store, shared by API processes.

A job is one JSON file, ``<store>/jobs/<job id>.json`` (written atomically), holding its OGC ``statusInfo`` fields
(status, message, progress 0–100, created / started / finished / updated), the validated inputs, the run id and
the error once done. States::

    accepted ──► running ──► successful
        │           ├──────► failed      (the simulator raised, or its worker died: the server stopped)
        └───────────┴──────► dismissed   (DELETE /jobs/{id}: the worker is killed, nothing is committed)

Every API process of a store runs a :class:`JobManager`; each manager's scheduler thread (and every submit and
dismiss) takes ``<store>/jobs/.lock`` and then, store-wide: marks running jobs whose worker process is gone as
failed, and starts the oldest accepted jobs while fewer than ``jobs_max`` run. So a job queued by a server that
stopped is started by the next one (resumed), a dismiss in one process kills a worker another started (its pid and
start time are in the file), and the limit holds across processes. A worker (multiprocessing *spawn*, one process
per job, its own process group) calls :func:`twin.sim.engine.run`, writes progress and a heartbeat (``updated``)
twice a second, then the outcome; the engine commits only at the end, so a killed worker leaves the store as it was.
Callbacks (a request's ``subscriber``) are POSTed with urllib; a failed delivery is logged, nothing more.
"""

from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin.config import get_settings
from twin.errors import BadInput, Conflict, NotFound, TwinError
from twin.sim import engine
from twin.sim.base import split_file_param
from twin.store import MAIN, Store
from twin.store.files import write_json_atomic

log = logging.getLogger("twin.sim.jobs")

JOBS = "jobs"
ACCEPTED, RUNNING, SUCCESSFUL, FAILED, DISMISSED = "accepted", "running", "successful", "failed", "dismissed"
STATES = (ACCEPTED, RUNNING, SUCCESSFUL, FAILED, DISMISSED)
FINISHED = (SUCCESSFUL, FAILED, DISMISSED)
STORE_INPUTS = ("branch", "scenario", "as_of")  # inputs naming the store state, besides the simulator's parameters
RUN_OUTPUT = "run"
VALUE, REFERENCE = "value", "reference"
EXC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
HEARTBEAT_S = 0.5
TICK_S = 0.25
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_LOST = "the server stopped while the job ran (its worker process {pid} is gone)"


class UnknownJob(NotFound):
    """No job of that id (OGC exception no-such-job)."""

    ogc_type = EXC + "no-such-job"


class NoSuchProcess(NotFound):
    """No process (simulator) of that id (OGC exception no-such-process)."""

    ogc_type = EXC + "no-such-process"


class ResultNotReady(NotFound):
    """The job has no results yet (OGC exception result-not-ready)."""

    ogc_type = EXC + "result-not-ready"


class JobFinished(Conflict):
    """The job already finished: it cannot be dismissed."""


class JobFailed(TwinError):
    """The results of a failed (or dismissed) job: its error, with the HTTP status it stored."""

    def __init__(self, message: str, http: int) -> None:
        """Set up the instance."""
        super().__init__(message)
        self.http = http


# ---------------------------------------------------------------------------------------------- processes
def process_summary(sim: engine.Simulator, base: str) -> dict[str, Any]:
    """The OGC process summary of a simulator (its id is the simulator name)."""
    url = f"{base}/processes/{sim.name}"
    return {
        "id": sim.name, "version": str(sim.version), "title": sim.title, "description": sim.description,
        "jobControlOptions": ["sync-execute", "async-execute", "dismiss"],
        "outputTransmission": [VALUE, REFERENCE],
        "links": [_link(url, "self", "application/json", "process description"),
                  _link(f"{url}?f=html", "alternate", "text/html", "process description as HTML"),
                  _link(f"{url}/execution", "http://www.opengis.net/def/rel/ogc/1.0/execute", "application/json",
                        "execute the process")],
    }


def process_description(sim: engine.Simulator, base: str) -> dict[str, Any]:
    """The OGC process description: the parameter model's properties as inputs, plus the store state inputs
    (branch, scenario, as_of); outputs ``run`` and each table or layer the simulator writes."""
    schema = sim.Parameters.model_json_schema()
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    inputs: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if name in STORE_INPUTS:
            continue
        s = _inline(prop, defs)
        title, desc = s.pop("title", name), s.pop("description", "")
        inputs[name] = {"title": title, "description": desc, "schema": s,
                        "minOccurs": 0 if ("default" in s or name not in required) else 1, "maxOccurs": 1}
    inputs["branch"] = {"title": "Branch", "description": "the store branch the simulator reads and its results are "
                        "committed to", "schema": {"type": "string", "default": MAIN}, "minOccurs": 0, "maxOccurs": 1}
    inputs["scenario"] = {"title": "Scenario", "description": "a scenario id: its branch is read and written (instead "
                          "of branch)", "schema": {"type": "string"}, "minOccurs": 0, "maxOccurs": 1}
    inputs["as_of"] = {"title": "As of", "description": "the store version (integer) or RFC 3339 time to read; "
                       "default the branch's latest at submission",
                       "schema": {"oneOf": [{"type": "integer", "minimum": 1},
                                            {"type": "string", "format": "date-time"}]}, "minOccurs": 0, "maxOccurs": 1}
    outputs = {RUN_OUTPUT: {"title": "Run", "description": "the SimulationRun record (status, parameters, timings, "
                            "outputs, summary); by reference: /runs/{run id}",
                            "schema": {"type": "object", "contentMediaType": "application/json"}}}
    for name, desc in sim.writes.items():
        outputs[name] = {"title": name, "description": f"{desc} (by reference: a link to its rows; by value: the "
                         "rows as JSON objects)", "schema": {"type": "array", "items": {"type": "object"},
                                                             "contentMediaType": "application/json"}}
    return {**process_summary(sim, base), "inputs": inputs, "outputs": outputs}


def _inline(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A property's JSON Schema with ``$ref``s to ``$defs`` replaced by their definitions."""
    if isinstance(prop, list):
        return [_inline(p, defs) for p in prop]  # type: ignore[return-value]
    if not isinstance(prop, dict):
        return prop
    if "$ref" in prop:
        target = defs.get(prop["$ref"].rsplit("/", 1)[-1], {})
        prop = {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
    return {k: _inline(v, defs) for k, v in prop.items()}


def process(process_id: str) -> engine.Simulator:
    """The simulator of a process id, or :class:`NoSuchProcess` (404) listing the processes."""
    sims = engine.simulators()
    if process_id not in sims:
        raise NoSuchProcess(f"no process {process_id!r}; processes: {', '.join(sims) or 'none'}")
    return sims[process_id]


def _outputs_of(sim: engine.Simulator) -> list[str]:
    """The output ids of a process: the run, then what the simulator writes."""
    return [RUN_OUTPUT, *sim.writes]


# ---------------------------------------------------------------------------------------------- documents
def _link(href: str, rel: str, type_: str, title: str) -> dict[str, str]:
    """An OGC link object."""
    return {"href": href, "rel": rel, "type": type_, "title": title}


def status_info(job: dict[str, Any], base: str) -> dict[str, Any]:
    """The OGC statusInfo document of a job, with links to itself and, once successful, its results and run."""
    url = f"{base}/jobs/{job['jobID']}"
    links = [_link(url, "self", "application/json", "this job"),
             _link(f"{url}?f=html", "alternate", "text/html", "this job as HTML")]
    if job["status"] == SUCCESSFUL:
        links.append(_link(f"{url}/results", "http://www.opengis.net/def/rel/ogc/1.0/results", "application/json",
                           "the job's results"))
    if job.get("run_id") and job["status"] == SUCCESSFUL:
        links.append(_link(f"{base}/runs/{job['run_id']}", "related", "application/json", "the simulation run"))
    keys = ("jobID", "processID", "type", "status", "message", "created", "started", "finished", "updated",
            "progress")
    return {**{k: job.get(k) for k in keys}, "links": links}


def results(store: Store, job: dict[str, Any], base: str, raw: bool = False) -> Any:
    """The results of a successful job: ``{output id: value or link}`` (the requested outputs, each by value or by
    reference); ``raw``: the one requested output's value alone."""
    if job["status"] == FAILED:
        raise JobFailed(f"job {job['jobID']} failed: {job.get('error') or job.get('message')}",
                        job.get("error_status") or 500)
    if job["status"] == DISMISSED:
        raise JobFailed(f"job {job['jobID']} was dismissed: it has no results", 410)
    if job["status"] != SUCCESSFUL:
        raise ResultNotReady(f"job {job['jobID']} is {job['status']}: its results are not ready yet")
    run, branch, version = engine.find_run(store, job["run_id"])
    sim = engine.get(job["processID"])
    wanted = job.get("outputs") or {name: {} for name in _outputs_of(sim)}
    out: dict[str, Any] = {}
    for name, spec in wanted.items():
        mode = (spec or {}).get("transmissionMode") or (VALUE if name == RUN_OUTPUT else REFERENCE)
        if name == RUN_OUTPUT:
            href = f"{base}/runs/{run.id}"
            value: Callable[[], Any] = lambda: run.model_dump(mode="json")  # noqa: E731
        elif name in run.layers:
            href = f"{base}/layers/{name}/cells?branch={branch}&as_of={version}"
            value = _layer_rows(store, name, branch, version)
        elif name in run.tables:
            href = f"{base}/runs/{run.id}/tables/{name}?f=json"
            value = _table_rows(store, run, name)
        elif f"{run.id}-{name}" in run.outputs:  # a file (COG): by reference only
            out[name] = {"href": f"{base}/runs/{run.id}/files/{name}", "rel": "related",
                         "type": "image/tiff; application=geotiff; profile=cloud-optimized", "title": name}
            continue
        else:
            continue  # the simulator wrote nothing of that name in this run
        if mode == VALUE:
            out[name] = {"value": value(), "mediaType": "application/json"}
        else:
            out[name] = {"href": href, "rel": "related", "type": "application/json", "title": name}
    if raw:
        if len(out) != 1:
            raise BadInput(f"response: raw needs exactly one output, the run has {len(out)}")
        (only,) = out.values()
        return only.get("value", only)
    return out


def _layer_rows(store: Store, name: str, branch: str, version: int) -> Callable[[], Any]:
    """A loader of a layer's cells at the run's version, as JSON rows."""
    def rows() -> Any:
        """The rows."""
        from twin.layers.registry import Layers

        return Layers(store).query(name, branch=branch, as_of=version).to_pylist()
    return rows


def _table_rows(store: Store, run: Any, name: str) -> Callable[[], Any]:
    """A loader of a run's result table, as JSON rows."""
    return lambda: engine.result_table(store, run, name).to_pylist()


# ---------------------------------------------------------------------------------------------- files
def _now() -> str:
    """Now, RFC 3339 UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dir(root: Path) -> Path:
    """The store's jobs folder."""
    return Path(root) / JOBS


def _path(root: Path, job_id: str) -> Path:
    """A job's file; an id that is not 32 hex digits is an unknown job (never a path)."""
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise UnknownJob(f"no job {job_id!r}; GET /jobs lists them")
    return _dir(root) / f"{job_id}.json"


def read(root: Path, job_id: str) -> dict[str, Any]:
    """The job record of that id, or :class:`UnknownJob`."""
    try:
        return json.loads(_path(root, job_id).read_text())
    except FileNotFoundError:
        raise UnknownJob(f"no job {job_id!r}; GET /jobs lists them") from None


def _principal_id(store: Any) -> str | None:
    """Who submits: the guarded store's principal (None: a local, unguarded caller)."""
    p = getattr(store, "principal", None)
    return None if p is None else p.id


def _owned(job: dict[str, Any], owner: str | None) -> dict[str, Any]:
    """``job`` when ``owner`` (None: anyone) submitted it; else as unknown as a job that does not exist."""
    if owner is not None and job.get("principal") != owner:
        raise UnknownJob(f"no job {job['jobID']!r}; GET /jobs lists them")
    return job


def _runner_store(store: Store, principal_id: str | None) -> Any:
    """The store a job's worker reads: behind the guard of the principal that submitted it, as that principal is
    now (disabled or gone: the job fails, it does not run with more rights than its submitter has)."""
    if principal_id is None or principal_id == "principal-local":
        return store
    from twin.errors import Unauthorized
    from twin.security import principals as P
    from twin.security.guard import GuardedStore

    if principal_id == P.ANONYMOUS.id:
        return GuardedStore(store, P.ANONYMOUS)
    p = next((p for p in P.principals(store) if p.id == principal_id), None)
    if p is None or p.disabled:
        raise Unauthorized(f"the job's principal {principal_id!r} is gone or disabled")
    return GuardedStore(store, p)


def _write(root: Path, job: dict[str, Any]) -> None:
    """Write a job record atomically (temporary file, then rename)."""
    tmp = _dir(root) / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    write_json_atomic(_path(root, job["jobID"]), job, tmp)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """The store-wide jobs lock (a flock: the kernel drops it when its holder dies)."""
    d = _dir(root)
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _update(root: Path, job_id: str, only_if: tuple[str, ...], **changes: Any) -> dict[str, Any] | None:
    """Apply ``changes`` under the lock when the job's status is one of ``only_if``; the new record or None."""
    with _locked(root):
        job = read(root, job_id)
        if job["status"] not in only_if:
            return None
        job.update(changes, updated=_now())
        _write(root, job)
        return job


# ---------------------------------------------------------------------------------------------- processes (OS)
def _proc_start(pid: int | None) -> str | None:
    """The start time (clock ticks since boot) of a live, non-zombie process, or None; "?" where /proc is absent."""
    if not pid:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return "?"
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _alive(job: dict[str, Any]) -> bool:
    """Whether the job's worker process (pid and start time) still runs."""
    start = _proc_start(job.get("pid"))
    return start is not None and (start == job.get("pid_start") or "?" in (start, job.get("pid_start")))


def _stop(job: dict[str, Any], child: Any = None) -> None:
    """Stop a job's worker (its process group): SIGTERM, SIGKILL after 1 s, and wait until it is gone."""
    pid = job.get("pid")
    for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 2.0)):
        if not _alive(job):
            break
        try:
            os.killpg(pid, sig)
        except OSError:
            try:
                os.kill(pid, sig)
            except OSError:
                break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if child is not None:
                child.join(0.02)  # our own worker: reap it, so no zombie is left
            if not _alive(job):
                break
            time.sleep(0.02)


# ---------------------------------------------------------------------------------------------- callbacks
def notify(uri: str | None, doc: Any) -> None:
    """POST ``doc`` as JSON to a subscriber's URI; a failure is logged, never raised."""
    if not uri:
        return
    try:
        req = urllib.request.Request(uri, data=json.dumps(doc, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (http(s) only: checked at submission)
            resp.read()
    except Exception as exc:  # noqa: BLE001 - a subscriber that is down must not fail the job
        log.warning("callback to %s failed: %s", uri, exc)


def _notify_async(uri: str | None, doc: Any) -> None:
    """Deliver a callback from a thread (the caller may hold the jobs lock)."""
    if uri:
        threading.Thread(target=notify, args=(uri, doc), daemon=True).start()


# ---------------------------------------------------------------------------------------------- the manager
def _study_files(sim: Any, params: dict[str, Any]) -> dict[str, Any]:
    """File inputs of a job (a simulator's ``file_parameters``) resolved inside ``TWIN_STUDY_DIR``: a caller over
    HTTP names files relative to it and never reads another of the server's files; without it, none is taken."""
    names = [k for k in getattr(sim, "file_parameters", ()) if params.get(k)]
    if not names:
        return params
    root = get_settings().study_dir
    if root is None:
        raise BadInput(f"inputs: {', '.join(names)}: this server takes no file inputs (its TWIN_STUDY_DIR is "
                       "not set); run the study with `twin sim run` instead")
    root = Path(root).resolve()
    out = dict(params)
    for k in names:
        if not isinstance(params[k], str):
            continue  # the parameter model names the type error
        path, tail = split_file_param(params[k])
        full = (root / path).resolve()
        if not full.is_relative_to(root) or not full.is_file():
            raise BadInput(f"inputs: {k}: {path!r} is not a file of the study folder")
        out[k] = str(full) + (f":{tail}" if tail else "")
    return out


class JobManager:
    """Submits, lists, dismisses and schedules the jobs of one store, from one API process."""

    def __init__(self, root: Path | str, max_jobs: int = 2) -> None:
        """Set up the instance."""
        self.root = Path(root)
        self.max_jobs = max(1, int(max_jobs))
        self._children: dict[str, Any] = {}  # job id -> multiprocessing.Process this process started
        self._exited: dict[str, int | None] = {}  # job id -> exit code of a worker of this process, reaped
        self._cache: dict[str, tuple[int, dict[str, Any]]] = {}  # file name -> (mtime_ns, record)
        self._mutex = threading.RLock()  # this process's view (children, cache) across request threads
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._mp = multiprocessing.get_context("spawn")

    # ---- lifecycle
    def start(self) -> None:
        """Load the jobs (resume accepted ones, fail lost running ones) and start the scheduler thread."""
        if self._thread is None:
            self.tick()
            self._thread = threading.Thread(target=self._loop, name="twin-jobs", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        """The scheduler thread: tick until closed."""
        while not self._stop_event.wait(TICK_S):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the scheduler must outlive one bad file or a busy disk
                log.exception("job scheduler")

    def close(self) -> None:
        """Stop the scheduler and this process's workers (their jobs fail: the server stopped while they ran)."""
        self._stop_event.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        for job_id, child in list(self._children.items()):
            try:
                job = read(self.root, job_id)
            except UnknownJob:
                continue
            if job["status"] == RUNNING:
                _stop(job, child)
                self._lost(job)
            child.join(1)
        self._children.clear()

    # ---- submitting
    def submit(self, store: Store, process_id: str, inputs: dict[str, Any] | None = None,
               outputs: dict[str, Any] | None = None, subscriber: dict[str, Any] | None = None,
               base: str = "", raw: bool = False) -> dict[str, Any]:
        """Validate an execute request (unknown process 404; bad inputs, outputs or subscriber 400, before
        anything is written) and queue the job; the new record."""
        sim = process(process_id)
        require = getattr(store, "require", None)  # a GuardedStore: the caller must be allowed to run simulations
        if require is not None:
            from twin.security.roles import Permission

            require(Permission.simulate, f"running process {process_id!r}")
        if not isinstance(inputs, dict):
            raise BadInput("inputs: must be an object of input id -> value")
        inputs = {k: _unwrap(v) for k, v in inputs.items()}
        params = {k: v for k, v in inputs.items() if k not in STORE_INPUTS}
        known = set(sim.Parameters.model_fields)
        unknown = sorted(set(params) - known)
        if unknown:
            raise BadInput(f"inputs: unknown input {', '.join(map(repr, unknown))} of process {sim.name}; inputs: "
                           f"{', '.join([*sorted(known), *STORE_INPUTS])}")
        p = engine.parameters(sim, _study_files(sim, params))
        branch, version, scenario = _store_state(store, inputs)
        wanted = _outputs(sim, outputs, raw)
        hooks = _subscriber(subscriber)
        job_id = uuid.uuid4().hex
        now = _now()
        job = {"jobID": job_id, "processID": sim.name, "type": "process", "status": ACCEPTED,
               "message": "accepted: waiting for a free worker", "progress": 0, "created": now, "started": None,
               "finished": None, "updated": now, "inputs": inputs, "parameters": p.model_dump(mode="json"),
               "branch": branch, "version": version, "scenario": scenario, "outputs": wanted,
               "subscriber": hooks, "base": base, "run_id": None, "error": None, "error_status": None,
               "pid": None, "pid_start": None, "principal": _principal_id(store)}
        with _locked(self.root):
            _write(self.root, job)
        self.tick()
        return read(self.root, job_id)

    # ---- reading
    def get(self, job_id: str, owner: str | None = None) -> dict[str, Any]:
        """One job's record (the scheduler's view is refreshed first, so a lost worker shows as failed);
        ``owner``: only a job this principal submitted (another's is unknown to it)."""
        job = _owned(read(self.root, job_id), owner)
        if job["status"] == RUNNING and not _alive(job):
            self.tick()
            job = read(self.root, job_id)
        return job

    def list(self, status: list[str] | None = None, process_id: list[str] | None = None,
             limit: int | None = None, owner: str | None = None) -> list[dict[str, Any]]:
        """Jobs, newest first, of the given statuses and processes (and of ``owner`` only, when given)."""
        bad = [s for s in status or [] if s not in STATES]
        if bad:
            raise BadInput(f"status: unknown status {', '.join(map(repr, bad))}; statuses: {', '.join(STATES)}")
        jobs = [j for j in self._all() if (not status or j["status"] in status)
                and (not process_id or j["processID"] in process_id)
                and (owner is None or j.get("principal") == owner)]
        jobs.sort(key=lambda j: (j["created"], j["jobID"]), reverse=True)
        return jobs[:limit] if limit else jobs

    def _all(self) -> list[dict[str, Any]]:
        """Every job record of the store (re-read only where its file changed)."""
        with self._mutex:
            return self._scan()

    def _scan(self) -> list[dict[str, Any]]:
        """The job files' records, cached by modification time."""
        d = _dir(self.root)
        if not d.is_dir():
            return []
        out = []
        seen = set()
        for entry in os.scandir(d):
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            seen.add(entry.name)
            try:
                mtime = entry.stat().st_mtime_ns
                cached = self._cache.get(entry.name)
                if cached is None or cached[0] != mtime:
                    cached = (mtime, json.loads(Path(entry.path).read_text()))
                    self._cache[entry.name] = cached
            except (OSError, ValueError):
                continue  # removed meanwhile, or not a job file
            out.append(cached[1])
        for gone in set(self._cache) - seen:
            self._cache.pop(gone, None)
        return out

    async def wait(self, job_id: str, poll_s: float = 0.1) -> dict[str, Any]:
        """Await a job's end without blocking the event loop."""
        import asyncio

        while True:
            job = await asyncio.to_thread(self.get, job_id)
            if job["status"] in FINISHED:
                return job
            await asyncio.sleep(poll_s)

    # ---- dismissing
    def dismiss(self, job_id: str, owner: str | None = None) -> dict[str, Any]:
        """Stop an accepted or running job (its worker is gone when this returns; nothing of it is committed) and
        mark it dismissed; a finished job is a :class:`JobFinished` (409)."""
        with _locked(self.root):
            job = _owned(read(self.root, job_id), owner)
            if job["status"] in (SUCCESSFUL, FAILED):
                raise JobFinished(f"job {job_id} already finished ({job['status']}); only accepted or running jobs "
                                  "can be dismissed")
            if job["status"] == DISMISSED:
                return job
            if job["status"] == RUNNING:
                _stop(job, self._children.get(job_id))
            job.update(status=DISMISSED, message="dismissed: the job was cancelled; nothing was committed",
                       finished=_now(), updated=_now())
            _write(self.root, job)
        child = self._children.pop(job_id, None)
        if child is not None:
            child.join(1)
        return job

    # ---- scheduling
    def tick(self) -> None:
        """Reap finished workers of this process; store-wide: fail running jobs whose worker is gone and start
        accepted jobs, oldest first, while fewer than ``max_jobs`` run."""
        with self._mutex:
            for job_id, child in list(self._children.items()):
                if not child.is_alive():
                    child.join(0)
                    self._exited[job_id] = child.exitcode
                    self._children.pop(job_id, None)
            self._beat()
            if not _dir(self.root).is_dir():
                return
            active = [j["jobID"] for j in self._all() if j["status"] in (ACCEPTED, RUNNING)]
            if active:
                self._schedule(active)

    def _schedule(self, active: list[str]) -> None:
        """Under the store's jobs lock, with fresh reads of the jobs that were active: fail the lost, start the
        queued."""
        with _locked(self.root):
            jobs = []
            for job_id in active:
                try:
                    jobs.append(read(self.root, job_id))
                except UnknownJob:
                    continue
            running = 0
            for job in jobs:
                if job["status"] != RUNNING:
                    continue
                if _alive(job) or job["jobID"] in self._children and self._children[job["jobID"]].is_alive():
                    running += 1
                else:
                    self._lost(job, locked=True)
            queue = sorted((j for j in jobs if j["status"] == ACCEPTED), key=lambda j: (j["created"], j["jobID"]))
            for job in queue[: max(0, self.max_jobs - running)]:
                self._spawn(job)

    def _beat(self) -> None:
        """Keep ``updated`` of this process's running workers' jobs under a second old while a worker starts up
        (spawning and importing take a while on a busy machine; then the worker's own heartbeat takes over)."""
        now = datetime.now(UTC)
        for job_id, child in list(self._children.items()):
            try:
                job = read(self.root, job_id)
            except UnknownJob:
                continue
            age = (now - datetime.fromisoformat(job["updated"])).total_seconds()
            if job["status"] == RUNNING and age > HEARTBEAT_S * 1.5 and child.is_alive():
                _update(self.root, job_id, (RUNNING,))

    def _lost(self, job: dict[str, Any], locked: bool = False) -> None:
        """Mark a running job whose worker is gone as failed, saying why; tell its subscriber."""
        child = self._children.get(job["jobID"])
        code = child.exitcode if child is not None else self._exited.pop(job["jobID"], None)
        why = (_LOST.format(pid=job.get("pid")) if code is None or code < 0
               else f"the job's worker process {job.get('pid')} exited with code {code} before it finished")
        job.update(status=FAILED, message=why, error=why, error_status=500, finished=_now(), updated=_now())
        if locked:
            _write(self.root, job)
        else:
            with _locked(self.root):
                if read(self.root, job["jobID"])["status"] == RUNNING:
                    _write(self.root, job)
        _notify_async((job.get("subscriber") or {}).get("failedUri"), status_info(job, job.get("base", "")))

    def _spawn(self, job: dict[str, Any]) -> None:
        """Start a worker for an accepted job (the lock is held: the worker's first write waits for this one)."""
        child = self._mp.Process(target=work, args=(str(self.root), job["jobID"]), name=f"twin-job-{job['jobID']}")
        child.start()
        self._children[job["jobID"]] = child
        deadline = time.monotonic() + 2
        start = _proc_start(child.pid)
        while start is None and time.monotonic() < deadline and child.is_alive():
            time.sleep(0.005)
            start = _proc_start(child.pid)
        job.update(status=RUNNING, message="running: worker started", started=_now(), updated=_now(),
                   pid=child.pid, pid_start=start or "?")
        _write(self.root, job)


def _unwrap(value: Any) -> Any:
    """An OGC qualified input value (``{"value": v, "mediaType": …}``) as its plain value."""
    if isinstance(value, dict) and "value" in value and set(value) <= {"value", "mediaType", "encoding", "schema"}:
        return value["value"]
    return value


def _store_state(store: Store, inputs: dict[str, Any]) -> tuple[str, int, str | None]:
    """The branch (of ``scenario`` when given), the version ``as_of`` names on it, and the scenario id."""
    branch, scenario, as_of = inputs.get("branch"), inputs.get("scenario"), inputs.get("as_of")
    if branch is not None and not isinstance(branch, str):
        raise BadInput(f"branch: must be a string (a branch name), got {branch!r}")
    if scenario is not None:
        if not isinstance(scenario, str):
            raise BadInput(f"scenario: must be a string (a scenario id), got {scenario!r}")
        try:
            from twin.sim import scenarios
        except ImportError:
            raise BadInput("scenario: scenarios are not available in this installation") from None
        sc_branch = scenarios.get(store, scenario).branch
        if branch is not None and branch != sc_branch:
            raise BadInput(f"branch: {branch!r} differs from the branch {sc_branch!r} of scenario {scenario!r}")
        branch = sc_branch
    branch = branch or MAIN
    if as_of is not None and (isinstance(as_of, bool) or not isinstance(as_of, int | str)):
        raise BadInput(f"as_of: must be a version number or an RFC 3339 time, got {as_of!r}")
    store.branch(branch)  # an unknown branch: 404 naming it
    version = store.resolve_version(branch, as_of)
    if version < 1:
        raise BadInput(f"branch: {branch!r} has no version to read (empty store); ingest data first")
    return branch, version, scenario


def _outputs(sim: engine.Simulator, outputs: dict[str, Any] | None, raw: bool) -> dict[str, Any] | None:
    """The requested outputs (None: all), each ``{"transmissionMode": value|reference}``; unknown ones are a 400."""
    names = _outputs_of(sim)
    if outputs is None:
        if raw:
            raise BadInput(f"response: raw needs exactly one output in outputs; outputs: {', '.join(names)}")
        return None
    if not isinstance(outputs, dict):
        raise BadInput("outputs: must be an object of output id -> {transmissionMode}")
    out = {}
    for name, spec in outputs.items():
        if name not in names:
            raise BadInput(f"outputs: unknown output {name!r} of process {sim.name}; outputs: {', '.join(names)}")
        spec = dict(spec) if isinstance(spec, dict) else {}
        mode = spec.get("transmissionMode")
        if mode is not None and mode not in (VALUE, REFERENCE):
            raise BadInput(f"outputs.{name}.transmissionMode: must be value or reference, got {mode!r}")
        out[name] = {"transmissionMode": mode} if mode else {}
    if raw and len(out) != 1:
        raise BadInput(f"response: raw needs exactly one output in outputs, got {len(out)}")
    if raw and any(n != RUN_OUTPUT and m.get("transmissionMode") == VALUE for n, m in out.items()):
        raise BadInput("response: raw gives one JSON object (the run, or a link to a table or layer); ask for "
                       "a table's rows by value with response=document")
    return out


def _subscriber(sub: dict[str, Any] | None) -> dict[str, str]:
    """A subscriber's callback URIs, each an http(s) URL."""
    out: dict[str, str] = {}
    for key in ("successUri", "inProgressUri", "failedUri"):
        uri = (sub or {}).get(key)
        if uri is None:
            continue
        if not isinstance(uri, str) or not re.match(r"^https?://[^\s/]+", uri):
            raise BadInput(f"subscriber.{key}: must be an http(s) URL, got {uri!r}")
        out[key] = uri
    return out


_MANAGERS: dict[tuple[int, str], JobManager] = {}
_MANAGERS_LOCK = threading.Lock()


def manager(root: Path | str, max_jobs: int = 2) -> JobManager:
    """This process's started manager of the store at ``root``."""
    key = (os.getpid(), str(Path(root).resolve()))
    with _MANAGERS_LOCK:
        if key not in _MANAGERS:
            _MANAGERS[key] = JobManager(root, max_jobs)
        m = _MANAGERS[key]
    m.start()
    return m


def close_managers() -> None:
    """Close every manager of this process (server shutdown)."""
    with _MANAGERS_LOCK:
        found = [m for (pid, _), m in _MANAGERS.items() if pid == os.getpid()]
        _MANAGERS.clear()
    for m in found:
        m.close()


# ---------------------------------------------------------------------------------------------- the worker
def work(root: str, job_id: str) -> None:
    """A job's worker process: run the simulator, with progress and a heartbeat in the job file, then the outcome
    and the subscriber's callback."""
    try:
        os.setpgid(0, 0)  # its own process group: a dismiss stops the simulator's own helpers too
    except OSError:
        pass
    root_p = Path(root)
    job = read(root_p, job_id)
    hooks = job.get("subscriber") or {}
    base = job.get("base", "")
    state = {"fraction": 0.0, "message": "running"}
    done = threading.Event()

    def progress(fraction: float, message: str) -> None:
        """Keep the simulator's latest progress for the heartbeat."""
        state["fraction"], state["message"] = fraction, message or state["message"]

    def beat() -> None:
        """Write progress and ``updated`` twice a second; stop the worker once the job is no longer running."""
        while not done.wait(HEARTBEAT_S):
            pct = min(99, int(round(float(state["fraction"]) * 100)))
            if _update(root_p, job_id, (RUNNING,), progress=pct, message=str(state["message"])[:500]) is None:
                os._exit(0)  # dismissed or failed meanwhile: stop at once, commit nothing

    started = _update(root_p, job_id, (RUNNING,), message="running")
    if started is None:
        return
    notify(hooks.get("inProgressUri"), status_info(started, base))
    threading.Thread(target=beat, daemon=True).start()
    store = Store(root_p)
    try:
        store = _runner_store(store, job.get("principal"))
        run = engine.run(store, job["processID"], job["parameters"], branch=job["branch"], as_of=job["version"],
                         progress=progress, run_id=f"run-{job_id[:12]}", scenario_id=job.get("scenario"))
    except Exception as exc:  # noqa: BLE001 - every failure is the job's outcome
        done.set()
        status = exc.answer.http if isinstance(exc, TwinError) else 500
        msg = f"{type(exc).__name__}: {exc}"[:2000]
        final = _update(root_p, job_id, (RUNNING,), status=FAILED, message=f"failed: {msg}"[:500], error=msg,
                        error_status=status, finished=_now())
        if final is not None:
            notify(hooks.get("failedUri"), status_info(final, base))
        return
    done.set()
    reused = " (reused an identical earlier run)" if run.id != f"run-{job_id[:12]}" else ""
    final = _update(root_p, job_id, (RUNNING,), status=SUCCESSFUL, progress=100, run_id=run.id,
                    message=f"successful: run {run.id}{reused}", finished=_now())
    if final is not None and hooks.get("successUri"):
        try:
            doc = results(store, final, base)
        except Exception as exc:  # noqa: BLE001
            doc = {"error": str(exc)}
        notify(hooks["successUri"], doc)

