"""3D Tiles 1.1 tilesets (buildings, terrain, point cloud) per branch and version, with ETag and caching.

``GET /tiles/{branch}/{version}/{tileset}/tileset.json`` and ``…/{path}`` for contents and subtrees. ``version`` is
a number or ``latest``. Tilesets are built on the first request (``twin tiles build`` builds ahead). Responses carry
a strong ETag (SHA-256 of the bytes; ``-gzip`` suffix for the compressed form) honoured by If-None-Match, gzip when
the client accepts it, and Cache-Control: ``immutable`` for content-addressed files, ``no-cache`` under ``latest``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from twin.api.deps import get_store
from twin.store import Store
from twin.tiles.cache import KINDS, TileCache, TileNotFound

router = APIRouter(tags=["tiles"])

MEDIA_TYPES = {".json": "application/json", ".glb": "model/gltf-binary", ".subtree": "application/octet-stream",
               ".pnts": "application/octet-stream", ".b3dm": "application/octet-stream",
               ".i3dm": "application/octet-stream", ".cmpt": "application/octet-stream",
               ".bin": "application/octet-stream"}
IMMUTABLE = "public, max-age=31536000, immutable"
VERSIONED = "public, max-age=86400"
LATEST = "no-cache"
MIN_GZIP = 512  # bytes; smaller bodies are sent as they are


@lru_cache(maxsize=8192)
def _etag(path: str, mtime_ns: int, size: int) -> str:
    """Strong ETag of a file version (SHA-256 prefix); keyed by mtime and size so a replaced file is re-hashed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return '"' + h.hexdigest()[:32] + '"'


def _gzipped(path: Path, mtime_ns: int) -> Path:
    """The gzip sidecar of a tile file, written once (atomically) beside it: tiles are compressed once, not per
    request (compressing a 150 kB terrain tile costs more than serving it)."""
    gz = path.with_name(path.name + ".gz")
    try:
        if gz.stat().st_mtime_ns >= mtime_ns:
            return gz
    except FileNotFoundError:
        pass
    tmp = gz.with_name(f".{gz.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(gzip.compress(path.read_bytes(), compresslevel=6, mtime=0))
    os.replace(tmp, gz)
    return gz


def _accepts_gzip(header: str | None) -> bool:
    """RFC 9110 Accept-Encoding: gzip (or *) with a non-zero q."""
    for item in (header or "").split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


def _matches(header: str | None, tags: list[str]) -> bool:
    """If-None-Match (weak comparison, as RFC 9110 requires for it)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    seen = {t.strip().removeprefix("W/") for t in header.split(",")}
    return any(t in seen for t in tags)


def _send(request: Request, path: Path, cache_control: str) -> Response:
    media = MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
    st = path.stat()
    tag = _etag(str(path), st.st_mtime_ns, st.st_size)
    zipped = _accepts_gzip(request.headers.get("accept-encoding")) and st.st_size >= MIN_GZIP
    etag = tag[:-1] + '-gzip"' if zipped else tag
    headers = {"ETag": etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding"}
    if _matches(request.headers.get("if-none-match"), [tag, tag[:-1] + '-gzip"']):
        return Response(status_code=304, headers=headers)
    if zipped:
        headers["Content-Encoding"] = "gzip"
        return Response(_gzipped(path, st.st_mtime_ns).read_bytes(), media_type=media, headers=headers)
    return Response(path.read_bytes(), media_type=media, headers=headers)


def _resolve(store: Store, branch: str, version: str, tileset: str) -> tuple[TileCache, int]:
    if tileset not in KINDS:
        raise HTTPException(404, f"unknown tileset {tileset!r}; tilesets: {', '.join(KINDS)}")
    cache = TileCache(store)
    try:
        return cache, cache.version(branch, version)
    except TileNotFound as exc:
        raise HTTPException(404, str(exc)) from None


# The routes are async: the common case (a tile already on disk) is a few stat() calls and a read of a cached file,
# cheaper inline than a hop to the thread pool; building a tileset (seconds) goes to the thread pool.


@router.get("/tiles/{branch}/{version}/{tileset}/tileset.json", summary="3D Tiles 1.1 tileset.json")
async def tileset_json(branch: str, version: str, tileset: str, request: Request,
                       store: Store = Depends(get_store)) -> Response:
    """The tileset of ``buildings``, ``terrain`` or ``pointcloud`` at a version (a number or ``latest``)."""
    cache, v = _resolve(store, branch, version, tileset)
    path = cache.known(tileset, branch, v)
    if path is None:
        try:
            path = await run_in_threadpool(cache.tileset, tileset, branch, v)
        except TileNotFound as exc:
            raise HTTPException(404, str(exc)) from None
    return _send(request, path, LATEST if version == "latest" else VERSIONED)


@router.get("/tiles/{branch}/{version}/{tileset}/{path:path}", summary="3D Tiles content and subtree files")
async def tile_file(branch: str, version: str, tileset: str, path: str, request: Request,
                    store: Store = Depends(get_store)) -> Response:
    """A GLB content or ``.subtree`` file of a tileset; content-addressed files are cached forever."""
    cache, v = _resolve(store, branch, version, tileset)
    try:
        found = cache.file(tileset, branch, v, path, build=False)
        if found is None:
            found = await run_in_threadpool(cache.file, tileset, branch, v, path)
    except TileNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    file, immutable = found
    return _send(request, file, IMMUTABLE if immutable else LATEST if version == "latest" else VERSIONED)
