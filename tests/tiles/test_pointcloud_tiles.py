"""Point-cloud 3D Tiles 1.1: every input point exactly once within 1 cm of pyproj's ECEF, valid GLBs (Khronos
validator), tileset structure, colours from imagery, out-of-core/parallel builds identical, bad input refused."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import laspy
import numpy as np
import pyproj
import pytest
import rasterio

from tests.conftest import shared_data
from twin.sources import SourceError
from twin.tiles.glb import accessor_array, read_glb
from twin.tiles.pointcloud import build_pointcloud_tileset, pointcloud_tileset_for_store
from twin.tiles.pointcloud_colour import linear16_to_srgb

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------------- helpers


def load_tileset(ts_path: Path) -> dict[str, Any]:
    """Every tile (with depth, parent, ENU points) and all points in ECEF, read back from the files alone."""
    ts = json.loads(ts_path.read_text())
    m = np.array(ts["root"]["transform"], dtype=np.float64).reshape(4, 4).T  # column-major
    tiles: list[dict[str, Any]] = []

    def walk(t: dict[str, Any], depth: int, parent: int | None) -> None:
        i = len(tiles)
        tiles.append({"tile": t, "depth": depth, "parent": parent})
        for c in t.get("children", []):
            walk(c, depth + 1, i)

    walk(ts["root"], 0, None)
    enu, rgb, cls, inten = [], [], [], []
    for rec in tiles:
        t = rec["tile"]
        if "content" not in t:
            continue
        gltf, binary = read_glb((ts_path.parent / t["content"]["uri"]).read_bytes())
        attrs = gltf["meshes"][0]["primitives"][0]["attributes"]
        g = accessor_array(gltf, binary, attrs["POSITION"]).astype(np.float64)
        g = g + np.asarray(gltf["nodes"][0].get("translation", [0, 0, 0]))
        e = np.column_stack([g[:, 0], -g[:, 2], g[:, 1]])  # glTF y-up → 3D Tiles z-up
        rec["enu"] = e
        rec["gltf"] = gltf
        enu.append(e)
        rgb.append(linear16_to_srgb(accessor_array(gltf, binary, attrs["COLOR_0"])))
        cls.append(accessor_array(gltf, binary, attrs["_CLASSIFICATION"]))
        inten.append(accessor_array(gltf, binary, attrs["_INTENSITY"]))
    all_enu = np.concatenate(enu)
    return {"json": ts, "tiles": tiles, "enu": all_enu, "ecef": all_enu @ m[:3, :3].T + m[:3, 3],
            "rgb": np.concatenate(rgb), "cls": np.concatenate(cls), "inten": np.concatenate(inten)}


def source_points(path: Path, crs: pyproj.CRS | None = None) -> dict[str, Any]:
    """The LAS points as laspy reads them: integer coordinates, scale/offset, CRS, attributes, RGB."""
    las = laspy.read(path)
    crs = crs or las.header.parse_crs()
    out = {"X": np.asarray(las.X, np.int64), "Y": np.asarray(las.Y, np.int64), "Z": np.asarray(las.Z, np.int64),
           "scales": np.asarray(las.header.scales), "offsets": np.asarray(las.header.offsets), "crs": crs,
           "cls": np.asarray(las.classification, np.uint8), "inten": np.asarray(las.intensity, np.uint16),
           "x": np.asarray(las.x), "y": np.asarray(las.y), "z": np.asarray(las.z)}
    if "red" in las.point_format.dimension_names:
        out["rgb"] = np.column_stack([np.asarray(las[b]) for b in ("red", "green", "blue")])
    return out


def z_factor(crs: pyproj.CRS) -> float:
    """Metres per z unit: the horizontal unit (LAS convention for projected CRSs without a vertical CRS)."""
    return float(crs.axis_info[0].unit_conversion_factor)


def match_exactly(tiles: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """Pair tile points with source points: the multisets must be equal (count, positions, class, intensity).

    Tile ECEF goes back to the source CRS (pyproj, inverse) and onto the LAS integer grid; sorting both sides by
    (X, Y, Z, class, intensity) must give identical arrays. Returns the two orders and the ECEF error (metres) of
    each tile point against pyproj's forward transform of its source point.
    """
    crs = src["crs"]
    zf = z_factor(crs)
    back = pyproj.Transformer.from_crs("EPSG:4978", pyproj.CRS(crs).to_3d(), always_xy=True)
    x, y, h = back.transform(*tiles["ecef"].T)
    sx, sy, sz = src["scales"]
    ox, oy, oz = src["offsets"]
    ti = np.column_stack([np.rint((x - ox) / sx), np.rint((y - oy) / sy), np.rint((h / zf - oz) / sz)]).astype(np.int64)
    t_order = np.lexsort((tiles["inten"], tiles["cls"], ti[:, 2], ti[:, 1], ti[:, 0]))
    s_order = np.lexsort((src["inten"], src["cls"], src["Z"], src["Y"], src["X"]))
    assert len(t_order) == len(s_order), f"{len(t_order)} points in the tiles, {len(s_order)} in the file"
    for a, b in ((ti[:, 0], src["X"]), (ti[:, 1], src["Y"]), (ti[:, 2], src["Z"]), (tiles["cls"], src["cls"]),
                 (tiles["inten"], src["inten"])):
        assert np.array_equal(a[t_order], b[s_order])
    fwd = pyproj.Transformer.from_crs(pyproj.CRS(crs).to_3d(), "EPSG:4978", always_xy=True)
    ref = np.column_stack(fwd.transform(src["x"][s_order], src["y"][s_order], src["z"][s_order] * zf))
    err = np.linalg.norm(tiles["ecef"][t_order] - ref, axis=1)
    return {"t_order": t_order, "s_order": s_order, "err": err}


def check_structure(tiles: dict[str, Any], out_dir: Path) -> None:
    """tileset.json: version, ADD refinement, boxes containing points and children, errors decreasing, URIs."""
    ts = tiles["json"]
    assert ts["asset"]["version"] == "1.1"
    assert ts["root"]["refine"] == "ADD"
    assert ts["geometricError"] >= ts["root"]["geometricError"] > 0
    frame = ts["extras"]["twin"]["frame"]
    cube_min, size, voxels = np.asarray(frame["cube_min"]), frame["size"], frame["voxels_per_side"]
    boxes = []
    for rec in tiles["tiles"]:
        b = rec["tile"]["boundingVolume"]["box"]
        c, half = np.asarray(b[:3]), np.asarray([b[3], b[7], b[11]])
        assert b[4:7] == [0, 0, 0] and b[8:11] == [0, 0, 0] and b[3] > 0 and b[7] > 0 and b[11] > 0
        boxes.append((c - half, c + half))
    uris = set()
    for i, rec in enumerate(tiles["tiles"]):
        t, lo, hi = rec["tile"], *boxes[i]
        if rec["parent"] is not None:
            plo, phi = boxes[rec["parent"]]
            assert np.all(lo >= plo - 1e-9) and np.all(hi <= phi + 1e-9), "child box outside its parent's"
            assert t["geometricError"] < tiles["tiles"][rec["parent"]]["tile"]["geometricError"]
        if "children" not in t:
            assert t["geometricError"] == 0
        else:
            assert t["geometricError"] > 0
        if "enu" in rec:
            e = rec["enu"]
            assert np.all(e >= lo) and np.all(e <= hi), "points outside their tile's box"
            uri = t["content"]["uri"]
            assert (out_dir / uri).is_file() and uri not in uris
            uris.add(uri)
            if "children" in t:  # a subsample: at most one point per voxel of the node's spacing
                spacing = size / voxels / 2 ** rec["depth"]
                assert np.isclose(t["geometricError"], spacing)
                vox = np.floor((e - cube_min) / spacing).astype(np.int64)
                assert len(np.unique(vox, axis=0)) == len(e), "two points of a node in one voxel"
    on_disk = {str(p.relative_to(out_dir)) for p in out_dir.rglob("*.glb")}
    assert on_disk == uris, "GLB files not referenced by the tileset, or missing"


def validate(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """Khronos glTF validator reports (numErrors, messages) per file, through the project's wrapper if present."""
    try:
        from twin.tiles.validate import validate_glbs
    except ImportError:
        validate_glbs = None
    if validate_glbs is not None:
        return validate_glbs(paths)
    script = ("const fs=require('fs');const v=require(process.argv[1]);(async()=>{const o={};"
              "for(const f of process.argv.slice(2)){const r=await v.validateBytes(new Uint8Array(fs.readFileSync(f)));"
              "o[f]={numErrors:r.issues.numErrors,numWarnings:r.issues.numWarnings,"
              "errors:r.issues.messages.filter(m=>m.severity<2)}}"
              "process.stdout.write(JSON.stringify(o))})()")
    assert shutil.which("node"), "node is required for the glTF validator"
    proc = subprocess.run(["node", "-e", script, str(ROOT / "node_modules" / "gltf-validator"), *map(str, paths)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def glbs(out_dir: Path) -> list[Path]:
    """Every GLB under a tileset folder."""
    return sorted(out_dir.rglob("*.glb"))


def assert_valid(out_dir: Path) -> None:
    """Zero validator errors and warnings in every GLB of the tileset."""
    files = glbs(out_dir)
    report = validate(files)
    assert len(report) == len(files)
    bad = {f: (r.get("errors"), r.get("warnings")) for f, r in report.items() if r["numErrors"] or r["numWarnings"]}
    assert not bad, bad


def write_las(path: Path, x: np.ndarray, y: np.ndarray, z: np.ndarray, scale: float = 0.01,
              offsets: tuple[float, float, float] = (0.0, 0.0, 0.0), rgb: np.ndarray | None = None) -> Path:
    """A small LAS 1.2 (format 3 with RGB, else 1; no CRS record) for synthetic cases; .laz → compressed."""
    h = laspy.LasHeader(point_format=3 if rgb is not None else 1, version="1.2")
    h.scales, h.offsets = np.array([scale] * 3), np.array(offsets)
    las = laspy.LasData(h)
    las.x, las.y, las.z = x, y, z
    if rgb is not None:
        las.red, las.green, las.blue = rgb.T
    las.intensity = np.arange(len(x)) % 1000
    las.classification = np.full(len(x), 2, np.uint8)
    las.write(path)
    return path


def beijing_points(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random points over 200 m × 200 m of the demo city's area (EPSG:4548)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(448300, 448500, n), rng.uniform(4418800, 4419000, n), rng.uniform(40, 60, n)


# ---------------------------------------------------------------------------------------------------- demo city


@pytest.fixture(scope="module")
def demo(city, tmp_path_factory) -> dict[str, Any]:
    """One demo LAZ tile (EPSG:4548, no RGB) tiled with the two demo images."""
    laz = sorted((city["dir"] / "sources/lidar").glob("*.laz"))[0]
    images = sorted((city["dir"] / "sources/imagery").glob("*.tif"))
    out = tmp_path_factory.mktemp("pc_demo") / "tiles"
    ts = build_pointcloud_tileset([laz], None, out, imagery=images)
    tiles, src = load_tileset(ts), source_points(laz)
    return {"laz": laz, "images": images, "out": out, "ts": ts, "tiles": tiles, "src": src,
            "match": match_exactly(tiles, src)}


def test_demo_every_point_once_within_1cm(demo):
    """ADD refinement: the tiles hold the file's points, each once, within 1 cm of pyproj's ECEF."""
    t = demo["tiles"]
    assert len(t["ecef"]) == len(demo["src"]["X"]) > 1_000_000
    m = demo["match"]
    assert m["err"].max() < 0.01
    assert t["json"]["extras"]["twin"]["points"] == len(demo["src"]["X"])
    check_structure(t, demo["out"])
    assert max(r["depth"] for r in t["tiles"]) >= 2  # a real hierarchy, not one tile


def test_demo_glbs_pass_the_khronos_validator(demo):
    """Every GLB has zero errors; the metadata extension is declared and wired to the primitive."""
    assert_valid(demo["out"])
    gltf = demo["tiles"]["tiles"][0]["gltf"]
    assert "EXT_structural_metadata" in gltf["extensionsUsed"]
    prim = gltf["meshes"][0]["primitives"][0]
    assert prim["mode"] == 0 and prim["extensions"]["EXT_structural_metadata"]["propertyAttributes"] == [0]
    props = gltf["extensions"]["EXT_structural_metadata"]["propertyAttributes"][0]["properties"]
    assert props["classification"]["attribute"] in prim["attributes"]


def test_demo_colours_come_from_the_latest_image(demo):
    """No RGB in the file: colours are rasterio samples of the most recent image, 2–98 % stretched."""
    t, src, m = demo["tiles"], demo["src"], demo["match"]
    info = t["json"]["extras"]["twin"]["colour"]
    assert info["sources"][0]["colour"] == "imagery"
    latest = max(demo["images"], key=lambda p: p.stem)  # bj_sat_<date>.tif
    assert info["images"][0]["path"] == str(latest)
    rng = np.random.default_rng(3)
    pick = rng.choice(len(m["s_order"]), 200, replace=False)
    si, ti = m["s_order"][pick], m["t_order"][pick]
    with rasterio.open(latest) as ds:
        names = [d.lower() for d in ds.descriptions]
        bands = [names.index(c) + 1 for c in ("red", "green", "blue")]
        full = ds.read(bands).astype(np.float64)
        raw = np.array(list(ds.sample(zip(src["x"][si], src["y"][si], strict=True), indexes=bands)), np.float64)
    lo, hi = np.percentile(full.reshape(3, -1), [2, 98], axis=1)  # the stretch, independently
    assert np.allclose(np.array(info["images"][0]["stretch"]), np.column_stack([lo, hi]))
    expected = np.clip(np.rint((raw - lo) / (hi - lo) * 255), 0, 255)
    assert np.abs(t["rgb"][ti].astype(int) - expected).max() <= 1
    assert len(np.unique(t["rgb"][ti], axis=0)) > 20  # real imagery, not one flat colour


# ---------------------------------------------------------------------------------------------------- real data


def test_autzen_feet_wkt_exact_with_file_rgb(tmp_path):
    """Autzen (international feet, WKT CRS, 16-bit RGB): exact multiset, < 1 cm, colours from the file."""
    folder = shared_data("lidar/autzen_trim")
    laz = folder / "autzen_trim.laz"
    out = tmp_path / "autzen"
    ts = build_pointcloud_tileset([laz], None, out)
    t = load_tileset(ts)
    src = source_points(laz, pyproj.CRS((folder / "autzen-srs.wkt").read_text()))
    assert len(t["ecef"]) == 110_000
    m = match_exactly(t, src)
    assert m["err"].max() < 0.01
    check_structure(t, out)
    assert_valid(out)
    rgb = src["rgb"][m["s_order"]]
    assert rgb.max() <= 255 and t["json"]["extras"]["twin"]["colour"]["sources"][0]["colour"] == "rgb"
    assert np.array_equal(t["rgb"][m["t_order"]], rgb)  # 8-bit values in a 16-bit field: kept as they are


def test_delft_ahn3_declared_crs_exact(tmp_path):
    """Delft AHN3 (no CRS in the header, RD New declared): exact multiset with classes and intensity."""
    laz = shared_data("lidar/delft_ahn3") / "delft_ahn3_part2.laz"
    with pytest.raises(SourceError, match="no CRS"):
        build_pointcloud_tileset([laz], None, tmp_path / "nocrs")
    assert not (tmp_path / "nocrs").exists()
    out = tmp_path / "delft"
    ts = build_pointcloud_tileset([laz], "EPSG:28992", out)
    t = load_tileset(ts)
    src = source_points(laz, pyproj.CRS("EPSG:28992"))
    m = match_exactly(t, src)
    assert len(t["ecef"]) == 208_432 and m["err"].max() < 0.01
    assert dict(zip(*np.unique(t["cls"], return_counts=True), strict=True)) == {
        1: 86_308, 2: 87_130, 6: 33_312, 9: 568, 26: 1_114}
    check_structure(t, out)
    assert_valid(out)


def test_out_of_core_and_parallel_builds_are_identical(demo, tmp_path):
    """Small chunks and a 1 MB spill budget (records go through disk), 1 or 2 workers: byte-identical tilesets."""
    kw = {"imagery": demo["images"], "chunk": 200_000, "spill_budget": 2**20}
    b = build_pointcloud_tileset([demo["laz"]], None, tmp_path / "b", workers=2, **kw)
    c = build_pointcloud_tileset([demo["laz"]], None, tmp_path / "c", **kw)
    a = demo["ts"]
    assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    files = [p.relative_to(demo["out"]) for p in glbs(demo["out"])]
    assert len(files) > 50
    for f in files:
        assert (demo["out"] / f).read_bytes() == (tmp_path / "b" / f).read_bytes() == (tmp_path / "c" / f
                                                                                        ).read_bytes()
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.glob(".*"))  # spills and temporaries gone


def test_store_tileset_from_assets_and_reuse(city, store, tmp_path):
    """The store's point-cloud and imagery assets are tiled; a second call reuses the same tileset."""
    from twin.pipeline.ingest import ingest_paths

    laz = sorted((city["dir"] / "sources/lidar").glob("*.laz"))[2]
    images = sorted((city["dir"] / "sources/imagery").glob("*.tif"))
    with pytest.raises(LookupError):
        pointcloud_tileset_for_store(store, tmp_path / "none")
    ingest_paths(store, [laz, *images], message="lidar + imagery")
    out = tmp_path / "pc"
    ts = pointcloud_tileset_for_store(store, out)
    info = json.loads(ts.read_text())["extras"]["twin"]
    assert info["points"] == len(laspy.read(laz).points)
    assert info["colour"]["sources"][0]["colour"] == "imagery" and len(info["colour"]["images"]) == 2
    assert info["colour"]["images"][0]["acquired"] > info["colour"]["images"][1]["acquired"]
    mtime = ts.stat().st_mtime_ns
    assert pointcloud_tileset_for_store(store, out) == ts and ts.stat().st_mtime_ns == mtime


# ---------------------------------------------------------------------------------------------------- bad input


def test_two_small_files_one_tile_rgb16_and_palette(tmp_path):
    """Two LAZ files, 1,000 points each, in one leaf tile (geometric error 0): positions within 1 cm; 16-bit RGB
    keeps its top byte, a file without RGB (and no imagery) gets the class palette."""
    x, y, z = beijing_points(2_000)
    rgb = np.random.default_rng(2).integers(0, 65536, (1_000, 3)).astype(np.uint16)
    a = write_las(tmp_path / "a.laz", x[:1000], y[:1000], z[:1000], rgb=rgb)
    b = write_las(tmp_path / "b.laz", x[1000:], y[1000:], z[1000:])
    ts = build_pointcloud_tileset([a, b], "EPSG:4548", tmp_path / "s")
    t = load_tileset(ts)
    assert len(t["tiles"]) == 1 and t["json"]["root"]["geometricError"] == 0
    sa, sb = source_points(a, pyproj.CRS("EPSG:4548")), source_points(b, pyproj.CRS("EPSG:4548"))
    src = {**sa, **{k: np.concatenate([sa[k], sb[k]]) for k in ("X", "Y", "Z", "cls", "inten", "x", "y", "z")}}
    m = match_exactly(t, src)
    assert m["err"].max() < 0.01
    got = t["rgb"][m["t_order"]]
    from_a = m["s_order"] < 1000
    assert np.array_equal(got[from_a], (rgb[m["s_order"][from_a]] >> 8).astype(np.uint8))
    assert np.all(got[~from_a] == [170, 130, 90])  # class 2 (ground) colour
    assert_valid(tmp_path / "s")


@pytest.mark.parametrize("case", ["absent", "empty", "no_points", "nan_scale", "absurd", "engineering_crs",
                                  "outside_area", "truncated"])
def test_bad_input_names_the_file_and_leaves_nothing(tmp_path, case):
    """Each broken input raises SourceError naming the file; an existing tileset stays, nothing partial appears."""
    x, y, z = beijing_points(20_000)
    crs: str | None = "EPSG:4548"
    path = tmp_path / f"{case}.las"
    match = {"absent": "no such file", "empty": "empty", "no_points": "no points", "nan_scale": "not a finite",
             "absurd": "absurd", "engineering_crs": "cannot be placed on the globe",
             "outside_area": "outside the area of use", "truncated": "corrupt or truncated"}[case]
    if case == "empty":
        path.write_bytes(b"")
    elif case == "no_points":
        write_las(path, x[:0], y[:0], z[:0])
    elif case == "nan_scale":
        write_las(path, x, y, z)
        data = bytearray(path.read_bytes())
        struct.pack_into("<d", data, 131, float("nan"))  # LAS 1.2 header: x scale factor
        path.write_bytes(bytes(data))
    elif case == "absurd":
        write_las(path, x + 1e12, y, z, offsets=(1e12, 0.0, 0.0))
    elif case == "engineering_crs":
        write_las(path, x, y, z)
        crs = 'LOCAL_CS["site grid",LOCAL_DATUM["site",0],UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'
    elif case == "outside_area":
        write_las(path, x, y, z)
        crs = "EPSG:28992"  # Beijing coordinates read as Dutch RD New
    elif case == "truncated":
        path = write_las(tmp_path / "truncated.laz", x, y, z)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "tiles"
    old = write_las(tmp_path / "old.las", x[:100], y[:100], z[:100])
    build_pointcloud_tileset([old], "EPSG:4548", out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(SourceError, match=match) as err:
        build_pointcloud_tileset([old, path], ["EPSG:4548", crs], out)
    assert str(path) in str(err.value)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
