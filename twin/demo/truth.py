"""Source vectors (cadastre, streets) and ground truth (buildings, CityJSON solids, changes, trees)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from shapely.geometry.polygon import orient

from . import crs
from .geojson import dumps, geometry, write_collection
from .layout import DATE_1, DATE_2, SPECIES, City
from .roofs import ROOF_NAMES, part_surfaces

CADASTRE_DATE = "2024-06-01"
STREETS_DATE = "2024-03-01"
TREE_SETTING = ("park", "yard", "street")


def write_cadastre(city: City, path: Path) -> int:
    def feats():
        for b in city.buildings:
            if b["status"] == "demolished":
                continue  # the cadastre is current as of CADASTRE_DATE
            props = {
                "cadastre_id": b["id"],
                "use": b["use"],
                "name": b["name"],
                "district": "Dongcheng",
                "area_m2": round(b["footprint"].area, 1),
                "registered": b["change_date"] if b["status"] == "built" else None,
            }
            if b["classification"] != "public":  # the compound (layout.mark_compound): ingest keeps its level
                props["classification"] = b["classification"]
            yield {
                "type": "Feature",
                "id": b["id"],
                "properties": props,
                "geometry": geometry(b["footprint"]),
            }

    return write_collection(path, "cadastre_buildings", feats())


def write_roads(city: City, path: Path) -> int:
    def feats():
        for r in city.roads:
            props = {k: r[k] for k in ("road_id", "class", "name", "lanes", "width_m")}
            props["surface"] = "asphalt"
            yield {
                "type": "Feature",
                "id": r["road_id"],
                "properties": props,
                "geometry": geometry(r["geom"], 2),
            }

    return write_collection(path, "roads", feats())


def _part_record(city: City, i: int) -> dict:
    p = city.parts
    code = int(p["code"][i])
    eave, rise, ground = float(p["eave"][i]), float(p["rise"][i]), float(p["ground"][i])
    return {
        "part_id": f"{city.buildings[int(p['building'][i])]['id']}-p{i + 1}",
        "roof_type": ROOF_NAMES[code],
        "eave_height": round(eave, 2),
        "ridge_height": round(eave + rise, 2),
        "eave_z": round(ground + eave, 2),
        "ridge_z": round(ground + eave + rise, 2),
        "area_m2": round(float(p["area"][i]), 2),
        "volume_m3": round(float(p["volume"][i]), 1),
        "frame": {
            "cx": round(float(p["cx"][i]), 3),
            "cy": round(float(p["cy"][i]), 3),
            "angle_deg": round(math.degrees(float(p["angle"][i])), 4),
            "half_length": round(float(p["a"][i]), 3),
            "half_width": round(float(p["b"][i]), 3),
        },
        "geometry": geometry(city.part_polys[i]),
    }


def building_record(city: City, b: dict) -> dict:
    parts = [_part_record(city, i) for i in b["parts"]]
    top = max(q["ridge_height"] for q in parts)
    return {
        "id": b["id"],
        "cadastre_id": b["id"],
        "use": b["use"],
        "name": b["name"],
        "classification": b["classification"],
        "shape": b["shape"],
        "status": b["status"],
        "change_date": b["change_date"],
        "roof_type": b["roof_type"],
        "roof_material": b["material"],
        "n_parts": len(parts),
        "ground_z": b["ground_z"],
        "eave_height": max(q["eave_height"] for q in parts),
        "roof_max_height": top,
        "roof_max_z": round(b["ground_z"] + top, 2),
        "footprint_area_m2": round(b["footprint"].area, 2),
        "volume_m3": round(sum(float(city.parts["volume"][i]) for i in b["parts"]), 1),
        "parts": parts,
    }


def write_truth_buildings(city: City, path: Path) -> int:
    def feats():
        for b in city.buildings:
            yield {
                "type": "Feature",
                "id": b["id"],
                "properties": building_record(city, b),
                "geometry": geometry(b["footprint"]),
            }

    return write_collection(path, "truth_buildings", feats())


def write_cityjson(city: City, path: Path) -> int:
    """CityJSON 2.0, one LoD2.2 Solid per building part (BuildingPart children for multi-part buildings)."""
    scale = 0.001
    tx, ty = city.x0, city.y0
    verts: list[np.ndarray] = []
    nv = 0
    p = city.parts
    path.parent.mkdir(parents=True, exist_ok=True)
    sem_index = {"GroundSurface": 0, "WallSurface": 1, "RoofSurface": 2}
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        head = {
            "type": "CityJSON",
            "version": "2.0",
            "transform": {"scale": [scale, scale, scale], "translate": [tx, ty, 0.0]},
            "metadata": {
                "referenceSystem": f"https://www.opengis.net/def/crs/EPSG/0/{crs.EPSG}",
                "title": "twin demo city: true building solids",
                "referenceDate": DATE_2,
            },
        }
        f.write(dumps(head)[:-1] + ',"CityObjects":{\n')
        first = True
        for b in city.buildings:
            objs = {}
            geoms = []
            for i in b["parts"]:
                poly = orient(city.part_polys[i])
                surfaces = part_surfaces(
                    poly,
                    int(p["code"][i]),
                    p["cx"][i],
                    p["cy"][i],
                    p["angle"][i],
                    p["a"][i],
                    p["b"][i],
                    float(p["ground"][i]),
                    float(p["eave"][i]),
                    float(p["rise"][i]),
                )
                shell, values = [], []
                for sem, rings in surfaces:
                    surf = []
                    for ring in rings:
                        arr = np.rint((np.asarray(ring) - [tx, ty, 0.0]) / scale).astype(np.int64)
                        verts.append(arr)
                        surf.append(list(range(nv, nv + len(arr))))
                        nv += len(arr)
                    shell.append(surf)
                    values.append(sem_index[sem])
                geoms.append(
                    {
                        "type": "Solid",
                        "lod": "2.2",
                        "boundaries": [shell],
                        "semantics": {
                            "surfaces": [
                                {"type": "GroundSurface"},
                                {"type": "WallSurface"},
                                {"type": "RoofSurface"},
                            ],
                            "values": [values],
                        },
                    }
                )
            rec = building_record(city, b)
            attrs = {
                k: rec[k]
                for k in (
                    "use",
                    "name",
                    "status",
                    "change_date",
                    "roof_type",
                    "ground_z",
                    "eave_height",
                    "roof_max_height",
                    "volume_m3",
                )
            }
            attrs["measuredHeight"] = rec["roof_max_height"]
            attrs["roofType"] = rec["roof_type"]
            if len(geoms) == 1:
                objs[b["id"]] = {"type": "Building", "attributes": attrs, "geometry": geoms}
            else:
                kids = [q["part_id"] for q in rec["parts"]]
                objs[b["id"]] = {"type": "Building", "attributes": attrs, "children": kids}
                for q, g in zip(rec["parts"], geoms, strict=True):
                    objs[q["part_id"]] = {
                        "type": "BuildingPart",
                        "parents": [b["id"]],
                        "geometry": [g],
                        "attributes": {"roofType": q["roof_type"], "measuredHeight": q["ridge_height"]},
                    }
            for k, v in objs.items():
                f.write(("" if first else ",\n") + json.dumps(k) + ":" + dumps(v))
                first = False
        f.write('\n},"vertices":[')
        allv = np.concatenate(verts) if verts else np.zeros((0, 3), np.int64)
        step = 100000
        for s in range(0, len(allv), step):
            chunk = allv[s : s + step]
            f.write(("," if s else "") + ",".join(f"[{a},{b},{c}]" for a, b, c in chunk.tolist()))
        f.write("]}\n")
    return len(city.buildings)


def write_changes(city: City, path: Path) -> dict:
    def rec(b):
        c = b["footprint"].centroid
        return {
            "id": b["id"],
            "change_date": b["change_date"],
            "use": b["use"],
            "footprint_area_m2": round(b["footprint"].area, 2),
            "centroid": [round(c.x, 2), round(c.y, 2)],
            "geometry": geometry(b["footprint"]),
        }

    out = {
        "crs": crs.CRS_NAME,
        "date_1": DATE_1,
        "date_2": DATE_2,
        "images": {
            "date_1": f"sources/imagery/bj_sat_{DATE_1}.tif",
            "date_2": f"sources/imagery/bj_sat_{DATE_2}.tif",
        },
        "built": [rec(b) for b in city.buildings if b["status"] == "built"],
        "demolished": [rec(b) for b in city.buildings if b["status"] == "demolished"],
    }
    path.write_text(json.dumps(out, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    return {"built": len(out["built"]), "demolished": len(out["demolished"])}


def write_trees(city: City, path: Path) -> int:
    t = city.trees
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(
            [
                "tree_id",
                "x_epsg4548",
                "y_epsg4548",
                "ground_z",
                "height_m",
                "crown_radius_m",
                "crown_base_m",
                "species",
                "setting",
            ]
        )
        for i in range(len(t["x"])):
            w.writerow(
                [
                    f"T{i + 1:06d}",
                    f"{t['x'][i]:.2f}",
                    f"{t['y'][i]:.2f}",
                    f"{t['ground'][i]:.2f}",
                    f"{t['height'][i]:.2f}",
                    f"{t['crown_r'][i]:.2f}",
                    f"{t['crown_base'][i]:.2f}",
                    SPECIES[int(t["species"][i])],
                    TREE_SETTING[int(t["kind"][i])],
                ]
            )
    return len(t["x"])


def write_water(city: City, path: Path) -> int:
    feat = {
        "type": "Feature",
        "id": "W00001",
        "properties": {
            "water_id": "W00001",
            "name": "Tonghui He",
            "kind": "river",
            "water_level_z": city.water_level,
        },
        "geometry": geometry(city.water, 2),
    }
    return write_collection(path, "water", [feat])
