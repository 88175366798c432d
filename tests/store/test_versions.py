"""Versions, as-of reads, branches, changelog and history over a real store directory."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from data_models import Building
from tests.conftest import make_buildings, square
from twin.store import Query, Store, StoreError


def test_commits_are_versions_and_as_of_reads_see_the_past(store: Store) -> None:
    bs = make_buildings(50)
    c1 = store.commit(bs, message="initial", author="alice")
    time.sleep(0.01)
    c2 = store.commit([bs[0].model_copy(update={"height": 99.0})], remove=[bs[1].id], message="edit", author="bob")
    assert (c1.version, c2.version) == (1, 2)
    assert c2.parent_version == 1 and c2.author == "bob"
    assert (c2.changes.added, c2.changes.modified, c2.changes.removed) == (0, 1, 1)
    assert store.count() == 49 and store.count(as_of=1) == 50
    assert store.get(bs[0].id)["height"] == 99.0
    assert store.get(bs[0].id, as_of=1)["height"] == bs[0].height
    assert store.get(bs[1].id) is None and store.get(bs[1].id, as_of="1") is not None
    # as_of a timestamp between the commits resolves to version 1
    between = c1.time + (c2.time - c1.time) / 2
    assert store.resolve_version("main", between) == 1
    assert store.get(bs[0].id, as_of=between.isoformat())["height"] == bs[0].height
    assert store.resolve_version("main", c1.time - timedelta(days=1)) == 0
    assert store.count(as_of=0) == 0
    assert [c.version for c in store.log()] == [2, 1]


def test_unchanged_objects_make_no_commit(store: Store) -> None:
    bs = make_buildings(10)
    assert store.commit(bs, message="one") is not None
    assert store.commit(bs, message="same again") is None
    c = store.commit(bs[:3] + [bs[3].model_copy(update={"use": "office"})], message="one change")
    assert c.changes.modified == 1 and c.changes.added == 0
    assert [x["id"] for x in store.changelog(c.version)] == [bs[3].id]


def test_changelog_lists_touched_ids_with_their_operation(store: Store) -> None:
    bs = make_buildings(5)
    store.commit(bs[:3], message="a")
    c = store.commit([bs[0].model_copy(update={"height": 1.0}), bs[3]], remove=[bs[2].id], message="b")
    log = {x["id"]: x["op"] for x in store.changelog(c.version)}
    assert log == {bs[0].id: "modify", bs[3].id: "add", bs[2].id: "remove"}
    with pytest.raises(StoreError, match="does not exist"):
        store.changelog(99)


def test_branch_edits_are_isolated_both_ways(store: Store) -> None:
    bs = make_buildings(20)
    store.commit(bs, message="base")
    b = store.create_branch("tower-scenario", description="what if a tower is built")
    assert b.base_version == 1
    tower = Building(id="tower", geometry=square(448_500, 4_428_500, 30), height=150.0)
    store.commit([tower, bs[0].model_copy(update={"height": 1.0})], remove=[bs[1].id],
                 message="scenario edits", branch="tower-scenario")
    # main does not see the branch's edits
    assert store.get("tower") is None
    assert store.get(bs[0].id)["height"] == bs[0].height
    assert store.get(bs[1].id) is not None
    # the branch sees base + its edits
    assert store.get("tower", branch="tower-scenario")["height"] == 150.0
    assert store.get(bs[0].id, branch="tower-scenario")["height"] == 1.0
    assert store.get(bs[1].id, branch="tower-scenario") is None
    assert store.count(branch="tower-scenario") == 20
    # a later edit on main is invisible on the branch (it forked at version 1)
    store.commit([bs[5].model_copy(update={"use": "school"})], message="main edit")
    assert store.get(bs[5].id)["use"] == "school"
    assert store.get(bs[5].id, branch="tower-scenario")["use"] == "residential"
    # the branch's log shows its own commits and its base's history up to the fork
    assert [c.message for c in store.log("tower-scenario")] == ["scenario edits", "base"]
    # copy-on-write: the branch's segment holds only the edited rows
    assert len(store.changelog(2)) == 3
    # nested branch from the scenario
    store.create_branch("tower-variant", from_branch="tower-scenario")
    assert store.get("tower", branch="tower-variant")["height"] == 150.0
    assert store.get(bs[5].id, branch="tower-variant")["use"] == "residential"


def test_branch_from_an_older_version(store: Store) -> None:
    bs = make_buildings(5)
    store.commit(bs[:2], message="v1")
    store.commit(bs[2:], message="v2")
    store.create_branch("old", at=1)
    assert store.count(branch="old") == 2 and store.count() == 5


def test_history_of_an_entity(store: Store) -> None:
    bs = make_buildings(3)
    store.commit(bs, message="v1")
    store.commit([bs[0].model_copy(update={"height": 5.0})], message="v2")
    store.commit([], remove=[bs[0].id], message="v3")
    h = store.history(bs[0].id)
    assert [(x["_store"]["version"], x["_store"]["op"]) for x in h] == [(1, "add"), (2, "modify"), (3, "remove")]
    assert h[1]["height"] == 5.0


def test_valid_time_is_separate_from_versions(store: Store) -> None:
    demolished = Building(id="old-mill", geometry=square(448_000, 4_428_000),
                          valid_from=datetime(1950, 1, 1, tzinfo=UTC), valid_to=datetime(2024, 3, 1, tzinfo=UTC))
    new = Building(id="new-mall", geometry=square(448_100, 4_428_000), valid_from=datetime(2024, 6, 1, tzinfo=UTC))
    store.commit([demolished, new], message="bitemporal")
    ids = lambda t: [f["id"] for f in store.features(query=Query(valid_at=t))]  # noqa: E731
    assert ids(datetime(2000, 1, 1, tzinfo=UTC)) == ["old-mill"]
    assert ids(datetime(2024, 4, 1, tzinfo=UTC)) == []
    assert ids(datetime(2025, 1, 1, tzinfo=UTC)) == ["new-mall"]
    assert store.count() == 2


def test_bad_requests_get_clear_errors(store: Store) -> None:
    store.commit(make_buildings(2), message="v1")
    with pytest.raises(StoreError, match="unknown branch 'nope'"):
        store.count(branch="nope")
    with pytest.raises(StoreError, match="version 7 does not exist"):
        store.count(as_of=7)
    with pytest.raises(StoreError, match="ISO 8601"):
        store.count(as_of="yesterday")
    with pytest.raises(StoreError, match="bad branch name"):
        store.create_branch("Bad Name")
    store.create_branch("x")
    with pytest.raises(StoreError, match="already exists"):
        store.create_branch("x")
    with pytest.raises(StoreError, match="cannot remove 'ghost'"):
        store.commit([], remove=["ghost"], message="rm")
    with pytest.raises(StoreError, match="min <= max"):
        Query(bbox=[10, 0, 0, 10])
    with pytest.raises(StoreError, match="unknown collection"):
        Query(collection="cats")
    with pytest.raises(StoreError, match="needs a message"):
        store.commit(make_buildings(1, prefix="z"), message=" ")
    with pytest.raises(ValueError):
        store.commit([{"id": "bad", "type": "Building", "geometry": {"type": "Polygon",
                                                                      "coordinates": [[[0, 0], [1, 0], [1, 1]]]}}],
                     message="unclosed ring")
    assert store.head() == 1


def test_reopening_reads_the_same_state(store: Store) -> None:
    store.commit(make_buildings(30), message="v1")
    again = Store(store.root)
    assert again.count() == 30 and again.head() == 1 and again.crs == "EPSG:4548"
    with pytest.raises(StoreError, match="not a twin store"):
        Store(store.root / "segments")


def test_branch_of_an_empty_store_sees_only_its_own_commits(store: Store) -> None:
    store.create_branch("early")
    store.commit(make_buildings(3), message="main work")
    store.commit(make_buildings(2, prefix="e"), message="branch work", branch="early")
    assert store.count() == 3 and store.count(branch="early") == 2
    assert store.head("early") == 2 and store.head() == 1


def test_what_the_store_returns_can_be_edited_and_committed_again(store: Store, tmp_path) -> None:
    """get → edit → commit, for a city object, a source asset and a layer spec (their ``_store`` metadata is
    dropped on the way in, and the models themselves still refuse unknown fields)."""
    from data_models import LayerSpec, SourceAsset
    from twin.store import ASSETS, LAYERS

    f = tmp_path / "a.geojson"
    f.write_text("{}")
    asset = SourceAsset(id="asset-1", kind="vector", path=str(f), checksum="0" * 64, size_bytes=2, crs="EPSG:4548")
    spec = LayerSpec(name="h", variable="height", unit="m", aggregation="max", resolutions=[10])
    store.commit([*make_buildings(3), asset, spec], message="initial")
    b = store.get("b000001")
    assert b["_store"]["version"] == 1
    b["height"] = 42.5
    a = store.get("asset-1", collection=ASSETS)
    a["licence"] = "CC-BY-4.0"
    s = store.get("h", collection=LAYERS)
    s["unit"] = "cm"
    c = store.commit([b, a, s], message="edit what was read")
    assert c is not None and c.changes.modified == 3
    assert store.get("b000001")["height"] == 42.5
    assert store.get("asset-1", collection=ASSETS)["licence"] == "CC-BY-4.0"
    assert store.get("h", collection=LAYERS)["unit"] == "cm"
    # unchanged read objects make no commit; an unknown field is still refused, naming it
    assert store.commit([store.get("b000002")], message="same") is None
    bad = store.get("b000002") | {"colour": "red"}
    with pytest.raises(ValueError, match="colour"):
        store.commit([bad], message="bad")


def test_a_store_keeps_its_time_zone(tmp_path) -> None:
    s = Store.init(tmp_path / "s", time_zone="Asia/Shanghai")
    assert s.time_zone == "Asia/Shanghai" and Store(tmp_path / "s").time_zone == "Asia/Shanghai"
    assert Store.init(tmp_path / "t").time_zone is None
    with pytest.raises(StoreError, match="'Mars/Olympus' is not an IANA time zone"):
        Store.init(tmp_path / "u", time_zone="Mars/Olympus")
    assert not (tmp_path / "u").exists()
