"""Build steps on buildings from LiDAR: outline candidates, heights, and LoD1.2/1.3/2.2 solids with trees."""

from __future__ import annotations

from pathlib import Path

import shapely

from data_models import Provenance, Quality
from twin.fusion.outlines import candidate_outlines
from twin.geo.crs import reproject
from twin.lidar.heights import GROUND_PERCENTILE, ROOF_PERCENTILE, footprint_heights
from twin.pipeline.context import BuildContext, put


def step_outlines(ctx: BuildContext) -> None:
    """Candidate buildings where building-class LiDAR points lie outside every known footprint.

    Candidates from an earlier build that a real footprint now explains (or that the points no longer show)
    are removed, so a footprint delivered later replaces its candidate.
    """
    clouds = ctx.assets.get("pointcloud", [])
    if not clouds:
        return
    known = [b for b in ctx.of_type("Building") if not (b.get("attributes") or {}).get("candidate")]
    found = candidate_outlines([Path(a["path"]) for a in clouds], [ctx.geometry(b) for b in known],
                               crs=ctx.store.crs, las_crs=[a.get("crs") for a in clouds],
                               asset_ids=[a["id"] for a in clouds],
                               acquired=max((a["acquired"] for a in clouds if a.get("acquired")), default=None))
    keep = {c.id for c in found}
    for b in ctx.of_type("Building"):
        if (b.get("attributes") or {}).get("candidate") and b["id"] not in keep:
            ctx.removed.add(b["id"])
    for c in found:
        if c.id not in ctx.entities:
            put(ctx, c)
    ctx.report["outlines"] = {"candidates": len(found)}



def step_heights(ctx: BuildContext) -> None:
    """Building heights from LiDAR (roof p70 minus ground p10), with provenance per tile and point density."""
    clouds = ctx.assets.get("pointcloud", [])
    buildings = [b for b in ctx.of_type("Building") if not b.get("valid_to")]  # LiDAR candidates included
    if not buildings or not clouds:
        return
    geoms = [ctx.geometry(b) for b in buildings]
    results = footprint_heights(geoms, [Path(a["path"]) for a in clouds], crs=ctx.store.crs,
                                las_crs=[a.get("crs") for a in clouds])
    tiles = [reproject(shapely.box(*a["extent"]["bbox"]), a["crs"], ctx.store.crs) for a in clouds]
    method = f"lidar-roof-p{ROOF_PERCENTILE}-ground-p{GROUND_PERCENTILE}"
    flagged = 0
    for b, g, r in zip(buildings, geoms, results, strict=True):
        c = g.representative_point()
        src = next((a for a, t in zip(clouds, tiles, strict=True) if t.covers(c)), clouds[0])
        if r.height is not None:
            prov = Provenance(source_asset_id=src["id"], acquired=src.get("acquired"), method=method,
                              confidence=round(min(1.0, r.point_density / 8.0), 3), attribute="height")
            ctx.set_attribute(b, "height", round(r.height, 3), prov, field_=True)
            b["attributes"]["ground_z"] = round(r.ground_z, 3)
            b["attributes"]["roof_z"] = round(r.roof_z, 3)
        else:
            b["height"] = None
            flagged += 1
        q = dict(b.get("quality") or {})
        q.update(point_density=round(r.point_density, 3), errors=r.flags)
        b["quality"] = Quality(**q).model_dump(mode="json")
    ctx.report["heights"] = {"buildings": len(buildings), "without_points": flagged}



LOD1_METHOD = "lod1-roof-p70-ground-p10"
TERRAIN_RESOLUTION = 1.0  # metres per DTM/DSM cell


def step_reality3d(ctx: BuildContext) -> None:
    """LoD1.2 / 1.3 (and 2.2 for simple roofs) solids with quality and roof type for every standing building, and
    individual trees, from the LiDAR."""
    from twin.pipeline.terrain_products import terrain_products
    from twin.reality3d.trees import METHOD as TREE_METHOD
    from twin.reality3d.trees import to_entities
    from twin.reality3d.work_tiles import reconstruct_by_tile

    clouds = ctx.assets.get("pointcloud", [])
    if not clouds:
        return
    las_bounds = [list(reproject(shapely.box(*a["extent"]["bbox"]), a["crs"], ctx.store.crs).bounds) for a in clouds]
    buildings = [b for b in ctx.of_type("Building") if not b.get("valid_to")]
    if buildings:
        tiles = [dict(a, bbox_store=box) for a, box in zip(clouds, las_bounds, strict=True)]
        by_id = {a["id"]: a for a in clouds}
        results = reconstruct_by_tile([ctx.geometry(b) for b in buildings], tiles, ctx.store.crs, ctx.workers)
        for b, (r, tile_id) in zip(buildings, results, strict=True):
            tile = by_id[tile_id]
            lods = {k: v for k, v in (b.get("lods") or {}).items() if k not in ("1.2", "1.3", "2.2")}
            lods.update(r["lods"])
            q = dict(b.get("quality") or {})
            q.update({k: v for k, v in r["quality"].items() if k != "errors"})
            # no 2.2 geometry for a fallback: the reason goes to the errors instead (3D BAG style)
            q["errors"] = sorted(set(q.get("errors") or []) | set(r["quality"].get("errors") or []) | set(r["flags22"]))
            q["flags"] = sorted(set(q.get("flags") or []) | set(r.get("notes22") or []))
            if r["rmse22"] is not None:
                q["rmse"] = {**(q.get("rmse") or {}), "2.2": r["rmse22"]}
            if r["roof_type"]:
                b["roof_type"] = r["roof_type"]
            prov = Provenance(source_asset_id=tile["id"], acquired=tile.get("acquired"), method=LOD1_METHOD,
                              attribute="lods", confidence=1.0)
            ctx.set_attribute(b, "lods", lods, prov, field_=True)
            b["quality"] = Quality(**q).model_dump(mode="json")
    products, terrain, created = terrain_products(
        ctx.store.root, clouds, las_bounds, ctx.store.crs, TERRAIN_RESOLUTION, ctx.workers,
        progress=lambda f: ctx.progress("build: reality3d (terrain, trees)", f))
    ctx.products += products
    ctx.created += [created] if created else []
    trees = to_entities(terrain.trees, asset_ids=[a["id"] for a in clouds], xy_m=terrain.xy_m)
    keep = {t.id for t in trees}
    for v in ctx.of_type("Vegetation"):
        if v["id"] not in keep and any(p.get("method") == TREE_METHOD for p in v.get("provenance", [])):
            ctx.removed.add(v["id"])
    for t in trees:
        put(ctx, t)
    ctx.report["reality3d"] = {"buildings": len(buildings), "trees": len(trees),
                               "terrain": {p.id: p.path for p in products}}

