"""Size presets of the demo city."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SizeSpec:
    name: str
    side_m: float  # the city is a square of this side
    target_buildings: int  # approximate number of cadastre buildings
    lidar_tile_m: float  # LAZ tiles are squares of this side (<= 1 km)
    lidar_density: float  # nominal pulses per m2 (single strip coverage, no strip overlap)
    gsd_m: float  # imagery ground sample distance
    n_air_stations: int
    n_traffic_stations: int
    days: int  # length of the sensor series


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec("tiny", 350.0, 60, 350.0, 10.0, 1.0, 2, 3, 7),  # for quick trials and tests
    "small": SizeSpec("small", 700.0, 300, 350.0, 10.0, 1.0, 3, 6, 14),
    "medium": SizeSpec("medium", 2000.0, 3000, 500.0, 10.0, 1.0, 8, 20, 14),
    "large": SizeSpec("large", 12000.0, 100000, 500.0, 9.0, 2.0, 30, 120, 14),
}


def get_size(size: str) -> SizeSpec:
    try:
        return SIZES[size]
    except KeyError:
        raise ValueError(f"unknown demo size {size!r}; valid sizes: {', '.join(SIZES)}") from None
