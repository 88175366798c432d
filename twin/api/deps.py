"""Request dependencies shared by routers."""

from __future__ import annotations

from fastapi import Request

from twin.store import Store


def get_store(request: Request) -> Store:
    return request.app.state.store
