"""Commits, branches and entity history: the store's versioning over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi import Path as P

from data_models import Branch, Commit
from twin.api import schemas
from twin.api.deps import get_store
from twin.api.ogc import JSONDoc
from twin.errors import NotFound
from twin.store import ASSETS, MAIN, Store
from twin.store import Query as StoreQuery

router = APIRouter(tags=["history"])

_BRANCH = Query(MAIN, description="branch (scenario) to read", examples=[MAIN])
_AS_OF = Query(None, description="version number or RFC 3339 time; default the latest", examples=["1"])
_ENTITY = P(description="store entity id", examples=["bldg-110101-000001"])


@router.get("/commits", response_model=list[Commit])
def commits(
    branch: str | None = Query(None, description="only commits visible on this branch (base history included)"),
    limit: int = Query(100, ge=1, le=10_000),
    store: Store = Depends(get_store),
) -> list[Commit]:
    """Commits, newest first."""
    return store.log(branch)[:limit]


@router.get("/commits/latest", response_model=Commit)
def latest_commit(branch: str = _BRANCH, store: Store = Depends(get_store)) -> Commit:
    """The newest commit visible on a branch."""
    log = store.log(branch)
    if not log:
        raise NotFound(f"no commits on branch {branch!r} yet")
    return log[0]


@router.get("/commits/{version}/changes", response_class=JSONDoc, response_model=list[schemas.Change])
def commit_changes(version: int = P(description="version number", examples=[1]),
                   store: Store = Depends(get_store)) -> JSONDoc:
    """The entity ids one commit touched (add / modify / remove)."""
    return JSONDoc(store.changelog(version))


@router.get("/branches", response_model=list[Branch])
def branches(store: Store = Depends(get_store)) -> list[Branch]:
    """Every branch (``main`` and the scenario forks) with the branch and version it was forked from."""
    return store.branches()


@router.get("/entities/{entity_id}", response_class=JSONDoc, response_model=schemas.EntityRecord)
def entity(entity_id: str = _ENTITY, branch: str = _BRANCH, as_of: str | None = _AS_OF,
           store: Store = Depends(get_store)) -> JSONDoc:
    """One city object as of a version or time (default latest), with its provenance and quality."""
    row = store.get(entity_id, branch, as_of)
    if row is None:
        raise NotFound(f"no entity {entity_id!r} on branch {branch!r}")
    return JSONDoc(row)


@router.get("/assets", response_class=JSONDoc, response_model=list[schemas.AssetRecord])
def assets(branch: str = _BRANCH, as_of: str | None = _AS_OF, store: Store = Depends(get_store)) -> JSONDoc:
    """The source catalog: every ingested file's current asset record (checksum, CRS, extent, time, licence); a
    file's name, and its path relative to the store when the store keeps it (never a server path)."""
    return JSONDoc([schemas.asset_view(a, store.root) for a in store.features(branch, as_of,
                                                                               StoreQuery(collection=ASSETS))])


@router.get("/entities/{entity_id}/history", response_class=JSONDoc, response_model=list[schemas.EntityRecord])
def entity_history(entity_id: str = _ENTITY, branch: str = _BRANCH, store: Store = Depends(get_store)) -> JSONDoc:
    """Every version of one entity visible on a branch, oldest first."""
    rows = store.history(entity_id, branch)
    if not rows:
        raise NotFound(f"no entity {entity_id!r} on branch {branch!r}")
    return JSONDoc(rows)
