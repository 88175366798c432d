"""Errors are mapped once: the same fault gives the same status on every route (an unknown branch or version is a
404 everywhere), and any TwinError becomes the HTTP status of its row in ``twin.errors.TABLE``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from data_models import LayerSpec
from tests.conftest import make_buildings
from twin.api.app import create_app
from twin.errors import TABLE, Status, TwinError
from twin.layers.h3index import latlng_to_cells
from twin.layers.registry import Layers
from twin.layers.values import aggregate, make_values
from twin.store import Store

SPEC = LayerSpec(name="fixes", variable="fixes", unit="1", aggregation="count", resolutions=[9], time_bucket="1h",
                 lineage=["synthetic"])

# every route that reads a branch, with {b} for the branch and {v} for an as_of / version
BRANCH_ROUTES = [
    "/collections?branch={b}&as_of={v}",
    "/collections/buildings?branch={b}&as_of={v}",
    "/collections/buildings/items?branch={b}&as_of={v}",
    "/collections/buildings/items?branch={b}&as_of={v}&datetime=2020-01-01T00:00:00Z/..",
    "/collections/buildings/items/b000000?branch={b}&as_of={v}",
    "/entities/b000000?branch={b}&as_of={v}",
    "/assets?branch={b}&as_of={v}",
    "/layers?branch={b}&as_of={v}",
    "/layers/fixes?branch={b}&as_of={v}",
    "/layers/fixes/cells?branch={b}&as_of={v}",
    "/imagery?branch={b}&as_of={v}",
    "/imagery/tilejson.json?branch={b}&as_of={v}",
    "/imagery/3/1/1.png?branch={b}&as_of={v}",
    "/tiles/{b}/{v}/buildings/tileset.json",
    "/tiles/{b}/{v}/terrain/tileset.json",
    "/tiles/{b}/{v}/buildings/content/ab/abababababababababab.glb",
]
# routes that take a branch but no version
BRANCH_ONLY_ROUTES = ["/entities/b000000/history?branch={b}", "/commits?branch={b}", "/commits/latest?branch={b}"]


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> TestClient:
    store = Store.init(tmp_path_factory.mktemp("errors") / "store")
    store.commit(make_buildings(4), message="buildings")
    rng = np.random.default_rng(3)
    lat, lng = rng.uniform(39.90, 39.95, 200), rng.uniform(116.30, 116.36, 200)
    t = np.datetime64("2024-05-01T00:00") + (rng.integers(0, 24, 200) * 3600).astype("timedelta64[s]")
    Layers(store).publish(SPEC, aggregate(make_values(latlng_to_cells(lat, lng, 9), 9, np.ones(200), t=t), "count",
                                          bucket_s=3600))
    store.create_branch("plan")
    return TestClient(create_app(store.root))


def _url(route: str, branch: str, version: str | None) -> str:
    """The route for a branch and a version (None: the latest, by leaving ``as_of`` out or saying ``latest``)."""
    if version is None:
        route = route.replace("{v}", "latest") if route.startswith("/tiles/") else route.replace("&as_of={v}", "")
        return route.format(b=branch)
    return route.format(b=branch, v=version)


@pytest.mark.parametrize("route", BRANCH_ROUTES + BRANCH_ONLY_ROUTES)
def test_an_unknown_branch_is_a_404_on_every_route(api: TestClient, route: str) -> None:
    for version in (None, "1"):
        r = api.get(_url(route, "nope", version))
        assert r.status_code == 404, (route, version, r.status_code, r.text)
        assert "unknown branch 'nope'" in r.json()["detail"]


@pytest.mark.parametrize("route", BRANCH_ROUTES + ["/commits/99/changes"])
def test_an_unknown_version_is_a_404_on_every_route(api: TestClient, route: str) -> None:
    for branch in ("main", "plan"):
        r = api.get(_url(route, branch, "99"))
        assert r.status_code == 404, (route, branch, r.status_code, r.text)
        assert "version 99 does not exist" in r.json()["detail"]


def test_the_same_routes_answer_on_a_known_branch(api: TestClient) -> None:
    """The walk above is not vacuous: with a known branch and version the routes that have data answer 200."""
    for route in BRANCH_ROUTES[:10] + BRANCH_ROUTES[13:14]:
        r = api.get(_url(route, "plan", "2"))  # version 2: the buildings (1) and the layer (2)
        assert r.status_code == 200, (route, r.status_code, r.text)
    for route in BRANCH_ONLY_ROUTES:
        assert api.get(_url(route, "plan", None)).status_code == 200, route


def test_a_malformed_version_is_a_400_naming_it(api: TestClient) -> None:
    r = api.get("/collections?as_of=last-week")
    assert r.status_code == 400 and "as_of" in r.json()["detail"]
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert api.get(f"/collections/buildings/items?as_of={future}").status_code == 200  # a time, not a version


@pytest.mark.parametrize("status", list(Status))
def test_every_twin_error_gets_the_http_status_of_its_table_row(tmp_path, status: Status) -> None:
    app = create_app(Store.init(tmp_path / "store").root)
    fault = type("Fault", (TwinError,), {"status": status})

    @app.get("/fault")
    def _fault() -> None:
        raise fault(f"a {status.value} fault")

    r = TestClient(app, raise_server_exceptions=False).get("/fault")
    assert r.status_code == TABLE[status].http
    assert r.json() == {"detail": f"a {status.value} fault"}
