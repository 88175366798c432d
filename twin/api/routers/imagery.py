"""XYZ tiles of the ingested satellite and aerial images, for the viewer base map and GIS clients."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["imagery"])
