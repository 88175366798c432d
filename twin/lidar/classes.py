"""The one table of ASPRS LAS 1.4 point classes twin relies on (LAS 1.4 R15, table 17)."""

from __future__ import annotations

GROUND_CLASS = 2
GROUND_CLASSES = (2, 8, 11)  # ground, model key point, road surface
VEGETATION_CLASSES = (3, 4, 5)  # low, medium, high vegetation
BUILDING_CLASS = 6
NOISE_CLASSES = (7, 18)  # low noise, high noise
WATER_CLASS = 9
BRIDGE_CLASS = 17
