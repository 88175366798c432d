"""OGC API Processes Part 1 (core, job list, callback, dismiss): one process per simulator, jobs in worker processes.

The routes wire requests to :mod:`twin.sim.jobs` (validation, the job files, the workers, the documents); errors
are answered as OGC exceptions (``type``: no-such-process, no-such-job, result-not-ready, else ``about:blank``;
``title``, ``status``, ``detail``). ``POST /processes/{id}/execution`` is synchronous unless the request says
``Prefer: respond-async`` (then 201 with ``Location: /jobs/{id}``); either way the run happens in a worker process.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi import Path as P
from fastapi import Query as Q
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, RootModel
from starlette.concurrency import run_in_threadpool

from twin.api.deps import get_store
from twin.api.ogc import JSONDoc, wants_html
from twin.api.schemas import Link
from twin.config import get_settings
from twin.errors import TwinError
from twin.sim import engine, jobs
from twin.store import Store


class _OGCRoute(APIRoute):
    """Answers the TwinErrors of these routes as OGC exception documents."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, wrapped."""
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            """Run the route; a TwinError becomes its OGC exception."""
            try:
                return await handler(request)
            except TwinError as exc:
                return exception(exc)

        return route


def exception(exc: TwinError) -> JSONDoc:
    """An OGC exception document (RFC 7807 problem details) for an error."""
    http = getattr(exc, "http", None) or exc.answer.http
    return JSONDoc({"type": getattr(exc, "ogc_type", "about:blank"), "title": HTTPStatus(http).phrase,
                    "status": http, "detail": str(exc)}, status_code=http)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the store's jobs at start-up (resume accepted ones); stop this process's workers at shutdown."""
    await asyncio.to_thread(jobs.manager, app.state.store.root, get_settings().jobs_max)
    yield
    await asyncio.to_thread(jobs.close_managers)


router = APIRouter(tags=["processes"], route_class=_OGCRoute, lifespan=_lifespan)


# ---------------------------------------------------------------------------------------------- documents
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class OGCException(_Open):
    """An OGC API exception (RFC 7807): the type URI, the HTTP status and what is wrong."""

    type: str = Field(description="e.g. http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/no-such-job")
    title: str
    status: int
    detail: str


class ProcessSummary(BaseModel):
    id: str = Field(description="the simulator name")
    version: str
    title: str
    description: str
    jobControlOptions: list[Literal["sync-execute", "async-execute", "dismiss"]]  # noqa: N815 (OGC's names)
    outputTransmission: list[Literal["value", "reference"]]  # noqa: N815
    links: list[Link]


class ProcessList(BaseModel):
    processes: list[ProcessSummary]
    links: list[Link]


class InputDescription(BaseModel):
    title: str
    description: str
    schema_: dict[str, Any] = Field(alias="schema", description="JSON Schema: type, minimum/maximum, enum, default")
    minOccurs: int  # noqa: N815
    maxOccurs: int  # noqa: N815


class OutputDescription(BaseModel):
    title: str
    description: str
    schema_: dict[str, Any] = Field(alias="schema")


class ProcessDescription(ProcessSummary):
    inputs: dict[str, InputDescription]
    outputs: dict[str, OutputDescription]


class StatusInfo(BaseModel):
    jobID: str  # noqa: N815
    processID: str | None = None  # noqa: N815
    type: Literal["process"]
    status: Literal["accepted", "running", "successful", "failed", "dismissed"]
    message: str | None = None
    created: str | None = Field(None, description="RFC 3339 time")
    started: str | None = None
    finished: str | None = None
    updated: str | None = None
    progress: int | None = Field(None, ge=0, le=100)
    links: list[Link]


class JobList(BaseModel):
    jobs: list[StatusInfo]
    links: list[Link]


class ResultValue(BaseModel):
    value: Any = Field(description="the output's value (the run record, or a table's rows)")
    mediaType: str  # noqa: N815


class Results(RootModel[dict[str, ResultValue | Link]]):
    """Output id -> its value (``{"value", "mediaType"}``) or a link to it (``{"href", "rel", "type", "title"}``)."""


class Output(_Open):
    transmissionMode: Literal["value", "reference"] | None = None  # noqa: N815
    format: dict[str, Any] | None = None


class Subscriber(BaseModel):
    successUri: str | None = Field(None, pattern=r"^https?://\S+$")  # noqa: N815
    inProgressUri: str | None = Field(None, pattern=r"^https?://\S+$")  # noqa: N815
    failedUri: str | None = Field(None, pattern=r"^https?://\S+$")  # noqa: N815


class Execute(_Open):
    """An execute request: input id -> value (plain or ``{"value": …}``), the outputs wanted, the response form
    (``document``: every output under its id; ``raw``: the one requested output's value) and callbacks."""

    inputs: dict[str, Any] = Field(default_factory=dict, examples=[{"steps": 2}])
    outputs: dict[str, Output] | None = Field(None, description="output id -> transmissionMode; default: all, "
                                              "the run by value, tables and layers by reference")
    response: Literal["document", "raw"] = "document"
    subscriber: Subscriber | None = None


_HTML = {"text/html": {"schema": {"type": "string"}}}
_F = Q(None, description="json or html (default: from the Accept header; JSON for clients, HTML for browsers)",
       pattern="^(json|html)$")
_PROCESS = P(description="process id: a simulator name (see /processes)")
_JOB = P(description="job id (from the execute response's Location, or /jobs)")
_NO_PROCESS = {404: {"description": "no-such-process: no simulator of that name", "model": OGCException}}
_NO_JOB = {404: {"description": "no-such-job (or, for results, result-not-ready: the job has not finished)",
                 "model": OGCException}}


def get_jobs(store: Store = Depends(get_store)) -> jobs.JobManager:
    """This process's job manager of the store."""
    return jobs.manager(store.root, get_settings().jobs_max)


def _owner(store: Any) -> str | None:
    """Whose jobs the caller sees and may dismiss: its own, or every job for an admin."""
    from twin.security.roles import Permission, allows

    return None if allows(store.principal, Permission.admin) else store.principal.id


def _base(request: Request) -> str:
    """The public base URL, without a trailing slash."""
    return str(request.base_url).rstrip("/")


def _wants_html(request: Request, f: str | None) -> bool:
    """``?f=html`` or a browser's Accept header (:func:`twin.api.ogc.wants_html`)."""
    return wants_html(request.headers.get("accept"), f)


def _answer(request: Request, f: str | None, doc: dict[str, Any], title: str) -> Response:
    """The document as JSON, or as HTML for ``f=html`` and browsers."""
    return HTMLResponse(page(title, doc)) if _wants_html(request, f) else JSONDoc(doc)


# ---------------------------------------------------------------------------------------------- routes
@router.get("/processes", response_class=JSONDoc, response_model=ProcessList, responses={200: {"content": _HTML}})
def list_processes(request: Request, f: str | None = _F) -> Response:
    """Every process: one per registered simulator."""
    base = _base(request)
    doc = {"processes": [jobs.process_summary(s, base) for s in engine.simulators().values()],
           "links": [jobs._link(f"{base}/processes", "self", "application/json", "the processes"),
                     jobs._link(f"{base}/processes?f=html", "alternate", "text/html", "the processes as HTML")]}
    return _answer(request, f, doc, "Processes")


@router.get("/processes/{processId}", response_class=JSONDoc, response_model=ProcessDescription,
            responses={200: {"content": _HTML}, **_NO_PROCESS})
def describe_process(request: Request, processId: str = _PROCESS, f: str | None = _F) -> Response:  # noqa: N803
    """A process's inputs (the simulator's parameters and the store state: branch, scenario, as_of) and outputs."""
    doc = jobs.process_description(jobs.process(processId), _base(request))
    return _answer(request, f, doc, f"Process {processId}")


@router.post("/processes/{processId}/execution", response_class=JSONDoc, response_model=None, responses={
    200: {"description": "synchronous: the results document (output id -> {value, mediaType} or a link); with "
                         "response=raw the one requested output alone: the run record, or a link to a table or layer",
          "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}}},
    201: {"description": "asynchronous (Prefer: respond-async): the job was accepted; Location: /jobs/{jobId}",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StatusInfo"}}},
          "headers": {"Location": {"schema": {"type": "string"}, "description": "the job's URL"},
                      "Preference-Applied": {"schema": {"type": "string"}, "description": "respond-async"}}},
    409: {"description": "the job was dismissed while the request waited", "model": OGCException},
    500: {"description": "synchronous: the simulator failed (the job is failed; detail says why)",
          "model": OGCException}, **_NO_PROCESS})
async def execute(request: Request, body: Execute, processId: str = _PROCESS,  # noqa: N803
                  prefer: str | None = Header(None, description="respond-async: answer 201 at once, run in the "
                                              "background; otherwise wait for the results"),
                  store: Store = Depends(get_store), manager: jobs.JobManager = Depends(get_jobs)) -> Response:
    """Run the process: inputs are checked before any job exists (400 naming the input; 404 for an unknown
    process); the work runs in a worker process, awaited here unless ``Prefer: respond-async``."""
    base = _base(request)
    raw = body.response == "raw"
    outputs = None if body.outputs is None else {k: v.model_dump(exclude_none=True) for k, v in body.outputs.items()}
    sub = body.subscriber.model_dump(exclude_none=True) if body.subscriber else None
    job = await run_in_threadpool(manager.submit, store, processId, body.inputs, outputs, sub, base, raw)
    location = {"Location": f"{base}/jobs/{job['jobID']}"}
    if "respond-async" in (prefer or "").lower():
        return JSONDoc(jobs.status_info(job, base), status_code=201,
                       headers={**location, "Preference-Applied": "respond-async"})
    job = await manager.wait(job["jobID"])
    try:
        if job["status"] == jobs.DISMISSED:
            raise jobs.JobFinished(f"job {job['jobID']} was dismissed while this request waited for it")
        return JSONDoc(await run_in_threadpool(jobs.results, store, job, base, raw), headers=location)
    except TwinError as exc:  # the job's error, with where the job is
        answer = exception(exc)
        answer.headers.update(location)
        return answer


@router.get("/jobs", response_class=JSONDoc, response_model=JobList, responses={200: {"content": _HTML}})
def list_jobs(request: Request, f: str | None = _F,
              limit: int = Q(10, ge=1, le=10_000, description="at most this many jobs, newest first"),
              status: list[str] | None = Q(None, description="only jobs of these statuses (repeat the parameter)",
                                           json_schema_extra={"items": {"type": "string", "enum": list(jobs.STATES)}}),
              processID: list[str] | None = Q(None, description="only jobs of these processes"),  # noqa: N803
              manager: jobs.JobManager = Depends(get_jobs), store: Store = Depends(get_store)) -> Response:
    """The caller's jobs (an admin's: every job), newest first."""
    base = _base(request)
    found = manager.list(status=list(status or []), process_id=processID, limit=limit, owner=_owner(store))
    doc = {"jobs": [jobs.status_info(j, base) for j in found],
           "links": [jobs._link(f"{base}/jobs", "self", "application/json", "the jobs"),
                     jobs._link(f"{base}/jobs?f=html", "alternate", "text/html", "the jobs as HTML")]}
    return _answer(request, f, doc, "Jobs")


@router.get("/jobs/{jobId}", response_class=JSONDoc, response_model=StatusInfo,
            responses={200: {"content": _HTML}, **_NO_JOB})
def job_status(request: Request, jobId: str = _JOB, f: str | None = _F,  # noqa: N803
               manager: jobs.JobManager = Depends(get_jobs), store: Store = Depends(get_store)) -> Response:
    """A job's status, progress (0–100) and message; links to its results once successful."""
    return _answer(request, f, jobs.status_info(manager.get(jobId, _owner(store)), _base(request)),
                   f"Job {jobId}")


@router.get("/jobs/{jobId}/results", response_class=JSONDoc, response_model=Results, responses={
    **_NO_JOB, 410: {"description": "the job was dismissed: it has no results", "model": OGCException},
    400: {"description": "the job failed on its inputs (detail: the error)", "model": OGCException},
    500: {"description": "the job failed (detail: the error, or that its worker stopped)", "model": OGCException}})
def job_results(request: Request, jobId: str = _JOB, manager: jobs.JobManager = Depends(get_jobs),  # noqa: N803
                store: Store = Depends(get_store)) -> JSONDoc:
    """A successful job's results (result-not-ready while it is accepted or running; a failed job's error)."""
    return JSONDoc(jobs.results(store, manager.get(jobId, _owner(store)), _base(request)))


@router.delete("/jobs/{jobId}", response_class=JSONDoc, response_model=StatusInfo, responses={
    **_NO_JOB, 409: {"description": "the job already finished (successful or failed)", "model": OGCException}})
def dismiss_job(request: Request, jobId: str = _JOB, manager: jobs.JobManager = Depends(get_jobs),  # noqa: N803
                store: Store = Depends(get_store)) -> JSONDoc:
    """Dismiss an accepted or running job: its worker is stopped (gone within 2 s) and nothing is committed."""
    return JSONDoc(jobs.status_info(manager.dismiss(jobId, _owner(store)), _base(request)))


# ---------------------------------------------------------------------------------------------- HTML
def page(title: str, doc: dict[str, Any]) -> str:
    """A plain HTML rendering of a JSON document: its fields, lists of objects as tables, links as anchors."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · twin</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}}</style>
</head><body><p><a href="/">twin</a> · <a href="/processes?f=html">processes</a> · <a href="/jobs?f=html">jobs</a></p>
<h1>{html.escape(title)}</h1>{_html(doc)}</body></html>"""


def _html(v: Any) -> str:
    """One JSON value as HTML."""
    if isinstance(v, dict):
        if "href" in v and isinstance(v["href"], str):
            return f'<a href="{html.escape(v["href"])}">{html.escape(str(v.get("title") or v["href"]))}</a>'
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_html(x)}</td></tr>" for k, x in v.items())
        return f"<table>{rows}</table>"
    if isinstance(v, list):
        if v and all(isinstance(x, dict) and "href" not in x for x in v):
            keys = list(dict.fromkeys(k for x in v for k in x))
            head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
            body = "".join("<tr>" + "".join(f"<td>{_html(x.get(k))}</td>" for k in keys) + "</tr>" for x in v)
            return f"<table><tr>{head}</tr>{body}</table>"
        return "<ul>" + "".join(f"<li>{_html(x)}</li>" for x in v) + "</ul>"
    if v is None:
        return ""
    return html.escape(v if isinstance(v, str) else json.dumps(v))
