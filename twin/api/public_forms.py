"""Public forms of layers: what a principal below a layer's classification gets when the layer declares a public
form (``LayerSpec.public_form``, a :class:`data_models.Policy`) — the layer at one coarse resolution, cells under
k observations suppressed (``twin.security.generalise``), inside the principal's area. Without a public form the
layer does not exist for it (404)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from data_models import LayerSpec
from twin.layers.registry import LayerError, LayerNotFound, Layers
from twin.security.generalise import generalise_cells, served_form
from twin.security.guard import GuardedStore
from twin.store import LAYERS, MAIN, Query


def _resolution(spec: LayerSpec) -> int | None:
    """The one resolution of a layer's public form: its finest stored resolution at or coarser than the policy's."""
    policy = spec.public_form
    levels = [r for r in spec.resolutions if policy.res is None or r <= policy.res]
    return max(levels) if levels else None


def public_spec(spec: LayerSpec) -> LayerSpec:
    """How the public form describes itself: one resolution, the policy's classification, no lineage."""
    p = spec.public_form
    return spec.model_copy(update={"resolutions": [_resolution(spec)], "classification": p.classification,
                                   "lineage": [], "description": f"{spec.description} (public form: {p.name}, "
                                   f"res {_resolution(spec)}, cells under {p.k_min} observations left out)".strip()})


def _public(guard: GuardedStore, name: str, branch: str, as_of: Any) -> LayerSpec | None:
    """The raw spec of a layer the guard hides but whose public form the principal may have."""
    raw = guard.base
    try:
        spec = Layers(raw).spec(name, branch, as_of)
    except LayerNotFound:
        return None
    if spec.public_form is None or _resolution(spec) is None:
        return None
    if served_form(spec, guard.principal.clearance, spec.public_form) != "generalised":
        return None
    return spec


def specs(guard: GuardedStore, branch: str = MAIN, as_of: Any = None) -> list[LayerSpec]:
    """The public forms the principal may read on a branch, besides the layers it sees."""
    seen = {s["id"] for s in guard.features(branch, as_of, Query(collection=LAYERS))}
    out = []
    for row in guard.base.features(branch, as_of, Query(collection=LAYERS)):
        if row["id"] not in seen and (spec := _public(guard, row["id"], branch, as_of)) is not None:
            out.append(public_spec(spec))
    return out


def spec(guard: GuardedStore, name: str, branch: str = MAIN, as_of: Any = None) -> LayerSpec | None:
    found = _public(guard, name, branch, as_of)
    return public_spec(found) if found is not None else None


def cells(guard: GuardedStore, name: str, *, res: int | None, compare: bool, **query: Any) -> pa.Table | None:
    """The public form's cells (None when the principal has none of this layer); the query as for
    :meth:`twin.layers.registry.Layers.query`."""
    found = _public(guard, name, query.get("branch", MAIN), query.get("as_of"))
    if found is None:
        return None
    target = _resolution(found)
    if res is not None and res != target:
        raise LayerError(f"res: the public form of layer {name!r} has resolution {target} only")
    if compare:
        raise LayerError(f"compare_branch: the public form of layer {name!r} cannot be compared")
    table = Layers(guard.base).query(name, res=target, **query)
    table = generalise_cells(table, found.aggregation, found.kind, found.public_form)
    if guard.area is not None:
        inside = pa.array(guard.area_cells(target), pa.uint64())
        table = table.filter(pc.is_in(table.column("cell"), value_set=inside))
    guard.touched.setdefault(LAYERS, set()).add(name)  # derived from non-public data: the read is audited
    return table

