"""3D Tiles 1.1 tilesets (buildings, terrain, point cloud) per branch and version, with ETag and caching."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["tiles"])
