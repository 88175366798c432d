"""`twin build`: run the fusion steps over what the catalog and the store hold, and commit once.

Each step reads the branch's current state through a shared ``BuildContext`` and edits working copies of entities;
the build commits every changed entity as one version, so a failing step leaves the store as it was and a rebuild
with nothing new is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import shapely
from rasterio import features as rfeatures

from data_models import Provenance, Quality, parse_city_object
from twin.fusion import change, indices, landcover
from twin.fusion.heights import GROUND_PERCENTILE, ROOF_PERCENTILE, footprint_heights
from twin.fusion.outlines import candidate_outlines
from twin.sources.crs import reproject
from twin.sources.imagery import image_grid, read_bands
from twin.store import ASSETS, CITY, MAIN, Query, Store
from twin.times import to_utc

Progress = Callable[[str, float], None]


@dataclass
class BuildContext:
    """The branch's state as the steps see it: assets by kind, buildings as editable model dicts."""

    store: Store
    branch: str
    progress: Progress
    assets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> model dict, edited in place; new too
    removed: set[str] = field(default_factory=set)  # ids to remove
    layers: list[tuple[Any, Any]] = field(default_factory=list)  # (LayerSpec, finest values) to publish
    store_tables: dict[str, set[str]] = field(default_factory=dict)  # bulk table -> asset ids holding rows
    report: dict[str, Any] = field(default_factory=dict)  # what each step did (shown by `twin build`)

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [e for e in self.entities.values() if e["type"] in types]

    def geometry(self, e: dict[str, Any]) -> shapely.Geometry:
        return shapely.geometry.shape(e["geometry"])

    def set_attribute(self, e: dict[str, Any], key: str, value: Any, prov: Provenance, *, field_: bool = False) -> None:
        """Set an attribute (or a model field) and replace its provenance entry."""
        if field_:
            e[key] = value
        else:
            e.setdefault("attributes", {})[key] = value
        kept = [p for p in e.get("provenance", []) if p.get("attribute") != key] + [prov.model_dump(mode="json")]
        # canonical order, so running steps in another order or alone changes nothing
        e["provenance"] = sorted(kept, key=lambda p: (p.get("attribute") or "", p["method"], p["source_asset_id"]))


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
            _put(ctx, c)
    ctx.report["outlines"] = {"candidates": len(found)}


def _multispectral(ctx: BuildContext) -> list[dict[str, Any]]:
    """Imagery assets with red and NIR bands and an acquisition time, oldest first."""
    out = [a for a in ctx.assets.get("imagery", [])
           if {"red", "nir"} <= set((a.get("properties") or {}).get("bands") or []) and a.get("acquired")]
    return sorted(out, key=lambda a: a["acquired"])


def _footprints(ctx: BuildContext) -> list[dict[str, Any]]:
    """Buildings that stand in the model: not LiDAR candidates, not ended in valid time."""
    return [b for b in ctx.of_type("Building")
            if not (b.get("attributes") or {}).get("candidate") and not b.get("valid_to")]


def _put(ctx: BuildContext, entity: Any) -> None:
    """Add an entity, or replace the working copy with the same id (later steps see it either way)."""
    ctx.entities[entity.id] = entity.model_dump(mode="json")


def step_landcover(ctx: BuildContext) -> None:
    """Land cover fused from the newest multispectral image, the LiDAR and the model's footprints, roads, water."""
    images = _multispectral(ctx)
    if not images:
        return
    img = images[-1]
    clouds = ctx.assets.get("pointcloud", [])
    feats = landcover.vector_features(_footprints(ctx), ctx.of_type("Road"), ctx.of_type("WaterBody"))
    res = landcover.classify(img["path"], [a["path"] for a in clouds], feats, bands=img["properties"]["bands"],
                             points_crs=clouds[0]["crs"] if clouds else None, features_crs=ctx.store.crs)
    prov = [ctx_prov(img, "landcover-fusion:imagery")] + [ctx_prov(a, "landcover-fusion:lidar") for a in clouds]
    ents = landcover.landcover_entities(res.classes, res.confidence, res.transform, res.crs, prov, 25.0,
                                        store_crs=ctx.store.crs, valid_from=None)
    keep = {e.id for e in ents}
    for e in ctx.of_type("LandCover"):
        if e["id"] not in keep and any(p.get("method", "").startswith("landcover-fusion")
                                       for p in e.get("provenance", [])):
            ctx.removed.add(e["id"])
    for e in ents:
        _put(ctx, e)
    cell = abs(res.transform.a * res.transform.e)
    codes, counts = np.unique(res.classes[res.classes > 0], return_counts=True)
    ctx.report["landcover"] = {"image": img["id"], "polygons": len(ents),
                               "area_m2": {int(c): float(n * cell) for c, n in zip(codes, counts, strict=True)}}


def ctx_prov(asset: dict[str, Any], method: str, confidence: float = 1.0, attribute: str | None = None) -> Provenance:
    """Provenance pointing at a catalog asset."""
    return Provenance(source_asset_id=asset["id"], acquired=asset.get("acquired"), method=method,
                      confidence=confidence, attribute=attribute)


def step_greenness(ctx: BuildContext) -> None:
    """Mean NDVI of each footprint from the newest multispectral image (green roofs, courtyard trees)."""
    images = _multispectral(ctx)
    buildings = _footprints(ctx)
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
        prov = ctx_prov(img, "ndvi-mean-footprint", round(min(1.0, count[i] / 20.0), 3), "ndvi_mean")
        ctx.set_attribute(b, "ndvi_mean", round(float(total[i] / count[i]), 4), prov)
        done += 1
    ctx.report["greenness"] = {"image": img["id"], "buildings": done}


def step_changes(ctx: BuildContext) -> None:
    """Built / demolished buildings between the two newest images, as new versions with their valid time."""
    images = _multispectral(ctx)
    if len(images) < 2:
        return
    before, after = images[-2], images[-1]
    t = lambda a: to_utc(a["acquired"])  # noqa: E731
    clouds = ctx.assets.get("pointcloud", [])
    vectors = [a for a in ctx.assets.get("vector", []) if a.get("acquired")]
    cands = change.detect_changes(
        before["path"], after["path"], t(before), t(after),
        footprints=[(b["id"], ctx.geometry(b)) for b in _footprints(ctx)],
        footprints_time=max((t(a) for a in vectors), default=None),
        las_paths=[a["path"] for a in clouds], lidar_time=max((t(a) for a in clouds if a.get("acquired")),
                                                              default=None),
        bands=after["properties"]["bands"], store_crs=ctx.store.crs,
    )
    changed = change.apply_changes(ctx.of_type("Building"), cands, before_asset_id=before["id"],
                                   after_asset_id=after["id"])
    for b in changed:
        _put(ctx, b)
    ctx.report["changes"] = {"built": sum(c.kind == "built" for c in cands),
                             "demolished": sum(c.kind == "demolished" for c in cands)}


LOD1_METHOD = "lod1-roof-p70-ground-p10"


def step_reality3d(ctx: BuildContext) -> None:
    """LoD1.2 / 1.3 (and 2.2 for simple roofs) solids with quality and roof type for every standing building, and
    individual trees, from the LiDAR."""
    from twin.reality3d.buildings import building_points
    from twin.reality3d.lod1 import reconstruct_lod1
    from twin.reality3d.lod22 import reconstruct_lod22
    from twin.reality3d.terrain import build_terrain
    from twin.reality3d.trees import METHOD as TREE_METHOD
    from twin.reality3d.trees import trees_from_terrain

    clouds = ctx.assets.get("pointcloud", [])
    if not clouds:
        return
    paths, las_crs = [Path(a["path"]) for a in clouds], [a.get("crs") for a in clouds]
    acquired = max((a["acquired"] for a in clouds if a.get("acquired")), default=None)
    buildings = [b for b in ctx.of_type("Building") if not b.get("valid_to")]
    if buildings:
        geoms = [ctx.geometry(b) for b in buildings]
        prov = Provenance(source_asset_id=clouds[0]["id"], acquired=acquired, method=LOD1_METHOD, attribute="lods",
                          confidence=1.0)
        for b, g, bp in zip(buildings, geoms, building_points(geoms, paths, crs=ctx.store.crs, las_crs=las_crs),
                            strict=True):
            r = reconstruct_lod1(bp, g)
            lods = {k: v for k, v in (b.get("lods") or {}).items() if k not in ("1.2", "1.3", "2.2")}
            lods.update({k: solid.model_dump(mode="json") for k, solid in r.lods.items()})
            q = dict(b.get("quality") or {})
            new = r.quality.model_dump(mode="json")
            q.update({k: v for k, v in new.items() if k != "errors"})
            errors = set(q.get("errors") or []) | set(new.get("errors") or [])
            if r.lods:
                # LoD2.2 for simple roofs; otherwise no 2.2 geometry and the fallback said in the errors (3D BAG style)
                s22 = reconstruct_lod22(bp, g, r)
                if "lod22_fallback_lod13" in s22.flags or s22.solid is None:
                    errors |= set(s22.flags)
                else:
                    lods["2.2"] = s22.solid.model_dump(mode="json")
                    q["rmse"] = {**(q.get("rmse") or {}), "2.2": round(float(s22.rmse), 4)}
                b["roof_type"] = s22.roof_type.value
            ctx.set_attribute(b, "lods", lods, prov, field_=True)
            q["errors"] = sorted(errors)
            b["quality"] = Quality(**q).model_dump(mode="json")
    terrain = build_terrain(paths, resolution=1.0, crs=las_crs[0], to_crs=ctx.store.crs)
    trees = trees_from_terrain(terrain, asset_ids=[a["id"] for a in clouds])
    keep = {t.id for t in trees}
    for v in ctx.of_type("Vegetation"):
        if v["id"] not in keep and any(p.get("method") == TREE_METHOD for p in v.get("provenance", [])):
            ctx.removed.add(v["id"])
    for t in trees:
        _put(ctx, t)
    ctx.report["reality3d"] = {"buildings": len(buildings), "trees": len(trees)}


GREEN_NDVI = 0.3  # NDVI at and above which a surface counts as green (vegetation)
M2_PER_PERSON = 35.0  # residential floor area per inhabitant, Beijing urban average order of magnitude
STOREY_M = 3.0
STATIC_RES = [8, 9, 10, 11]
SENSOR_RES = [7, 8, 9]


def step_layers(ctx: BuildContext) -> None:
    """The standard H3 layers of what the store holds: green and impervious fraction, building volume, a
    population proxy, and hourly sensor layers (station cells and an interpolated PM2.5 surface)."""
    from data_models import LayerSpec
    from twin.layers import polygons, rasters, sensors
    from twin.layers.interpolate import interpolate_surface

    crs, top = ctx.store.crs, max(STATIC_RES)

    def add(name: str, values: pa.Table, lineage: list[str], **spec: Any) -> None:
        if values.num_rows:
            ctx.layers.append((LayerSpec(name=name, lineage=sorted(set(lineage)), **spec), values))

    images = _multispectral(ctx)
    if images:
        img = images[-1]
        transform, _, img_crs = image_grid(img["path"])
        nd = indices.ndvi(read_bands(img["path"], ["red", "nir"], bands_option=img["properties"]["bands"]))
        green = np.ma.MaskedArray((np.ma.getdata(nd) >= GREEN_NDVI).astype(np.uint8), mask=np.ma.getmaskarray(nd))
        add("green-fraction", rasters.class_fraction_values(green, transform, img_crs, top, 1), [img["id"]],
            variable="green_fraction", unit="1", kind="intensive", aggregation="area_weighted_mean",
            resolutions=STATIC_RES, description=f"share of area with NDVI >= {GREEN_NDVI} in the newest image")
    cover = ctx.of_type("LandCover")
    if cover:
        geoms = np.asarray([ctx.geometry(e) for e in cover], dtype=object)
        imp = np.asarray([e["cover_class"] in ("building", "road", "impervious") for e in cover])
        domain = polygons.candidate_cells(geoms, crs, top)
        add("impervious-fraction", polygons.area_fraction(geoms[imp], crs, top, cells=domain),
            [p["source_asset_id"] for e in cover[:1] for p in e.get("provenance", [])],
            variable="impervious_fraction", unit="1", kind="intensive", aggregation="area_weighted_mean",
            resolutions=STATIC_RES, description="share of area covered by buildings, roads and other sealed land")
    standing = [b for b in _footprints(ctx) if b.get("height")]
    if standing:
        geoms = np.asarray([ctx.geometry(b) for b in standing], dtype=object)
        height = np.asarray([b["height"] for b in standing], np.float64)
        storeys = np.maximum(1.0, np.round(height / STOREY_M))
        lineage = sorted({p["source_asset_id"] for b in standing for p in b.get("provenance", [])})
        vals = polygons.building_values(geoms, crs, top, height=height)
        add("building-volume", vals["volume"], lineage, variable="building_volume", unit="m3", kind="extensive",
            aggregation="sum", resolutions=STATIC_RES, description="footprint area x LiDAR height, split by area")
        resid = np.asarray([(b.get("use") or b.get("attributes", {}).get("use")) == "residential" for b in standing])
        if resid.any():
            people = polygons.sum_values(geoms[resid], shapely.area(geoms[resid]) * storeys[resid] / M2_PER_PERSON,
                                         crs, top)
            add("population", people, lineage, variable="population_proxy", unit="persons", kind="extensive",
                aggregation="sum", resolutions=STATIC_RES,
                description=f"residential floor area (height / {STOREY_M} m storeys) / {M2_PER_PERSON} m2 per person")
    series = [a for a in ctx.assets.get("sensors", []) if a["id"] in ctx.store_tables.get("observations", ())]
    stations = ctx.of_type("Sensor")
    if series and stations:
        obs = ctx.store.read_table("observations", ctx.branch)
        have = set(obs.column("variable").unique().to_pylist())
        lineage = [a["id"] for a in series]
        if "pm25" in have:
            add("pm25-hourly", sensors.station_values(obs, stations, crs, "pm25", max(SENSOR_RES), 3600), lineage,
                variable="pm25", unit="ug/m3", kind="intensive", aggregation="mean", resolutions=SENSOR_RES,
                time_bucket="1h", description="hourly mean PM2.5 at the monitoring stations' cells")
            area = polygons.candidate_cells(np.asarray([ctx.geometry(e) for e in cover or _footprints(ctx)],
                                                       dtype=object), crs, max(SENSOR_RES))
            surface = interpolate_surface(sensors.station_series(obs, stations, crs, "pm25", 3600), area, "idw")
            meta = surface.metadata
            add("pm25-idw", surface.values, lineage, variable="pm25", unit="ug/m3", kind="intensive",
                aggregation="mean", resolutions=SENSOR_RES, time_bucket="1h",
                description=f"hourly PM2.5 interpolated by {meta['method']} over the city; leave-one-out CV MAE "
                            f"{meta['cv_mae']:.2f} ug/m3, RMSE {meta['cv_rmse']:.2f}, {meta['n_stations']} stations")
        if "vehicles" in have:
            add("traffic-hourly", sensors.station_values(obs, stations, crs, "vehicles", max(SENSOR_RES), 3600),
                lineage, variable="vehicles", unit="1/h", kind="intensive", aggregation="mean",
                resolutions=SENSOR_RES, time_bucket="1h", description="hourly vehicle counts at the counting stations")
    ctx.report["layers"] = [spec.name for spec, _ in ctx.layers]


STEPS: dict[str, Callable[[BuildContext], None]] = {
    "outlines": step_outlines,
    "heights": step_heights,
    "landcover": step_landcover,
    "greenness": step_greenness,
    "changes": step_changes,
    "reality3d": step_reality3d,
    "layers": step_layers,
}


def build(store: Store, branch: str = MAIN, author: str = "twin", progress: Progress | None = None,
          only: list[str] | None = None, report: dict[str, Any] | None = None):
    """Run the build steps (all, or ``only`` those named) and commit; returns the Commit, or None if unchanged.

    ``report``, when given, is filled with what each step did (counts, images used, layers published).
    """
    progress = progress or (lambda stage, frac: None)
    names = list(STEPS) if not only else only
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ValueError(f"unknown build step(s) {', '.join(unknown)}; steps: {', '.join(STEPS)}")
    ctx = BuildContext(store=store, branch=branch, progress=progress, report=report if report is not None else {})
    for a in store.features(branch, query=Query(collection=ASSETS)):
        ctx.assets.setdefault(a["kind"], []).append(a)
    for name in store.table_names():
        ctx.store_tables[name] = store.table_assets(name, branch)
    for e in store.features(branch, query=Query(collection=CITY)):
        e.pop("_store", None)
        ctx.entities[e["id"]] = e
    for name in names:
        progress(f"build: {name}", 0.0)
        STEPS[name](ctx)
        progress(f"build: {name}", 1.0)
    put: list[Any] = [parse_city_object(e) for e in ctx.entities.values() if e["id"] not in ctx.removed]
    tables = {}
    if ctx.layers:
        from twin.layers.registry import TABLE, Layers

        reg = Layers(store)
        put += [spec for spec, _ in ctx.layers]
        tables[TABLE] = pa.concat_tables([reg.prepare(spec, values) for spec, values in ctx.layers])
    progress("build: committing", 0.0)
    commit = store.commit(put, remove=sorted(ctx.removed), message=f"build: {', '.join(names)}", author=author,
                          branch=branch, tables=tables)
    progress("build: committing", 1.0)
    return commit
