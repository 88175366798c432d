"""OAuth2 bearer tokens: JWTs (HS256) signed by the server's secret, which lives on the server's machine, never in
the store (a copy of the store cannot mint tokens). A token names its principal and the API key it was exchanged
for, so revoking the key or disabling the principal ends the token too."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from pathlib import Path

import jwt

from data_models import Principal
from twin.errors import BadInput, Unauthorized
from twin.security import principals as P
from twin.store import Store
from twin.store.files import store_key, write_private

ISSUER = "twin"
DEFAULT_TTL_S = 3600
MAX_TTL_S = 7 * 24 * 3600
MAX_TOKEN_CHARS = 4096
SECRET_BYTES = 32


def secrets_dir(setting: Path | str | None = None) -> Path:
    """Where this machine keeps server keys: the setting, else ``$XDG_CONFIG_HOME/twin`` or ``~/.config/twin``."""
    if setting:
        return Path(setting).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config") / "twin"


def _secret(store: Store, setting: Path | str | None = None) -> bytes:
    """The signing secret of this store's tokens (32 random bytes, made on first use, 0600)."""
    path = secrets_dir(setting) / f"token-{store_key(store)}.secret"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            write_private(path, secrets.token_bytes(SECRET_BYTES), replace=False)
        except FileExistsError:
            pass  # a concurrent first use won: its secret is the one
        data = path.read_bytes()
    if len(data) != SECRET_BYTES:
        raise BadInput(f"{path}: the token signing secret must be {SECRET_BYTES} bytes, found {len(data)}; delete "
                       "the file to make a new one (tokens issued with the old one stop working)")
    return data


def issue(store: Store, principal: Principal, key_id: str, ttl_s: int = DEFAULT_TTL_S,
          setting: Path | str | None = None) -> tuple[str, int]:
    """A token for ``principal`` (authenticated by its key ``key_id``) valid ``ttl_s`` seconds; and that ttl."""
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise BadInput(f"expires_in: must be 1 to {MAX_TTL_S} seconds, got {ttl_s}")
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": principal.id, "kid": key_id, "iat": now, "exp": now + ttl_s,
              "jti": uuid.uuid4().hex}
    return jwt.encode(claims, _secret(store, setting), algorithm="HS256"), ttl_s


def authenticate_token(store: Store, token: str, setting: Path | str | None = None) -> tuple[Principal, str]:
    """The principal of a valid token and its key id; Unauthorized when it is malformed, forged, tampered with,
    expired, or its key revoked or principal disabled."""
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthorized("the token is too long")
    try:
        claims = jwt.decode(token, _secret(store, setting), algorithms=["HS256"], issuer=ISSUER,
                            options={"require": ["exp", "iat", "sub", "kid", "iss"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired; exchange the API key for a new one at /auth/token") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("the token is not valid") from None
    p = next((p for p in P._load(store) if p.id == claims["sub"]), None)
    if p is None:
        raise Unauthorized("the token's principal does not exist")
    k = next((k for k in p.keys if k.id == claims["kid"]), None)
    if k is None or k.revoked:
        raise Unauthorized("the token's API key has been revoked")
    if p.disabled:
        raise Unauthorized(f"principal {p.name!r} is disabled")
    return p, k.id
