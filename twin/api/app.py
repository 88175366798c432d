"""FastAPI app factory: one router per concern, a Store shared by all requests of the process, and the one place
where an error twin raised on purpose (:class:`twin.errors.TwinError`) becomes its HTTP answer."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from twin import __version__
from twin.api.routers import features, history, imagery, layers, system, tiles, viewer
from twin.errors import TwinError, storage_error
from twin.store import Store


def create_app(store_path: Path | str) -> FastAPI:
    """Build the API over the store at ``store_path``; the store is re-scanned per request, never cached stale."""
    app = FastAPI(
        title="twin",
        version=__version__,
        description="Urban spatiotemporal digital twin: city model, history and branches.",
    )
    app.state.store = Store(store_path)

    @app.exception_handler(TwinError)
    async def _twin_error(_: Request, exc: TwinError) -> JSONResponse:
        """Any store, source, layer, tile or imagery error: the status of its row in ``twin.errors.TABLE``."""
        return JSONResponse(status_code=exc.answer.http, content={"detail": str(exc)})

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        """A disk that refuses a write (full, read-only) is a 503 saying so; any other OSError is a bug (500)."""
        err = storage_error(exc)
        if err is None:
            raise exc
        return JSONResponse(status_code=err.answer.http, content={"detail": str(err)})

    app.include_router(system.router)
    app.include_router(history.router)
    app.include_router(layers.router)
    app.include_router(features.router)
    app.include_router(tiles.router)
    app.include_router(imagery.router)
    app.include_router(viewer.router)
    _serve_openapi_30(app)
    return app


def _serve_openapi_30(app: FastAPI) -> None:
    """Serve /openapi.json as OpenAPI 3.0.3 (OGC API Features' oas30 class, what GIS clients read)."""
    from twin.api.ogc import openapi30

    generate = app.openapi

    def openapi() -> dict:
        if getattr(app.state, "openapi30", None) is None:
            app.state.openapi30 = openapi30(generate())
        return app.state.openapi30

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """App over ``$TWIN_STORE``: the factory uvicorn workers call, one independent process each (stateless)."""
    from twin.config import get_settings

    return create_app(get_settings().store)
