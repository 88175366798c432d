"""The ASGI layers around the app: public links, header limits, the access log and CORS.

Pure ASGI (no ``BaseHTTPMiddleware``): they add a few dictionary operations per request and never buffer a body.
From the outside in (see :func:`install`):

- :class:`PublicURL` makes the scope say where clients reach the API: the configured public base URL, or what a
  trusted proxy's ``X-Forwarded-*`` headers say, or the address ``twin serve`` listens on; never the client's
  ``Host`` header. Every link a router builds from ``request.base_url`` / ``request.url`` is then safe.
- :class:`AccessLog` writes one JSON line per request when an operator turns it on.
- :class:`HeaderLimit` answers 431 to requests whose headers exceed a bound (uvicorn's httptools parser has none).
- Starlette's ``CORSMiddleware`` when origins are configured.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_HEADER_BYTES = 16 * 1024  # all request header names and values together (Node's default; nginx's is 8 KiB a line)
ACCESS_LOGGER = "twin.access"
CORS_EXPOSE = ["ETag", "Content-Crs", "Content-Length", "Content-Encoding", "Cache-Control", "Last-Modified"]
CORS_ALLOW_HEADERS = ["Accept", "Accept-Language", "Content-Language", "Content-Type", "If-None-Match",
                      "If-Modified-Since", "Range"]


class TrustedProxies:
    """Addresses and networks (``10.0.0.0/8``, ``127.0.0.1``, ``*``) whose forwarding headers are believed."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.any = False
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for e in entries:
            if e == "*":
                self.any = True
            else:
                self.networks.append(ipaddress.ip_network(e, strict=False))

    def __bool__(self) -> bool:
        return self.any or bool(self.networks)

    def __contains__(self, host: object) -> bool:
        if self.any:
            return True
        try:
            ip = ipaddress.ip_address(str(host))
        except ValueError:
            return False
        return any(ip in n for n in self.networks)


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


class PublicURL:
    """Rewrite ``scheme``, ``Host`` and ``root_path`` of each request to the API's public base URL.

    ``public_url`` (``TWIN_PUBLIC_URL``) wins; without it, a request from a trusted proxy may name the base with
    ``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``X-Forwarded-Prefix``; anything else gets ``default_url``
    (the address the server listens on). A trusted proxy's ``X-Forwarded-For`` becomes the client address (the
    nearest address that is not itself a trusted proxy). A path in the base is a prefix, whether or not the
    proxy strips it from the requests it passes on.
    """

    def __init__(self, app: ASGIApp, public_url: str | None, default_url: str, trusted: TrustedProxies) -> None:
        self.app = app
        self.fixed = _split_base(public_url) if public_url else None
        self.default = _split_base(default_url)
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        base = self.fixed
        client = scope.get("client")
        if self.trusted and client is not None and client[0] in self.trusted:
            forwarded_for = _header(scope, b"x-forwarded-for")
            if forwarded_for:
                hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
                while len(hops) > 1 and hops[-1] in self.trusted:
                    hops.pop()
                if hops:
                    client = (hops[-1], 0)
            if base is None:
                base = _forwarded_base(scope)
        scheme, host, prefix = base or self.default
        headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
        headers.append((b"host", host.encode("latin-1")))
        path = scope["path"]
        root = prefix + scope.get("root_path", "")
        if root and not (path == root or path.startswith(root + "/")):
            path = root + path
        scope = {**scope, "scheme": scheme if scope["type"] == "http" else scheme.replace("http", "ws"),
                 "headers": headers, "root_path": root, "path": path, "client": client}
        await self.app(scope, receive, send)


def _split_base(url: str) -> tuple[str, str, str]:
    """``https://host:port/prefix`` → (scheme, host[:port], prefix without a trailing slash)."""
    u = urlsplit(url)
    return u.scheme.lower(), u.netloc, u.path.rstrip("/")


def _forwarded_base(scope: Scope) -> tuple[str, str, str] | None:
    """The base a trusted proxy names with X-Forwarded-Host (and -Proto, -Prefix); None when it names no host."""
    host = (_header(scope, b"x-forwarded-host") or "").split(",")[0].strip()
    if not host or any(c in host for c in "/\\@ "):
        return None
    proto = (_header(scope, b"x-forwarded-proto") or scope.get("scheme", "http")).split(",")[0].strip().lower()
    prefix = (_header(scope, b"x-forwarded-prefix") or "").split(",")[0].strip().rstrip("/")
    if proto not in ("http", "https"):
        proto = "http"
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    return proto, host, prefix


class HeaderLimit:
    """431 Request Header Fields Too Large when the request's headers together exceed ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) + 4 for k, v in scope["headers"])  # "name: value\r\n"
            if size > self.max_bytes:
                body = json.dumps({"detail": f"request headers too large: {size} bytes; at most {self.max_bytes}"})
                await send({"type": "http.response.start", "status": 431,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)


def access_logger() -> logging.Logger:
    """The ``twin.access`` logger: bare JSON lines on stderr (its own handler, independent of uvicorn's level)."""
    log = logging.getLogger(ACCESS_LOGGER)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


class AccessLog:
    """One JSON line per HTTP request: time (UTC, when it arrived), method, path (no query string: it may carry
    secrets), status, duration in ms, response body bytes, client address. Headers are never logged."""

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.log = logger or access_logger()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        arrived = datetime.now(UTC)
        facts: dict[str, Any] = {"status": None, "bytes": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                facts["status"] = message["status"]
            elif message["type"] == "http.response.body":
                facts["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException:
            if facts["status"] is None:
                facts["status"] = 500
            raise
        finally:
            client = scope.get("client")
            self.log.info(json.dumps({
                "time": arrived.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "method": scope["method"],
                "path": scope["path"],
                "status": facts["status"],
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "bytes": facts["bytes"],
                "client": client[0] if client else None,
            }, separators=(",", ":")))


def install(app: Any, *, public_url: str | None, default_url: str, trusted_proxies: Iterable[str],
            cors_origins: list[str], access_log: bool) -> None:
    """Add the layers to a Starlette/FastAPI app, outermost last: CORS, header limit, access log, public URL."""
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "HEAD", "OPTIONS"],
                           allow_headers=CORS_ALLOW_HEADERS, expose_headers=CORS_EXPOSE, allow_credentials=False,
                           max_age=86400)
    app.add_middleware(HeaderLimit)
    if access_log:
        app.add_middleware(AccessLog)
    app.add_middleware(PublicURL, public_url=public_url, default_url=default_url,
                       trusted=TrustedProxies(trusted_proxies))
