"""Principals in the store (collection ``principals`` on main, versioned like everything else) and their API keys.

An API key is ``twin_<key id>_<secret>``: the key id (public, 12 characters) finds the principal, the secret (32
random bytes, URL-safe base64) is checked against its argon2id hash. The key is shown once, when it is made; the
store keeps only the hash, so a copy of the store gives no usable key."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from pathlib import Path
from typing import Any

import argon2
import shapely

from data_models import ApiKey, Classification, Principal, PrincipalKind, Role
from twin.errors import BadInput, Conflict, NotFound, Unauthorized
from twin.security.roles import parse_clearance, parse_role
from twin.store import MAIN, PRINCIPALS, Query, Store

ANONYMOUS = Principal(id="principal-anonymous", name="anonymous", roles=[Role.viewer],
                      clearance=Classification.public, description="no credentials: public data only")
LOCAL_ADMIN = Principal(id="principal-local", name="local", roles=[Role.admin], clearance=Classification.secret,
                        description="a process on this machine with the store directory itself (CLI, Python)")

KEY_RE = re.compile(r"^twin_(?P<id>[A-Za-z0-9]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
MAX_KEY_CHARS = 200
# argon2id at OWASP's minimum (19 MiB, 2 passes): ~20 ms a check; verified keys are remembered in memory by digest
_HASHER = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_verified: dict[str, tuple[str, str]] = {}  # sha256(key) -> (principal id, key id)
_verified_lock = threading.Lock()


def principal_id(name: str) -> str:
    return f"principal-{name}"


_cache: dict[tuple[str, int], list[Principal]] = {}  # (store root, main's head) -> principals, for the hot path


def _load(store: Store) -> list[Principal]:
    """The principals at main's head, read once per version (each request authenticates against them)."""
    key = (str(store.root), store.head(MAIN))
    if key not in _cache:
        rows = store.features(MAIN, key[1], Query(collection=PRINCIPALS))
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = [Principal.model_validate({k: v for k, v in r.items() if k not in ("_store", "classification")})
                       for r in rows]
    return _cache[key]


def principals(store: Store) -> list[Principal]:
    """Every principal, by name."""
    return sorted(_load(store), key=lambda p: p.name)


def summary(p: Principal) -> dict[str, Any]:
    """A principal as the admin API and `twin user list --json` show it: key ids, never their hashes."""
    return {"name": p.name, "kind": p.kind.value, "roles": [r.value for r in p.roles],
            "clearance": p.clearance.value, "area": p.area.model_dump() if p.area else None, "disabled": p.disabled,
            "keys": [{"id": k.id, "created": k.created.isoformat(), "revoked": k.revoked} for k in p.keys],
            "description": p.description}


def has_admin(store: Store) -> bool:
    """Whether an enabled admin with a live key exists (what `twin serve` needs before it listens beyond loopback)."""
    return any(Role.admin in p.roles and not p.disabled and any(not k.revoked for k in p.keys)
               for p in _load(store))


def get(store: Store, name: str) -> Principal:
    rows = store.features(MAIN, None, Query(collection=PRINCIPALS, ids=[principal_id(name)]))
    if not rows:
        raise NotFound(f"principal {name!r} does not exist; see `twin user list`")
    return Principal.model_validate({k: v for k, v in rows[0].items() if k not in ("_store", "classification")})


def _new_key() -> tuple[str, ApiKey]:
    key_id = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789") for _ in range(12))
    secret = secrets.token_urlsafe(32)
    return f"twin_{key_id}_{secret}", ApiKey(id=key_id, hash=_HASHER.hash(secret))


def read_area(path: Path) -> dict[str, Any]:
    """The area of a GeoJSON file (see :func:`parse_area`); errors name the file."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: cannot read the area as GeoJSON: {exc}") from None
    return parse_area(doc, str(path))


def parse_area(doc: Any, what: str = "area") -> dict[str, Any]:
    """A polygon from GeoJSON (a geometry, a Feature or a FeatureCollection of polygons, in the store CRS), checked
    to be a valid, non-empty (Multi)Polygon; errors start with ``what``."""
    if not isinstance(doc, dict):
        raise BadInput(f"{what}: not a GeoJSON object")
    geoms = ([f.get("geometry") for f in doc.get("features", []) if isinstance(f, dict)]
             if doc.get("type") == "FeatureCollection"
             else [doc.get("geometry")] if doc.get("type") == "Feature" else [doc])
    try:
        shapes = [shapely.geometry.shape(g) for g in geoms if g]
    except (AttributeError, KeyError, TypeError, ValueError, IndexError, shapely.errors.GEOSException) as exc:
        raise BadInput(f"{what}: not a GeoJSON geometry: {exc}") from None
    if not shapes or any(s.geom_type not in ("Polygon", "MultiPolygon") for s in shapes):
        raise BadInput(f"{what}: the area must be one or more Polygons or MultiPolygons")
    bad = [shapely.is_valid_reason(s) for s in shapes if not s.is_valid]
    if bad:
        raise BadInput(f"{what}: the area is not a valid polygon: {bad[0]}")
    area = shapely.union_all(shapes)
    if area.is_empty or area.area <= 0:
        raise BadInput(f"{what}: the area is empty")
    return shapely.geometry.mapping(area)


def add(store: Store, name: str, roles: list[str], clearance: str = "public", *, area: dict | None = None,
        kind: str = "user", description: str = "", author: str = "twin") -> tuple[Principal, str]:
    """A new principal with one API key; returns it and the key (shown once: only its hash is stored)."""
    if store.features(MAIN, None, Query(collection=PRINCIPALS, ids=[principal_id(name)])):
        raise Conflict(f"principal {name!r} exists; use `twin user grant` to change it")
    key, api_key = _new_key()
    try:
        p = Principal(id=principal_id(name), name=name, kind=PrincipalKind(kind),
                      roles=[parse_role(r) for r in roles], clearance=parse_clearance(clearance), area=area,
                      keys=[api_key], description=description)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    store.commit([p], message=f"add principal {name}", author=author)
    return p, key


def update(store: Store, name: str, *, author: str = "twin", message: str | None = None, **changes: Any) -> Principal:
    """Change a principal (roles, clearance, area, disabled, keys) in one commit."""
    p = get(store, name)
    data = p.model_dump()
    if "roles" in changes and changes["roles"] is not None:
        changes["roles"] = [parse_role(r) if isinstance(r, str) else r for r in changes["roles"]]
    if isinstance(changes.get("clearance"), str):
        changes["clearance"] = parse_clearance(changes["clearance"])
    data.update({k: v for k, v in changes.items() if v is not None or k == "area"})
    try:
        new = Principal.model_validate(data)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    store.commit([new], message=message or f"change principal {name}", author=author)
    _forget(p.id)
    return new


def new_key(store: Store, name: str, *, author: str = "twin") -> str:
    """Another API key for the principal (its other keys stay valid until revoked); returns the key."""
    p = get(store, name)
    key, api_key = _new_key()
    update(store, name, keys=[*p.keys, api_key], author=author, message=f"new key for principal {name}")
    return key


def revoke_key(store: Store, name: str, key_id: str, *, author: str = "twin") -> Principal:
    p = get(store, name)
    if key_id not in {k.id for k in p.keys}:
        raise NotFound(f"principal {name!r} has no key {key_id!r}")
    keys = [k.model_copy(update={"revoked": True}) if k.id == key_id else k for k in p.keys]
    return update(store, name, keys=keys, author=author, message=f"revoke key {key_id} of principal {name}")


def _forget(pid: str) -> None:
    with _verified_lock:
        for digest in [d for d, (p, _) in _verified.items() if p == pid]:
            del _verified[digest]


def authenticate_key(store: Store, key: str) -> tuple[Principal, str]:
    """The principal an API key belongs to and the key's id; Unauthorized (never naming the key) when the key is
    malformed, unknown, revoked or wrong, or its principal disabled."""
    if len(key) > MAX_KEY_CHARS or not (m := KEY_RE.match(key)):
        raise Unauthorized("the API key is malformed (expected twin_<id>_<secret>)")
    digest = hashlib.sha256(key.encode()).hexdigest()
    by_id = {p.id: p for p in _load(store)}
    with _verified_lock:
        known = _verified.get(digest)
    if known is not None:
        p = by_id.get(known[0])
        k = next((k for k in p.keys if k.id == known[1]), None) if p else None
        if p is not None and k is not None and not k.revoked and not p.disabled:
            return p, k.id
        _forget(known[0])
    for p in by_id.values():
        for k in p.keys:
            if k.id != m["id"]:
                continue
            try:
                _HASHER.verify(k.hash, m["secret"])
            except argon2.exceptions.VerificationError:
                raise Unauthorized("the API key is not valid") from None
            if k.revoked:
                raise Unauthorized("the API key has been revoked")
            if p.disabled:
                raise Unauthorized(f"principal {p.name!r} is disabled")
            with _verified_lock:
                _verified[digest] = (p.id, k.id)
            return p, k.id
    raise Unauthorized("the API key is not valid")
