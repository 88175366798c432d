"""Commits, branches and entity history: the store's versioning over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query

from data_models import Branch, Commit
from twin.api.deps import get_store
from twin.store import ASSETS, MAIN, Store
from twin.store import Query as StoreQuery

router = APIRouter(tags=["history"])


@router.get("/commits", response_model=list[Commit])
def commits(
    branch: str | None = Query(None, description="only commits visible on this branch (base history included)"),
    limit: int = Query(100, ge=1, le=10_000),
    store: Store = Depends(get_store),
) -> list[Commit]:
    """Commits, newest first."""
    return store.log(branch)[:limit]


@router.get("/commits/latest", response_model=Commit)
def latest_commit(branch: str = MAIN, store: Store = Depends(get_store)) -> Commit:
    """The newest commit visible on a branch."""
    log = store.log(branch)
    if not log:
        raise HTTPException(404, f"no commits on branch {branch!r} yet")
    return log[0]


@router.get("/commits/{version}/changes")
def commit_changes(version: int, store: Store = Depends(get_store)) -> list[dict]:
    """The entity ids one commit touched (add / modify / remove)."""
    return store.changelog(version)


@router.get("/branches", response_model=list[Branch])
def branches(store: Store = Depends(get_store)) -> list[Branch]:
    return store.branches()


@router.get("/entities/{entity_id}")
def entity(entity_id: str, branch: str = MAIN, as_of: str | None = None, store: Store = Depends(get_store)) -> dict:
    """One city object as of a version or time (default latest), with its provenance and quality."""
    row = store.get(entity_id, branch, as_of)
    if row is None:
        raise HTTPException(404, f"no entity {entity_id!r} on branch {branch!r}")
    return row


@router.get("/assets")
def assets(branch: str = MAIN, as_of: str | None = None, store: Store = Depends(get_store)) -> list[dict]:
    """The source catalog: every ingested file's current asset record (checksum, CRS, extent, time, licence)."""
    return store.features(branch, as_of, StoreQuery(collection=ASSETS))


@router.get("/entities/{entity_id}/history")
def entity_history(entity_id: str, branch: str = MAIN, store: Store = Depends(get_store)) -> list[dict]:
    """Every version of one entity visible on a branch, oldest first."""
    rows = store.history(entity_id, branch)
    if not rows:
        raise HTTPException(404, f"no entity {entity_id!r} on branch {branch!r}")
    return rows
