"""The state `twin build` steps share: the branch's assets and entities as editable model dicts, and helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely

from data_models import Provenance
from twin.store import Store

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
    workers: int | None = None  # processes for per-tile work (None: all cores)
    products: list[Any] = field(default_factory=list)  # product assets (SourceAsset) to commit
    created: list[Path] = field(default_factory=list)  # product folders this build wrote (removed if it fails)

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



def multispectral(ctx: BuildContext) -> list[dict[str, Any]]:
    """Imagery assets with red and NIR bands and an acquisition time, oldest first."""
    out = [a for a in ctx.assets.get("imagery", [])
           if {"red", "nir"} <= set((a.get("properties") or {}).get("bands") or []) and a.get("acquired")]
    return sorted(out, key=lambda a: a["acquired"])



def standing_footprints(ctx: BuildContext) -> list[dict[str, Any]]:
    """Buildings that stand in the model: not LiDAR candidates, not ended in valid time."""
    return [b for b in ctx.of_type("Building")
            if not (b.get("attributes") or {}).get("candidate") and not b.get("valid_to")]



def put(ctx: BuildContext, entity: Any) -> None:
    """Add an entity, or replace the working copy with the same id (later steps see it either way)."""
    ctx.entities[entity.id] = entity.model_dump(mode="json")



def asset_provenance(asset: dict[str, Any], method: str, confidence: float = 1.0,
                     attribute: str | None = None) -> Provenance:
    """Provenance pointing at a catalog asset."""
    return Provenance(source_asset_id=asset["id"], acquired=asset.get("acquired"), method=method,
                      confidence=confidence, attribute=attribute)

