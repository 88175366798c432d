"""FastAPI app factory: one router per concern, a Store shared by all requests of the process, and the one place
where an error twin raised on purpose (:class:`twin.errors.TwinError`) or a malformed request becomes its HTTP
answer (the status of its row in ``twin.errors.TABLE``, body ``{"detail": message}``).

Around the routers: the middleware of ``twin/api/middleware.py`` (public links, header bound, access log, CORS), the
OpenAPI document of ``twin/api/openapi.py``, and a lifespan that warms the process up before it accepts requests
(``twin/api/warm.py``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from twin import __version__
from twin.api import middleware, openapi, warm
from twin.api.auth import AuditTrail
from twin.api.ogc import JSONDoc
from twin.api.routers import auth as auth_router
from twin.api.routers import features, history, imagery, layers, processes, runs, scenarios, system, tiles, viewer
from twin.api.routers.apidocs import router as apidocs_router
from twin.config import Settings, get_settings
from twin.errors import TABLE, Status, TwinError, storage_error
from twin.security.audit import AuditLog
from twin.store import Store

log = logging.getLogger("twin.api")


def create_app(store_path: Path | str, settings: Settings | None = None) -> FastAPI:
    """Build the API over the store at ``store_path``; the store is re-scanned per request, never cached stale.

    ``settings`` (default: from the environment) give the public URL, trusted proxies, CORS origins and whether
    to write the access log; links default to ``http://<host>:<port>`` of the settings."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Warm the process up (DuckDB, PROJ, the head's extents) before uvicorn accepts the first request."""
        timings = await run_in_threadpool(warm.warm, app.state.store)
        log.info("warm-up (ms): %s", timings)
        yield
        if app.state.audit is not None:
            app.state.audit.close()  # signs the unsigned tail when the server has the audit key

    app = FastAPI(
        title="twin",
        version=__version__,
        description="Urban spatiotemporal digital twin: city model, history and branches.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load from a CDN: twin.api.routers.apidocs serves them from npm packages
        redoc_url=None,
    )
    app.state.store = Store(store_path)
    app.state.settings = settings
    app.state.audit = None

    def audit_log() -> AuditLog:
        """The store's audit log, opened on first use (with its signing key when this machine has it)."""
        if app.state.audit is None:
            app.state.audit = AuditLog.open(app.state.store.root, settings.secrets_dir)
        return app.state.audit

    app.state.audit_log = audit_log

    @app.exception_handler(TwinError)
    async def _twin_error(_: Request, exc: TwinError) -> JSONDoc:
        """Any store, source, layer, tile or imagery error: the status of its row in ``twin.errors.TABLE``."""
        headers = {"WWW-Authenticate": 'Bearer realm="twin"'} if exc.answer.http == 401 else None
        return JSONDoc({"detail": str(exc)}, status_code=exc.answer.http, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONDoc:
        """A parameter FastAPI cannot parse or that is out of range: a bad_input (400) naming the parameter, on
        every route (FastAPI's default is a 422 with a different body)."""
        return JSONDoc({"detail": validation_detail(exc)}, status_code=TABLE[Status.bad_input].http)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONDoc:
        """A disk that refuses a write (full, read-only) is a 503 saying so; any other OSError is a bug (500)."""
        err = storage_error(exc)
        if err is None:
            raise exc
        return JSONDoc({"detail": str(err)}, status_code=err.answer.http)

    app.include_router(system.router)
    app.include_router(history.router)
    app.include_router(layers.router)
    app.include_router(runs.router)
    app.include_router(processes.router)
    app.include_router(features.router)
    app.include_router(tiles.router)
    app.include_router(imagery.router)
    app.include_router(viewer.router)
    app.include_router(apidocs_router)
    app.include_router(scenarios.router)
    app.include_router(auth_router.router)
    openapi.install(app)
    app.add_middleware(AuditTrail, get_log=audit_log)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    middleware.install(app, public_url=settings.public_url, default_url=f"http://{host}:{settings.port}",
                       trusted_proxies=settings.trusted_proxy_list, cors_origins=settings.cors_origin_list,
                       access_log=settings.access_log)
    return app


def validation_detail(exc: RequestValidationError) -> str:
    """``name: what is wrong, got 'value'`` for each invalid parameter, joined by ``; ``."""
    msgs = []
    for e in exc.errors():
        loc = [p for p in e.get("loc") or () if p not in ("query", "path", "header", "body", "cookie")]
        # a list parameter's item is named by the parameter and its index: status[1], not 1
        name = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
        name = name or (str(e["loc"][-1]) if e.get("loc") else "request")
        shown = repr(e["input"]) if e.get("input") is not None else ""
        got = f", got {shown[:100]}{'…' if len(shown) > 100 else ''}" if shown else ""
        msgs.append(f"{name}: {e['msg']}{got}")
    return "; ".join(msgs) or "malformed request"


def app_from_env() -> FastAPI:
    """App over ``$TWIN_STORE``: the factory uvicorn workers call, one independent process each (stateless)."""
    settings = get_settings()
    return create_app(settings.store, settings)
