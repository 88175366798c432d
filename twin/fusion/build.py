"""`twin build`: derive what the ingested sources support and commit it as one new version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import shapely

from data_models import Building, Provenance, Quality
from twin.fusion.heights import GROUND_PERCENTILE, ROOF_PERCENTILE, footprint_heights
from twin.sources import SourceError
from twin.store import ASSETS, CITY, MAIN, Query, Store

Progress = Callable[[str, float], None]


def build(store: Store, branch: str = MAIN, author: str = "twin", progress: Progress | None = None):
    """Fuse LiDAR heights into the branch's buildings; returns the Commit, or None when nothing changed."""
    progress = progress or (lambda stage, frac: None)
    progress("build: building heights from LiDAR", 0.0)
    assets = [a for a in store.features(branch, query=Query(collection=ASSETS)) if a["kind"] == "pointcloud"]
    clouds = [a for a in assets if a.get("crs") == store.crs]
    if len(clouds) != len(assets):
        other = [a["path"] for a in assets if a.get("crs") != store.crs]
        raise SourceError(other[0], f"point cloud CRS differs from the store CRS {store.crs}; reprojecting "
                                    "point clouds is not supported by this build step")
    buildings = store.features(branch, query=Query(collection=CITY, types=["Building"]))
    if not buildings or not clouds:
        progress("build: building heights from LiDAR", 1.0)
        return None
    geoms = [shapely.geometry.shape(b["geometry"]) for b in buildings]
    results = footprint_heights(geoms, [Path(a["path"]) for a in clouds])
    progress("build: building heights from LiDAR", 0.8)
    tiles = [shapely.box(*a["extent"]["bbox"]) for a in clouds]
    updated = []
    for b, g, r in zip(buildings, geoms, results, strict=True):
        data = {k: v for k, v in b.items() if k != "_store"}
        prov = [p for p in data.get("provenance", []) if p.get("attribute") not in ("height", "ground_z")]
        attrs = dict(data.get("attributes") or {})
        if r.height is not None:
            method = f"lidar-roof-p{ROOF_PERCENTILE}-ground-p{GROUND_PERCENTILE}"
            confidence = min(1.0, r.point_density / 8.0)
            c = g.representative_point()
            src = next((a for a, t in zip(clouds, tiles, strict=True) if t.covers(c)), clouds[0])
            prov.append(Provenance(source_asset_id=src["id"], acquired=src.get("acquired"), method=method,
                                   confidence=round(confidence, 3), attribute="height").model_dump(mode="json"))
            attrs["ground_z"] = round(r.ground_z, 3)
            attrs["roof_z"] = round(r.roof_z, 3)
            data["height"] = round(r.height, 3)
        else:
            data["height"] = None
        q = dict(data.get("quality") or {})
        q.update(point_density=round(r.point_density, 3), errors=r.flags)
        data["quality"] = Quality(**q).model_dump(mode="json")
        data["attributes"] = attrs
        data["provenance"] = prov
        updated.append(Building.model_validate(data))
    progress("build: committing", 0.0)
    commit = store.commit(updated, message="build: building heights from LiDAR", author=author, branch=branch)
    progress("build: committing", 1.0)
    progress("build: building heights from LiDAR", 1.0)
    return commit
