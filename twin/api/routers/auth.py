"""Tokens, who am I, and the admin API: principals and the audit log (thin: twin.security does the work)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi import Path as P
from fastapi import Query as Q
from pydantic import BaseModel, Field

from data_models import Principal
from twin.api import auth
from twin.api.deps import get_store
from twin.api.ogc import JSONDoc
from twin.errors import BadInput
from twin.security import principals as principals_mod
from twin.security import tokens
from twin.security.guard import GuardedStore
from twin.security.roles import Permission

router = APIRouter(tags=["security"])
_NAME = P(description="principal name", examples=["alice"], pattern=r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$",
          max_length=64)


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds until the token expires")


class PrincipalSummary(BaseModel):
    """A principal as the admin API shows it: never a key's hash, only key ids."""

    name: str
    kind: str
    roles: list[str]
    clearance: str
    area: dict[str, Any] | None = None
    disabled: bool
    keys: list[dict[str, Any]]
    description: str = ""


class NewPrincipal(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$", max_length=64)
    roles: list[str] = Field(min_length=1, max_length=4)
    clearance: str = "public"
    area: dict[str, Any] | None = Field(default=None, description="GeoJSON (Multi)Polygon in the store CRS")
    kind: str = Field(default="user", pattern="^(user|service)$")
    description: str = Field(default="", max_length=1000)


class PrincipalChange(BaseModel):
    roles: list[str] | None = Field(default=None, min_length=1, max_length=4)
    clearance: str | None = None
    area: dict[str, Any] | None = None
    remove_area: bool = False
    disabled: bool | None = None


class NewKey(BaseModel):
    principal: PrincipalSummary
    key: str = Field(description="the API key, shown once")


def _admin(store: GuardedStore) -> GuardedStore:
    store.require(Permission.admin, "the admin API")
    return store


def _area(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A GeoJSON area checked as `twin user --area` checks a file."""
    return None if value is None else principals_mod.parse_area(value, "area")


@router.post("/auth/token", response_model=Token, openapi_extra={"security": [{}]}, responses={401: {
    "description": "the API key is not valid (malformed, unknown, revoked, or of a disabled principal)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}}}})
def token(request: Request, grant_type: str = Form(..., pattern="^client_credentials$"),
          client_secret: str = Form(..., max_length=200, description="an API key"),
          expires_in: int = Form(tokens.DEFAULT_TTL_S, ge=1, le=tokens.MAX_TTL_S)) -> JSONDoc:
    """OAuth2 client credentials: exchange an API key for a JWT bearer token (default 1 hour)."""
    store = request.app.state.store
    p, key_id = principals_mod.authenticate_key(store, client_secret)
    access, ttl = tokens.issue(store, p, key_id, expires_in, request.app.state.settings.secrets_dir)
    request.state.principal = p
    auth.note(request, "admin", {"issued_token_for": p.name, "key_id": key_id})
    return JSONDoc({"access_token": access, "token_type": "bearer", "expires_in": ttl})


@router.get("/auth/whoami", response_model=PrincipalSummary)
def whoami(principal: Principal = Depends(auth.principal)) -> JSONDoc:
    """The principal the request's credentials name (anonymous without credentials)."""
    return JSONDoc(principals_mod.summary(principal))


@router.get("/admin/principals", response_model=list[PrincipalSummary])
def list_principals(store: GuardedStore = Depends(get_store)) -> JSONDoc:
    """Every principal (admin only)."""
    _admin(store)
    return JSONDoc([principals_mod.summary(p) for p in principals_mod.principals(store.base)])


@router.post("/admin/principals", response_model=NewKey, status_code=201)
def add_principal(body: NewPrincipal, request: Request, store: GuardedStore = Depends(get_store)) -> JSONDoc:
    """Add a principal; the answer holds its first API key, shown once (admin only)."""
    _admin(store)
    p, key = principals_mod.add(store.base, body.name, body.roles, body.clearance, area=_area(body.area),
                                kind=body.kind, description=body.description, author=store.principal.name)
    auth.note(request, "admin", {"added_principal": p.name})
    return JSONDoc({"principal": principals_mod.summary(p), "key": key}, status_code=201)


@router.patch("/admin/principals/{name}", response_model=PrincipalSummary)
def change_principal(body: PrincipalChange, request: Request, name: str = _NAME,
                     store: GuardedStore = Depends(get_store)) -> JSONDoc:
    """Change roles, clearance, area or disabled (admin only)."""
    _admin(store)
    changes: dict[str, Any] = {"roles": body.roles, "clearance": body.clearance, "disabled": body.disabled}
    if body.area is not None and body.remove_area:
        raise BadInput("area, remove_area: give one of them")
    if body.area is not None:
        changes["area"] = _area(body.area)
    elif body.remove_area:
        changes["area"] = None
    p = principals_mod.update(store.base, name, author=store.principal.name, **changes)
    auth.note(request, "admin", {"changed_principal": name, **{k: v for k, v in body.model_dump().items()
                                                               if v not in (None, False)}})
    return JSONDoc(principals_mod.summary(p))


@router.post("/admin/principals/{name}/keys", response_model=NewKey, status_code=201)
def add_key(request: Request, name: str = _NAME, store: GuardedStore = Depends(get_store)) -> JSONDoc:
    """Another API key for a principal, shown once (admin only)."""
    _admin(store)
    key = principals_mod.new_key(store.base, name, author=store.principal.name)
    auth.note(request, "admin", {"new_key_for": name})
    principal = principals_mod.get(store.base, name)
    return JSONDoc({"principal": principals_mod.summary(principal), "key": key}, status_code=201)


@router.delete("/admin/principals/{name}/keys/{key_id}", response_model=PrincipalSummary)
def revoke_key(request: Request, name: str = _NAME,
               key_id: str = P(description="the key's id", pattern=r"^[A-Za-z0-9]{8,32}$"),
               store: GuardedStore = Depends(get_store)) -> JSONDoc:
    """Revoke one API key of a principal; tokens made from it stop working too (admin only)."""
    _admin(store)
    p = principals_mod.revoke_key(store.base, name, key_id, author=store.principal.name)
    auth.note(request, "admin", {"revoked_key": key_id, "of": name})
    return JSONDoc(principals_mod.summary(p))


@router.get("/admin/audit", response_model=list[dict[str, Any]])
def audit(request: Request, user: str | None = Q(None, max_length=64, description="only this principal"),
          action: str | None = Q(None, max_length=32, description="only this action (read, write, admin, …)"),
          since: str | None = Q(None, max_length=64, description="ISO 8601 time or a span like 24h"),
          until: str | None = Q(None, max_length=64, description="ISO 8601 time"),
          limit: int = Q(100, ge=1, le=10_000), newest_first: bool = Q(True),
          store: GuardedStore = Depends(get_store)) -> JSONDoc:
    """Audit records, newest first by default (admin only; reading the log is itself recorded)."""
    _admin(store)
    log = request.app.state.audit
    try:
        rows = list(log.read(since=since, until=until, principal=user, action=action, limit=limit,
                             newest_first=newest_first))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    auth.note(request, "admin", {"read_audit": {"user": user, "action": action, "since": since, "until": until}},
              size=len(rows))
    return JSONDoc(rows)

