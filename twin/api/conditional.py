"""Conditional GET for the file and tile routes: ETag, If-None-Match (304), Cache-Control and gzip in one place.

The tiles, viewer and imagery routers each know how to name a version of what they send (an ETag) and how long it
may be cached; :func:`respond` does the rest the same way for all three: a 304 when the client's copy is current
(RFC 9110 weak comparison, either representation's tag), otherwise the body, gzip-compressed when offered and the
client accepts it (the compressed form's ETag carries a ``-gzip`` suffix; callers that compress send ``Vary``).
Compressed bodies come from a sidecar file beside a tile (:func:`gzip_sidecar`) or from memory (:func:`gzip_cached`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response


def accepts_gzip(header: str | None) -> bool:
    """RFC 9110 Accept-Encoding: gzip (or ``*``) with a non-zero q."""
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


def gzip_tag(tag: str) -> str:
    """The ETag of the gzip-compressed representation of what ``tag`` names."""
    return tag[:-1] + '-gzip"'


def not_modified(header: str | None, tags: Iterable[str]) -> bool:
    """If-None-Match matches one of ``tags`` (weak comparison, as RFC 9110 requires for it; ``*`` matches all)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    seen = {t.strip().removeprefix("W/") for t in header.split(",")}
    return any(t in seen for t in tags)


def respond(request: Request, etag: str, headers: Mapping[str, str], media_type: str, body: Callable[[], bytes],
            gzipped: Callable[[], bytes] | None = None, plain: Callable[[], Response] | None = None,
            gzip_headers: Mapping[str, str] | None = None) -> Response:
    """304 when If-None-Match holds ``etag`` (plain or ``-gzip``), else the gzip body when offered and accepted, else
    ``plain()`` (a streamed file) or ``body()``; ``headers`` go on every answer, ``gzip_headers`` on the gzip one."""
    zipped = gzipped is not None and accepts_gzip(request.headers.get("accept-encoding"))
    out = {**headers, "ETag": gzip_tag(etag) if zipped else etag}
    if not_modified(request.headers.get("if-none-match"), [etag, gzip_tag(etag)]):
        return Response(status_code=304, headers=out)
    if zipped:
        return Response(gzipped(), media_type=media_type,
                        headers={**out, "Content-Encoding": "gzip", **(gzip_headers or {})})
    if plain is not None:
        return plain()
    return Response(body(), media_type=media_type, headers=out)


@lru_cache(maxsize=8192)
def file_etag(path: str, mtime_ns: int, size: int) -> str:
    """Strong ETag of a file version (SHA-256 prefix); keyed by mtime and size so a replaced file is re-hashed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return '"' + h.hexdigest()[:32] + '"'


def gzip_sidecar(path: Path, mtime_ns: int) -> Path:
    """The gzip sidecar of a file, written once (atomically) beside it: tiles are compressed once, not per request
    (compressing a 150 kB terrain tile costs more than serving it)."""
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


@lru_cache(maxsize=256)
def gzip_cached(path: str, mtime_ns: int, size: int) -> bytes:
    """gzip of one file version, kept in memory (keyed by mtime and size): Cesium's 4.7 MB bundle goes out as
    ~1.3 MB, compressed once per process."""
    return gzip.compress(Path(path).read_bytes(), compresslevel=6, mtime=0)
