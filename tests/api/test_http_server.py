"""`twin serve` over real HTTP: links never come from the client's Host header, no server path is shown, request
headers are bounded, the access log is one JSON line per request when asked for, and CORS is what is configured."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.api.server import Server, raw_get, serve

ORIGIN = "https://viewer.example"


@pytest.fixture(scope="module")
def plain(built_city, tmp_path_factory) -> Server:
    """A server with the default settings (no public URL, no trusted proxy, no CORS, no access log)."""
    with serve(built_city["store"], tmp_path_factory.mktemp("plain")) as s:
        yield s


@pytest.fixture(scope="module")
def proxied(built_city, tmp_path_factory) -> Server:
    """Behind a trusted proxy on 127.0.0.1, one CORS origin, the access log turned on with the flag."""
    env = {"TWIN_TRUSTED_PROXIES": "127.0.0.1", "TWIN_CORS_ORIGINS": ORIGIN}
    with serve(built_city["store"], tmp_path_factory.mktemp("proxied"), env, args=("--access-log",)) as s:
        yield s


@pytest.fixture(scope="module")
def public(built_city, tmp_path_factory) -> Server:
    """A configured public URL (behind a proxy that strips /api), any CORS origin, the access log from the env."""
    env = {"TWIN_PUBLIC_URL": "https://twin.example.org/api/", "TWIN_TRUSTED_PROXIES": "127.0.0.1",
           "TWIN_CORS_ORIGINS": "*", "TWIN_ACCESS_LOG": "1"}
    with serve(built_city["store"], tmp_path_factory.mktemp("public"), env) as s:
        yield s


def _hrefs(doc) -> list[str]:
    """Every link href and tile URL of a JSON document."""
    out: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in ("href", "tiles", "tilejson") and isinstance(v, str):
                out.append(v)
            elif k == "tiles" and isinstance(v, list):
                out += [t for t in v if isinstance(t, str)]
            else:
                out += _hrefs(v)
    elif isinstance(doc, list):
        for v in doc:
            out += _hrefs(v)
    return out


LINKED = ["/?f=json", "/collections", "/collections/buildings/items?limit=2", "/imagery"]


@pytest.mark.parametrize("path", LINKED)
def test_links_never_copy_the_host_header(plain: Server, path: str) -> None:
    status, _, body = raw_get(plain.port, path, {"Host": "evil.example", "X-Forwarded-Host": "evil2.example",
                                                 "X-Forwarded-Proto": "https"})
    assert status == 200, body[:300]
    hrefs = _hrefs(json.loads(body))
    assert hrefs and all(h.startswith(plain.base + "/") for h in hrefs), hrefs
    assert b"evil" not in body


def test_a_trusted_proxy_names_the_public_address(proxied: Server) -> None:
    headers = {"Host": "internal:8000", "X-Forwarded-Host": "twin.example.org", "X-Forwarded-Proto": "https",
               "X-Forwarded-Prefix": "/city"}
    status, _, body = raw_get(proxied.port, "/collections/buildings/items?limit=1", headers)
    assert status == 200
    hrefs = _hrefs(json.loads(body))
    assert hrefs and all(h.startswith("https://twin.example.org/city/collections/buildings") for h in hrefs), hrefs
    # without X-Forwarded-Host the proxy names nothing: the listen address, not its Host header
    status, _, body = raw_get(proxied.port, "/?f=json", {"Host": "evil.example"})
    assert status == 200 and all(h.startswith(proxied.base + "/") for h in _hrefs(json.loads(body)))


def test_the_configured_public_url_wins(public: Server) -> None:
    for path in ("/?f=json", "/api/?f=json"):  # a proxy that strips the prefix, and one that does not
        status, _, body = raw_get(public.port, path, {"Host": "evil.example", "X-Forwarded-Host": "evil2.example"})
        assert status == 200, (path, body[:200])
        hrefs = _hrefs(json.loads(body))
        assert hrefs and all(h.startswith("https://twin.example.org/api/") for h in hrefs), hrefs
    assert httpx.get(public.base + "/api/collections/buildings").json()["id"] == "buildings"


def test_no_server_path_in_assets_or_landing_page(plain: Server, built_city) -> None:
    roots = [str(Path(built_city["store"]).resolve()), str(Path(built_city["dir"]).resolve()), "/tmp/"]
    assets = httpx.get(plain.base + "/assets").json()
    text = json.dumps(assets)
    assert assets and not any(r in text for r in roots), [a.get("path") for a in assets]
    for a in assets:
        assert a["file"] and "/" not in a["file"]
        assert "path" not in a or not a["path"].startswith("/") and ".." not in a["path"]
    assert any(a.get("path", "").startswith("products/") for a in assets)  # a build product keeps its store path
    page = httpx.get(plain.base + "/?f=html")
    assert page.status_code == 200 and "city objects" in page.text
    assert not any(r in page.text for r in roots)


def test_oversized_request_headers_are_refused_with_431(plain: Server) -> None:
    status, headers, body = raw_get(plain.port, "/health", {"X-Padding": "a" * 1_000_000})
    assert status == 431 and headers["content-type"] == "application/json"
    assert "request headers too large" in json.loads(body)["detail"]
    status, _, _ = raw_get(plain.port, "/health", {"X-Padding": "a" * 8_000})  # a big but reasonable header
    assert status == 200


def _json_lines(server: Server, n: int, timeout: float = 10) -> list[dict]:
    """The server's JSON stderr lines once there are at least ``n`` (the log is written per request)."""
    deadline = time.time() + timeout
    while True:
        lines = [json.loads(x) for x in server.log_lines() if x.startswith("{")]
        if len(lines) >= n or time.time() > deadline:
            return lines
        time.sleep(0.1)


def test_the_access_log_is_one_json_line_per_request(proxied: Server) -> None:
    time.sleep(0.2)  # the lines of earlier tests' requests are written just after their answers
    before = len(_json_lines(proxied, 0, 0))
    secret = {"Authorization": "Bearer s3cret-token", "Cookie": "session=s3cret-cookie",
              "X-Forwarded-For": "203.0.113.7"}
    ok = httpx.get(proxied.base + "/health?token=s3cret-query", headers=secret)  # an invalid bearer: a 401
    missing = httpx.get(proxied.base + "/collections/nope")
    too_big, _, _ = raw_get(proxied.port, "/health", {"X-Padding": "a" * 100_000})
    assert (ok.status_code, missing.status_code, too_big) == (401, 404, 431)
    assert ok.headers["www-authenticate"].startswith("Bearer") and "s3cret" not in ok.text
    lines = _json_lines(proxied, before + 3)[before:]
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [
        ("GET", "/health", 401), ("GET", "/collections/nope", 404), ("GET", "/health", 431)]
    assert lines[0]["bytes"] == len(ok.content) and lines[1]["bytes"] == len(missing.content)
    assert lines[0]["client"] == "203.0.113.7"  # the trusted proxy's X-Forwarded-For
    assert lines[1]["client"] == "127.0.0.1"
    for x in lines:
        assert set(x) == {"time", "method", "path", "status", "duration_ms", "bytes", "client"}
        assert x["time"].endswith("Z") and 0 <= x["duration_ms"] < 10_000
    assert "s3cret" not in proxied.stderr.read_text()


def test_the_access_log_is_off_by_default_and_on_from_the_environment(plain: Server, public: Server) -> None:
    assert httpx.get(plain.base + "/health").status_code == 200
    assert httpx.get(public.base + "/health").status_code == 200
    deadline = time.time() + 10
    while time.time() < deadline and not any(x["path"] == "/api/health" for x in _json_lines(public, 0, 0)):
        time.sleep(0.1)
    assert any(x["path"] == "/api/health" for x in _json_lines(public, 0, 0))  # logged under its public path
    time.sleep(0.3)
    assert not [x for x in plain.log_lines() if x.startswith("{")]


def test_cors_is_off_by_default(plain: Server) -> None:
    r = httpx.get(plain.base + "/collections", headers={"Origin": ORIGIN})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = httpx.options(plain.base + "/collections", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert r.status_code == 405 and "access-control-allow-origin" not in r.headers


def test_cors_answers_a_configured_origin(proxied: Server) -> None:
    url = proxied.base + "/collections/buildings/items?limit=1"
    pre = httpx.options(url, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                                      "Access-Control-Request-Headers": "if-none-match"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ORIGIN
    assert "GET" in pre.headers["access-control-allow-methods"]
    assert "if-none-match" in pre.headers["access-control-allow-headers"].lower()
    r = httpx.get(url, headers={"Origin": ORIGIN})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert "content-crs" in r.headers["access-control-expose-headers"].lower()
    assert "origin" in r.headers["vary"].lower()
    other = httpx.get(url, headers={"Origin": "https://elsewhere.example"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    refused = httpx.options(url, headers={"Origin": "https://elsewhere.example",
                                          "Access-Control-Request-Method": "GET"})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_cors_any_origin(public: Server) -> None:
    r = httpx.get(public.base + "/imagery", headers={"Origin": "https://anyone.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    pre = httpx.options(public.base + "/imagery/tilejson.json",
                        headers={"Origin": "https://anyone.example", "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "*"
