"""Request dependencies shared by routers: the store each request reads, as its principal may see it."""

from __future__ import annotations

from fastapi import Depends, Request

from data_models import Principal
from twin.api.auth import principal
from twin.security.guard import GuardedStore


async def get_store(request: Request, who: Principal = Depends(principal)) -> GuardedStore:
    """The app's Store behind the guard of the request's principal (one per request; kept on ``request.state``
    for the audit record). Async: FastAPI resolves it inline instead of in the thread pool."""
    guard = getattr(request.state, "guard", None)
    if guard is None:
        guard = request.state.guard = GuardedStore(request.app.state.store, who)
    return guard
