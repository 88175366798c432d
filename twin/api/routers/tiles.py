"""3D Tiles 1.1 tilesets (buildings, terrain, point cloud) per branch and version, with ETag and caching.

``GET /tiles/{branch}/{version}/{tileset}/tileset.json`` and ``…/{path}`` for contents and subtrees. ``version`` is
a number or ``latest``. GETs never write into the store: tilesets are served from ``<store>/tiles/`` (``twin build``
and ``twin tiles build`` build them there); one missing there is built on its first request into the server's cache
directory (``TWIN_CACHE_DIR``, see :func:`twin.tiles.cache.server_cache_dir`), or is a 503 when there is none.
Responses carry a strong ETag (SHA-256 of the bytes; ``-gzip`` suffix for the compressed form) honoured by
If-None-Match, gzip when the client accepts it (from memory or the cache directory), and Cache-Control:
``immutable`` for content-addressed files, ``no-cache`` under ``latest``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from twin.api import conditional
from twin.api.deps import get_store
from twin.config import get_settings
from twin.store import Store
from twin.tiles.cache import KINDS, TileCache, TileNotFound, server_cache_dir

router = APIRouter(tags=["tiles"])

MEDIA_TYPES = {".json": "application/json", ".glb": "model/gltf-binary", ".subtree": "application/octet-stream",
               ".pnts": "application/octet-stream", ".b3dm": "application/octet-stream",
               ".i3dm": "application/octet-stream", ".cmpt": "application/octet-stream",
               ".bin": "application/octet-stream"}
IMMUTABLE = "public, max-age=31536000, immutable"
VERSIONED = "public, max-age=86400"
LATEST = "no-cache"
MIN_GZIP = 512  # bytes; smaller bodies are sent as they are


def _send(request: Request, cache: TileCache, path: Path, cache_control: str) -> Response:
    """A tileset file with its strong ETag and cache policy, gzip (from memory or the cache directory, never beside
    the file) when accepted and it pays."""
    media = MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
    st = path.stat()
    etag = conditional.file_etag(str(path), st.st_mtime_ns, st.st_size)
    gz_dir = cache.root / "gzip" if cache.root is not None else None
    return conditional.respond(
        request, etag, {"Cache-Control": cache_control, "Vary": "Accept-Encoding"}, media, path.read_bytes,
        gzipped=(lambda: conditional.gzip_file(path, etag, gz_dir)) if st.st_size >= MIN_GZIP else None,
    )


def _resolve(request: Request, store: Store, branch: str, version: str, tileset: str) -> tuple[TileCache, int]:
    """The server's tile cache and the canonical version of a request; an unknown tileset, branch or version is a
    404. The cache directory is resolved once per app (``TWIN_CACHE_DIR`` when the first tile request came)."""
    if tileset not in KINDS:
        raise TileNotFound(f"unknown tileset {tileset!r}; tilesets: {', '.join(KINDS)}")
    where = getattr(request.app.state, "tiles_cache_dir", None)
    if where is None:
        where = request.app.state.tiles_cache_dir = server_cache_dir(store, get_settings().cache_dir)
    cache = TileCache.serving(store, *where)
    return cache, cache.version(branch, version)


_NOT_FOUND = "unknown branch, version, tileset or file, or no data for the tileset (`detail` says which)"
_UNAVAILABLE = ("the tileset is not built in the store and the server may not build it (no cache directory), or "
                "the disk refused the build (full, read-only, no permission); `detail` says which and what to do")
_BINARY = conditional.BINARY


# The routes are async: the common case (a tile already on disk) is a few stat() calls and a read of a cached file,
# cheaper inline than a hop to the thread pool; building a tileset (seconds) goes to the thread pool.


@router.get("/tiles/{branch}/{version}/{tileset}/tileset.json", summary="3D Tiles 1.1 tileset.json",
            response_class=Response,
            responses=conditional.file_responses(
                {"application/json": {"type": "object", "description": "a 3D Tiles 1.1 tileset"}},
                "the tileset (gzip when accepted)", _NOT_FOUND, _UNAVAILABLE))
async def tileset_json(branch: str, version: str, tileset: str, request: Request,
                       store: Store = Depends(get_store)) -> Response:
    """The tileset of ``buildings``, ``terrain`` or ``pointcloud`` at a version (a number or ``latest``)."""
    cache, v = _resolve(request, store, branch, version, tileset)
    path = cache.known(tileset, branch, v)
    if path is None:
        path = await run_in_threadpool(cache.tileset, tileset, branch, v)
    return _send(request, cache, path, LATEST if version == "latest" else VERSIONED)


@router.get("/tiles/{branch}/{version}/{tileset}/{path:path}", summary="3D Tiles content and subtree files",
            response_class=Response,
            responses=conditional.file_responses(
                {"model/gltf-binary": _BINARY, "application/octet-stream": _BINARY,
                 "application/json": {"type": "object"}},
                "a glTF 2.0 binary (.glb) content, an implicit-tiling .subtree (application/octet-stream) or an "
                "external tileset (.json)", _NOT_FOUND, _UNAVAILABLE))
async def tile_file(branch: str, version: str, tileset: str, path: str, request: Request,
                    store: Store = Depends(get_store)) -> Response:
    """A GLB content or ``.subtree`` file of a tileset; content-addressed files are cached forever."""
    cache, v = _resolve(request, store, branch, version, tileset)
    found = cache.file(tileset, branch, v, path, build=False)
    if found is None:
        found = await run_in_threadpool(cache.file, tileset, branch, v, path)
    file, immutable = found
    return _send(request, cache, file, IMMUTABLE if immutable else LATEST if version == "latest" else VERSIONED)
