"""The simulation engine: registry, parameter checks, runs recorded in the store, reuse, incremental hints,
failures and cancellation leaving the store as it was, result tables, layers and files, and compare.

A small real simulator (tests/sim/volume_sim.py: per-building volume and its H3 layer) stands in for the heavy
ones: every number it writes is checked against shapely's area times the height."""

from __future__ import annotations

import pytest
import shapely

from data_models import RunStatus
from tests.conftest import make_buildings
from tests.sim.volume_sim import VolumeSimulator
from twin.layers.registry import Layers
from twin.sim import engine
from twin.store import RUNS, Query, Store


@pytest.fixture(scope="module", autouse=True)
def _registered():
    engine.register(VolumeSimulator())
    yield
    engine._REGISTRY.pop(VolumeSimulator.name, None)


@pytest.fixture
def city(tmp_path) -> Store:
    s = Store.init(tmp_path / "store")
    s.commit(make_buildings(9), message="nine buildings")
    return s


def test_registry_describes_and_refuses_unknown_names():
    assert "test-volume" in engine.simulators()
    d = engine.describe(engine.get("test-volume"))
    assert d["parameters"]["properties"]["factor"]["exclusiveMinimum"] == 0
    assert d["writes"]["test_volume_buildings"] == "volume per building"
    with pytest.raises(engine.UnknownSimulator, match="unknown simulator 'nope'.*test-volume"):
        engine.get("nope")


def test_bad_parameters_name_the_parameter_and_change_nothing(city):
    head = city.head()
    with pytest.raises(engine.BadParameters, match=r"factor: .*greater than 0.*got -1"):
        engine.run(city, "test-volume", {"factor": -1})
    with pytest.raises(engine.BadParameters, match=r"colour: unknown parameter; parameters: factor, fail"):
        engine.run(city, "test-volume", {"colour": "red"})
    assert city.head() == head


def test_a_run_records_results_reuses_and_compares(city):
    r = engine.run(city, "test-volume", {"factor": 2})
    assert r.status == RunStatus.succeeded and r.version == 1 and r.key and r.inputs_digest
    assert set(r.outputs) == {"test_volume_buildings", "test-volume-cells"}
    assert r.timings["read"] >= 0 and r.timings["total"] >= r.timings["read"]
    rows = engine.result_table(city, r, "test_volume_buildings").to_pylist()
    by_id = {b.id: b for b in make_buildings(9)}
    assert len(rows) == 9
    for row in rows:
        b = by_id[row["entity_id"]]
        assert row["run_id"] == r.id
        assert row["volume"] == pytest.approx(shapely.geometry.shape(b.geometry.model_dump()).area * b.height * 2)
    cells = Layers(city).query("test-volume-cells", res=9)
    assert sum(cells["value"].to_pylist()) == pytest.approx(sum(x["volume"] for x in rows))
    # entities are untouched: results live in their own table
    assert {b["id"]: b["height"] for b in city.features()} == {k: b.height for k, b in by_id.items()}

    head = city.head()
    again = engine.run(city, "test-volume", {"factor": 2})
    assert again.id == r.id and city.head() == head  # reused, nothing recomputed or committed
    assert engine.run(city, "test-volume", {"factor": 2}, reuse=False).id != r.id

    # a scenario-like branch changing one building: the engine hands the simulator the previous run and what changed
    city.create_branch("taller", "main")
    changed = make_buildings(9)[4].model_copy(update={"height": 99.0})
    city.commit([changed], message="taller", branch="taller")
    VolumeSimulator.seen.clear()
    b = engine.run(city, "test-volume", {"factor": 2}, branch="taller")
    prev = VolumeSimulator.seen[-1]
    assert prev is not None and prev.changed == {changed.id} and prev.run.key != b.key
    assert b.reused_from == prev.run.id
    c = engine.compare(city, r.id, b.id)
    diff = c.entities["test_volume_buildings"]
    status = dict(zip(diff["entity_id"].to_pylist(), diff["status"].to_pylist(), strict=True))
    assert status[changed.id] == "changed" and sum(s == "same" for s in status.values()) == 8
    row = engine.changed_only(diff).to_pylist()[0]
    area = shapely.geometry.shape(changed.geometry.model_dump()).area
    assert row["volume_diff"] == pytest.approx(area * (99.0 - make_buildings(9)[4].height) * 2)
    cells = c.cells["test-volume-cells"]
    assert sum(cells["difference"].to_pylist()) == pytest.approx(row["volume_diff"])
    assert [x.id for x in engine.runs(city, "taller")][0] == b.id


def test_failures_are_recorded_and_cancellation_leaves_nothing(city):
    with pytest.raises(RuntimeError, match="diverged"):
        engine.run(city, "test-volume", {"fail": True})
    failed = city.features(query=Query(collection=RUNS))
    assert len(failed) == 1 and failed[0]["status"] == "failed" and "diverged" in failed[0]["error"]
    head = city.head()

    def cancel(fraction: float, message: str) -> None:
        if fraction >= 0.5:
            raise engine.Cancelled("cancelled by the test")

    with pytest.raises(engine.Cancelled):
        engine.run(city, "test-volume", {"factor": 3}, progress=cancel)
    assert city.head() == head
    assert not list((city.root / "tmp").glob("sim-*"))  # the work folder is gone too


def test_files_become_product_assets(city):
    r = engine.run(city, "test-volume", {"write_file": True})
    asset_id = f"{r.id}-volumes"
    assert asset_id in r.outputs
    a = city.get(asset_id, collection="assets")
    path = city.asset_path(a)
    assert path.is_file() and path.parent.name == r.id and "b000004" in path.read_text()
    with pytest.raises(engine.UnknownRun):
        engine.find_run(city, "run-000000000000")



def test_a_run_inherits_the_highest_classification_it_read(tmp_path) -> None:
    """Buildings up to confidential in, a confidential run out; a viewer cleared for internal data runs on what it
    sees only (another inputs digest), and its run is internal."""
    from data_models import Classification, Principal
    from twin.security.guard import GuardedStore

    store = Store.init(tmp_path / "s")
    levels = [Classification.public, Classification.internal, Classification.confidential]
    store.commit([b.model_copy(update={"classification": levels[i % 3]}) for i, b in enumerate(make_buildings(9))],
                 message="city")
    full = engine.run(store, "test-volume")
    assert full.classification == Classification.confidential
    analyst = Principal(id="principal-a", name="a", roles=["analyst"], clearance="internal")
    limited = engine.run(GuardedStore(store, analyst), "test-volume")
    assert limited.classification == Classification.internal and limited.id != full.id
    assert limited.inputs_digest != full.inputs_digest
    assert store.get(full.id, collection="runs")["classification"] == "confidential"
    assert GuardedStore(store, analyst).get(full.id, collection="runs") is None
