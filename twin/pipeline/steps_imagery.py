"""Build steps from multispectral imagery: land cover, footprint greenness, change detection."""

from __future__ import annotations

import numpy as np
from rasterio import features as rfeatures

from twin.fusion import change, landcover
from twin.geo import indices
from twin.geo.crs import reproject
from twin.pipeline.context import BuildContext, asset_provenance, multispectral, put, standing_footprints
from twin.sources.imagery import image_grid, read_bands
from twin.times import to_utc


def step_landcover(ctx: BuildContext) -> None:
    """Land cover fused from the newest multispectral image, the LiDAR and the model's footprints, roads, water."""
    images = multispectral(ctx)
    if not images:
        return
    img = images[-1]
    clouds = ctx.assets.get("pointcloud", [])
    feats = landcover.vector_features(standing_footprints(ctx), ctx.of_type("Road"), ctx.of_type("WaterBody"))
    res = landcover.classify(img["path"], [a["path"] for a in clouds], feats, bands=img["properties"]["bands"],
                             points_crs=clouds[0]["crs"] if clouds else None, features_crs=ctx.store.crs)
    prov = [asset_provenance(img, "landcover-fusion:imagery")]
    prov += [asset_provenance(a, "landcover-fusion:lidar") for a in clouds]
    ents = landcover.landcover_entities(res.classes, res.confidence, res.transform, res.crs, prov, 25.0,
                                        store_crs=ctx.store.crs, valid_from=None)
    keep = {e.id for e in ents}
    for e in ctx.of_type("LandCover"):
        if e["id"] not in keep and any(p.get("method", "").startswith("landcover-fusion")
                                       for p in e.get("provenance", [])):
            ctx.removed.add(e["id"])
    for e in ents:
        put(ctx, e)
    cell = abs(res.transform.a * res.transform.e)
    codes, counts = np.unique(res.classes[res.classes > 0], return_counts=True)
    ctx.report["landcover"] = {"image": img["id"], "polygons": len(ents),
                               "area_m2": {int(c): float(n * cell) for c, n in zip(codes, counts, strict=True)}}



def step_greenness(ctx: BuildContext) -> None:
    """Mean NDVI of each footprint from the newest multispectral image (green roofs, courtyard trees)."""
    images = multispectral(ctx)
    buildings = standing_footprints(ctx)
    if not images or not buildings:
        return
    img = images[-1]
    transform, shape, crs = image_grid(img["path"])
    bands = read_bands(img["path"], ["red", "nir"], bands_option=img["properties"]["bands"])
    nd = indices.ndvi(bands)
    geoms = reproject(np.asarray([ctx.geometry(b) for b in buildings], dtype=object), ctx.store.crs, crs)
    labels = rfeatures.rasterize(((g, i + 1) for i, g in enumerate(geoms)), out_shape=shape, transform=transform,
                                 dtype="int32", all_touched=False)
    ok = (labels > 0) & ~np.ma.getmaskarray(nd)
    n = len(buildings) + 1
    count = np.bincount(labels[ok], minlength=n)
    total = np.bincount(labels[ok], weights=np.ma.getdata(nd)[ok].astype(np.float64), minlength=n)
    done = 0
    for i, b in enumerate(buildings, start=1):
        if count[i] == 0:
            continue
        prov = asset_provenance(img, "ndvi-mean-footprint", round(min(1.0, count[i] / 20.0), 3), "ndvi_mean")
        ctx.set_attribute(b, "ndvi_mean", round(float(total[i] / count[i]), 4), prov)
        done += 1
    ctx.report["greenness"] = {"image": img["id"], "buildings": done}



def step_changes(ctx: BuildContext) -> None:
    """Built / demolished buildings between the two newest images, as new versions with their valid time."""
    images = multispectral(ctx)
    if len(images) < 2:
        return
    before, after = images[-2], images[-1]
    t = lambda a: to_utc(a["acquired"])  # noqa: E731
    clouds = ctx.assets.get("pointcloud", [])
    vectors = [a for a in ctx.assets.get("vector", []) if a.get("acquired")]
    cands = change.detect_changes(
        before["path"], after["path"], t(before), t(after),
        footprints=[(b["id"], ctx.geometry(b)) for b in standing_footprints(ctx)],
        footprints_time=max((t(a) for a in vectors), default=None),
        las_paths=[a["path"] for a in clouds], lidar_time=max((t(a) for a in clouds if a.get("acquired")),
                                                              default=None),
        bands=after["properties"]["bands"], store_crs=ctx.store.crs,
    )
    changed = change.apply_changes(ctx.of_type("Building"), cands, before_asset_id=before["id"],
                                   after_asset_id=after["id"])
    for b in changed:
        put(ctx, b)
    ctx.report["changes"] = {"built": sum(c.kind == "built" for c in cands),
                             "demolished": sum(c.kind == "demolished" for c in cands)}

