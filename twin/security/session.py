"""Local callers (the CLI, Python scripts, notebooks) as principals: the store behind the guard of the principal
whose API key they give (``TWIN_API_KEY``), else of the local admin (whoever can read the store directory can read
its files). Either way reads are tracked, so an export is audited with what it carried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twin.config import get_settings
from twin.security import principals as P
from twin.security.audit import AuditLog
from twin.security.guard import GuardedStore
from twin.store import Store


def open_store(path: Path | str, api_key: str | None = None) -> GuardedStore:
    """The store at ``path`` as the principal of ``api_key`` (an API key; not a token), or as the local admin."""
    store = Store(path)
    if api_key:
        principal, _ = P.authenticate_key(store, api_key.strip())
        return GuardedStore(store, principal)
    return GuardedStore(store, P.LOCAL_ADMIN)


def who(store: GuardedStore) -> str:
    """The name an audit record gives the caller: the principal, or ``local:<author>`` for the local admin (the
    author its commits record: ``$TWIN_AUTHOR``, else the OS user)."""
    if store.principal.id != P.LOCAL_ADMIN.id:
        return store.principal.name
    return f"local:{get_settings().author}"


def audit_export(store: GuardedStore, product: str, target: dict[str, Any], size: int | None,
                 secrets_dir: Path | str | None = None) -> dict:
    """One audit record of an export: who, the product and its parameters, the non-public ids it carried."""
    record = {"product": product, **target}
    touched = {c: sorted(ids) for c, ids in store.touched.items() if ids}
    if touched:
        record["ids"] = {c: ids[:1000] for c, ids in touched.items()}
    log = AuditLog.open(store.root, secrets_dir)
    try:
        return log.append(who(store), "export", record, client="cli", size=size)
    finally:
        log.close()
