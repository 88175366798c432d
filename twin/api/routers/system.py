"""Landing page and health: what a person or a load balancer checks first."""

from __future__ import annotations

import html

from fastapi import APIRouter, Depends, Request
from fastapi import Query as Q
from fastapi.responses import HTMLResponse, Response

from twin import __version__
from twin.api import ogc, schemas
from twin.api.deps import get_store
from twin.api.ogc import JSONDoc
from twin.store import CITY, Query, Store

router = APIRouter(tags=["system"])


@router.get("/health", response_class=JSONDoc, response_model=schemas.Health)
def health(store: Store = Depends(get_store)) -> JSONDoc:
    """Liveness plus the store's latest version, so a probe also proves the store is readable."""
    return JSONDoc({"status": "ok", "version": __version__, "store_version": store.head()})


@router.get("/", response_class=HTMLResponse, responses={200: {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LandingPage"}}},
    "description": "the OGC API landing page: HTML for browsers (Accept: text/html first) and ?f=html, JSON "
                   "otherwise"}})
def landing(request: Request, f: str | None = Q(None, description="json or html (default: from the Accept header)",
                                                pattern="^(json|html|application/json|text/html)$"),
            store: Store = Depends(get_store)) -> Response:
    """The landing page: the OGC API Features landing document as JSON, or a human page for browsers. Links use
    the public base URL (``twin.api.middleware.PublicURL``), never the client's Host header."""
    if not ogc.wants_html(request.headers.get("accept"), f):
        base = str(request.base_url).rstrip("/")
        return JSONDoc(ogc.landing(base, "twin", request.app.description, store.time_zone))
    return HTMLResponse(_landing_html(store))


def _landing_html(store: Store) -> str:
    """A human landing page: the store's CRS and size, its latest commits and where to go next (no server path)."""
    log = store.log()
    latest = log[0] if log else None
    n = store.count(query=Query(collection=CITY))
    rows = "".join(
        f"<tr><td>{c.version}</td><td>{html.escape(c.branch)}</td><td>{c.time:%Y-%m-%d %H:%M:%S}Z</td>"
        f"<td>{html.escape(c.author)}</td><td>{html.escape(c.message)}</td>"
        f"<td>+{c.changes.added} ~{c.changes.modified} -{c.changes.removed}</td></tr>"
        for c in log[:20]
    )
    head = (
        f"version <b>{latest.version}</b> on <b>{html.escape(latest.branch)}</b>: {html.escape(latest.message)}"
        if latest
        else "empty store: run <code>twin ingest</code>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>twin</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}
table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:.3rem .6rem;text-align:left}}</style>
</head><body>
<h1>twin — city digital twin</h1>
<p>Store (CRS {html.escape(store.crs)}): {n} city objects;
latest commit: <span id="latest">{head}</span>.</p>
<p><a href="/viewer/"><b>3D viewer</b></a> · <a href="/docs">API documentation</a> ·
<a href="/commits/latest">latest commit (JSON)</a> ·
<a href="/commits">commits</a> · <a href="/branches">branches</a> · <a href="/health">health</a></p>
<p>OGC API Features: <a href="/collections">collections</a> · <a href="/conformance">conformance</a> ·
<a href="/?f=json">landing page (JSON)</a> · imagery tiles: <a href="/imagery">images</a> ·
<a href="/imagery/tilejson.json">TileJSON</a></p>
<h2>Recent commits</h2>
<table><tr><th>version</th><th>branch</th><th>time (UTC)</th><th>author</th><th>message</th><th>changes</th></tr>
{rows}</table>
</body></html>"""
