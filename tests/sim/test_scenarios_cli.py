"""`twin scenario …` on a small synthetic store: create, edit (each flag), list, show, diff in every format, and the
exit codes of the error table (2 bad input, 4 not found, 5 conflict) from the real `twin` executable."""

from __future__ import annotations

import json
import subprocess

import pytest
from typer.testing import CliRunner

from data_models import Road
from tests.conftest import ROOT, TWIN, make_buildings, square
from twin.cli import app
from twin.pipeline.build import build
from twin.sim import scenarios as S
from twin.store import Store

X0, Y0 = 448_000.0, 4_428_000.0
runner = CliRunner()


@pytest.fixture
def town(store: Store) -> Store:
    """16 buildings and a road with the `twin build` layers."""
    road = Road(id="road-1", geometry={"type": "LineString", "coordinates": [[X0, Y0 - 5], [X0 + 100, Y0 - 5]]})
    store.commit([*make_buildings(16), road], message="town")
    build(store, only=["layers"])
    return store


def _run(store: Store, *args: str):
    """`twin scenario ARGS --store STORE` in process; fails the test on an unexpected exception."""
    result = runner.invoke(app, ["scenario", *args, "--store", str(store.root)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_create_edit_show_list_diff(town: Store, tmp_path) -> None:
    out = _run(town, "create", "Park tower", "--id", "park", "--description", "a tower", "--json")
    doc = json.loads(out.output)
    assert (doc["id"], doc["branch"], doc["base_version"]) == ("park", "scenario-park", town.head())
    assert doc["tiles"]["buildings"] == 0  # no building has LoD solids yet
    feature = {"type": "Feature", "properties": {"id": "tower", "height": 30, "use": "residential",
                                                 "roof_type": "hip", "architect": "x"},
               "geometry": square(X0 + 300, Y0 + 300, 20.0)}
    (tmp_path / "tower.geojson").write_text(json.dumps(feature))
    out = _run(town, "edit", "park", "--add-building", str(tmp_path / "tower.geojson"))
    assert "1 edit(s)" in out.output and "buildings tileset" in out.output
    b = town.get("tower", "scenario-park")
    assert (b["height"], b["roof_type"], b["attributes"]) == (30.0, "hip", {"architect": "x"})
    assert sorted(b["lods"]) == ["1.2", "1.3", "2.2"]
    assert (town.root / "tiles" / "buildings").is_dir()
    _run(town, "edit", "park", "--modify-building", "b000002", "--height", "33", "--use", "office", "--no-tiles")
    _run(town, "edit", "park", "--remove-building", "b000003", "--no-tiles")
    _run(town, "edit", "park", "--edit", json.dumps({"kind": "close_road", "road_id": "road-1"}), "--no-tiles")
    (tmp_path / "rain.json").write_text(json.dumps({"kind": "rainfall_event", "intensity_mm_h": 20,
                                                    "duration_min": 60}))
    _run(town, "edit", "park", "--edit", str(tmp_path / "rain.json"), "--no-tiles")
    shown = _run(town, "show", "park").output
    for line in ("0. add building tower", "1. modify building", "2. remove building", "3. close road",
                 "4. rainfall event"):
        assert line in shown
    assert [e["kind"] for e in json.loads(_run(town, "show", "park", "--json").output)["edits"]] == \
        ["add_building", "modify_building", "remove_building", "close_road", "rainfall_event"]
    assert "park" in _run(town, "list").output
    assert [s["id"] for s in json.loads(_run(town, "list", "--json").output)] == ["park"]
    table = _run(town, "diff", "park").output
    flat = " ".join(table.split())
    assert "b000002" in flat and "33.0" in flat and "removed" in flat and "building-volume" in flat
    _run(town, "diff", "park", "--format", "geojson", "--out", str(tmp_path / "d.geojson"))
    gj = json.loads((tmp_path / "d.geojson").read_text())
    assert gj["type"] == "FeatureCollection"
    assert {f["id"] for f in gj["features"] if f["properties"]["feature"] == "entity"} == \
        {"tower", "b000002", "b000003", "road-1"}
    csv = _run(town, "diff", "park", "--format", "csv", "--layer", "population").output
    assert csv.splitlines()[0] == "kind,id,change,field,base,scenario,difference"
    assert any(line.startswith("cell,") and line.split(",")[3] == "population" for line in csv.splitlines())
    assert not any(",building-volume," in line for line in csv.splitlines())
    _run(town, "edit", "park", "--remove-edit", "0", "--no-tiles")
    assert town.get("tower", "scenario-park") is None
    assert len(S.get(town, "park").edits) == 4


def test_exit_codes(town: Store) -> None:
    S.create(town, "taken", scenario_id="taken")
    before = max(c.version for c in town.log())

    def code(*args: str) -> tuple[int, str]:
        p = subprocess.run([TWIN, "scenario", *args, "--store", str(town.root)], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        return p.returncode, p.stderr

    rc, err = code("show", "ghost")
    assert rc == 4 and "unknown scenario 'ghost'" in err
    rc, err = code("create", "again", "--id", "taken")
    assert rc == 5 and "'taken' exists" in err
    rc, err = code("edit", "taken", "--remove-building", "b000001", "--height", "3")
    assert rc == 2 and "--modify-building" in err
    rc, err = code("edit", "taken", "--edit", "{not json")
    assert rc == 2 and "--edit" in err
    assert max(c.version for c in town.log()) == before
