"""The one conditional-GET helper the tiles, viewer and imagery routes share: gzip negotiation and If-None-Match."""

from __future__ import annotations

import gzip
import os

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from twin.api import conditional

BODY = b"tile " * 400
TAG = '"abc"'


def test_accept_encoding_and_if_none_match_rules() -> None:
    assert conditional.accepts_gzip("gzip, deflate") and conditional.accepts_gzip("*;q=0.5")
    assert not conditional.accepts_gzip("gzip;q=0") and not conditional.accepts_gzip("br") and not \
        conditional.accepts_gzip(None)
    tags = [TAG, conditional.gzip_tag(TAG)]
    assert conditional.gzip_tag(TAG) == '"abc-gzip"'
    for header in (TAG, f'"x", W/{TAG}', '"abc-gzip"', "*"):
        assert conditional.not_modified(header, tags), header
    assert not conditional.not_modified('"other"', tags) and not conditional.not_modified(None, tags)


def test_respond_sends_gzip_plain_or_304_with_the_same_headers() -> None:
    app = FastAPI()

    @app.get("/t")
    def t(request: Request):
        return conditional.respond(request, TAG, {"Cache-Control": "no-cache", "Vary": "Accept-Encoding"},
                                   "application/octet-stream", lambda: BODY, gzipped=lambda: gzip.compress(BODY))

    c = TestClient(app)
    plain = c.get("/t", headers={"Accept-Encoding": "identity"})
    assert plain.content == BODY and plain.headers["etag"] == TAG and "content-encoding" not in plain.headers
    zipped = c.get("/t", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["etag"] == '"abc-gzip"'
    assert zipped.content == BODY and zipped.headers["cache-control"] == "no-cache"
    again = c.get("/t", headers={"Accept-Encoding": "gzip", "If-None-Match": TAG})
    assert again.status_code == 304 and again.headers["etag"] == '"abc-gzip"' and again.content == b""
    assert again.headers["vary"] == "Accept-Encoding"


def test_gzip_cache_is_an_lru_bounded_by_bytes() -> None:
    cache = conditional.GzipCache(max_bytes=64 * 1024)
    made: list[int] = []

    def body(i: int) -> bytes:
        made.append(i)
        return bytes(range(256)) * 16 + str(i).encode()  # compresses to about 1 kB

    for i in range(200):
        out = cache.get(f"k{i}", lambda i=i: body(i))
        assert gzip.decompress(out) == bytes(range(256)) * 16 + str(i).encode()
        assert cache.size <= cache.max_bytes
    assert cache.size > cache.max_bytes // 2  # it does keep what fits
    cache.get("k199", lambda: body(-1))  # the newest is still there: not compressed again
    assert made[-1] == 199
    cache.get("k0", lambda: body(0))  # the oldest was dropped: compressed again
    assert made[-1] == 0 and len(made) == 201
    big = cache.get("big", lambda: os.urandom(cache.max_bytes // 4))  # over an eighth of the budget: not kept
    assert len(big) > cache.max_bytes // 8 and cache.size <= cache.max_bytes
    assert "big" not in cache._items


def test_gzip_cache_directory_files_are_named_by_the_etag_and_reused(tmp_path) -> None:
    directory = tmp_path / "gzip"
    key = "0123456789abcdef" * 2
    first = conditional.GzipCache().get(key, lambda: BODY, directory)
    assert gzip.decompress(first) == BODY
    files = list(directory.rglob("*"))
    assert [p.relative_to(directory).as_posix() for p in files if p.is_file()] == [f"01/{key}.gz"]

    def never() -> bytes:
        raise AssertionError("compressed again although the cache directory has it")

    assert conditional.GzipCache().get(key, never, directory) == first  # another process: read from the directory


def test_a_refusing_gzip_directory_still_answers_and_leaves_no_temporary_file(tmp_path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")  # a file where the cache directory should be: every write there fails
    out = conditional.GzipCache().get("ab" * 16, lambda: BODY, blocker / "gzip")
    assert gzip.decompress(out) == BODY
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["not-a-folder"]


def test_file_gzip_never_writes_beside_the_file(tmp_path) -> None:
    f = tmp_path / "tile.glb"
    f.write_bytes(BODY)
    st = f.stat()
    etag = conditional.file_etag(str(f), st.st_mtime_ns, st.st_size)
    assert gzip.decompress(conditional.gzip_file(f, etag)) == BODY
    assert [p.name for p in tmp_path.iterdir()] == ["tile.glb"]  # no .gz sidecar: stores may be read-only
