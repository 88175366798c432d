"""The guard between the store and every reader of it: a :class:`GuardedStore` answers like a :class:`Store` but
only with what its principal may see, and refuses the writes its roles do not allow.

What a principal may not see does not exist for it: an entity, asset, layer, run or table row above its clearance,
or (for city objects, assets and layer cells) outside its area limit, is simply absent (a 404, never a 403, so its
existence does not leak). Readers (routers, layers, tiles, simulators, exports) take a GuardedStore wherever they
take a Store; methods of Store that are not listed here are not reachable through the guard (AttributeError), so a
new read path cannot bypass it by accident."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from copy import copy
from typing import Any

import h3
import numpy as np
import pyarrow as pa
import shapely

from data_models import Classification, Principal
from twin.errors import Forbidden
from twin.geo import crs as geocrs
from twin.security.roles import Permission, allows, levels_up_to
from twin.store import ASSETS, CITY, MAIN, PRINCIPALS, RUNS, SCENARIOS, Query, Store
from twin.store.records import TABLE_OWNERS
from twin.store.store import Page

# collections whose rows have a footprint the area limit applies to
_AREA_COLLECTIONS = (CITY, ASSETS)
_NOTHING = "\x00nothing"  # an id no entity has: a query that must match nothing
# (store, branch, version, what, view) -> ids: a committed state never changes, so its answers are shared by requests
_STATE: dict[tuple[str, str, int, str, str], list[str]] = {}
_STATE_LOCK = threading.Lock()
_STATE_KEPT = 256


def _remembered(key: tuple[str, str, int, str, str], compute) -> list[str]:
    """``compute()`` for one (store, branch, version, what, view), once per process (bounded)."""
    with _STATE_LOCK:
        found = _STATE.get(key)
    if found is None:
        found = compute()
        with _STATE_LOCK:
            if len(_STATE) > _STATE_KEPT:
                _STATE.clear()
            _STATE[key] = found
    return found


class GuardedStore:
    """A Store as seen by ``principal``."""

    def __init__(self, store: Store, principal: Principal) -> None:
        self._store = store
        self.principal = principal
        self.levels = levels_up_to(principal.clearance)
        self.area = shapely.geometry.shape(principal.area.model_dump()) if principal.area is not None else None
        self._area_digest = (hashlib.sha256(self.area.wkb).hexdigest()[:16] if self.area is not None else None)
        self._area_cells: dict[int, np.ndarray] = {}
        # non-public objects read through this guard (collection -> ids), for the one audit record of a request;
        # bulk rows (layer cells, run results) are reached through their owner's record, which is counted here
        self.touched: dict[str, set[str]] = {}
        self.writes: list[str] = []  # commit messages of the writes made through this guard

    # ----------------------------------------------------------------- what passes through unchanged
    root = property(lambda self: self._store.root)
    crs = property(lambda self: self._store.crs)
    time_zone = property(lambda self: self._store.time_zone)
    _con = property(lambda self: self._store._con)

    def refresh(self) -> None:
        self._store.refresh()

    def log(self, branch: str | None = None, with_base: bool = True):
        return self._store.log(branch, with_base)

    def branches(self):
        return self._store.branches()

    def branch(self, name: str):
        return self._store.branch(name)

    def head(self, branch: str = MAIN) -> int:
        return self._store.head(branch)

    def resolve_version(self, branch: str = MAIN, as_of: Any = None) -> int:
        return self._store.resolve_version(branch, as_of)

    def table_names(self) -> list[str]:
        return self._store.table_names()

    def asset_path(self, asset: dict[str, Any]):
        return self._store.asset_path(asset)

    @property
    def unrestricted(self) -> bool:
        """True when the principal sees everything (top clearance, no area): reads need no rewriting."""
        return self.principal.clearance == Classification.secret and self.area is None

    def tile_view(self) -> str | None:
        """The tileset view of this principal: None when it sees everything the store has ever held (its
        clearance covers every classification in the store and it has no area limit), else :attr:`view`."""
        if self.area is None and self.sees_every_level():
            return None
        return self.view

    @property
    def view(self) -> str:
        """A name for what this principal sees, for caches of derived data (tilesets): the clearance, plus the
        area's digest when limited."""
        return self.principal.clearance.value + (f"-area-{self._area_digest}" if self._area_digest else "")

    # ----------------------------------------------------------------- reads
    def _hidden_now(self, branch: str, collection: str) -> list[str]:
        """Ids whose state at the branch head the principal may not see: they stay hidden in every earlier version
        too (a building classified confidential today is not readable through ``as_of`` of when it was public)."""
        head = self._store.head(branch)

        def hidden() -> list[str]:
            everything = set(self._store.digests(branch, head, Query(collection=collection)))
            return sorted(everything - set(self._store.digests(branch, head, self.restrict(
                Query(collection=collection)))))

        return _remembered((str(self._store.root), branch, head, collection, self.view), hidden)

    def restrict(self, query: Query | None, branch: str = MAIN, as_of: Any = None) -> Query:
        """``query`` narrowed to what the principal may see (at ``as_of`` on ``branch``: an earlier version also
        leaves out what is hidden at the head)."""
        q = copy(query or Query())
        if as_of is not None and not self.unrestricted and q.collection != PRINCIPALS and \
                self._store.resolve_version(branch, as_of) != self._store.head(branch):
            hidden = self._hidden_now(branch, q.collection)
            if hidden:
                q.exclude_ids = sorted(set(q.exclude_ids or ()) | set(hidden))
        if q.collection == PRINCIPALS and not allows(self.principal, Permission.admin):
            q.ids = [_NOTHING]
            return q
        top = self.principal.clearance
        if q.classification_max is not None:
            top = min(top, Classification.parse(q.classification_max), key=lambda c: c.rank)
        q.classification_max = top.value if top != Classification.secret else q.classification_max
        if self.area is not None and q.collection in _AREA_COLLECTIONS:
            area = self.area if q.polygon is None else shapely.intersection(q.polygon, self.area)
            if area.is_empty or area.geom_type not in ("Polygon", "MultiPolygon"):
                q.ids = [_NOTHING]
            else:
                q.polygon = area
        return q

    def _note(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for r in rows:
            if r.get("classification", "public") != "public" or r["_store"]["collection"] == PRINCIPALS:
                self.touched.setdefault(r["_store"]["collection"], set()).add(r["id"])
        return rows

    def features(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> list[dict[str, Any]]:
        return self._note(self.peek(branch, as_of, query))

    @property
    def base(self) -> Store:
        """The store behind the guard (for caches shared by every view: key them with :attr:`view_key`)."""
        return self._store

    @property
    def view_key(self) -> str | None:
        return None if self.unrestricted else self.view

    def peek(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> list[dict[str, Any]]:
        """What the principal may see, read to answer it but not (yet) given to it: not noted for the audit."""
        return self._store.features(branch, as_of, self.restrict(query, branch, as_of))

    def note(self, collection: str, given: Iterable[tuple[str, str]]) -> None:
        """Objects of ``collection`` given to the principal, as (id, classification): the non-public ones are
        counted for the audit."""
        for oid, level in given:
            if str(level) != "public":
                self.touched.setdefault(collection, set()).add(oid)

    def count(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> int:
        return self._store.count(branch, as_of, self.restrict(query, branch, as_of))

    def page(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> Page:
        page = self._store.page(branch, as_of, self.restrict(query, branch, as_of))
        self._note(page.rows)
        return page

    def table(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> pa.Table:
        return self._store.table(branch, as_of, self.restrict(query, branch, as_of))

    def digests(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> dict[str, str]:
        return self._store.digests(branch, as_of, self.restrict(query, branch, as_of))

    def classifications(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> set[str]:
        return self._store.classifications(branch, as_of, self.restrict(query, branch, as_of))

    def get(self, entity_id: str, branch: str = MAIN, as_of: Any = None, collection: str = CITY) -> dict | None:
        rows = self.features(branch, as_of, Query(collection=collection, ids=[entity_id]))
        return rows[0] if rows else None

    def extents(self, branch: str = MAIN, as_of: Any = None, collection: str = CITY,
                types: Iterable[str] | None = None):
        return self._store.extents(branch, as_of, collection, types, restrict=self.restrict(Query(
            collection=collection, types=types), branch, as_of) if not self.unrestricted else None)

    def visible(self, collection: str, ids: Iterable[str], branch: str = MAIN, as_of: Any = None) -> set[str]:
        """Which of ``ids`` the principal sees at a version."""
        ids = sorted(set(ids))
        if not ids:
            return set()
        return set(self.digests(branch, as_of, Query(collection=collection, ids=ids)))

    def history(self, entity_id: str, branch: str = MAIN, collection: str = CITY) -> list[dict[str, Any]]:
        """The entity's versions, when it is visible now (or, once removed, was visible in its last state); each
        version above clearance or outside the area left out."""
        rows = self._store.history(entity_id, branch, collection)
        shown = [r for r in rows if r["_store"]["op"] != "remove" and self._row_visible(r)]
        last = next((r for r in reversed(rows) if r["_store"]["op"] != "remove"), None)
        if last is None or not self._row_visible(last):
            return []
        removals = [r for r in rows if r["_store"]["op"] == "remove"]
        self._note(shown)
        return sorted(shown + removals, key=lambda r: r["_store"]["version"])

    def _row_visible(self, row: dict[str, Any]) -> bool:
        if row.get("classification", "public") not in self.levels:
            return False
        if self.area is not None and row["_store"]["collection"] in _AREA_COLLECTIONS and row.get("geometry"):
            return bool(shapely.intersects(shapely.geometry.shape(row["geometry"]), self.area))
        return row["_store"]["collection"] != PRINCIPALS or allows(self.principal, Permission.admin)

    def changelog(self, version: int) -> list[dict[str, str]]:
        """The ids a commit touched that the principal sees (before or after the commit)."""
        rows = self._store.changelog(version)
        if self.unrestricted:
            return rows
        out = []
        for collection in {r["collection"] for r in rows}:
            ids = [r["id"] for r in rows if r["collection"] == collection]
            seen = self.visible(collection, ids, MAIN, version) | (
                self.visible(collection, ids, MAIN, version - 1) if version > 1 else set())
            out += [r for r in rows if r["collection"] == collection and r["id"] in seen]
        return sorted(out, key=lambda r: (r["collection"], r["id"]))

    # ----------------------------------------------------------------- bulk tables
    def table_assets(self, name: str, branch: str = MAIN, as_of: Any = None) -> set[str]:
        return self._store.table_assets(name, branch, as_of) & self._owners(branch, as_of)

    def sees_every_level(self) -> bool:
        """Whether the principal's clearance covers every classification the store has ever held."""
        return self._store.all_classifications() <= set(self.levels)

    def _owners(self, branch: str, as_of: Any) -> set[str]:
        """Ids of the assets, layers and runs whose table rows the principal sees (once per state and view)."""
        version = self._store.resolve_version(branch, as_of)

        def owners() -> list[str]:
            return sorted({i for c in TABLE_OWNERS
                           for i in self._store.digests(branch, version, self.restrict(Query(collection=c), branch,
                                                                                        version))})

        return set(_remembered((str(self._store.root), branch, version, "owners", self.view), owners))

    def table_sql(self, name: str, branch: str = MAIN, as_of: Any = None, owner: str | None = None) -> str | None:
        """The rows of bulk table ``name`` whose owner (asset, layer, run) the principal sees, inside its area;
        of ``owner`` only when given (then no join with every visible owner is needed)."""
        if self.unrestricted or (self.area is None and self.sees_every_level()):
            return self._store.table_sql(name, branch, as_of, owner)
        visible = self._owners(branch, as_of)
        if owner is not None and owner not in visible:
            return None
        # only the visible owners' rows are read: sealed rows of owners above the clearance are never decrypted
        inner = self._store.table_sql(name, branch, as_of, owner, owners=visible)
        if inner is None:
            return None
        con = self._store._con
        where = []
        if self.area is not None and "cell" in con.execute(f"SELECT * FROM {inner} LIMIT 0").fetch_arrow_table() \
                .column_names:
            table = f"_twin_area_{self._area_digest}"
            res = [r[0] for r in con.execute(f"SELECT DISTINCT res FROM {inner}").fetchall()]
            con.register(table, pa.table({"cell": pa.array(np.concatenate(
                [self.area_cells(int(r)) for r in res] or [np.array([], np.uint64)]), pa.uint64())}))
            where.append(f"g.cell IN (SELECT cell FROM {table})")
        return f"(SELECT * FROM {inner} g WHERE {' AND '.join(where)})" if where else inner

    def read_table(self, name: str, branch: str = MAIN, as_of: Any = None, where: str = "",
                   params: list[Any] | None = None, columns: str = "*") -> pa.Table:
        src = self.table_sql(name, branch, as_of)
        if src is None:
            return self._store.read_table(name, branch, as_of, where, params, columns)  # its clear error
        sql = f"SELECT {columns} FROM {src} t" + (f" WHERE {where}" if where else "")
        return self._store._con.execute(sql, params or []).to_arrow_table()

    def area_cells(self, res: int) -> np.ndarray:
        """H3 cells (uint64) at ``res`` whose centres lie in the area limit."""
        if res not in self._area_cells:
            # only where the store has data (plus a cell's width): an area far larger than the city costs nothing
            boxes = [e.bbox for e in self._store.extents(MAIN).values()]
            pad = 2 * h3.average_hexagon_edge_length(res, "m")
            clip = shapely.box(min(b[0] for b in boxes) - pad, min(b[1] for b in boxes) - pad,
                               max(b[2] for b in boxes) + pad, max(b[3] for b in boxes) + pad) if boxes else None
            area = shapely.intersection(self.area, clip) if clip is not None else shapely.Polygon()
            if area.is_empty or area.geom_type not in ("Polygon", "MultiPolygon"):
                self._area_cells[res] = np.array([], dtype=np.uint64)
                return self._area_cells[res]
            wgs = geocrs.reproject(area, self.crs, "EPSG:4326")
            polys = list(wgs.geoms) if wgs.geom_type == "MultiPolygon" else [wgs]
            cells: list[int] = []
            for p in polys:
                shape = h3.LatLngPoly([(y, x) for x, y in p.exterior.coords],
                                      *[[(y, x) for x, y in i.coords] for i in p.interiors])
                cells += [h3.str_to_int(c) for c in h3.polygon_to_cells(shape, res)]
            self._area_cells[res] = np.unique(np.array(cells, dtype=np.uint64))
        return self._area_cells[res]

    # ----------------------------------------------------------------- writes
    def require(self, permission: Permission, what: str) -> None:
        """Forbidden (403) unless the principal's roles allow ``permission``."""
        if not allows(self.principal, permission):
            roles = ", ".join(r.value for r in self.principal.roles)
            raise Forbidden(f"{what} needs the {permission.value} permission; principal {self.principal.name!r} "
                            f"has the role(s) {roles}")

    def commit(self, put: Iterable[Any] = (), remove: Iterable[str] = (), **kwargs: Any):
        put = list(put)
        kinds = {type(o).__name__ if not isinstance(o, dict) else (o.get("_store") or {}).get("collection", CITY)
                 for o in put}
        branch = kwargs.get("branch", MAIN)
        if kinds & {"Principal", PRINCIPALS} or kwargs.get("remove_collection") == PRINCIPALS:
            self.require(Permission.admin, "changing principals")
        elif kinds & {"SimulationRun", RUNS}:  # a run's record with its layers, tables and files
            self.require(Permission.simulate, "recording a simulation run")
        elif branch.startswith("scenario-") or kinds & {"Scenario", SCENARIOS}:
            self.require(Permission.edit, "editing a scenario")
        else:
            self.require(Permission.ingest, f"writing to branch {branch!r}")
        commit = self._store.commit(put, remove, **kwargs)
        if commit is not None:
            self.writes.append(f"v{commit.version} on {commit.branch}: {commit.message}")
        return commit

    def create_branch(self, name: str, *args: Any, **kwargs: Any):
        self.require(Permission.edit if name.startswith("scenario-") else Permission.ingest,
                     f"creating branch {name!r}")
        return self._store.create_branch(name, *args, **kwargs)

    def drop_branch(self, name: str) -> None:
        self.require(Permission.edit if name.startswith("scenario-") else Permission.ingest,
                     f"dropping branch {name!r}")
        self._store.drop_branch(name)
