"""The web 3D viewer (CesiumJS, bundled at install time) at /viewer/."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["viewer"])
