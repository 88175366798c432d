"""Authentication for the API: the security schemes (API key header, bearer, OAuth2 client credentials), the
principal of each request, and the audit trail (one record per request that read non-public data, wrote, or did an
admin action, written after the answer by :class:`AuditTrail`).

No credentials is the anonymous principal (public data only); a bad credential is a 401 with
``WWW-Authenticate: Bearer`` whose message never echoes it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer, OAuth2

from data_models import Principal
from twin.errors import Unavailable
from twin.security import auth
from twin.security.audit import writable
from twin.security.principals import ANONYMOUS, LOCAL_ADMIN

log = logging.getLogger("twin.api")

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey",
                       description="an API key made by `twin user add` / `twin user key`")
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="an API key, or a token from POST /auth/token")
OAUTH2 = OAuth2(flows={"clientCredentials": {"tokenUrl": "auth/token", "scopes": {}}}, auto_error=False,
                scheme_name="oauth2", description="exchange an API key (client_secret) for a JWT bearer token")
MAX_IDS_LOGGED = 1000


async def principal(
    request: Request,
    _bearer: HTTPAuthorizationCredentials | None = Security(BEARER),
    _key: str | None = Security(API_KEY),
    _oauth: str | None = Security(OAUTH2),
) -> Principal:
    """The request's principal (kept on ``request.state.principal``). The schemes above declare the headers in the
    OpenAPI document; the raw headers are read here, so a malformed one is our 401, not FastAPI's 403."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    settings = request.app.state.settings
    if not settings.auth:
        p = LOCAL_ADMIN
    else:
        p, _kid = auth.authenticate(request.app.state.store, request.headers.get("authorization"),
                                    request.headers.get("x-api-key"), settings.secrets_dir)
    if p.id != ANONYMOUS.id and (why := audit_unwritable(request.app)):
        raise Unavailable(f"signed-in requests are refused while their reads cannot be audited: {why}")
    request.state.principal = p
    return p


def audit_unwritable(app) -> str:
    """Why this server cannot append audit records ('' when it can), checked once (a signed-in principal's
    reads would go untraced: they are refused, 503, while it is so)."""
    if getattr(app.state, "audit_unwritable", None) is None:
        app.state.audit_unwritable = writable(app.state.audit_log())
    return app.state.audit_unwritable


def note(request: Request, action: str, target: dict[str, Any], size: int | None = None) -> None:
    """Something the request did that the audit record must say (an admin action, an export)."""
    request.state.audit_notes = [*getattr(request.state, "audit_notes", []), (action, target, size)]


class AuditTrail:
    """ASGI middleware: after each request, one audit record when it read non-public data (the guard's
    ``touched``), wrote (``writes``), noted an admin action or export, or failed to authenticate."""

    def __init__(self, app, get_log) -> None:
        self.app = app
        self.get_log = get_log

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: dict[str, int] = {}

        async def sent(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            try:
                self._record(scope, status.get("code", 500))
            except Exception:  # noqa: BLE001 - a broken log must be seen, but not crash the answer already sent
                log.exception("audit record failed")

    def _record(self, scope, code: int) -> None:
        state = scope.get("state") or {}
        guard = state.get("guard")
        notes = state.get("audit_notes") or []
        touched = {c: sorted(ids) for c, ids in (guard.touched if guard is not None else {}).items() if ids}
        writes = list(guard.writes) if guard is not None else []
        if code == 401:
            action = "auth-failed"
        elif notes:
            action = notes[0][0]
        elif writes:
            action = "write"
        elif touched and code < 400:
            action = "read"
        else:
            return
        p = state.get("principal")
        target: dict[str, Any] = {"method": scope["method"], "path": scope["path"]}
        if scope.get("query_string"):
            target["query"] = scope["query_string"].decode("latin-1")[:2000]
        if touched:
            target["ids"] = {c: ids[:MAX_IDS_LOGGED] for c, ids in touched.items()}
        if writes:
            target["writes"] = writes
        for _, t, _ in notes:
            target.update(t)
        size = next((s for _, _, s in notes if s is not None), None)
        if size is None:
            size = sum(len(v) for v in touched.values())
        client = scope.get("client")
        self.get_log().append(p.name if p is not None else "unknown", action, target,
                              client=client[0] if client else None, size=size,
                              result="ok" if code < 400 else f"http {code}")
