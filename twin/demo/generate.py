"""Orchestration: generate the whole sample city and its manifest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from . import crs
from .geojson import geometry, write_collection
from .imagery import ACQUISITION_TIME, generate_imagery
from .layout import DATE_1, DATE_2, build_city
from .lidar import ACQUIRED, generate_lidar
from .sensors import generate_sensors
from .sizes import get_size
from .truth import (
    CADASTRE_DATE,
    STREETS_DATE,
    write_cadastre,
    write_changes,
    write_cityjson,
    write_roads,
    write_trees,
    write_truth_buildings,
    write_water,
)

Progress = Callable[[str, float], None]
# share of the total work per stage (drives the overall fraction passed to ``progress``)
STAGES = (
    ("layout", 0.03),
    ("vectors", 0.02),
    ("lidar", 0.70),
    ("imagery", 0.12),
    ("sensors", 0.02),
    ("truth", 0.08),
    ("manifest", 0.03),
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Reporter:
    def __init__(self, cb: Progress | None):
        self.cb = cb
        self.start = {}
        acc = 0.0
        for name, w in STAGES:
            self.start[name] = (acc, w)
            acc += w
        self.last = 0.0

    def __call__(self, stage: str, frac: float) -> None:
        if self.cb is None:
            return
        a, w = self.start[stage]
        value = max(self.last, min(1.0, a + w * min(max(frac, 0.0), 1.0)))
        self.last = value
        self.cb(stage, round(value, 6))

    def stage(self, name: str):
        return lambda f: self(name, f)


def generate(out_dir: Path, size: str = "small", seed: int = 7, progress: Progress | None = None) -> dict:
    """Generate the demo city under ``out_dir``; return the manifest (also written to ``manifest.json``).

    ``progress(stage, fraction)`` receives the current stage name and the overall fraction done (0..1,
    non-decreasing, 1.0 at the end). Same (size, seed) gives byte-identical files.
    """
    spec = get_size(size)
    seed = int(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = _Reporter(progress)
    rep("layout", 0.0)
    x0, y0 = crs.origin(spec.side_m)
    city = build_city(spec, seed, x0, y0)
    rep("layout", 1.0)

    files: list[dict] = []

    def add(kind: str, path: Path, acquired: str | None, **extra) -> None:
        files.append({"kind": kind, "path": path.relative_to(out).as_posix(), "acquired": acquired, **extra})

    src, truth = out / "sources", out / "truth"
    n_cad = write_cadastre(city, src / "cadastre" / "buildings.geojson")
    add(
        "cadastre",
        src / "cadastre" / "buildings.geojson",
        CADASTRE_DATE,
        crs=crs.CRS_NAME,
        format="GeoJSON",
        features=n_cad,
    )
    n_roads = write_roads(city, src / "streets" / "roads.geojson")
    add(
        "streets",
        src / "streets" / "roads.geojson",
        STREETS_DATE,
        crs=crs.CRS_NAME,
        format="GeoJSON",
        features=n_roads,
    )
    write_water(city, src / "hydro" / "water.geojson")
    add(
        "water", src / "hydro" / "water.geojson", STREETS_DATE, crs=crs.CRS_NAME, format="GeoJSON", features=1
    )
    rep("vectors", 1.0)

    lidar = generate_lidar(city, src / "lidar", rep.stage("lidar"))
    for info in lidar:
        add(
            "lidar",
            info["path"],
            ACQUIRED.isoformat(),
            crs=crs.CRS_NAME,
            format="LAZ (LAS 1.4, PDRF 6)",
            points=info["points"],
            bounds=[round(v, 3) for v in info["tile"]],
        )
    n_points = int(sum(i["points"] for i in lidar))

    images = generate_imagery(city, src / "imagery", truth, rep.stage("imagery"))
    for im in images:
        when = f"{im['date']}T{ACQUISITION_TIME}+08:00"
        add(
            "imagery",
            im["image"],
            when,
            crs=crs.CRS_NAME,
            format="COG GeoTIFF, 4 bands uint16 (R,G,B,NIR)",
            gsd_m=spec.gsd_m,
        )
        add("truth_landcover", im["landcover"], when, crs=crs.CRS_NAME, format="COG GeoTIFF uint8")

    sens = generate_sensors(city, src / "sensors")
    add("sensor_stations", src / "sensors" / "stations.csv", None, format="CSV")
    add(
        "sensor_air_quality",
        src / "sensors" / "air_quality_hourly.csv",
        sens["period"][1],
        format="CSV",
        period=sens["period"],
    )
    add(
        "sensor_traffic",
        src / "sensors" / "traffic_counts_hourly.csv",
        sens["period"][1],
        format="CSV",
        period=sens["period"],
    )
    rep("sensors", 1.0)

    write_truth_buildings(city, truth / "buildings.geojson")
    add("truth_buildings", truth / "buildings.geojson", DATE_2, crs=crs.CRS_NAME, format="GeoJSON")
    rep("truth", 0.3)
    write_cityjson(city, truth / "buildings.city.json")
    add("truth_solids", truth / "buildings.city.json", DATE_2, crs=crs.CRS_NAME, format="CityJSON 2.0")
    rep("truth", 0.8)
    changes = write_changes(city, truth / "changes.json")
    add("truth_changes", truth / "changes.json", None, format="JSON")
    n_trees = write_trees(city, truth / "trees.csv")
    add("truth_trees", truth / "trees.csv", DATE_2, crs=crs.CRS_NAME, format="CSV")
    write_collection(
        truth / "blocks.geojson",
        "blocks",
        (
            {
                "type": "Feature",
                "id": f"K{i + 1:05d}",
                "properties": {"block_id": f"K{i + 1:05d}", "use": b["use"], "ground_cover": int(b["cover"])},
                "geometry": geometry(b["poly"], 2),
            }
            for i, b in enumerate(city.blocks)
        ),
    )
    add("truth_blocks", truth / "blocks.geojson", DATE_2, crs=crs.CRS_NAME, format="GeoJSON")
    rep("truth", 1.0)

    for i, f in enumerate(files):
        p = out / f["path"]
        f["sha256"] = _sha256(p)
        f["bytes"] = p.stat().st_size
        rep("manifest", (i + 1) / len(files))
    files.sort(key=lambda f: f["path"])
    lon0, lat0 = crs.to_wgs84().transform(city.x0, city.y0)
    lon1, lat1 = crs.to_wgs84().transform(city.x0 + city.side, city.y0 + city.side)
    roof_types: dict[str, int] = {}
    for b in city.buildings:
        if b["status"] != "demolished":
            roof_types[b["roof_type"]] = roof_types.get(b["roof_type"], 0) + 1
    manifest = {
        "generator": "twin.demo",
        "format_version": 1,
        "seed": seed,
        "size": spec.name,
        "crs": crs.CRS_NAME,
        "time_zone": "Asia/Shanghai",
        "axis_order": "easting, northing (x, y)",
        "extent": [city.x0, city.y0, city.x0 + city.side, city.y0 + city.side],
        "extent_wgs84": [round(lon0, 6), round(lat0, 6), round(lon1, 6), round(lat1, 6)],
        "dates": {"imagery": [DATE_1, DATE_2], "lidar": ACQUIRED.isoformat(), "cadastre": CADASTRE_DATE},
        "counts": {
            "buildings": n_cad,
            "buildings_truth": len(city.buildings),
            "building_parts": int(len(city.parts["code"])),
            "confidential_buildings": sum(b["classification"] == "confidential" and b["status"] != "demolished"
                                          for b in city.buildings),
            "built": changes["built"],
            "demolished": changes["demolished"],
            "roads": n_roads,
            "trees": n_trees,
            "lidar_points": n_points,
            "lidar_tiles": len(lidar),
            "sensor_stations": sens["stations"],
            "air_quality_rows": sens["air_quality_rows"],
            "traffic_rows": sens["traffic_rows"],
            "roof_types": dict(sorted(roof_types.items())),
            "water_level_z": city.water_level,
            "image_size_px": int(round(city.side / spec.gsd_m)),
        },
        "landcover_codes": {
            "1": "building",
            "2": "road/impervious",
            "3": "grass",
            "4": "tree",
            "5": "water",
            "6": "bare",
        },
        "files": files,
    }
    (out / "manifest.json").write_text(
        json.dumps(manifest, sort_keys=True, indent=1) + "\n", encoding="utf-8"
    )
    rep("manifest", 1.0)
    return manifest
