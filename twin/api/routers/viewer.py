"""The web 3D viewer at /viewer/: our page (twin/api/viewer/) and CesiumJS's prebuilt files at /viewer/cesium/….

CesiumJS comes from npm (``make install`` runs ``npm ci``; ``node_modules/cesium/Build/Cesium``); nothing is fetched
from a CDN or Cesium ion, so the viewer works offline. ``TWIN_CESIUM_DIR`` points at another build of Cesium
(a folder holding ``Cesium.js``, ``index.js``, ``Workers/``, ``Assets/``, ``Widgets/``, ``ThirdParty/``).

The helpers here are the one way twin serves files of an npm package (the API docs of ``twin/api/routers/apidocs.py``
use them too): :func:`package_dir` finds the folder (an environment variable, else ``node_modules`` at the repository
root or the working directory), :func:`safe_file` maps a URL path into it (404 for anything outside),
:func:`send_file` sends it (explicit media type, caching, ETag / 304, gzip) and :func:`missing_package` is the 503
page naming ``make install`` when the package is not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from twin.api import conditional

router = APIRouter(tags=["viewer"])

VIEWER_DIR = Path(__file__).resolve().parents[1] / "viewer"
REPO_ROOT = Path(__file__).resolve().parents[3]
CESIUM_ENV = "TWIN_CESIUM_DIR"
CESIUM_SUBDIR = Path("node_modules") / "cesium" / "Build" / "Cesium"

# explicit types: the system's mime.types is not always installed (slim containers), and Cesium needs these right
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".cjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".json": "application/json", ".map": "application/json",
    ".wasm": "application/wasm", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".gif": "image/gif", ".svg": "image/svg+xml", ".ico": "image/x-icon", ".webp": "image/webp",
    ".ktx2": "image/ktx2", ".glb": "model/gltf-binary", ".gltf": "model/gltf+json", ".bin": "application/octet-stream",
    ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8", ".xml": "application/xml", ".kml": "application/vnd.google-earth.kml+xml",
}
# Cesium's files only change with the npm package version: a day of caching, revalidated by ETag afterwards
CESIUM_CACHE = "public, max-age=86400"
# our page changes with the code; browsers revalidate it (cheap: ETag / Last-Modified from FileResponse)
PAGE_CACHE = "no-cache"


def package_dir(env: str, subdir: Path, marker: str) -> Path | None:
    """The folder of an npm package's files: ``$env``, else ``subdir`` (under ``node_modules``) at the repository root
    or the working directory; None when none of them holds the file ``marker``."""
    given = os.environ.get(env)
    candidates = [Path(given)] if given else [REPO_ROOT / subdir, Path.cwd() / subdir]
    for c in candidates:
        if (c / marker).is_file():
            return c.resolve()
    return None


def cesium_dir() -> Path | None:
    """The folder of CesiumJS's prebuilt files: ``$TWIN_CESIUM_DIR``, else ``node_modules`` at the repository root or
    the working directory; None when none of them holds ``Cesium.js``."""
    return package_dir(CESIUM_ENV, CESIUM_SUBDIR, "Cesium.js")


def safe_file(root: Path, rel: str, what: str = "the viewer", suffixes: frozenset[str] | None = None) -> Path:
    """``root/rel`` when it is a file inside ``root`` (and its suffix one of ``suffixes``, when given); 404 for anything
    else (``..``, absolute paths, links out)."""
    missing = HTTPException(404, f"no file {rel!r} in {what}")
    if not rel or "\x00" in rel or "\\" in rel:
        raise missing
    if suffixes is not None and Path(rel).suffix.lower() not in suffixes:
        raise missing
    parts = Path(rel).parts
    if Path(rel).is_absolute() or any(p in ("..", ".") for p in parts):
        raise missing
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise missing
    return path


COMPRESSIBLE = {".js", ".mjs", ".cjs", ".css", ".json", ".map", ".svg", ".wasm", ".html", ".txt", ".md", ".xml",
                ".gltf", ".kml"}
MIN_GZIP = 1024


def send_file(request: Request, path: Path, cache: str) -> Response:
    """The file with its media type, cache policy, ETag and Last-Modified, gzip-compressed (in memory) when the client
    accepts it and it pays; 304 when the client's copy is current."""
    media = MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
    st = path.stat()
    headers = {"Cache-Control": cache, "X-Content-Type-Options": "nosniff", "Vary": "Accept-Encoding"}
    resp = FileResponse(path, media_type=media, headers=headers, stat_result=st)
    compressible = path.suffix.lower() in COMPRESSIBLE and st.st_size >= MIN_GZIP
    return conditional.respond(
        request, resp.headers["etag"], headers, media, path.read_bytes,
        gzipped=(lambda: conditional.gzip_cached(str(path), st.st_mtime_ns, st.st_size)) if compressible else None,
        plain=lambda: resp, gzip_headers={"Last-Modified": resp.headers["last-modified"]},
    )


MISSING_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>twin: {package} missing</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:50rem}}</style></head><body>
<h1>{what} needs {package}</h1>
<p>{package}'s files were not found ({where}). Install them with <code>make install</code> (runs
<code>npm ci</code> at the repository root; nothing is downloaded at run time), or point <code>{env}</code> at a
folder that holds {holds}, then reload.</p>
<p>{fallback}</p></body></html>"""


def missing_package(what: str, package: str, env: str, subdir: Path, holds: str, fallback: str) -> HTMLResponse:
    """503 page for a page whose npm package is not installed: where it looked, ``make install``, the variable that
    points at another copy (``holds``: what that folder must hold, HTML) and ``fallback`` (HTML: what works)."""
    import html

    given = os.environ.get(env)
    where = f"{env}={given}" if given else f"looked in {REPO_ROOT / subdir}"
    page = MISSING_PAGE.format(what=html.escape(what), package=html.escape(package), where=html.escape(where),
                               env=env, holds=holds, fallback=fallback)
    return HTMLResponse(page, status_code=503, headers={"Cache-Control": "no-store", "Retry-After": "3600"})


def _missing() -> HTMLResponse:
    return missing_package(
        "The 3D viewer", "CesiumJS", CESIUM_ENV, CESIUM_SUBDIR,
        "<code>Cesium.js</code>, <code>Workers/</code>, <code>Assets/</code> and <code>Widgets/</code>",
        'The API itself works: <a href="/docs">/docs</a>, <a href="/openapi.json">/openapi.json</a>.')


@router.get("/viewer", include_in_schema=False)
def viewer_redirect() -> RedirectResponse:
    return RedirectResponse("/viewer/", status_code=307)


_TEXT = {"type": "string"}
_BINARY = conditional.BINARY
_HTML_503 = {"description": "CesiumJS is not installed: a page naming `make install` (Retry-After)",
             "content": {"text/html": {"schema": _TEXT}}}
# what the viewer's own files and Cesium's prebuilt files are sent as (MEDIA_TYPES, by suffix)
_FILE_TYPES = {"text/javascript": _TEXT, "text/css": _TEXT, "application/json": {"type": "object"},
               "text/html": _TEXT, "application/wasm": _BINARY, "image/png": _BINARY, "image/jpeg": _BINARY,
               "image/svg+xml": _TEXT, "model/gltf-binary": _BINARY, "font/woff2": _BINARY,
               "application/octet-stream": _BINARY}


@router.get("/viewer/", response_class=HTMLResponse, summary="The web 3D viewer (CesiumJS, offline, no ion)",
            responses={**conditional.file_responses({"text/html": _TEXT}, "the viewer page (gzip when accepted)"),
                       503: _HTML_503})
def viewer_page(request: Request) -> Response:
    """The viewer page; a 503 page naming ``make install`` when CesiumJS is not installed."""
    if cesium_dir() is None:
        return _missing()
    return send_file(request, VIEWER_DIR / "index.html", PAGE_CACHE)


@router.get("/viewer/cesium/{path:path}", summary="CesiumJS's prebuilt files (the npm package's Build/Cesium)",
            response_class=Response,
            responses={**conditional.file_responses(
                _FILE_TYPES, "the file in the media type of its suffix (text/javascript, text/css, application/json, "
                "application/wasm, images, fonts …), gzip when accepted and it pays",
                "no such file in CesiumJS's build (also: `..`, absolute paths, links out of it)"), 503: _HTML_503})
def cesium_file(path: str, request: Request) -> Response:
    """One of CesiumJS's files (``index.js``, ``Workers/``, ``Assets/``, ``Widgets/``, ``ThirdParty/``), cached a
    day and revalidated by ETag."""
    root = cesium_dir()
    if root is None:
        return _missing()
    return send_file(request, safe_file(root, path, "CesiumJS's build"), CESIUM_CACHE)


@router.get("/viewer/{path:path}", summary="The viewer's own files (app.js, style.css)", response_class=Response,
            responses=conditional.file_responses(
                {"text/javascript": _TEXT, "text/css": _TEXT, "text/html": _TEXT},
                "the file in the media type of its suffix, gzip when accepted and it pays",
                "no such file in the viewer (also: `..`, absolute paths)"))
def viewer_file(path: str, request: Request) -> Response:
    """A file of the viewer's page, revalidated on each load (``no-cache`` + ETag)."""
    return send_file(request, safe_file(VIEWER_DIR, path), PAGE_CACHE)
