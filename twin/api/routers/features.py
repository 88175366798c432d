"""OGC API Features Part 1: landing page, conformance, collections and items, with as_of and branch."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["features"])
