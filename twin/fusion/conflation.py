"""Footprint conflation: the same building from several sources (cadastre, OSM, LiDAR outlines) becomes one entity.

``conflate(existing, incoming, source_priority=...)`` matches incoming footprints against the store's current
buildings and returns the entities to write plus the conflicts found.

Matching (vectorised: one STRtree query, one batch of intersections):

* **merge** (many-to-one): one incoming footprint holds most (>= ``cover_min``) of two or more existing buildings;
* **split** (one-to-many): two or more incoming footprints lie mostly (>= ``cover_min``) inside one existing building
  and each covers at least 10 % of it;
* **match** (one-to-one): the remaining pairs with IoU >= ``iou_min``, greedily by decreasing IoU;
* **contained**: an unmatched incoming footprint lying mostly inside an existing building (an annex, a part);
* everything else incoming is a **new** entity (flagged ``overlap`` when it touches an existing building).

Merges, splits and containment are never resolved silently: the existing entities stay as they are (each true
building remains one entity), the incoming footprint creates nothing, and the conflict is recorded on the existing
entities (``attributes["conflicts"]`` and ``quality.errors`` codes ``conflation:<kind>``) and returned.

Fusion of a match keeps the existing id. The footprint comes from the source with the highest priority, then the
most recent acquisition, then the existing one (stability). Every other field (height, storeys, use, roof type,
free attributes) is fused one by one: a value only one source has is taken; equal values keep the higher-priority
source's and list every agreeing source in the provenance; different values go to priority, then recency, then the
existing value, and are recorded as an ``attribute`` conflict. Each fused value has its own provenance records
(``Provenance.attribute``), one per supporting source asset, so re-running the same conflation changes nothing.

``source_priority`` maps a key to a priority (higher wins); a provenance record's priority is the highest among the
keys equal to its ``method`` or ``source_asset_id``, or a prefix of its ``source_asset_id``; unknown sources have 0.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import shapely

from data_models import Building, Provenance, Quality

_FIELDS = ("height", "storeys", "use", "roof_type")
_SKIP_ATTRS = {"conflicts"}
_CODE = "conflation:"


@dataclass
class ConflationResult:
    """Entities to write (changed or new) and the conflicts found, plus the id bookkeeping."""

    put: list[Building]
    conflicts: list[dict[str, Any]]
    matches: dict[str, str] = field(default_factory=dict)  # incoming id -> existing entity id
    created: list[str] = field(default_factory=list)  # ids of new entities
    unmatched_existing: list[str] = field(default_factory=list)  # existing buildings no incoming footprint touched


def _prov(p: Provenance | dict[str, Any]) -> Provenance:
    return p if isinstance(p, Provenance) else Provenance.model_validate(p)


def priority_of(p: Provenance, source_priority: dict[str, int]) -> int:
    """The priority of a provenance record: best key equal to its method / asset id or prefixing its asset id."""
    best = 0
    found = False
    for key, prio in source_priority.items():
        if key == p.method or key == p.source_asset_id or p.source_asset_id.startswith(key):
            best = prio if not found else max(best, prio)
            found = True
    return best


def _when(p: Provenance) -> datetime:
    return p.acquired or datetime.min.replace(tzinfo=UTC)


def _rank(p: Provenance, source_priority: dict[str, int]) -> tuple[int, datetime]:
    return priority_of(p, source_priority), _when(p)


def _records(provs: list[Provenance], attribute: str | None) -> list[Provenance]:
    """Records supporting ``attribute``; the whole-object records when it has none of its own."""
    own = [p for p in provs if p.attribute == attribute]
    return own or [p for p in provs if p.attribute is None]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=0.02, abs_tol=0.25)
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    return a == b


def _as(p: Provenance, attribute: str, note: str | None = None) -> Provenance:
    return p.model_copy(update={"attribute": attribute, "note": note if note is not None else p.note})


def _dedupe(provs: list[Provenance]) -> list[Provenance]:
    seen: set[tuple[str | None, str, str]] = set()
    out = []
    for p in provs:
        key = (p.attribute, p.source_asset_id, p.method)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _asset(b: Building) -> str:
    whole = [p for p in b.provenance if p.attribute is None] or b.provenance
    return whole[0].source_asset_id if whole else "unknown"


def _with_conflicts(b: Building, source: str, new: list[dict[str, Any]]) -> Building:
    """``b`` with its conflicts from ``source`` replaced by ``new`` and quality codes recomputed."""
    old = [c for c in (b.attributes.get("conflicts") or []) if isinstance(c, dict) and c.get("source") != source]
    conflicts = old + new
    attrs = {k: v for k, v in b.attributes.items() if k != "conflicts"}
    if conflicts:
        attrs["conflicts"] = conflicts
    q = b.quality.model_copy(deep=True) if b.quality is not None else None
    codes = sorted({f"{_CODE}{c['kind']}" for c in conflicts})
    keep = [e for e in (q.errors if q is not None else []) if not e.startswith(_CODE)]
    if q is None and codes:
        q = Quality()
    if q is not None:
        q.errors = keep + codes
        if not q.errors and q.model_dump(exclude_defaults=True) == {}:
            q = None
    return b.model_copy(update={"attributes": attrs, "quality": q})


def _fuse(ex: Building, inc: Building, iou: float, sp: dict[str, int]) -> tuple[Building, list[dict[str, Any]]]:
    """The fused entity (existing id) of a one-to-one match, and its attribute conflicts."""
    ex_provs, in_provs = list(ex.provenance), list(inc.provenance)
    src = _asset(inc)
    conflicts: list[dict[str, Any]] = []
    out_provs: list[Provenance] = _dedupe([p for p in ex_provs + in_provs if p.attribute is None])

    # footprint
    pe, pi = _records(ex_provs, "geometry"), _records(in_provs, "geometry")
    ex_best = max(pe, key=lambda p: _rank(p, sp)) if pe else None
    in_best = max(pi, key=lambda p: _rank(p, sp)) if pi else None
    take_in = in_best is not None and (ex_best is None or _rank(in_best, sp) > _rank(ex_best, sp)
                                       or in_best.source_asset_id == ex_best.source_asset_id)
    geometry = inc.geometry if take_in else ex.geometry
    agree = f"iou={iou:.3f} with the chosen footprint"
    if take_in:
        geo_provs = [_as(in_best, "geometry")] + [_as(p, "geometry", agree) for p in pe
                                                   if p.source_asset_id != in_best.source_asset_id]
    else:
        geo_provs = [_as(p, "geometry") for p in pe] + ([_as(in_best, "geometry", agree)] if in_best else [])
    out_provs += _dedupe(geo_provs)

    # fields and free attributes
    updates: dict[str, Any] = {}
    attrs = {k: v for k, v in ex.attributes.items() if k != "conflicts"}
    names = list(_FIELDS) + sorted((set(ex.attributes) | set(inc.attributes)) - _SKIP_ATTRS)
    for name in names:
        is_field = name in _FIELDS
        ve = getattr(ex, name) if is_field else ex.attributes.get(name)
        vi = getattr(inc, name) if is_field else inc.attributes.get(name)
        if is_field and name == "roof_type":
            ve = None if ve is None or ve == "unknown" else ve
            vi = None if vi is None or vi == "unknown" else vi
        pe, pi = _records(ex_provs, name), _records(in_provs, name)
        if vi is None:
            out_provs += [p for p in ex_provs if p.attribute == name]
            continue
        in_rec = max(pi, key=lambda p: _rank(p, sp)) if pi else Provenance(source_asset_id=src, method="unknown")
        ex_rec = max(pe, key=lambda p: _rank(p, sp)) if pe else None
        same_source = ex_rec is not None and ex_rec.source_asset_id == in_rec.source_asset_id
        if ve is None or same_source:
            value, provs = vi, [_as(in_rec, name)]
        elif _same(ve, vi):
            if _rank(in_rec, sp) > _rank(ex_rec, sp):
                value, provs = vi, [_as(in_rec, name)] + [_as(p, name) for p in pe]
            else:
                value, provs = ve, [_as(p, name) for p in pe] + [_as(in_rec, name)]
        else:
            if _rank(in_rec, sp) > _rank(ex_rec, sp):
                value, provs, chosen = vi, [_as(in_rec, name)], in_rec.source_asset_id
            else:
                value, provs, chosen = ve, [_as(p, name) for p in pe], ex_rec.source_asset_id
            conflicts.append({"kind": "attribute", "attribute": name, "source": src, "entity": ex.id,
                              "values": {ex_rec.source_asset_id: _jsonable(ve), in_rec.source_asset_id: _jsonable(vi)},
                              "chosen": chosen})
        out_provs += _dedupe(provs)
        if is_field:
            updates[name] = value
        else:
            attrs[name] = value
    # a single-source entity needs no per-attribute records: its whole-object records say it all
    whole = {p.source_asset_id for p in out_provs if p.attribute is None}
    if len(whole) == 1:
        out_provs = [p for p in out_provs if p.attribute is None or p.source_asset_id not in whole]
    # LoD solids: union, the incoming source's when it ranks higher
    lods = dict(ex.lods)
    for lod, solid in inc.lods.items():
        if lod not in lods or take_in:
            lods[lod] = solid
    fused = ex.model_copy(update={
        **updates, "geometry": geometry, "attributes": {**attrs, **({"conflicts": ex.attributes["conflicts"]}
                                                                    if "conflicts" in ex.attributes else {})},
        "provenance": _dedupe(out_provs), "lods": lods,
        "classification": max(ex.classification, inc.classification, key=lambda c: c.rank),
    })
    return Building.model_validate(fused.model_dump()), conflicts


def _jsonable(v: Any) -> Any:
    try:
        json.dumps(v)
        return v
    except TypeError:
        return str(v)


def _building_of(d: dict[str, Any]) -> Building | None:
    if d.get("type") != "Building":
        return None
    return Building.model_validate({k: v for k, v in d.items() if not k.startswith("_")})


def conflate(existing: list[dict[str, Any]], incoming: list[Building], *, source_priority: dict[str, int] | None = None,
             iou_min: float = 0.5, cover_min: float = 0.5) -> ConflationResult:
    """Conflate incoming building footprints with the store's buildings (see the module docstring)."""
    sp = dict(source_priority or {})
    ex_models = [b for b in (_building_of(d) for d in existing) if b is not None]
    all_ids = {d.get("id") for d in existing}
    inc = [b for b in incoming if isinstance(b, Building) and b.type == "Building"]
    if len({b.id for b in inc}) != len(inc):
        raise ValueError("incoming buildings have duplicate ids")
    ge = np.asarray([b.geometry.to_shapely() for b in ex_models], dtype=object)
    gi = np.asarray([b.geometry.to_shapely() for b in inc], dtype=object)
    n_e, n_i = len(ge), len(gi)
    area_e, area_i = shapely.area(ge) if n_e else np.zeros(0), shapely.area(gi) if n_i else np.zeros(0)
    if n_e and n_i:
        tree = shapely.STRtree(ge)
        ii, jj = tree.query(gi, predicate="intersects")
    else:
        ii = jj = np.zeros(0, dtype=np.int64)
    inter = shapely.area(shapely.intersection(gi[ii], ge[jj])) if len(ii) else np.zeros(0)
    keep = inter > 0
    ii, jj, inter = ii[keep], jj[keep], inter[keep]
    iou = inter / (area_i[ii] + area_e[jj] - inter) if len(ii) else np.zeros(0)
    frac_i = inter / area_i[ii] if len(ii) else np.zeros(0)  # share of the incoming footprint inside the existing
    frac_e = inter / area_e[jj] if len(ii) else np.zeros(0)  # share of the existing footprint inside the incoming

    conflicts_by_entity: dict[str, list[dict[str, Any]]] = {}
    conflicts: list[dict[str, Any]] = []
    used_i: set[int] = set()
    used_e: set[int] = set()

    def record(kind: str, i_list: list[int], e_list: list[int], **extra: Any) -> None:
        """Note a conflict, returned and attached to every existing entity involved."""
        src = _asset(inc[i_list[0]])
        c = {"kind": kind, "source": src, "incoming": [inc[i].id for i in i_list],
             "existing": [ex_models[e].id for e in e_list], **extra}
        conflicts.append(c)
        for e in e_list:
            conflicts_by_entity.setdefault(ex_models[e].id, []).append(c)

    # merges: one incoming holds most of several existing buildings (pairs grouped once, no per-item scans)
    sel = np.flatnonzero(frac_e >= cover_min)
    many = np.flatnonzero(np.bincount(ii[sel], minlength=n_i) >= 2)
    for i in many.tolist():
        es = sorted(int(jj[k]) for k in sel[ii[sel] == i])
        record("merge", [i], es, note=f"one footprint of {_asset(inc[i])} covers {len(es)} buildings")
        used_i.add(i)
        used_e.update(es)
    # splits: several incoming lie mostly inside one existing building
    sel = np.flatnonzero((frac_i >= cover_min) & (frac_e >= 0.1))
    many = np.flatnonzero(np.bincount(jj[sel], minlength=n_e) >= 2)
    for e in many.tolist():
        if e in used_e:
            continue
        cand = sorted(int(ii[k]) for k in sel[jj[sel] == e] if int(ii[k]) not in used_i)
        if len(cand) >= 2:
            record("split", cand, [e], note=f"{len(cand)} footprints of {_asset(inc[cand[0]])} lie inside one building")
            used_i.update(cand)
            used_e.add(e)
    # one-to-one matches by decreasing IoU
    matches: dict[int, tuple[int, float]] = {}
    for k in np.argsort(-iou, kind="stable"):
        if iou[k] < iou_min:
            break
        i, e = int(ii[k]), int(jj[k])
        if i in used_i or e in used_e:
            continue
        matches[i] = (e, float(iou[k]))
        used_i.add(i)
        used_e.add(e)
    # contained: unmatched incoming mostly inside an existing building
    contained: set[int] = set()
    for k in np.flatnonzero(frac_i >= cover_min):
        i, e = int(ii[k]), int(jj[k])
        if i in used_i or i in contained:
            continue
        contained.add(i)
        record("contained", [i], [e], note=f"a footprint of {_asset(inc[i])} lies inside this building "
                                           f"({frac_i[k]:.0%} of it) without matching it")

    put: list[Building] = []
    result = ConflationResult(put=put, conflicts=conflicts)
    fused_by_id: dict[str, Building] = {}
    for i, (e, score) in sorted(matches.items()):
        b, attr_conflicts = _fuse(ex_models[e], inc[i], score, sp)
        conflicts.extend(attr_conflicts)
        conflicts_by_entity.setdefault(b.id, []).extend(attr_conflicts)
        fused_by_id[b.id] = b
        result.matches[inc[i].id] = b.id
    # existing entities touched by this source: fused, or flagged
    sources = {_asset(b) for b in inc}
    in_conflict = {eid for c in conflicts for eid in c.get("existing", [])}
    for e, ex in enumerate(ex_models):
        b = fused_by_id.get(ex.id, ex)
        mine = conflicts_by_entity.get(ex.id, [])
        old = [c for c in (ex.attributes.get("conflicts") or []) if isinstance(c, dict)]
        if ex.id in fused_by_id or mine or any(c.get("source") in sources for c in old):
            for s in sources:
                b = _with_conflicts(b, s, [_strip(c) for c in mine if c["source"] == s])
            if _dump(b) != _dump(ex):
                put.append(b)
        if e not in used_e and ex.id not in in_conflict:
            result.unmatched_existing.append(ex.id)
    # new entities
    touching_of: dict[int, list[int]] = {}
    for i, e in zip(ii.tolist(), jj.tolist(), strict=True):
        touching_of.setdefault(i, []).append(e)
    taken = set(all_ids) | {b.id for b in put}
    for i, b in enumerate(inc):
        if i in used_i or i in contained:
            continue
        nid = b.id
        if nid in taken:
            nid = f"{b.id}-{hashlib.blake2b((_asset(b) + b.id).encode(), digest_size=4).hexdigest()}"
        touching = touching_of.get(i, [])
        new = b.model_copy(update={"id": nid})
        if touching:
            c = {"kind": "overlap", "source": _asset(b), "incoming": [b.id],
                 "existing": [ex_models[e].id for e in touching],
                 "note": "a new footprint overlaps existing buildings without matching them"}
            conflicts.append(c)
            new = _with_conflicts(new, _asset(b), [_strip(c)])
        taken.add(nid)
        put.append(new)
        result.created.append(nid)
    return result


def _strip(c: dict[str, Any]) -> dict[str, Any]:
    """The conflict as stored on an entity (JSON-ready)."""
    return json.loads(json.dumps(c, default=str))


def _dump(b: Building) -> str:
    return json.dumps(b.model_dump(mode="json"), sort_keys=True, default=str)
