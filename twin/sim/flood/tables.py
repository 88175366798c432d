"""Default surface tables of the flood simulator, per land-cover class: Manning's n (s/m^⅓) and a constant loss
rate (infiltration, mm/h). A run overrides either with ``manning={"grass": 0.05}`` / ``infiltration_mm_h={...}``.

Manning's n: Chow (1959) *Open-Channel Hydraulics* Table 5-6 and the overland-flow values of Engman (1986, J. Irrig.
Drain. Eng. 112(1)): asphalt / concrete 0.011-0.016, bare soil 0.02-0.03, short grass 0.03-0.05 (0.15 for dense turf
in shallow overland flow; we take a value for flood depths of centimetres to decimetres), trees with undergrowth
0.08-0.12, open water 0.03. Loss rates: the saturated hydraulic conductivity of Rawls, Brakensiek & Miller (1983,
J. Hydraul. Eng. 109(1)) for loams (sandy loam 10.9 mm/h, loam 3.4 mm/h, silt loam 6.5 mm/h), raised under trees and
grass for root macropores; sealed surfaces, roads and water lose nothing. Drainage (sewers) is a separate capacity.
"""

from __future__ import annotations

from data_models import LandCoverClass

MANNING: dict[str, float] = {
    LandCoverClass.building.value: 0.015,  # only where a footprint is not a wall (roofs are routed, see simulator)
    LandCoverClass.road.value: 0.016,
    LandCoverClass.impervious.value: 0.015,
    LandCoverClass.grass.value: 0.035,
    LandCoverClass.tree.value: 0.10,
    LandCoverClass.water.value: 0.030,
    LandCoverClass.bare.value: 0.025,
}

INFILTRATION_MM_H: dict[str, float] = {
    LandCoverClass.building.value: 0.0,
    LandCoverClass.road.value: 0.0,
    LandCoverClass.impervious.value: 0.0,
    LandCoverClass.grass.value: 10.0,
    LandCoverClass.tree.value: 15.0,
    LandCoverClass.water.value: 0.0,
    LandCoverClass.bare.value: 5.0,
}

CLASSES: tuple[str, ...] = tuple(c.value for c in LandCoverClass)
DEFAULT_CLASS = LandCoverClass.impervious.value  # what a cell no land-cover polygon covers is taken to be


def merged(defaults: dict[str, float], override: dict[str, float] | None, what: str) -> dict[str, float]:
    """The default table with a run's overrides; an unknown class or a negative value is a ValueError naming it."""
    out = dict(defaults)
    for k, v in (override or {}).items():
        if k not in defaults:
            raise ValueError(f"{what}: unknown land-cover class {k!r}; classes: {', '.join(defaults)}")
        if not v >= 0:
            raise ValueError(f"{what}: {k} must be ≥ 0, got {v}")
        out[k] = float(v)
    return out
