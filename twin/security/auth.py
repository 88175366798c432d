"""Who is calling: credentials from request headers to a principal. No credentials: the anonymous principal
(public data only). A credential that is given but not valid is a 401 naming what is wrong with it, never echoing it."""

from __future__ import annotations

from pathlib import Path

from data_models import Principal
from twin.errors import Unauthorized
from twin.security import principals as P
from twin.security import tokens
from twin.store import Store

MAX_HEADER_CHARS = 4096


def authenticate(store: Store, authorization: str | None = None, api_key: str | None = None,
                 secrets_dir: Path | str | None = None) -> tuple[Principal, str | None]:
    """The principal of ``Authorization: Bearer <API key or token>`` or ``X-API-Key: <API key>`` and the id of the
    key used (None for the anonymous principal)."""
    if api_key is not None and authorization is not None:
        raise Unauthorized("send one credential: Authorization or X-API-Key, not both")
    if api_key is not None:
        return P.authenticate_key(store, api_key.strip())
    if authorization is None:
        return P.ANONYMOUS, None
    if len(authorization) > MAX_HEADER_CHARS:
        raise Unauthorized("the Authorization header is too long")
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or " " in credential:
        raise Unauthorized("the Authorization header must be 'Bearer <API key or token>'")
    if credential.startswith("twin_"):
        return P.authenticate_key(store, credential)
    return tokens.authenticate_token(store, credential, secrets_dir)
