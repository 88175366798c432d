"""Store queries the API relies on: validity intervals, pages at a pinned version, and per-type extents."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from data_models import Building, Road
from tests.conftest import make_buildings, square
from twin.store import Extent, NotInStore, Query, Store, StoreError

T = lambda y, m=1, d=1: datetime(y, m, d, tzinfo=UTC)  # noqa: E731


@pytest.fixture
def timed(store: Store) -> Store:
    """Three buildings with different validity: closed in the past, open-ended, and open at both ends."""
    store.commit([
        Building(id="mill", geometry=square(448_000, 4_428_000), valid_from=T(1950), valid_to=T(2024, 3)),
        Building(id="mall", geometry=square(448_100, 4_428_000), valid_from=T(2024, 6)),
        Building(id="shed", geometry=square(448_200, 4_428_050, 5.0)),
    ], message="timed")
    return store


def _ids(store: Store, during: tuple[datetime | None, datetime | None]) -> list[str]:
    return [f["id"] for f in store.features(query=Query(valid_during=during))]


def test_valid_during_meets_the_closed_interval_with_open_ends(timed: Store) -> None:
    assert _ids(timed, (T(2000), T(2001))) == ["mill", "shed"]
    assert _ids(timed, (T(2024, 3), T(2024, 5))) == ["shed"]  # valid_to is exclusive
    assert _ids(timed, (T(2024, 2), T(2024, 6))) == ["mall", "mill", "shed"]  # valid_from is inclusive
    assert _ids(timed, (None, T(1949))) == ["shed"]
    assert _ids(timed, (T(2030), None)) == ["mall", "shed"]
    assert _ids(timed, (None, None)) == ["mall", "mill", "shed"]
    for t in (T(2000), T(2024, 4), T(2025)):  # an instant is the same rule as valid_at
        assert _ids(timed, (t, t)) == [f["id"] for f in timed.features(query=Query(valid_at=t))]
    assert timed.count(query=Query(valid_during=(T(2000), T(2001)), types=["Building"])) == 2


def test_valid_during_refuses_a_reversed_or_malformed_interval() -> None:
    with pytest.raises(StoreError, match="starts after it ends"):
        Query(valid_during=(T(2025), T(2024)))
    with pytest.raises(StoreError, match=r"\(start, end\)"):
        Query(valid_during=(T(2025),))


def test_page_counts_all_matches_and_pins_the_version(store: Store) -> None:
    store.commit(make_buildings(9), message="v1")
    p = store.page(query=Query(types=["Building"], limit=4, offset=4))
    assert (p.matched, p.version, [r["id"] for r in p.rows]) == (9, 1, [f"b{i:06d}" for i in range(4, 8)])
    store.commit(make_buildings(12), message="v2")
    assert store.page(as_of=1, query=Query(types=["Building"], limit=4, offset=8)).matched == 9
    past = store.page(query=Query(types=["Building"], limit=4, offset=20))
    assert (past.matched, past.rows, past.version) == (12, [], 2)
    none = store.page(query=Query(ids=[]))
    assert (none.matched, none.rows, none.version) == (0, [], 2)


def test_extents_per_type_at_a_version(timed: Store) -> None:
    ext = timed.extents()
    assert set(ext) == {"Building"}
    b = ext["Building"]
    assert b == Extent((448_000.0, 4_428_000.0, 448_205.0, 4_428_055.0), None, None, 3)  # the shed is open-ended
    timed.commit([Road(id="r1", geometry={"type": "LineString", "coordinates": [[448_000, 4_427_990],
                                                                               [448_300, 4_427_990]]},
                       valid_from=T(2020), valid_to=T(2030))], message="road")
    assert timed.extents(as_of=1) == ext  # an older version keeps its extents
    now = timed.extents()
    assert now["Road"] == Extent((448_000.0, 4_427_990.0, 448_300.0, 4_427_990.0), T(2020), T(2030), 1)
    assert set(timed.extents(types=["Road"])) == {"Road"}
    timed.commit([], remove=["shed"], message="shed gone")
    gone = timed.extents()["Building"]
    assert (gone.count, gone.start, gone.end) == (2, T(1950), None)  # the mall is still open-ended


def test_extents_of_an_unknown_branch_or_version_are_not_found(timed: Store) -> None:
    with pytest.raises(NotInStore, match="unknown branch 'nope'"):
        timed.extents("nope")
    with pytest.raises(NotInStore, match="version 9 does not exist"):
        timed.extents(as_of=9)
    assert Store.init(timed.root.parent / "empty").extents() == {}
