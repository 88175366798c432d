"""Build step publishing the standard H3 layers of what the store holds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from data_models import OBSERVATIONS_TABLE
from twin.geo import indices
from twin.layers import buildings as blayers
from twin.pipeline.context import BuildContext, multispectral, standing_footprints
from twin.sources.imagery import image_grid, read_bands

GREEN_NDVI = 0.3  # NDVI at and above which a surface counts as green (vegetation)

STATIC_RES = blayers.STATIC_RES

SENSOR_RES = [7, 8, 9]



def _level(*groups: list[dict[str, Any]]):
    """The highest classification among the objects and assets a layer is computed from: the layer carries it."""
    from data_models import Classification

    found = {str(o.get("classification") or "public") for g in groups for o in g}
    return max((Classification(c) for c in found), key=lambda c: c.rank, default=Classification.public)


def _publish(spec: Any, *inputs: list[dict[str, Any]]) -> Any:
    """``spec`` carrying the level of its inputs; a layer above public gets the default public form (coarse
    cells, k observations a cell: ``twin.security.generalise.DEFAULT_LAYER_POLICY``) unless it declares its own,
    so a reader below its level sees the neighbourhood picture rather than nothing."""
    from data_models import Classification
    from twin.security.generalise import DEFAULT_LAYER_POLICY

    level = _level(*inputs)
    form = spec.public_form or (DEFAULT_LAYER_POLICY if level != Classification.public else None)
    return spec.model_copy(update={"classification": level, "public_form": form})


def step_layers(ctx: BuildContext) -> None:
    """The standard H3 layers of what the store holds: green and impervious fraction, building volume, a
    population proxy, and hourly sensor layers (station cells and an interpolated PM2.5 surface)."""
    from data_models import LayerSpec
    from twin.layers import polygons, rasters, sensors
    from twin.layers.interpolate import interpolate_surface

    crs, top = ctx.store.crs, max(STATIC_RES)

    def add(name: str, values: pa.Table, lineage: list[str], inputs: tuple, **spec: Any) -> None:
        if values.num_rows:
            ctx.layers.append((_publish(LayerSpec(name=name, lineage=sorted(set(lineage)), **spec), *inputs), values))

    images = multispectral(ctx)
    if images:
        img = images[-1]
        transform, _, img_crs = image_grid(img["path"])
        nd = indices.ndvi(read_bands(img["path"], ["red", "nir"], bands_option=img["properties"]["bands"]))
        green = np.ma.MaskedArray((np.ma.getdata(nd) >= GREEN_NDVI).astype(np.uint8), mask=np.ma.getmaskarray(nd))
        add("green-fraction", rasters.class_fraction_values(green, transform, img_crs, top, 1), [img["id"]], ([img],),
            variable="green_fraction", unit="1", kind="intensive", aggregation="area_weighted_mean",
            resolutions=STATIC_RES, description=f"share of area with NDVI >= {GREEN_NDVI} in the newest image")
    cover = ctx.of_type("LandCover")
    if cover:
        geoms = np.asarray([ctx.geometry(e) for e in cover], dtype=object)
        lineage = [p["source_asset_id"] for e in cover[:1] for p in e.get("provenance", [])]
        values = blayers.impervious_values(geoms, [e["cover_class"] for e in cover], crs, res=top)
        if values.num_rows:
            ctx.layers.append((_publish(blayers.spec(blayers.IMPERVIOUS, lineage), cover), values))
    standing = [b for b in standing_footprints(ctx) if blayers.is_standing(b)]
    if standing:
        geoms = np.asarray([ctx.geometry(b) for b in standing], dtype=object)
        height = np.asarray([b["height"] for b in standing], np.float64)
        lineage = sorted({p["source_asset_id"] for b in standing for p in b.get("provenance", [])})
        resid = np.asarray([blayers.is_residential(b) for b in standing])
        for name, values in ((blayers.VOLUME, blayers.volume_values(geoms, height, crs, res=top)),
                             (blayers.POPULATION, blayers.population_values(geoms, height, resid, crs, res=top))):
            if values.num_rows:
                ctx.layers.append((_publish(blayers.spec(name, lineage), standing), values))
    series = [a for a in ctx.assets.get("sensors", []) if a["id"] in ctx.store_tables.get(OBSERVATIONS_TABLE, ())]
    stations = ctx.of_type("Sensor")
    if series and stations:
        obs = ctx.store.read_table(OBSERVATIONS_TABLE, ctx.branch)
        have = set(obs.column("variable").unique().to_pylist())
        lineage = [a["id"] for a in series]
        if "pm25" in have:
            add("pm25-hourly", sensors.station_values(obs, stations, crs, "pm25", max(SENSOR_RES), 3600), lineage,
                (series, stations), variable="pm25", unit="ug/m3", kind="intensive", aggregation="mean",
                resolutions=SENSOR_RES, time_bucket="1h", description="hourly mean PM2.5 at the monitoring stations' "
                                                                      "cells")
            area = polygons.candidate_cells(np.asarray([ctx.geometry(e) for e in cover or standing_footprints(ctx)],
                                                       dtype=object), crs, max(SENSOR_RES))
            surface = interpolate_surface(sensors.station_series(obs, stations, crs, "pm25", 3600), area, "idw")
            meta = surface.metadata
            add("pm25-idw", surface.values, lineage, (series, stations), variable="pm25", unit="ug/m3",
                kind="intensive", aggregation="mean", resolutions=SENSOR_RES, time_bucket="1h",
                description=f"hourly PM2.5 interpolated by {meta['method']} over the city; leave-one-out CV MAE "
                            f"{meta['cv_mae']:.2f} ug/m3, RMSE {meta['cv_rmse']:.2f}, {meta['n_stations']} stations")
        if "vehicles" in have:
            add("traffic-hourly", sensors.station_values(obs, stations, crs, "vehicles", max(SENSOR_RES), 3600),
                lineage, (series, stations), variable="vehicles", unit="1/h", kind="intensive", aggregation="mean",
                resolutions=SENSOR_RES, time_bucket="1h", description="hourly vehicle counts at the counting stations")
    ctx.report["layers"] = [spec.name for spec, _ in ctx.layers]

