"""Request dependencies shared by routers."""

from __future__ import annotations

from fastapi import Request

from twin.store import Store


async def get_store(request: Request) -> Store:
    """The app's Store (async: FastAPI then resolves it inline instead of in the thread pool)."""
    return request.app.state.store
