"""Fixtures of the 3D reconstruction tests: the session's small demo city, its buildings' points and truth."""

from __future__ import annotations

import json

import pytest
from shapely.geometry import shape

from twin.reality3d.buildings import building_points


@pytest.fixture(scope="session")
def city_buildings(city) -> dict:
    """Cadastre footprints of the demo city, their LiDAR points and the generator's truth (same order)."""
    out = city["dir"]
    cad = json.loads((out / "sources/cadastre/buildings.geojson").read_text())["features"]
    truth = {f["properties"]["id"]: f["properties"]
             for f in json.loads((out / "truth/buildings.geojson").read_text())["features"]}
    geoms = [shape(f["geometry"]) for f in cad]
    bps = building_points(geoms, sorted((out / "sources/lidar").glob("*.laz")), crs="EPSG:4548")
    return {"truth": [truth[f["properties"]["cadastre_id"]] for f in cad], "points": bps}
