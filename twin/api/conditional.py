"""Conditional GET for the file and tile routes: ETag, If-None-Match (304), Cache-Control and gzip in one place.

The tiles, viewer and imagery routers each know how to name a version of what they send (an ETag) and how long it
may be cached; :func:`respond` does the rest the same way for all three: a 304 when the client's copy is current
(RFC 9110 weak comparison, either representation's tag), otherwise the body, gzip-compressed when offered and the
client accepts it (the compressed form's ETag carries a ``-gzip`` suffix; callers that compress send ``Vary``).

Compressed bodies come from :data:`GZIP`, an LRU in memory bounded by its total bytes, backed for tiles by ``.gz``
files in the server's cache directory (named by the plain body's strong ETag, so never stale). Nothing is ever
written beside the file served: a GET must work on a read-only store. A cache directory that refuses a write only
costs a compression per request; the response is still sent. :func:`file_responses` declares what these routes
answer (media types, 304, 404 with a ``{"detail": …}`` body) in the OpenAPI document.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response

log = logging.getLogger("twin.api")


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


def compress(data: bytes) -> bytes:
    """The gzip form of a body: level 6, no timestamp (the same bytes every time, so the ``-gzip`` ETag holds)."""
    return gzip.compress(data, compresslevel=6, mtime=0)


class GzipCache:
    """gzip bodies by key: an LRU in memory bounded by the total size of what it keeps (``max_bytes``; a body over
    an eighth of it is not kept in memory), and, when a caller names a directory, ``<dir>/<key[:2]>/<key>.gz`` files
    written atomically (key: a strong ETag's hex, i.e. the plain body's hash). Thread-safe; compression runs outside
    the lock. A directory that refuses a write is left alone for a minute; the body is still returned."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._refused: dict[str, float] = {}  # directory -> when a write there last failed

    @property
    def size(self) -> int:
        """Bytes kept in memory now (never more than ``max_bytes``)."""
        return self._size

    def _remember(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes // 8:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._size -= len(old) if old is not None else 0
            self._items[key] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)

    def get(self, key: str, plain: Callable[[], bytes], directory: Path | None = None) -> bytes:
        """The gzip of ``plain()`` stored under ``key``: from memory, else from ``directory``, else compressed now
        (and kept in both)."""
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
                return data
        path = directory / key[:2] / f"{key}.gz" if directory is not None else None
        if path is not None:
            try:
                data = path.read_bytes()
            except OSError:
                data = None
        if data is None:
            data = compress(plain())
            if path is not None:
                self._store(path, data)
        self._remember(key, data)
        return data

    def _store(self, path: Path, data: bytes) -> None:
        """Write one ``.gz`` file atomically; a refusing disk is logged (once a minute per directory), not raised."""
        where = str(path.parent.parent)
        if time.monotonic() - self._refused.get(where, -1e9) < 60.0:
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                tmp.write_bytes(data)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            self._refused[where] = time.monotonic()
            log.warning("gzip cache %s refused a write (%s); compressing in memory only", where, exc)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


GZIP = GzipCache()  # shared by the tiles and viewer routes of a process


def gzip_file(path: Path, etag: str, directory: Path | None = None) -> bytes:
    """gzip of a file whose strong ETag is ``etag`` (the hash of its bytes): from :data:`GZIP`, with ``.gz`` files
    in ``directory`` when given (a server's cache directory, never the store)."""
    return GZIP.get(etag.strip('"'), path.read_bytes, directory)


def gzip_cached(path: str, mtime_ns: int, size: int) -> bytes:
    """gzip of one file version, kept in memory (keyed by path, mtime and size): Cesium's 4.7 MB bundle goes out as
    ~1.3 MB, compressed once per process."""
    return GZIP.get(f"{path}\0{mtime_ns}\0{size}", Path(path).read_bytes)


DETAIL_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"detail": {"type": "string"}},
                                 "required": ["detail"]}
BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


def file_responses(media: Mapping[str, Mapping[str, Any]], description: str, not_found: str | None = None,
                   unavailable: str | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a conditional file route: 200 in each media type of ``media`` (type → schema), 304
    (no body) and, when described, 404 and 503 with a ``{"detail": string}`` JSON body."""
    out: dict[int | str, dict[str, Any]] = {
        200: {"description": description, "content": {m: {"schema": copy.deepcopy(dict(s))} for m, s in media.items()}},
        304: {"description": "Not Modified: the client's copy (If-None-Match, either the plain or the -gzip ETag) "
                             "is current; no body"},
    }
    for code, text in ((404, not_found), (503, unavailable)):
        if text:
            out[code] = {"description": text, "content": {"application/json": {"schema": copy.deepcopy(DETAIL_SCHEMA)}}}
    return out
