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

import shapely

from data_models import Provenance, Quality, parse_city_object
from twin.fusion.heights import GROUND_PERCENTILE, ROOF_PERCENTILE, footprint_heights
from twin.fusion.outlines import candidate_outlines
from twin.sources.crs import reproject
from twin.store import ASSETS, CITY, MAIN, Query, Store

Progress = Callable[[str, float], None]


@dataclass
class BuildContext:
    """The branch's state as the steps see it: assets by kind, buildings as editable model dicts."""

    store: Store
    branch: str
    progress: Progress
    assets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> model dict (edited in place)
    new: dict[str, Any] = field(default_factory=dict)  # id -> new entity (model or dict)
    removed: set[str] = field(default_factory=set)  # ids to remove
    report: dict[str, Any] = field(default_factory=dict)  # what each step did, for the CLI and the commit message

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
        e["provenance"] = [p for p in e.get("provenance", []) if p.get("attribute") != key]
        e["provenance"].append(prov.model_dump(mode="json"))


def step_heights(ctx: BuildContext) -> None:
    """Building heights from LiDAR (roof p70 minus ground p10), with provenance per tile and point density."""
    clouds = ctx.assets.get("pointcloud", [])
    buildings = ctx.of_type("Building")
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
            ctx.new[c.id] = c
    ctx.report["outlines"] = {"candidates": len(found)}


STEPS: dict[str, Callable[[BuildContext], None]] = {
    "outlines": step_outlines,
    "heights": step_heights,
}


def build(store: Store, branch: str = MAIN, author: str = "twin", progress: Progress | None = None,
          only: list[str] | None = None):
    """Run the build steps (all, or ``only`` those named) and commit; returns the Commit, or None if unchanged."""
    progress = progress or (lambda stage, frac: None)
    names = list(STEPS) if not only else only
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ValueError(f"unknown build step(s) {', '.join(unknown)}; steps: {', '.join(STEPS)}")
    ctx = BuildContext(store=store, branch=branch, progress=progress)
    for a in store.features(branch, query=Query(collection=ASSETS)):
        ctx.assets.setdefault(a["kind"], []).append(a)
    for e in store.features(branch, query=Query(collection=CITY)):
        e.pop("_store", None)
        ctx.entities[e["id"]] = e
    for name in names:
        progress(f"build: {name}", 0.0)
        STEPS[name](ctx)
        progress(f"build: {name}", 1.0)
    put = [parse_city_object(e) for e in ctx.entities.values() if e["id"] not in ctx.removed]
    put += [e for k, e in ctx.new.items() if k not in ctx.removed]
    progress("build: committing", 0.0)
    commit = store.commit(put, remove=sorted(ctx.removed), message=f"build: {', '.join(names)}", author=author,
                          branch=branch)
    progress("build: committing", 1.0)
    return commit
