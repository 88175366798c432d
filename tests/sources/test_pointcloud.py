"""LAS/LAZ reader: real files checked against their published facts, units, chunked streaming, bad input, PDAL."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import laspy
import numpy as np
import pyproj
import pytest

from tests.conftest import shared_data
from twin.pipeline.ingest import ingest_paths
from twin.sources import ReadContext, SourceError, pdal_reader, pointcloud, points
from twin.store import ASSETS, Store

# LAS 1.0-1.4 public header: byte offsets of the doubles (scale x, offset x, offset y, max x, min x)
SCALE_X, OFFSET_X, OFFSET_Y, MAX_X, MIN_X = 131, 155, 163, 179, 187
DELFT_CLASSES = {"1": 86_308, "2": 87_130, "6": 33_312, "9": 568, "26": 1_114}


@pytest.fixture(scope="module")
def delft() -> Path:
    return shared_data("lidar/delft_ahn3") / "delft_ahn3_part2.laz"


@pytest.fixture(scope="module")
def autzen() -> Path:
    return shared_data("lidar/autzen_trim") / "autzen_trim.laz"


def _ctx(path: Path, crs: str | None = None, store_crs: str = "", **options) -> ReadContext:
    """A read of ``path`` on its own (no store CRS to check against), or for a store in ``store_crs``."""
    return ReadContext(path=path, store_crs=store_crs, asset_id="src-test", crs=crs, options=options)


def _patch(src: Path, dst: Path, offset: int, value: float) -> Path:
    data = bytearray(src.read_bytes())
    struct.pack_into("<d", data, offset, value)
    dst.write_bytes(bytes(data))
    return dst


# ---------------------------------------------------------------------------------------------------- Delft


def test_delft_has_no_crs_and_it_is_never_guessed(delft: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"delft_ahn3_part2\.laz: no CRS in the LAS header; pass --crs"):
        pointcloud.read(_ctx(delft))
    store = Store.init(tmp_path / "store", crs="EPSG:28992")
    with pytest.raises(SourceError, match="no CRS in the LAS header"):
        ingest_paths(store, [delft])
    assert store.head() == 0


def test_delft_with_crs_matches_the_published_counts(delft: Path, tmp_path: Path) -> None:
    store = Store.init(tmp_path / "store", crs="EPSG:28992")
    ingest_paths(store, [delft], crs="EPSG:28992")
    a = store.get("src-delft-ahn3-delft-ahn3-part2-laz", collection=ASSETS)
    assert a["crs"] == "EPSG:28992"
    p = a["properties"]
    assert p["point_count"] == 208_432
    assert p["class_counts"] == DELFT_CLASSES
    assert sum(p["class_counts"].values()) == 208_432
    assert p["las_version"] == "1.2" and p["point_format"] == 1 and p["rgb"] is False
    assert p["multiple_returns"] is True and set(p["return_counts"]) >= {"1", "2"}
    # SOURCE.md: x 85000.0-85072.3, y 447412.8-447641.3, z -0.6-26.3 (metres)
    assert np.allclose(a["extent"]["bbox"], [85000.0, 447412.8, 85072.3, 447641.3], atol=0.05)
    assert np.allclose(p["z_range"], [-0.6, 26.3], atol=0.05)
    assert p["units"] == {"xy": "metre", "xy_m": 1.0, "z": "metre", "z_m": 1.0}
    # the compound RD New + NAP CRS is accepted too and says the heights are metres
    info = pointcloud.read(_ctx(delft, "EPSG:7415")).info
    assert info["crs"] == "EPSG:7415" and info["units"]["z"] == "metre"


def test_a_cloud_outside_the_store_crs_area_is_refused(delft: Path, tmp_path: Path) -> None:
    """Issue 11: Delft (RD New) into a Beijing store used to ingest silently and build 28 buildings in the wrong
    place; like a vector file, it is refused naming the store CRS's area, and the store stays empty."""
    store = Store.init(tmp_path / "store")  # EPSG:4548, Beijing
    msg = (r"delft_ahn3_part2\.laz: coordinates \[85000, 447413, 85072\.3, 447641\] \(lon 4\.36\d*\.\.4\.36\d*, "
           r"lat 52\.01\d*\.\.52\.01\d*\) lie outside the area of use of the store CRS EPSG:4548 "
           r"\(lon 115\.5\.\.118\.5, lat 22\.6\.\.49\.88\); this source does not belong in this store$")
    with pytest.raises(SourceError, match=msg):
        ingest_paths(store, [delft], crs="EPSG:28992")
    assert store.head() == 0 and not any((store.root / "tmp").iterdir())
    with pytest.raises(SourceError, match="outside the area of use of the store CRS EPSG:4548"):
        pointcloud.read(_ctx(delft, "EPSG:7415", store_crs="EPSG:4548"))  # the compound CRS too
    # the same cloud in a store whose CRS covers Delft, or in one that only differs by a vertical part, is fine
    assert pointcloud.read(_ctx(delft, "EPSG:28992", store_crs="EPSG:4326")).info["crs"] == "EPSG:28992"
    assert pointcloud.read(_ctx(delft, "EPSG:7415", store_crs="EPSG:28992")).info["point_count"] == 208_432


def test_chunked_reads_equal_a_whole_read(delft: Path) -> None:
    whole = list(pointcloud.iter_points(delft, chunk=10**7, crs="EPSG:28992"))
    parts = list(pointcloud.iter_points(delft, chunk=30_000, crs="EPSG:28992"))
    assert len(whole) == 1 and len(parts) == -(-208_432 // 30_000)
    assert max(len(p["x"]) for p in parts) <= 30_000
    for key in ("x", "y", "z", "classification", "return_number", "number_of_returns"):
        assert np.array_equal(whole[0][key], np.concatenate([p[key] for p in parts])), key
    assert whole[0]["x"].dtype == np.float64 and whole[0]["classification"].dtype == np.uint8
    las = laspy.read(delft)  # independent reference: laspy's own whole-file read
    assert np.array_equal(whole[0]["z"], np.asarray(las.z)) and np.array_equal(whole[0]["classification"],
                                                                               np.asarray(las.classification))
    small = pointcloud.read(_ctx(delft, "EPSG:28992", chunk=25_000)).info
    big = pointcloud.read(_ctx(delft, "EPSG:28992")).info
    for key in ("point_count", "class_counts", "return_counts", "bbox", "z_range"):
        assert small[key] == big[key], key


# ---------------------------------------------------------------------------------------------------- Autzen


def test_autzen_feet_wkt_rgb(autzen: Path) -> None:
    info = pointcloud.read(_ctx(autzen)).info
    assert info["point_count"] == 110_000
    assert info["class_counts"] == {"1": 83_893, "2": 26_107}
    assert info["rgb"] is True and info["point_format"] == 3
    assert set(info["return_counts"]) == {"1", "2", "3", "4"}
    with laspy.open(autzen) as f:  # the header, read by laspy, and its CRS through pyproj: the reference
        mins, maxs = np.asarray(f.header.mins), np.asarray(f.header.maxs)
        ref = f.header.parse_crs()
    foot = ref.axis_info[0].unit_conversion_factor
    assert ref.axis_info[0].unit_name == "foot" and foot != 1.0
    assert info["units"]["xy_m"] == foot and info["units"]["z_m"] == foot
    assert np.allclose(info["bbox"], [mins[0], mins[1], maxs[0], maxs[1]], atol=0.01)
    assert np.allclose(info["bbox_m"], np.array([mins[0], mins[1], maxs[0], maxs[1]]) * foot, atol=0.01)
    assert np.allclose(info["z_range_m"], np.array([mins[2], maxs[2]]) * foot, atol=0.01)
    # SOURCE.md extent (feet)
    assert np.allclose(info["bbox"], [636001.8, 848935.2, 637179.2, 849497.9], atol=0.05)
    # streamed points are metres, colours come along
    chunks = list(pointcloud.iter_points(autzen, chunk=40_000))
    z = np.concatenate([c["z"] for c in chunks])
    assert np.isclose(z.min(), mins[2] * foot) and np.isclose(z.max(), maxs[2] * foot)
    assert {"red", "green", "blue"} <= set(chunks[0]) and chunks[0]["red"].dtype == np.uint16
    assert max(int(c["red"].max()) for c in chunks) > 0


def test_autzen_crs_from_a_wkt_file_or_string_is_the_same(autzen: Path) -> None:
    wkt_file = autzen.parent / "autzen-srs.wkt"
    from_header = pointcloud.read(_ctx(autzen)).info["crs"]
    assert pointcloud.read(_ctx(autzen, str(wkt_file))).info["crs"] == from_header
    assert pointcloud.read(_ctx(autzen, wkt_file.read_text())).info["crs"] == from_header
    # EPSG:2994 is the same Oregon Lambert (ft) on NAD83(HARN): equivalent, accepted
    assert pointcloud.read(_ctx(autzen, "EPSG:2994")).info["point_count"] == 110_000
    # NAD83 (not HARN) and RD New disagree with the header
    for other in ("EPSG:2992", "EPSG:28992"):
        with pytest.raises(SourceError, match=r"autzen_trim\.laz: file declares CRS .* but --crs says"):
            pointcloud.read(_ctx(autzen, other))
    with pytest.raises(SourceError, match=r"autzen_trim\.laz: cannot read the --crs file"):
        pointcloud.read(_ctx(autzen, str(autzen.parent / "missing.prj")))


def test_autzen_reprojected_to_utm_matches_pyproj(autzen: Path) -> None:
    c = next(pointcloud.iter_points(autzen, chunk=1000, to_crs="EPSG:32610"))
    las = laspy.read(autzen)
    t = pyproj.Transformer.from_crs(las.header.parse_crs(), "EPSG:32610", always_xy=True)
    ex, ey = t.transform(np.asarray(las.x[:1000]), np.asarray(las.y[:1000]))
    assert np.allclose(c["x"], ex, atol=1e-6) and np.allclose(c["y"], ey, atol=1e-6)
    assert 400_000 < c["x"].min() < 600_000  # UTM 10N eastings around Eugene, OR


# ---------------------------------------------------------------------------------------------------- units


def _write(path: Path, x, y, z, crs: pyproj.CRS, cls=None, scale: float = 0.01) -> Path:
    las = laspy.LasData(laspy.LasHeader(point_format=6, version="1.4"))
    las.header.scales = [scale] * 3
    las.header.offsets = [float(np.floor(np.min(x))), float(np.floor(np.min(y))), 0.0]
    las.header.add_crs(crs)
    las.x, las.y, las.z = x, y, z
    if cls is not None:
        las.classification = cls
    path.parent.mkdir(parents=True, exist_ok=True)
    las.write(path)
    return path


def test_us_survey_feet_become_metres(tmp_path: Path) -> None:
    # a compound CRS: California zone 5 (US survey feet) + NAVD88 height (US survey feet)
    crs = pyproj.CRS("EPSG:2229+6360")
    ftus = crs.sub_crs_list[0].axis_info[0].unit_conversion_factor
    assert crs.sub_crs_list[0].axis_info[0].unit_name == "US survey foot"
    rng = np.random.default_rng(5)
    x, y = 6_480_000 + rng.uniform(0, 500, 2000), 1_840_000 + rng.uniform(0, 500, 2000)
    z = rng.uniform(300, 400, 2000)
    p = _write(tmp_path / "ftus.laz", x, y, z, crs)
    info = pointcloud.read(_ctx(p)).info
    assert info["units"]["xy"] == "US survey foot" and info["units"]["xy_m"] == ftus and info["units"]["z_m"] == ftus
    got = next(pointcloud.iter_points(p))
    las = laspy.read(p)
    assert np.allclose(got["x"], np.asarray(las.x) * ftus) and np.allclose(got["z"], np.asarray(las.z) * ftus)
    # the same plane in metres: NAD83 / California zone 5 (EPSG:26945) differs only by its unit
    m = next(pointcloud.iter_points(p, to_crs="EPSG:26945"))
    assert np.allclose(m["x"], got["x"], atol=1e-3) and np.allclose(m["y"], got["y"], atol=1e-3)


# ---------------------------------------------------------------------------------------------------- bad input


def test_bad_files_raise_naming_the_file_and_the_problem(delft: Path, autzen: Path, tmp_path: Path) -> None:
    data = delft.read_bytes()
    cases: dict[str, tuple[Path, str | None, str]] = {}
    cut = tmp_path / "truncated.laz"
    cut.write_bytes(data[: len(data) // 2])
    cases["truncated"] = (cut, "EPSG:28992", "corrupt or truncated point data")
    broken = bytearray(data)
    broken[len(data) // 3: len(data) // 3 + 4096] = bytes(4096)
    (tmp_path / "zeroed.laz").write_bytes(bytes(broken))
    # LAZ has no checksums: damaged bytes may decode to garbage, which lands outside the header's bounds
    cases["corrupt"] = (tmp_path / "zeroed.laz", "EPSG:28992", "corrupt")
    (tmp_path / "empty.laz").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.laz", "EPSG:28992", "the file is empty")
    (tmp_path / "junk.laz").write_bytes(b"not a point cloud at all" * 10)
    cases["not LAS"] = (tmp_path / "junk.laz", "EPSG:28992", "not a readable LAS/LAZ file")
    cases["no CRS"] = (delft, None, "no CRS in the LAS header; pass --crs")
    cases["contradicting --crs"] = (autzen, "EPSG:28992", "file declares CRS .* but --crs says EPSG:28992")
    cases["NaN scale"] = (_patch(delft, tmp_path / "nan_scale.laz", SCALE_X, float("nan")), "EPSG:28992",
                          "scale .* not a finite number")
    nan_bounds = _patch(delft, tmp_path / "nan_bounds.laz", MAX_X, float("nan"))
    cases["NaN bounds"] = (_patch(nan_bounds, nan_bounds, MIN_X, float("nan")), "EPSG:28992", "NaN")
    cases["absurd"] = (_patch(autzen, tmp_path / "absurd.laz", OFFSET_X, 5e12), None, "absurd")
    cases["outside area"] = (_patch(delft, tmp_path / "moved.laz", OFFSET_Y, -3_000_000.0), "EPSG:28992",
                             "outside the area of use of EPSG:28992")
    cases["wrong --crs"] = (delft, "EPSG:4548", "outside the area of use of EPSG:4548")
    store = Store.init(tmp_path / "store", crs="EPSG:28992")
    for name, (path, crs, problem) in cases.items():
        with pytest.raises(SourceError) as err:
            ingest_paths(store, [path], crs=crs)
        assert err.value.path == str(path), name
        assert str(path) in str(err.value), name
        assert re.search(problem, err.value.problem), f"{name}: {err.value}"
    assert store.head() == 0


def test_a_header_promising_more_points_than_the_file_holds(delft: Path, tmp_path: Path) -> None:
    las = laspy.read(delft)
    plain = tmp_path / "plain.las"
    las.write(plain)
    data = plain.read_bytes()
    short = tmp_path / "short.las"
    short.write_bytes(data[: len(data) - 1000 * las.header.point_format.size])
    with pytest.raises(SourceError, match=r"short\.las: .*(208,432|truncated)"):
        pointcloud.read(_ctx(short, "EPSG:28992"))
    assert pointcloud.read(_ctx(plain, "EPSG:28992")).info["class_counts"] == DELFT_CLASSES


# ---------------------------------------------------------------------------------------------------- PDAL

no_pdal = pytest.mark.skipif(pdal_reader.available(), reason="PDAL is installed here: the unavailable path is moot")


@no_pdal
def test_pdal_missing_is_a_clear_error(delft: Path, tmp_path: Path) -> None:
    pipe = tmp_path / "delft.pipeline.json"
    pipe.write_text(json.dumps({"pipeline": [str(delft), {"type": "filters.range", "limits": "Classification[6:6]"}]}))
    store = Store.init(tmp_path / "store", crs="EPSG:28992")
    for paths, opts in (([pipe], None), ([delft], {"pdal_pipeline": '[{"type": "filters.outlier"}]'})):
        with pytest.raises(SourceError) as err:
            ingest_paths(store, paths, kind="pointcloud", crs="EPSG:28992", options=opts)
        msg = str(err.value)
        assert str(paths[0]) in msg and "PDAL is not installed" in msg and "pip install twin[pdal]" in msg
    with pytest.raises(SourceError, match="PDAL is not installed"):
        next(points.iter_points(pipe, crs="EPSG:28992"))
    assert store.head() == 0


def test_pipeline_stages_resolve_inputs_and_refuse_writers(tmp_path: Path) -> None:
    pipe = tmp_path / "sub" / "x.pipeline.json"
    pipe.parent.mkdir()
    pipe.write_text(json.dumps({"pipeline": ["tile.laz", {"type": "filters.range", "limits": "Z[0:100]"}]}))
    stages = pdal_reader.pipeline_stages(pipe)
    assert stages[0] == {"filename": str((pipe.parent / "tile.laz").resolve())}
    data = tmp_path / "data.laz"
    got = pdal_reader.pipeline_stages(data, [{"type": "readers.las"}, {"type": "filters.outlier"}])
    assert got[0] == {"type": "readers.las", "filename": str(data.resolve())}
    got = pdal_reader.pipeline_stages(data, '[{"type": "filters.outlier"}]')
    assert got[0] == {"filename": str(data.resolve())} and got[1]["type"] == "filters.outlier"
    pipe.write_text(json.dumps(["tile.laz", {"type": "writers.las", "filename": "out.laz"}]))
    with pytest.raises(SourceError, match=r"x\.pipeline\.json: PDAL pipeline stage 1 is a writer"):
        pdal_reader.pipeline_stages(pipe)
    pipe.write_text("{not json")
    with pytest.raises(SourceError, match="not valid JSON"):
        pdal_reader.pipeline_stages(pipe)
