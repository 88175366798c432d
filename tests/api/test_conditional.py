"""The one conditional-GET helper the tiles, viewer and imagery routes share: gzip negotiation and If-None-Match."""

from __future__ import annotations

import gzip

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
