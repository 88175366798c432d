"""City plan: roads, river, blocks, parcels, buildings (with parts and roofs), trees, lawns and changes.

Everything is vector data in EPSG:4548 (easting, northing). All randomness comes from the generator
passed in, and
every loop iterates over ordered lists, so the plan is a pure function of (seed, size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon, box
from shapely.geometry.polygon import orient

from . import names
from .roofs import FLAT, GABLE, HIP, ROOF_NAMES, SHED, part_volume
from .sizes import SizeSpec
from .terrain import Terrain

USES = ("residential", "commercial", "industrial", "public")
COMPOUND_CLASSIFICATION = "confidential"  # the level of the buildings of the government compound (mark_compound)
ROAD_CLASSES = {  # width_m, lanes
    "primary": (30.0, 6),
    "secondary": (18.0, 4),
    "residential": (9.0, 2),
    "service": (6.0, 1),
}
# internal ground cover codes (see render.py); landcover codes are 1 building, 2 impervious, 3 grass, 4 tree,
# 5 water, 6 bare
IMPERVIOUS, GRASS, WATER, BARE = 2, 3, 5, 6
ROOF_MATERIALS = ("concrete", "red_tile", "grey_tile", "blue_metal", "white_membrane", "dark_bitumen")
SPECIES = (
    "Sophora japonica",
    "Populus tomentosa",
    "Ginkgo biloba",
    "Platycladus orientalis",
    "Salix babylonica",
    "Fraxinus chinensis",
    "Ailanthus altissima",
)

DATE_1 = "2023-05-12"
DATE_2 = "2024-06-03"


@dataclass
class City:
    spec: SizeSpec
    seed: int
    x0: float
    y0: float
    side: float
    terrain: Terrain
    roads: list[dict] = field(default_factory=list)  # road_id, class, name, lanes, width_m, geom
    road_polys: list = field(default_factory=list)
    bridges: list = field(default_factory=list)
    water: object = None
    water_level: float = 0.0
    blocks: list[dict] = field(default_factory=list)  # poly, use, cover, angle
    lawns: list = field(default_factory=list)
    buildings: list[dict] = field(default_factory=list)
    parts: dict = field(default_factory=dict)  # numpy arrays, one entry per part
    part_polys: np.ndarray | None = None
    trees: dict = field(default_factory=dict)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x0 + self.side, self.y0 + self.side)

    def present(self, date_index: int) -> list[int]:
        """Indices of buildings standing on image date 0 (2023) or 1 (2024, also LiDAR and cadastre)."""
        gone = "demolished" if date_index == 1 else "built"
        return [i for i, b in enumerate(self.buildings) if b["status"] != gone]

    def sites(self, date_index: int) -> list:
        """Bare construction / demolition sites on an image date."""
        status = "built" if date_index == 0 else "demolished"
        return [b["site"] for b in self.buildings if b["status"] == status]


# ---------------------------------------------------------------- roads and river


def _grid_lines(rng, start, stop, lo, hi):
    pos, p = [], start + rng.uniform(20, lo)
    while p < stop - 20:
        pos.append(p)
        p += rng.uniform(lo, hi)
    return pos


def _road_class_for_index(i: int) -> str:
    return "primary" if i % 4 == 0 else "secondary"


def build_roads(city: City, rng: np.random.Generator) -> None:
    x0, y0, s = city.x0, city.y0, city.side
    x1, y1 = x0 + s, y0 + s
    ext = box(x0, y0, x1, y1)
    # river: meandering band crossing west to east
    width = 28.0 if s < 1000 else (40.0 if s < 5000 else 60.0)
    yc = y0 + s * rng.uniform(0.3, 0.7)
    amp = min(60.0, 0.06 * s)
    lam, ph = rng.uniform(400, 900), rng.uniform(0, 2 * np.pi)
    xs = np.arange(x0 - 60, x1 + 61, 10.0)
    ys = (
        yc
        + amp * np.sin(2 * np.pi * (xs - x0) / lam + ph)
        + 0.3 * amp * np.sin(2 * np.pi * (xs - x0) / (lam * 2.7))
    )
    center = LineString(np.column_stack([xs, ys]))
    city.water = orient(shapely.intersection(center.buffer(width / 2, cap_style="flat"), ext).buffer(0))
    zc = city.terrain.z(xs, ys)
    city.water_level = round(float(zc.min()) - 2.0, 2)

    lines: list[tuple[str, LineString]] = []
    vx = _grid_lines(rng, x0, x1, 120, 175)
    hy = [y for y in _grid_lines(rng, y0, y1, 120, 175) if abs(y - yc) > 1.3 * amp + width / 2 + 25]
    for i, x in enumerate(vx):
        lines.append((_road_class_for_index(i), LineString([(x, y0), (x, y1)])))
    for i, y in enumerate(hy):
        lines.append((_road_class_for_index(i + 1), LineString([(x0, y), (x1, y)])))
    # riverside road (curved), north bank
    bank = center.offset_curve(width / 2 + 14.0)
    lines.append(("secondary", bank))
    # service / residential roads splitting big grid cells
    bx = [x0] + vx + [x1]
    by = [y0] + hy + [y1]
    for i in range(len(bx) - 1):
        for j in range(len(by) - 1):
            if bx[i + 1] - bx[i] > 140 and rng.random() < 0.6:
                xm = (bx[i] + bx[i + 1]) / 2 + rng.uniform(-10, 10)
                seg = LineString([(xm, by[j]), (xm, by[j + 1])])
                if not seg.intersects(city.water):
                    lines.append(("residential" if rng.random() < 0.5 else "service", seg))
            if by[j + 1] - by[j] > 140:
                for ym in np.arange(by[j], by[j + 1], 110.0)[1:]:
                    seg = LineString([(bx[i], ym), (bx[i + 1], ym)])
                    if not seg.buffer(8.0).intersects(city.water) and (by[j + 1] - ym) > 40:
                        lines.append(("residential" if rng.random() < 0.6 else "service", seg))
    # diagonal avenues and curved ring roads
    for _ in range(max(1, round(s / 2500))):
        px, py = x0 + s * rng.uniform(0.3, 0.7), y0 + s * rng.uniform(0.3, 0.7)
        ang = math.radians(rng.uniform(25, 40)) * (1 if rng.random() < 0.5 else -1)
        d = 2 * s
        lines.append(
            (
                "primary",
                LineString(
                    [
                        (px - d * math.cos(ang), py - d * math.sin(ang)),
                        (px + d * math.cos(ang), py + d * math.sin(ang)),
                    ]
                ),
            )
        )
    for _ in range(max(1, round(s / 3000))):
        cx, cy = x0 + s * rng.uniform(0.2, 0.8), y0 + s * rng.uniform(0.2, 0.8)
        r = min(2500.0, s * rng.uniform(0.25, 0.4))
        a0 = rng.uniform(0, 2 * np.pi)
        t = a0 + np.linspace(0, 2 * np.pi / 3, 80)
        lines.append(("secondary", LineString(np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)]))))

    k = 0
    for cls, line in lines:
        g = shapely.intersection(line, ext)
        parts = (
            [g]
            if g.geom_type == "LineString"
            else [p for p in getattr(g, "geoms", []) if p.geom_type == "LineString"]
        )
        for p in parts:
            if p.is_empty or p.length < 30:
                continue
            w, lanes = ROAD_CLASSES[cls]
            k += 1
            geom = shapely.set_precision(p, 0.01)
            city.roads.append(
                {
                    "road_id": f"R{k:05d}",
                    "class": cls,
                    "name": names.road_name(k - 1, cls),
                    "lanes": lanes,
                    "width_m": w,
                    "geom": geom,
                }
            )
            poly = geom.buffer(w / 2, cap_style="flat")
            city.road_polys.append(poly)
            br = shapely.intersection(poly, city.water)
            if not br.is_empty and br.area > 1.0:
                city.bridges.append(br)


# ---------------------------------------------------------------- buildings


def _rise(b: float, deg: float, cap: float) -> float:
    return min(cap, b * math.tan(math.radians(deg)))


def _pick(rng, options, probs):
    return options[int(rng.choice(len(options), p=np.asarray(probs) / np.sum(probs)))]


def _design(rng, use: str, style: str, hw: float, hd: float) -> tuple[str, list[dict]]:
    """Parts of one building in its own frame (u along parcel width). hw, hd: usable half sizes."""
    u = rng.uniform

    def rect(pu, pv, hu, hv, code, eave, rise=0.0, minus=None):
        return {"r": (pu, pv, hu, hv), "code": code, "eave": eave, "rise": rise, "minus": minus}

    def sloped(hu, hv, code, deg_lo, deg_hi, cap):
        if code == HIP and max(hu, hv) < min(hu, hv) + 0.8:
            code = GABLE
        return code, _rise(min(hu, hv), u(deg_lo, deg_hi), cap)

    if use == "residential" and style == "low":
        shape = _pick(rng, ["rect", "L", "courtyard"], [0.5, 0.3, 0.2 if min(hw, hd) > 9 else 0])
        code0 = GABLE if rng.random() < 0.55 else HIP
        eave = u(3.0, 8.0)
        if shape == "rect":
            hu, hv = hw * u(0.7, 1.0), hd * u(0.75, 1.0)
            code, rise = sloped(hu, hv, code0, 22, 35, 5.0)
            return shape, [rect(0, 0, hu, hv, code, eave, rise)]
        if shape == "L":
            t = min(hd * 0.45, u(4.0, 6.0))
            main = (0.0, -hd + t, hw, t)
            wing_hu = min(hw * 0.4, u(3.5, 6.0))
            wing = (-hw + wing_hu, t, wing_hu, hd - t)
            out = []
            for pu, pv, hu, hv in (main, wing):
                code, rise = sloped(hu, hv, code0, 22, 35, 4.0)
                out.append(rect(pu, pv, hu, hv, code, round(eave, 2), rise))
            return shape, out
        # courtyard (siheyuan-like): four wings around a yard
        t = min(min(hw, hd) * 0.35, u(3.5, 5.0))
        wings = [
            (0.0, -hd + t, hw, t),
            (0.0, hd - t, hw, t),
            (-hw + t, 0.0, t, hd - 2 * t),
            (hw - t, 0.0, t, hd - 2 * t),
        ]
        out = []
        for pu, pv, hu, hv in wings:
            code, rise = sloped(hu, hv, GABLE, 25, 33, 3.5)
            out.append(rect(pu, pv, hu, hv, code, eave, rise))
        return shape, out
    if use == "residential":  # high-rise compound
        shape = _pick(rng, ["rect", "L", "U", "split"], [0.45, 0.25, 0.15, 0.15])
        eave = u(18.0, 80.0)
        if shape == "rect":
            return shape, [rect(0, 0, hw * u(0.6, 0.95), min(hd, u(6.0, 9.0)), FLAT, eave)]
        if shape == "L":
            t = min(hd * 0.4, u(6.0, 8.0))
            wu = min(hw * 0.35, u(6.0, 8.0))
            return shape, [
                rect(0, -hd + t, hw, t, FLAT, eave),
                rect(-hw + wu, t, wu, hd - t, FLAT, eave * u(0.6, 1.0)),
            ]
        if shape == "U":
            t = min(hd * 0.4, u(6.0, 8.0))
            wu = min(hw * 0.3, u(6.0, 8.0))
            return shape, [
                rect(0, -hd + t, hw, t, FLAT, eave),
                rect(-hw + wu, t, wu, hd - t, FLAT, eave),
                rect(hw - wu, t, wu, hd - t, FLAT, eave),
            ]
        # split: a tall slab with a low gabled annex
        ha = hw * u(0.55, 0.7)
        hv = min(hd, u(6.0, 10.0))
        annex = hw - ha
        code, rise = sloped(annex, hv, GABLE if rng.random() < 0.5 else HIP, 20, 30, 4.0)
        return shape, [rect(-hw + ha, 0, ha, hv, FLAT, eave), rect(ha, 0, annex, hv, code, u(4.0, 9.0), rise)]
    if use == "commercial":
        shape = _pick(rng, ["podium_tower", "rect", "split"], [0.45, 0.35, 0.2])
        if shape == "podium_tower":
            pu, pv = hw * u(0.8, 1.0), hd * u(0.8, 1.0)
            tu, tv = pu * u(0.35, 0.55), pv * u(0.35, 0.55)
            ou, ov = u(-1, 1) * (pu - tu - 2), u(-1, 1) * (pv - tv - 2)
            tower_code = FLAT if rng.random() < 0.7 else HIP
            teave = u(30.0, 140.0)
            code, rise = (FLAT, 0.0) if tower_code == FLAT else sloped(tu, tv, HIP, 20, 30, 8.0)
            return shape, [
                rect(0, 0, pu, pv, FLAT, u(8.0, 16.0), minus=(ou, ov, tu, tv)),
                rect(ou, ov, tu, tv, code, teave, rise),
            ]
        if shape == "rect":
            return shape, [rect(0, 0, hw * u(0.6, 1.0), hd * u(0.6, 1.0), FLAT, u(12.0, 60.0))]
        ha = hw * u(0.5, 0.65)
        hv = hd * u(0.6, 0.95)
        code, rise = sloped(hw - ha, hv, HIP, 18, 28, 6.0)
        return shape, [
            rect(-hw + ha, 0, ha, hv, FLAT, u(20.0, 60.0)),
            rect(ha, 0, hw - ha, hv, code, u(8.0, 15.0), rise),
        ]
    if use == "industrial":
        code = _pick(rng, [SHED, GABLE, FLAT], [0.45, 0.3, 0.25])
        hu, hv = hw * u(0.7, 1.0), hd * u(0.6, 0.95)
        eave = u(6.0, 14.0)
        if code == SHED:
            rise = min(6.0, 2 * min(hu, hv) * math.tan(math.radians(u(5, 12))))
        elif code == GABLE:
            rise = _rise(min(hu, hv), u(10, 18), 6.0)
        else:
            rise = 0.0
        return "rect", [rect(0, 0, hu, hv, code, eave, rise)]
    # public
    p_court = 0.35 if min(hw, hd) > 12 else 0.0
    shape = (
        "courtyard" if style == "courtyard" else _pick(rng, ["courtyard", "rect", "L"], [p_court, 0.35, 0.3])
    )
    if shape == "courtyard":
        t = min(min(hw, hd) * 0.3, u(6.0, 8.0))
        code0 = GABLE if rng.random() < 0.5 else HIP
        eave = u(6.0, 15.0)
        wings = [
            (0.0, -hd + t, hw, t),
            (0.0, hd - t, hw, t),
            (-hw + t, 0.0, t, hd - 2 * t),
            (hw - t, 0.0, t, hd - 2 * t),
        ]
        out = []
        for pu, pv, hu, hv in wings:
            code, rise = sloped(hu, hv, code0, 22, 30, 5.0)
            out.append(rect(pu, pv, hu, hv, code, eave, rise))
        return shape, out
    if shape == "rect":
        hu, hv = hw * u(0.6, 1.0), hd * u(0.6, 0.9)
        code, rise = sloped(hu, hv, HIP, 20, 30, 6.0)
        return shape, [rect(0, 0, hu, hv, code, u(6.0, 20.0), rise)]
    t = min(hd * 0.4, u(7.0, 10.0))
    wu = min(hw * 0.4, u(7.0, 10.0))
    eave = u(10.0, 30.0)
    return shape, [rect(0, -hd + t, hw, t, FLAT, eave), rect(-hw + wu, t, wu, hd - t, FLAT, eave)]


PARCEL = {  # (width range, depth range) of a parcel, m
    ("residential", "low"): ((15, 19), (13, 16)),
    ("residential", "high"): ((36, 42), (26, 30)),
    ("commercial", ""): ((40, 50), (38, 46)),
    ("industrial", ""): ((45, 60), (36, 46)),
    ("public", ""): ((40, 50), (38, 46)),
}


def _parcels(rng, block: Polygon, angle: float, pw: float, pd: float):
    """Centres (world) of parcels of size pw x pd that fit in the block, in a grid rotated by angle."""
    c = block.centroid
    rot = shapely.affinity.rotate(block, -angle, origin=c, use_radians=True)
    minx, miny, maxx, maxy = rot.bounds
    nx, ny = int((maxx - minx) // pw), int((maxy - miny) // pd)
    if nx < 1 or ny < 1:
        return np.zeros((0, 2))
    ox = minx + ((maxx - minx) - nx * pw) / 2
    oy = miny + ((maxy - miny) - ny * pd) / 2
    gx, gy = np.meshgrid(ox + pw * (np.arange(nx) + 0.5), oy + pd * (np.arange(ny) + 0.5))
    gx, gy = gx.ravel(), gy.ravel()
    rects = shapely.box(gx - pw / 2, gy - pd / 2, gx + pw / 2, gy + pd / 2)
    ok = shapely.contains(rot, rects)
    gx, gy = gx[ok] - c.x, gy[ok] - c.y
    ca, sa = math.cos(angle), math.sin(angle)
    return np.column_stack([c.x + gx * ca - gy * sa, c.y + gx * sa + gy * ca])


def _world_rect(cx, cy, ang, pu, pv, hu, hv) -> Polygon:
    ca, sa = math.cos(ang), math.sin(ang)
    pts = []
    for du, dv in ((-hu, -hv), (hu, -hv), (hu, hv), (-hu, hv)):
        u, v = pu + du, pv + dv
        pts.append((round(cx + u * ca - v * sa, 3), round(cy + u * sa + v * ca, 3)))
    return Polygon(pts)


def build_blocks_and_buildings(city: City, rng: np.random.Generator) -> None:
    x0, y0, s = city.x0, city.y0, city.side
    ext = box(x0, y0, x0 + s, y0 + s)
    barrier = shapely.union_all(city.road_polys + [city.water.buffer(10.0)])
    free = shapely.difference(ext, barrier).buffer(-3.0)  # 3 m sidewalks along roads and river promenade
    geoms = [g for g in getattr(free, "geoms", [free]) if g.area > 600.0]
    geoms.sort(key=lambda g: (round(g.centroid.y, 1), round(g.centroid.x, 1)))
    p_use = {"residential": 0.56, "commercial": 0.16, "industrial": 0.1, "public": 0.1, "park": 0.08}
    uses = list(p_use)
    # uses by quota (not independent draws) so that the building count varies little between seeds
    quota = np.floor(np.cumsum([0.0] + list(p_use.values())) * len(geoms) + 0.5).astype(int)
    pool = [u for k, u in enumerate(uses) for _ in range(quota[k + 1] - quota[k])]
    block_uses = [pool[i] for i in rng.permutation(len(pool))]
    # slivers stay open ground; every use at least once among the buildable blocks (small cities)
    buildable = [i for i, g in enumerate(geoms) if g.area > 3500.0]
    for i, g in enumerate(geoms):
        if g.area <= 3500.0:
            block_uses[i] = "open"

    # a use "fits" a block when at least one of its largest parcels fits
    def fits(i: int, use: str) -> int:
        key = (use, "high" if use == "residential" else "")
        (wlo, _), (dlo, _) = PARCEL[key]
        return len(_parcels(rng, geoms[i].buffer(-2.0), 0.0, wlo, dlo))

    forced = set()

    for use in ["commercial", "industrial", "public", "residential", "park"]:
        if any(block_uses[i] == use and (use == "park" or fits(i, use)) for i in buildable):
            continue
        counts = {u: sum(block_uses[i] == u for i in buildable) for u in uses}
        cands = [
            i
            for i in buildable
            if block_uses[i] in ("residential", "park", "public", "open")
            and counts.get(block_uses[i], 2) > 1
            and (use == "park" or fits(i, use))
        ]
        if cands:
            best = max(cands, key=lambda i: (fits(i, use), -i))
            block_uses[best] = use
            forced.add(best)
    parts_rows = []
    part_polys = []
    n_res = int(rng.integers(0, 5))
    n_courtyards = 0
    for bi, (g, use) in enumerate(zip(geoms, block_uses, strict=True)):
        angle = 0.0 if rng.random() < 0.85 else math.radians(rng.uniform(-30, 30))
        if bi in forced:
            angle = 0.0
        if use in ("park", "open"):
            cover = GRASS if use == "park" or rng.random() < 0.5 else IMPERVIOUS
        elif use == "residential":
            cover = GRASS if rng.random() < 0.4 else IMPERVIOUS
        elif use == "industrial":
            cover = BARE if rng.random() < 0.4 else IMPERVIOUS
        else:
            cover = IMPERVIOUS
        city.blocks.append({"poly": orient(g), "use": use, "cover": cover, "angle": angle})
        if use in ("park", "open"):
            continue
        if cover != GRASS:
            for _ in range(int(rng.integers(1, 4))):
                c = g.representative_point()
                w, d = rng.uniform(8, 25), rng.uniform(8, 25)
                lawn = shapely.intersection(
                    box(c.x - w + rng.uniform(-20, 20), c.y - d + rng.uniform(-20, 20), c.x + w, c.y + d), g
                )
                if not lawn.is_empty and lawn.area > 20:
                    city.lawns.append(lawn)
        style = ""
        if use == "residential":
            n_res += 1
            style = "low" if (n_res * 0.6) % 1.0 < 0.6 else "high"
        (wlo, whi), (dlo, dhi) = PARCEL[(use, style)]
        pw, pd = rng.uniform(wlo, whi), rng.uniform(dlo, dhi)
        centres = _parcels(rng, g.buffer(-2.0), angle, pw, pd)
        if len(centres) == 0 and use != "residential":  # irregular block: try the smallest parcels, unrotated
            pw, pd, angle = wlo, dlo, 0.0
            city.blocks[-1]["angle"] = angle
            centres = _parcels(rng, g.buffer(-2.0), angle, pw, pd)
        for k, (cx, cy) in enumerate(centres):
            margin = rng.uniform(1.5, 2.5) if style == "low" else rng.uniform(2.0, 4.0)
            hw, hd = pw / 2 - margin, pd / 2 - margin
            if use == "public" and not n_courtyards:
                style = "courtyard"  # at least one courtyard building per city
            shape, design = _design(rng, use, style, hw, hd)
            n_courtyards += shape == "courtyard"
            style = "" if style == "courtyard" else style
            polys = []
            for p in design:
                poly = _world_rect(cx, cy, angle, *p["r"])
                if p["minus"] is not None:
                    poly = shapely.difference(poly, _world_rect(cx, cy, angle, *p["minus"]))
                polys.append(orient(shapely.set_precision(poly, 0.001)))
            foot = shapely.union_all(polys)
            foot = orient(
                shapely.set_precision(
                    foot.buffer(0.0005, join_style="mitre").buffer(-0.0005, join_style="mitre"), 0.001
                )
            )
            if foot.geom_type != "Polygon":
                continue
            ground = round(float(city.terrain.z(foot.centroid.x, foot.centroid.y)), 2)
            b_idx = len(city.buildings)
            part_ids = []
            for p, poly in zip(design, polys, strict=True):
                pu, pv, hu, hv = p["r"]
                ca, sa = math.cos(angle), math.sin(angle)
                pcx, pcy = cx + pu * ca - pv * sa, cy + pu * sa + pv * ca
                if hu >= hv:
                    pang, a, b = angle, hu, hv
                else:
                    pang, a, b = angle + math.pi / 2, hv, hu
                part_ids.append(len(parts_rows))
                eave, rise = round(p["eave"], 2), round(p["rise"], 2) if p["code"] != FLAT else 0.0
                parts_rows.append((b_idx, p["code"], pcx, pcy, pang, a, b, ground, eave, rise))
                part_polys.append(poly)
            codes = {ROOF_NAMES[parts_rows[i][1]] for i in part_ids}
            city.buildings.append(
                {
                    "id": f"110101-{b_idx + 1:06d}",
                    "use": use,
                    "shape": shape,
                    "block": bi,
                    "name": names.building_name(use, bi, k),
                    "status": "existing",
                    "change_date": None,
                    "ground_z": ground,
                    "footprint": foot,
                    "parts": part_ids,
                    "roof_type": codes.pop() if len(codes) == 1 else "multi-part",
                    "material": ROOF_MATERIALS[int(rng.integers(len(ROOF_MATERIALS)))],
                    "site": orient(_world_rect(cx, cy, angle, 0, 0, pw / 2 - 1, pd / 2 - 1)),
                }
            )
    # make sure every roof type occurs, even in a small city: turn a plain gabled house into a shed if needed
    if not any(r[1] == SHED for r in parts_rows):
        for b in city.buildings:
            if len(b["parts"]) == 1 and parts_rows[b["parts"][0]][1] == GABLE:
                r = list(parts_rows[b["parts"][0]])
                r[1], r[9] = SHED, round(2 * r[6] * math.tan(math.radians(10.0)), 2)
                parts_rows[b["parts"][0]] = tuple(r)
                b["roof_type"] = "shed"
                break
    cols = list(zip(*parts_rows, strict=True))
    keys = ("building", "code", "cx", "cy", "angle", "a", "b", "ground", "eave", "rise")
    city.parts = {
        k: np.asarray(c, dtype=np.int64 if k in ("building", "code") else np.float64)
        for k, c in zip(keys, cols, strict=True)
    }
    city.part_polys = np.asarray(part_polys, dtype=object)
    # volumes
    areas = shapely.area(city.part_polys)
    vols = np.array(
        [
            part_volume(int(c), ar, a, b, e, r)
            for c, ar, a, b, e, r in zip(
                city.parts["code"],
                areas,
                city.parts["a"],
                city.parts["b"],
                city.parts["eave"],
                city.parts["rise"],
                strict=True,
            )
        ]
    )
    city.parts["area"] = areas
    city.parts["volume"] = vols


def mark_compound(city: City) -> None:
    """A government compound: the buildings of one block are ``confidential`` (the rest ``public``), so the sample
    city exercises the data-security layer. The block is the public-use block with the most buildings (ties: the
    last), else the non-residential one with the most; a pure function of the plan (no random draw: every other
    output is unchanged)."""
    count: dict[tuple[bool, int], int] = {}
    for b in city.buildings:
        if b["use"] != "residential":
            key = (b["use"] == "public", b["block"])
            count[key] = count.get(key, 0) + 1
    best = max(count, key=lambda k: (k[0], count[k], k[1]), default=None)
    for b in city.buildings:
        b["classification"] = COMPOUND_CLASSIFICATION if best and b["block"] == best[1] else "public"


def assign_changes(city: City, rng: np.random.Generator) -> None:
    n = len(city.buildings)
    small = [
        i
        for i, b in enumerate(city.buildings)
        if b["footprint"].area < 3000 and b["shape"] in ("rect", "L") and b["roof_type"] != "shed"
    ]
    n_built, n_demo = max(4, round(0.02 * n)), max(3, round(0.015 * n))
    pick = rng.choice(len(small), size=min(len(small), n_built + n_demo), replace=False)
    chosen = [small[i] for i in pick]
    d1, d2 = np.datetime64(DATE_1), np.datetime64(DATE_2)
    span = int((d2 - d1).astype(int))
    for k, i in enumerate(chosen):
        b = city.buildings[i]
        b["status"] = "built" if k < n_built else "demolished"
        b["change_date"] = str(d1 + np.timedelta64(int(rng.integers(30, span - 30)), "D"))


def build_trees(city: City, rng: np.random.Generator) -> None:
    xs, ys, rs, hs, kinds = [], [], [], [], []

    def add(px, py, r, h, kind):
        xs.append(px), ys.append(py), rs.append(r), hs.append(h), kinds.append(np.full(len(px), kind))

    for blk in city.blocks:
        g = blk["poly"]
        dens = {"park": 1 / 70.0, "residential": 1 / 400.0, "public": 1 / 500.0}.get(blk["use"], 0.0)
        if dens == 0.0:
            continue
        minx, miny, maxx, maxy = g.bounds
        n = rng.poisson(dens * (maxx - minx) * (maxy - miny))
        px, py = rng.uniform(minx, maxx, n), rng.uniform(miny, maxy, n)
        ok = shapely.contains_xy(g, px, py)
        m = int(ok.sum())
        add(
            px[ok],
            py[ok],
            rng.uniform(2.0, 5.5, m),
            rng.uniform(6.0, 20.0, m),
            0 if blk["use"] == "park" else 1,
        )
    for road in city.roads:
        if road["class"] == "service":
            continue
        line = road["geom"]
        for side in (-1, 1):
            off = line.offset_curve(side * (road["width_m"] / 2 + 1.5))
            if off.is_empty or off.length < 10:
                continue
            d = np.arange(rng.uniform(2, 8), off.length, 8.0)
            d = d + rng.uniform(-1.0, 1.0, len(d))
            pts = shapely.line_interpolate_point(off, np.clip(d, 0, off.length))
            keep = rng.random(len(pts)) < 0.8
            px, py = shapely.get_x(pts)[keep], shapely.get_y(pts)[keep]
            m = len(px)
            add(px, py, rng.uniform(2.0, 3.5, m), rng.uniform(6.0, 13.0, m), 2)
    x, y, r, h = (np.concatenate(v) for v in (xs, ys, rs, hs))
    kind = np.concatenate(kinds)
    x0, y0, s = city.x0, city.y0, city.side
    inside = (x > x0 + 1) & (x < x0 + s - 1) & (y > y0 + 1) & (y < y0 + s - 1)
    x, y, r, h, kind = x[inside], y[inside], r[inside], h[inside], kind[inside]
    discs = shapely.buffer(shapely.points(x, y), r + 1.0, quad_segs=4)
    tree = shapely.STRtree([b["site"] for b in city.buildings] + [b["footprint"] for b in city.buildings])
    hit = tree.query(discs, predicate="intersects")
    bad = np.zeros(len(x), bool)
    bad[hit[0]] = True
    bad |= shapely.intersects(city.water, discs)
    roads = shapely.STRtree(city.road_polys)
    bad[roads.query(shapely.points(x, y), predicate="intersects")[0]] = True
    keep = ~bad
    x, y, r, h, kind = x[keep], y[keep], r[keep], h[keep], kind[keep]
    n = len(x)
    base = h * rng.uniform(0.25, 0.45, n)
    species = rng.integers(0, len(SPECIES), n)
    g = np.round(city.terrain.z(x, y), 2)
    city.trees = {
        "x": np.round(x, 2),
        "y": np.round(y, 2),
        "ground": g,
        "height": np.round(h, 2),
        "crown_r": np.round(r, 2),
        "crown_base": np.round(base, 2),
        "species": species,
        "kind": kind,
    }


def build_city(spec: SizeSpec, seed: int, x0: float, y0: float) -> City:
    terrain = Terrain(np.random.default_rng([seed, 1]), x0, y0, spec.side_m)
    city = City(spec=spec, seed=seed, x0=x0, y0=y0, side=spec.side_m, terrain=terrain)
    build_roads(city, np.random.default_rng([seed, 2]))
    build_blocks_and_buildings(city, np.random.default_rng([seed, 3]))
    mark_compound(city)
    assign_changes(city, np.random.default_rng([seed, 4]))
    build_trees(city, np.random.default_rng([seed, 5]))
    return city
