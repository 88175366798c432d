"""The OpenAPI document the app serves at /openapi.json: FastAPI's, made true about errors, as OpenAPI 3.0.3.

FastAPI documents a 422 the app never sends and none of the errors it does send. Here, from each route's
parameters and dependencies (so no router has to repeat it), every operation documents the errors of
``twin.errors.TABLE`` it can give, each with the ``{"detail": string}`` body of the app's one error handler:

- 400 when it takes parameters (a malformed one, request validation included, names the parameter);
- 404 when it has path parameters or reads a ``branch`` / ``as_of`` (unknown branch, version, item, tile …);
- 503 when it reads the store (busy, the disk refuses, the DuckDB spatial extension is missing);
- 431 on every route (request headers over the bound of ``twin.api.middleware.HeaderLimit``);
- 401 when it authenticates the caller (credentials given but not valid; no credentials is the anonymous
  principal, so every such operation's security list also holds ``{}``: credentials are optional);
- 403 when it writes, or is an admin route (the principal's roles do not allow it).

A route that declares one of these itself (``responses=``) keeps its description and media types.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from twin.api.auth import principal
from twin.api.deps import get_store
from twin.api.schemas import EXTRA_MODELS
from twin.errors import TABLE, Status

ERROR_REF = {"$ref": "#/components/schemas/ErrorDetail"}
BAD_INPUT, NOT_FOUND, UNAVAILABLE, UNAUTHORIZED, FORBIDDEN = (TABLE[s].http for s in (
    Status.bad_input, Status.not_found, Status.unavailable, Status.unauthorized, Status.forbidden))
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
TOO_LARGE = 431
# query parameters that name something which may not exist
_NAMING = {"branch", "as_of", "compare_branch", "compare_as_of"}
DESCRIPTIONS = {
    BAD_INPUT: "Bad Request: a malformed or out-of-range parameter; `detail` names it and says what is wrong",
    NOT_FOUND: "Not Found: an unknown branch, version, collection, item, entity, layer, asset or tile",
    UNAVAILABLE: "Service Unavailable: the store is busy, its disk refuses, or a component is missing; retry later",
    TOO_LARGE: "Request Header Fields Too Large: the request's headers exceed the server's bound",
    UNAUTHORIZED: "Unauthorized: the credentials given are not valid (malformed, unknown, expired, revoked or of "
                  "a disabled principal); without credentials the caller is anonymous",
    FORBIDDEN: "Forbidden: the principal's roles do not allow this (e.g. a viewer editing a scenario)",
}


def install(app: FastAPI) -> None:
    """Serve the document below at /openapi.json (built once per app, on first use)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if getattr(app.state, "openapi_doc", None) is None:
            app.state.openapi_doc = document(app, generate())
        return app.state.openapi_doc

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI, generated: dict[str, Any]) -> dict[str, Any]:
    """``generated`` (FastAPI's 3.1 document of ``app``) with every operation's errors, as OpenAPI 3.0.3."""
    from twin.api.ogc import openapi30

    doc = copy.deepcopy(generated)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in EXTRA_MODELS:
        found = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        schemas.update(found.pop("$defs", {}))
        schemas[model.__name__] = found
    for route in api_routes(app):
        if not route.include_in_schema:
            continue
        for method in route.methods or ():
            op = doc["paths"].get(route.path_format, {}).get(method.lower())
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            if op.get("security") and {} not in op["security"]:
                op["security"].append({})  # credentials are optional: none is the anonymous principal
            for code in errors_of(route, method):
                declared = responses.setdefault(str(code), {"description": DESCRIPTIONS[code]})
                if not declared.get("content"):
                    declared["content"] = {"application/json": {"schema": dict(ERROR_REF)}}
            op["responses"] = dict(sorted(responses.items()))
    text = repr(doc["paths"])
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"/{unused}'" not in text:
            schemas.pop(unused, None)
    return openapi30(doc)


def api_routes(app: FastAPI) -> Iterator[Any]:
    """The app's API routes with their full paths (FastAPI >= 0.16x keeps included routers nested; its
    ``iter_route_contexts`` flattens them, with each route's attributes and its prefixed path)."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    if flatten is None:
        yield from (r for r in app.routes if isinstance(r, APIRoute))
        return
    for ctx in flatten(app.routes):
        if isinstance(ctx.original_route, APIRoute):
            yield ctx


def errors_of(route: Any, method: str = "GET") -> list[int]:
    """The error statuses a route can answer, from its parameters, whether it reads the store and whether it
    writes."""
    params = _params(route.dependant)
    names = {p.alias for p in params["query"]}
    out = [TOO_LARGE]
    if _depends_on(route.dependant, principal):
        out.append(UNAUTHORIZED)
        if method.upper() in _WRITES or route.path_format.startswith("/admin/"):
            out.append(FORBIDDEN)
    if any(params.values()):
        out.append(BAD_INPUT)
    if params["path"] or names & _NAMING:
        out.append(NOT_FOUND)
    if _reads_store(route.dependant):
        out.append(UNAVAILABLE)
    return sorted(out)


def _params(dep: Dependant) -> dict[str, list]:
    out: dict[str, list] = {"query": [], "path": [], "header": [], "cookie": [], "body": []}
    stack = [dep]
    while stack:
        d = stack.pop()
        out["query"] += d.query_params
        out["path"] += d.path_params
        out["header"] += d.header_params
        out["cookie"] += d.cookie_params
        out["body"] += d.body_params
        stack += d.dependencies
    return out


def _reads_store(dep: Dependant) -> bool:
    return _depends_on(dep, get_store)


def _depends_on(dep: Dependant, call: Any) -> bool:
    return dep.call is call or any(_depends_on(d, call) for d in dep.dependencies)
