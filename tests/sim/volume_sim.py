"""A small real simulator for the engine and CLI tests: per-building volume (footprint area x height x factor) and
its H3 layer, every number checkable against shapely. Importable as ``tests.sim.volume_sim:VolumeSimulator`` (e.g.
through ``TWIN_SIMULATORS``)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import shapely
from pydantic import BaseModel, Field

from data_models import LayerSpec
from twin.layers import polygons
from twin.sim import engine
from twin.store import Query


class VolumeParams(BaseModel):
    factor: float = Field(1.0, gt=0, le=10, description="multiplier on every volume")
    fail: bool = Field(False, description="raise inside the run")
    write_file: bool = Field(False, description="also write a small file product")


class VolumeSimulator:
    """Footprint area x height x factor per building, and the volume per H3 cell (res 10)."""

    name: ClassVar[str] = "test-volume"
    title: ClassVar[str] = "test volume"
    description: ClassVar[str] = "per-building volume, for the engine tests"
    version: ClassVar[str] = "1"
    Parameters: ClassVar[type[BaseModel]] = VolumeParams
    reads: ClassVar[tuple[str, ...]] = ("Building",)
    writes: ClassVar[dict[str, str]] = {"test_volume_buildings": "volume per building",
                                        "test-volume-cells": "volume per H3 cell"}
    keys: ClassVar[dict[str, tuple[str, ...]]] = {}
    seen: ClassVar[list] = []

    def run(self, ctx: engine.RunContext) -> engine.Outputs:
        VolumeSimulator.seen.append(ctx.previous)
        with ctx.stage("read"):
            bs = ctx.store.features(ctx.branch, ctx.version, Query(types=["Building"]))
        if ctx.params.fail:
            raise RuntimeError("the solver diverged")
        ctx.progress(0.5, "volumes")
        geoms = np.asarray([shapely.geometry.shape(b["geometry"]) for b in bs], dtype=object)
        vol = shapely.area(geoms) * np.asarray([b["height"] for b in bs]) * ctx.params.factor
        files = []
        if ctx.params.write_file:
            p = ctx.workdir / "volumes.txt"
            p.write_text("\n".join(f"{b['id']} {v}" for b, v in zip(bs, vol, strict=True)))
            files.append(engine.ProductFile("volumes", p, "volumes as text", bbox=list(shapely.total_bounds(geoms))))
        cells = polygons.sum_values(geoms, vol, ctx.store.crs, 10)
        spec = LayerSpec(name="test-volume-cells", variable="volume", unit="m3", kind="extensive", aggregation="sum",
                         resolutions=[9, 10])
        table = pa.table({"entity_id": [b["id"] for b in bs], "volume": vol})
        return engine.Outputs(layers=[(spec, cells)], tables={"test_volume_buildings": table}, files=files,
                              summary={"buildings": len(bs), "total_volume": float(vol.sum())},
                              reused_from=ctx.previous.run.id if ctx.previous else None)
