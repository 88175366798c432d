"""LoD solids of a building known only by its footprint, height and roof type (a planned or edited building).

Without LiDAR there is one roof height: LoD1.2 and LoD1.3 are both the footprint extruded from the base to
``base + height``. LoD2.2 is built when a roof type is given: flat is the LoD1 prism; shed, gable and hip use the
parametric rectangle roofs of :mod:`twin.reality3d.lod22` when the footprint is rectangular enough (IoU with its
minimum rotated rectangle at least ``MIN_RECT_IOU``), with the ridge at ``base + height`` and the eave lower by the
rise of a ``ROOF_PITCH_DEG`` roof (at most half the height). Any other case gives no LoD2.2 and says why in the
flags (``lod22_none`` and ``complex_footprint`` / ``complex_roof``), as the LiDAR reconstruction does.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import shapely
from shapely.geometry import MultiPolygon, Polygon

from data_models import RoofType, Solid
from twin.reality3d.lod22 import MIN_RECT_IOU, rectangle_frame, rectangle_roof_solid

ROOF_PITCH_DEG = 30.0
SLOPED = (RoofType.shed, RoofType.gable, RoofType.hip)

__all__ = ["FootprintSolids", "ROOF_PITCH_DEG", "footprint_solids"]


class FootprintSolids(NamedTuple):
    """The solids by LoD key ("1.2", "1.3", "2.2") and the flags saying what was simplified or left out."""

    lods: dict[str, Solid]
    flags: list[str]


def _polygon(footprint: shapely.Geometry, flags: list[str]) -> Polygon | None:
    """A valid Polygon of the footprint: repaired when invalid, the largest part of a MultiPolygon (flagged)."""
    g = footprint
    if not g.is_valid:
        g = shapely.make_valid(g)
        flags.append("footprint_repaired")
    parts = [p for p in shapely.get_parts(g) if isinstance(p, Polygon | MultiPolygon) and p.area > 0]
    parts = [q for p in parts for q in getattr(p, "geoms", [p])]
    if not parts:
        return None
    if len(parts) > 1:
        flags.append("multipolygon_largest_part")
    return max(parts, key=lambda p: p.area)


def footprint_solids(footprint: shapely.Geometry, height: float | None, base_z: float,
                     roof_type: RoofType | str | None = None) -> FootprintSolids:
    """LoD1.2, LoD1.3 and (with a roof type) LoD2.2 solids of a footprint raised by ``height`` above ``base_z``."""
    flags: list[str] = []
    if height is None or not height > 0:
        return FootprintSolids({}, ["no_height"])
    poly = _polygon(footprint, flags)
    if poly is None:
        return FootprintSolids({}, [*flags, "no_footprint"])
    top = float(base_z) + float(height)
    prism = Solid.extrude(poly, float(base_z), top)
    lods = {"1.2": prism, "1.3": prism}
    rt = RoofType(roof_type) if roof_type is not None else RoofType.unknown
    if rt == RoofType.flat:
        lods["2.2"] = prism
    elif rt in SLOPED:
        frame, iou = rectangle_frame(poly)
        if frame is None or iou < MIN_RECT_IOU:
            flags += ["lod22_none", "complex_footprint"]
        else:
            run = 2 * frame.b if rt == RoofType.shed else frame.b
            rise = min(run * math.tan(math.radians(ROOF_PITCH_DEG)), float(height) / 2)
            lods["2.2"] = rectangle_roof_solid(frame, rt, float(base_z), top - rise, top)
            flags.append("lod22_parametric_roof")
    elif rt != RoofType.unknown:
        flags += ["lod22_none", "complex_roof"]
    return FootprintSolids(lods, flags)
