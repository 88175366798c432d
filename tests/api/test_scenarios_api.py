"""The scenario routes over real HTTP (`twin serve` on a small synthetic store): create, read, edit, remove an edit,
diff in three formats, and the 400 / 404 / 409 answers, with the store unchanged after each refusal."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from data_models import Road
from tests.api.server import auth, serve
from tests.conftest import make_buildings, square
from twin.pipeline.build import build
from twin.store import Store

X0, Y0 = 448_000.0, 4_428_000.0
TOWER = {"id": "tower", "type": "Building", "geometry": square(X0 + 300, Y0 + 300, 20.0), "height": 45.0,
         "use": "residential"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server over a store of 16 buildings and a road, with the `twin build` layers."""
    tmp = tmp_path_factory.mktemp("scenarios_api")
    s = Store.init(tmp / "store")
    road = Road(id="road-1", geometry={"type": "LineString", "coordinates": [[X0, Y0 - 5], [X0 + 100, Y0 - 5]]})
    s.commit([*make_buildings(16), road], message="city")
    build(s, only=["layers"])
    with serve(tmp / "store", tmp) as srv:
        with httpx.Client(base_url=srv.base, timeout=60, headers=auth(tmp / "store", name="planner",
                                                                       role="analyst")) as client:
            yield client, s


def _latest(s: Store) -> tuple[int, list[str]]:
    """The newest version of the store and its branches."""
    return max(c.version for c in s.log()), [b.name for b in s.branches()]


def test_create_read_edit_diff(server) -> None:
    client, s = server
    r = client.post("/scenarios", json={"name": "Tower by the park", "description": "what if"})
    assert r.status_code == 201, r.text
    sc = r.json()
    assert (sc["id"], sc["branch"], sc["base_branch"], sc["edits"]) == \
        ("tower-by-the-park", "scenario-tower-by-the-park", "main", [])
    assert r.headers["location"] == "/scenarios/tower-by-the-park"
    assert client.get(r.headers["location"]).json() == sc
    assert "tower-by-the-park" in [x["id"] for x in client.get("/scenarios").json()]
    r = client.post(f"/scenarios/{sc['id']}/edits", json={"kind": "add_building", "building": TOWER})
    assert r.status_code == 201, r.text
    assert [e["kind"] for e in r.json()["edits"]] == ["add_building"]
    assert sorted(s.get("tower", sc["branch"])["lods"]) == ["1.2", "1.3"]
    r = client.post(f"/scenarios/{sc['id']}/edits", json={"kind": "close_road", "road_id": "road-1"})
    assert r.status_code == 201 and len(r.json()["edits"]) == 2
    d = client.get(f"/scenarios/{sc['id']}/diff")
    assert d.status_code == 200 and d.headers["content-type"].startswith("application/json")
    body = d.json()
    assert {e["id"]: e["change"] for e in body["entities"]} == {"tower": "added", "road-1": "changed"}
    assert {c["layer"] for c in body["cells"]} == {"building-volume", "population"}
    assert sum(c["difference"] for c in body["cells"] if c["layer"] == "building-volume") == \
        pytest.approx(20 * 20 * 45.0, rel=1e-6)
    g = client.get(f"/scenarios/{sc['id']}/diff", params={"f": "geojson", "layer": "population"})
    assert g.headers["content-type"].startswith("application/geo+json")
    feats = g.json()["features"]
    assert {f["properties"]["feature"] for f in feats} == {"entity", "cell"}
    assert {f["properties"]["layer"] for f in feats if f["properties"]["feature"] == "cell"} == {"population"}
    c = client.get(f"/scenarios/{sc['id']}/diff", params={"f": "csv"})
    assert c.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(c.text)))
    assert {"kind": "Road", "id": "road-1", "change": "changed", "field": "closed", "base": "False",
            "scenario": "True", "difference": ""} in rows
    r = client.delete(f"/scenarios/{sc['id']}/edits/0")
    assert r.status_code == 200 and [e["kind"] for e in r.json()["edits"]] == ["close_road"]
    assert s.get("tower", sc["branch"]) is None


def test_errors(server) -> None:
    client, s = server
    assert client.post("/scenarios", json={"name": "errs", "id": "errs"}).status_code == 201
    client.post("/scenarios/errs/edits", json={"kind": "add_building", "building": {**TOWER, "id": "t2"}})
    onlooker = auth(s.root, name="onlooker", role="viewer")
    before = _latest(s)
    cases = [
        (client.post("/scenarios", json={"name": "again", "id": "errs"}), 409, "'errs' exists"),
        (client.post("/scenarios", json={"name": "x", "base_branch": "nowhere"}), 404, "'nowhere'"),
        (client.post("/scenarios", json={"name": ""}), 400, "name"),
        (client.post("/scenarios", json={"name": "x", "id": "Not An Id"}), 400, "id"),
        (client.post("/scenarios", json={"name": "x", "base_version": 999}), 404, "version 999"),
        (client.post("/scenarios/errs/edits", json={"kind": "teleport"}), 400, ""),
        (client.post("/scenarios/errs/edits", json={"kind": "remove_building", "building_id": "ghost"}), 404,
         "'ghost'"),
        (client.post("/scenarios/errs/edits", json={"kind": "add_building", "building": {**TOWER, "id": "t2"}}),
         409, "'t2' exists already"),
        (client.post("/scenarios/nope/edits", json={"kind": "close_road", "road_id": "road-1"}), 404,
         "unknown scenario 'nope'"),
        (client.delete("/scenarios/errs/edits/5"), 404, "no edit 5"),
        (client.get("/scenarios/nope"), 404, "unknown scenario 'nope'"),
        (client.get("/scenarios/errs/diff", params={"layer": "nope"}), 404, "'nope'"),
        (client.get("/scenarios/errs/diff", params={"f": "xml"}), 400, "f"),
        # a viewer (and anyone without credentials) may read scenarios, not change them
        (client.post("/scenarios", json={"name": "mine"}, headers={"Authorization": ""}), 401, "Authorization"),
        (httpx.post(str(client.base_url).rstrip("/") + "/scenarios", json={"name": "mine"}), 403, "edit permission"),
        (client.post("/scenarios/errs/edits", json={"kind": "close_road", "road_id": "road-1"},
                     headers=onlooker), 403, "'onlooker'"),
    ]
    for r, status, text in cases:
        assert r.status_code == status, (r.request.url, r.text)
        assert text in r.json()["detail"], r.text
    assert _latest(s) == before


def test_openapi_documents_the_routes(server) -> None:
    client, _ = server
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/scenarios"]["post"]["responses"]) >= {"201", "400", "404", "409"}
    assert set(paths["/scenarios/{scenario_id}/edits"]["post"]["responses"]) >= {"201", "400", "404", "409"}
    assert "text/csv" in paths["/scenarios/{scenario_id}/diff"]["get"]["responses"]["200"]["content"]
