"""Landing page and health: what a person or a load balancer checks first."""

from __future__ import annotations

import html

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from twin import __version__
from twin.api.deps import get_store
from twin.store import CITY, Query, Store

router = APIRouter(tags=["system"])


@router.get("/health")
def health(store: Store = Depends(get_store)) -> dict:
    """Liveness plus the store's latest version, so a probe also proves the store is readable."""
    return {"status": "ok", "version": __version__, "store_version": store.head()}


@router.get("/", response_class=HTMLResponse)
def landing(store: Store = Depends(get_store)) -> str:
    """A human landing page: the store, its latest commit and where to go next."""
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
<p>Store <code>{html.escape(str(store.root))}</code> (CRS {html.escape(store.crs)}): {n} city objects;
latest commit: <span id="latest">{head}</span>.</p>
<p><a href="/docs">API documentation</a> · <a href="/commits/latest">latest commit (JSON)</a> ·
<a href="/commits">commits</a> · <a href="/branches">branches</a> · <a href="/health">health</a></p>
<h2>Recent commits</h2>
<table><tr><th>version</th><th>branch</th><th>time (UTC)</th><th>author</th><th>message</th><th>changes</th></tr>
{rows}</table>
</body></html>"""
