"""The guard: a principal sees exactly the objects within its clearance and area, on every read of the store, and
may write only what its roles allow."""

from __future__ import annotations

import pytest
import shapely

from data_models import Classification, LayerSpec, Principal, Role
from tests.conftest import make_buildings
from twin.errors import Forbidden
from twin.security.guard import GuardedStore
from twin.store import ASSETS, LAYERS, PRINCIPALS, Query, Store

LEVELS = list(Classification)


def _city(store: Store) -> list:
    """36 buildings on a 6×6 grid, classifications cycling through the four levels."""
    bs = [b.model_copy(update={"classification": LEVELS[i % 4]}) for i, b in enumerate(make_buildings(36))]
    store.commit(bs, message="city")
    return bs


def _principal(clearance: str, area=None, roles=("viewer",)) -> Principal:
    return Principal(id=f"principal-{clearance}", name=clearance, roles=list(roles), clearance=clearance,
                     area=shapely.geometry.mapping(area) if area is not None else None)


@pytest.mark.parametrize("clearance", [c.value for c in LEVELS])
@pytest.mark.parametrize("limited", [False, True])
def test_reads_see_exactly_what_clearance_and_area_allow(store: Store, clearance: str, limited: bool) -> None:
    bs = _city(store)
    area = shapely.box(447_990, 3_000_000, 448_045, 5_000_000) if limited else None  # the first 3 grid columns
    g = GuardedStore(store, _principal(clearance, area))
    rank = Classification(clearance).rank

    def allowed(b) -> bool:
        inside = area is None or shapely.intersects(area, shapely.geometry.shape(b.geometry.model_dump()))
        return b.classification.rank <= rank and inside

    want = {b.id for b in bs if allowed(b)}
    assert want and len(want) < len(bs) or clearance == "secret" and not limited
    assert {f["id"] for f in g.features()} == want
    assert g.count() == len(want) and g.page(query=Query(limit=5)).matched == len(want)
    assert set(g.digests()) == want and set(g.table().column("id").to_pylist()) == want
    hidden = next((b for b in bs if not allowed(b)), None)
    if hidden is not None:
        assert g.get(hidden.id) is None and g.history(hidden.id) == []
        assert hidden.id not in {r["id"] for r in g.changelog(1)}
    shown = next(iter(sorted(want)))
    assert g.get(shown)["id"] == shown and len(g.history(shown)) == 1
    ext = g.extents()["Building"]
    assert ext.count == len(want)
    # a narrower query stays narrower; the guard never widens it
    assert {f["id"] for f in g.features(query=Query(classification_max="public"))} == {
        b.id for b in bs if allowed(b) and b.classification == Classification.public}


def test_assets_layers_and_principals_follow_the_same_rule(store: Store, tmp_path) -> None:
    from data_models import SourceAsset

    f = tmp_path / "a.geojson"
    f.write_text("{}")
    assets = [SourceAsset(id=f"asset-{c.value}", kind="vector", path=str(f), checksum="0" * 64, size_bytes=2,
                          classification=c) for c in LEVELS]
    layers = [LayerSpec(name=f"layer-{c.value}", variable="height", unit="m", aggregation="max", resolutions=[10],
                        classification=c) for c in LEVELS]
    store.commit([*assets, *layers, _principal("secret", roles=("admin",))], message="catalog")
    viewer = GuardedStore(store, _principal("internal"))
    assert {a["id"] for a in viewer.features(query=Query(collection=ASSETS))} == {"asset-public", "asset-internal"}
    assert {s["id"] for s in viewer.features(query=Query(collection=LAYERS))} == {"layer-public", "layer-internal"}
    assert viewer.features(query=Query(collection=PRINCIPALS)) == []
    admin = GuardedStore(store, _principal("secret", roles=("admin",)))
    assert len(admin.features(query=Query(collection=PRINCIPALS))) == 1


def test_writes_need_the_right_role(store: Store) -> None:
    bs = _city(store)
    viewer = GuardedStore(store, _principal("secret"))
    with pytest.raises(Forbidden, match="ingest permission.*viewer"):
        viewer.commit([bs[0].model_copy(update={"height": 1.0})], message="x")
    with pytest.raises(Forbidden, match="edit permission"):
        viewer.create_branch("scenario-x")
    analyst = GuardedStore(store, _principal("secret", roles=(Role.analyst,)))
    with pytest.raises(Forbidden, match="ingest permission"):
        analyst.commit([bs[0].model_copy(update={"height": 1.0})], message="x")
    with pytest.raises(Forbidden, match="admin permission"):
        analyst.commit([_principal("public")], message="x")
    analyst.create_branch("scenario-x")
    assert analyst.commit([bs[0].model_copy(update={"height": 1.0})], message="edit", branch="scenario-x")
    admin = GuardedStore(store, _principal("secret", roles=(Role.admin,)))
    assert admin.commit([bs[1].model_copy(update={"height": 2.0})], message="fix") is not None


def test_what_is_hidden_now_stays_hidden_in_earlier_versions(store: Store) -> None:
    """A building classified confidential today is not readable through as_of of the version it was public in,
    nor listed in that version's changelog."""
    bs = make_buildings(4)
    store.commit(bs, message="all public")
    store.commit([bs[0].model_copy(update={"classification": "confidential"})], message="reclassified")
    g = GuardedStore(store, _principal("public"))
    assert {f["id"] for f in g.features(as_of=1)} == {b.id for b in bs[1:]}
    assert g.get(bs[0].id, as_of=1) is None and g.count(as_of=1) == 3
    assert bs[0].id not in {r["id"] for r in g.changelog(1)} and g.history(bs[0].id) == []
    assert GuardedStore(store, _principal("confidential")).get(bs[0].id, as_of=1) is not None


def test_reading_one_layer_notes_that_layer_only(store: Store) -> None:
    """The layer registry reads every spec to answer; only what it gives the caller counts as read (the audit
    must not name an internal layer for a read of a public one)."""
    from twin.layers.registry import Layers

    specs = [LayerSpec(name=f"layer-{c.value}", variable="height", unit="m", aggregation="max", resolutions=[10],
                       classification=c) for c in (Classification.public, Classification.internal)]
    store.commit(specs, message="layers")
    g = GuardedStore(store, _principal("internal"))
    Layers(g).spec("layer-public")
    assert g.touched == {}
    Layers(g).spec("layer-internal")
    assert g.touched == {LAYERS: {"layer-internal"}}
    assert [s.name for s in Layers(GuardedStore(store, _principal("public"))).list()] == ["layer-public"]
