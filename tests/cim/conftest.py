from datetime import UTC, datetime

import pytest

from data_models import Building, Geometry, Solid

SQUARE = [[[0.0, 0.0], [10.0, 0.0], [10.0, 8.0], [0.0, 8.0], [0.0, 0.0]]]


@pytest.fixture
def cim_footprint() -> Geometry:
    return Geometry(type="Polygon", coordinates=SQUARE)


@pytest.fixture
def lod22_solid() -> Solid:
    """A gable-roofed house (LoD2.2): 10 x 8 m, eaves at 6 m, ridge at 9 m along x."""
    v = [
        [0, 0, 0], [10, 0, 0], [10, 8, 0], [0, 8, 0],  # 0-3 ground
        [0, 0, 6], [10, 0, 6], [10, 8, 6], [0, 8, 6],  # 4-7 eaves
        [0, 4, 9], [10, 4, 9],  # 8-9 ridge
    ]  # fmt: skip
    faces = [
        [[3, 2, 1, 0]],  # ground (normal down)
        [[0, 1, 5, 4]],  # wall y=0
        [[1, 2, 6, 9, 5]],  # gable wall x=10
        [[2, 3, 7, 6]],  # wall y=8
        [[3, 0, 4, 8, 7]],  # gable wall x=0
        [[4, 5, 9, 8]],  # roof south
        [[6, 7, 8, 9]],  # roof north
    ]
    return Solid.model_validate(
        {
            "vertices": v,
            "boundaries": [faces],
            "semantics": {
                "surfaces": [{"type": "GroundSurface"}, {"type": "WallSurface"}, {"type": "RoofSurface"}],
                "values": [[0, 1, 1, 1, 1, 2, 2]],
            },
        }
    )


@pytest.fixture
def cim_building(cim_footprint: Geometry, lod22_solid: Solid) -> Building:
    return Building(
        id="bldg-0001",
        geometry=cim_footprint,
        height=9.0,
        roof_type="gable",
        storeys=2,
        use="residential",
        lods={"1.2": Solid.extrude(cim_footprint, 0.0, 9.0), "2.2": lod22_solid},
        attributes={"yearOfConstruction": 1998},
        valid_from=datetime(2000, 1, 1, tzinfo=UTC),
        provenance=[
            {"source_asset_id": "lidar-2023", "method": "lidar-p95", "confidence": 0.9, "attribute": "height"}
        ],
        quality={"point_density": 12.5, "nodata_fraction": 0.02, "rmse": {"2.2": 0.31}, "valid": True},
        classification="internal",
    )
