"""Bad files in a batch: a clear error naming the file and the problem, and the store exactly as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers_geojson import write_buildings_geojson
from twin.demo import generate
from twin.pipeline.ingest import ingest_paths
from twin.sources import SourceError
from twin.store import Store


@pytest.fixture(scope="module")
def demo_sources(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bad_input_city")
    generate(out, size="small", seed=11)
    return out / "sources"


def _truncate(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def _bad_files(demo: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (bad file, regex the error must match besides the file name)."""
    laz = sorted((demo / "lidar").glob("*.laz"))[0]
    tif = sorted((demo / "imagery").glob("*.tif"))[0]
    out: dict[str, tuple[Path, str]] = {}
    out["truncated laz"] = (_truncate(laz, tmp / "cut.laz"), "")
    out["truncated tiff"] = (_truncate(tif, tmp / "cut.tif", 0.3), "")
    out["empty file"] = (tmp / "empty.geojson", "empty")
    out["empty file"][0].write_bytes(b"")
    corrupt = tmp / "corrupt.osm.pbf"
    corrupt.write_bytes(b"\x00\x00\x00\x0dnot really a pbf file" * 20)
    out["corrupt pbf"] = (corrupt, "")
    csv = tmp / "no_time_column.csv"
    csv.write_text("station_id,pm25_ugm3\nAQ001,12.0\n")
    out["csv without a time column"] = (csv, "")
    csv2 = tmp / "bad_times.csv"
    csv2.write_text("timestamp,station_id,pm25_ugm3\nnot-a-time,AQ001,12.0\n2024-05-27T01:00:00+08:00,AQ001,13\n")
    out["csv with unparseable times"] = (csv2, "")
    bow = tmp / "bowtie.geojson"
    doc = {"type": "FeatureCollection",
           "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4548"}},
           "features": [{"type": "Feature", "properties": {"id": "x"}, "geometry": {"type": "Polygon", "coordinates": [
               [[448000, 4419000], [448010, 4419010], [448010, 4419000], [448000, 4419010], [448000, 4419000]]]}}]}
    bow.write_text(json.dumps(doc))
    out["self-intersecting polygon"] = (bow, "invalid")
    south = write_buildings_geojson(tmp / "south.geojson", 3, x0=448_000, y0=-4_419_000)
    out["wrong hemisphere"] = (south, "")
    nocrs = tmp / "nocrs.laz"
    shutil.copy(laz, nocrs)
    return out


def test_each_bad_file_is_named_and_the_store_is_untouched(demo_sources: Path, tmp_path: Path) -> None:
    store = Store.init(tmp_path / "store")
    ingest_paths(store, [write_buildings_geojson(tmp_path / "ok" / "b.geojson", 5, x0=448_400, y0=4_419_000)])
    before = store.content_digest()
    for name, (bad, pattern) in _bad_files(demo_sources, tmp_path).items():
        if bad.name == "nocrs.laz":
            continue
        with pytest.raises(SourceError) as err:
            # the bad file comes last in a batch with good files: nothing of the batch may land
            ingest_paths(store, [demo_sources / "streets", demo_sources / "cadastre", bad])
        msg = str(err.value)
        assert str(bad) in msg, f"{name}: error does not name the file: {msg}"
        assert pattern.lower() in msg.lower(), f"{name}: {msg}"
        assert store.content_digest() == before, f"{name}: the store changed"
    assert store.head() == 1


def test_a_declared_crs_that_contradicts_the_file_is_refused(demo_sources: Path, tmp_path: Path) -> None:
    store = Store.init(tmp_path / "store")
    laz = sorted((demo_sources / "lidar").glob("*.laz"))[0]
    with pytest.raises(SourceError, match="EPSG:4548.*--crs says EPSG:28992"):
        ingest_paths(store, [laz], crs="EPSG:28992")
    assert store.head() == 0
