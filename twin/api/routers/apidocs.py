"""The API documentation pages, offline: Swagger UI at /docs and ReDoc at /redoc, over /openapi.json.

FastAPI's own /docs and /redoc load Swagger UI and ReDoc from a CDN (a blank page without internet); the app turns
them off (``docs_url=None, redoc_url=None``) and these routes serve the same pages from npm packages, the way the
viewer serves CesiumJS (``twin/api/routers/viewer.py``, whose file helpers they use):

- Swagger UI: ``node_modules/swagger-ui-dist`` (``$TWIN_SWAGGER_UI_DIR``), its files at ``/docs/assets/…``;
- ReDoc: the standalone bundle of ``node_modules/redoc/bundles`` (``$TWIN_REDOC_DIR``), at ``/redoc/assets/…``.

A package that is not installed makes its page a 503 naming ``make install``; the other page and /openapi.json still
work. None of these routes is in the OpenAPI document: they are tooling around the API, not the API.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import Response

from twin.api.routers.viewer import CESIUM_CACHE, PAGE_CACHE, missing_package, package_dir, safe_file, send_file

router = APIRouter(include_in_schema=False)

SWAGGER_ENV = "TWIN_SWAGGER_UI_DIR"
SWAGGER_SUBDIR = Path("node_modules") / "swagger-ui-dist"
REDOC_ENV = "TWIN_REDOC_DIR"
REDOC_SUBDIR = Path("node_modules") / "redoc" / "bundles"
# what the pages load: scripts, styles, icons (and source maps for a browser's devtools); never the packages' own
# index.html, whose initializer points at an example API on the internet
ASSET_SUFFIXES = frozenset({".js", ".css", ".png", ".map"})
TITLE = "twin API"
# Swagger UI settings on top of FastAPI's (BaseLayout: no top bar; no validator badge, which would call out to
# validator.swagger.io; a filter box over the tags)
SWAGGER_PARAMETERS = {"validatorUrl": None, "filter": True, "tryItOutEnabled": False,
                      "displayRequestDuration": True}


def swagger_dir() -> Path | None:
    """The folder of Swagger UI's files (``swagger-ui-bundle.js``, ``swagger-ui.css``), None when not installed."""
    return package_dir(SWAGGER_ENV, SWAGGER_SUBDIR, "swagger-ui-bundle.js")


def redoc_dir() -> Path | None:
    """The folder of ReDoc's bundles (``redoc.standalone.js``), None when not installed."""
    return package_dir(REDOC_ENV, REDOC_SUBDIR, "redoc.standalone.js")


def _root(request: Request) -> str:
    """The app's mount path behind a proxy (as FastAPI's own docs pages use it), without a trailing slash."""
    return str(request.scope.get("root_path", "")).rstrip("/")


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def _page(resp: Response) -> Response:
    """The page with its caching and a Content-Security-Policy that lets it load from our server only: the browser
    itself refuses anything else (ReDoc's sidebar puts a logo from its CDN in the page: that image is refused, not
    fetched). Inline scripts (the pages' set-up) are allowed by their hash; inline styles are what both UIs use."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(m.encode()).digest()).decode()}'"
                      for m in _INLINE_SCRIPT.findall(bytes(resp.body).decode()))
    resp.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'")
    resp.headers["Cache-Control"] = PAGE_CACHE
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


@router.get("/docs")
def swagger_page(request: Request) -> Response:
    """Swagger UI over /openapi.json, every file from our server."""
    if swagger_dir() is None:
        return missing_package("The API documentation (/docs)", "Swagger UI (npm swagger-ui-dist)", SWAGGER_ENV,
                               SWAGGER_SUBDIR, "<code>swagger-ui-bundle.js</code> and <code>swagger-ui.css</code>",
                               'The API itself works: <a href="/openapi.json">/openapi.json</a>, '
                               '<a href="/redoc">/redoc</a>.')
    root = _root(request)
    return _page(get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json", title=f"{TITLE} — Swagger UI",
        swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js", swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
        swagger_favicon_url=f"{root}/docs/assets/favicon-32x32.png", swagger_ui_parameters=SWAGGER_PARAMETERS))


@router.get("/docs/assets/{path:path}")
def swagger_file(path: str, request: Request) -> Response:
    """One of Swagger UI's files, cached a day and revalidated by ETag (they change with the npm package only)."""
    root = swagger_dir()
    if root is None:
        return swagger_page(request)
    return send_file(request, safe_file(root, path, "Swagger UI", ASSET_SUFFIXES), CESIUM_CACHE)


@router.get("/redoc")
def redoc_page(request: Request) -> Response:
    """ReDoc over /openapi.json (its standalone bundle from our server, no web fonts)."""
    if redoc_dir() is None:
        return missing_package("The API reference (/redoc)", "ReDoc (npm redoc)", REDOC_ENV, REDOC_SUBDIR,
                               "<code>redoc.standalone.js</code>",
                               'The API itself works: <a href="/openapi.json">/openapi.json</a>, '
                               '<a href="/docs">/docs</a>.')
    root = _root(request)
    return _page(get_redoc_html(openapi_url=f"{root}/openapi.json", title=f"{TITLE} — ReDoc",
                                redoc_js_url=f"{root}/redoc/assets/redoc.standalone.js",
                                redoc_favicon_url=f"{root}/docs/assets/favicon-32x32.png", with_google_fonts=False))


@router.get("/redoc/assets/{path:path}")
def redoc_file(path: str, request: Request) -> Response:
    """ReDoc's bundle, cached a day and revalidated by ETag."""
    root = redoc_dir()
    if root is None:
        return redoc_page(request)
    return send_file(request, safe_file(root, path, "ReDoc", ASSET_SUFFIXES), CESIUM_CACHE)
