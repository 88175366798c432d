"""The versioned city store: DuckDB as the query engine over immutable Parquet segments.

Layout of a store directory::

    STORE.json              format marker and CRS
    branches/<name>.json    branch records (main is implicit until written)
    commits/<version>.json  one file per commit; a commit exists once this file exists
    segments/<version>.parquet  the entity rows written by that commit (GeoParquet)
    segments/<version>.<key id>.sealed  its confidential and secret rows, encrypted (docs/security_encryption.md)
    segments/<version>.<table>.parquet  its bulk-table rows (layer cells, observations, run results)
    segments/<version>.<table>.<key id>.sealed  the bulk-table rows of its confidential and secret owners, encrypted
    encryption.json         the id of the key the sealed files are encrypted with (never the key)
    tmp/                    files being written; never read
    .lock                   writers' advisory lock

Writers take an exclusive flock, write the segment, then publish the commit file by atomic rename; a crash at
any point leaves only unreferenced files, so the last good version stays readable, and the next commit removes them
(see docs/store.md, *Recovery*). Readers take no lock and rescan ``commits/`` on every call, so a long-running
server sees other processes' commits immediately.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import shapely

from data_models import Branch, ChangeSummary, Commit
from twin.errors import BadInput, Conflict, NotFound, Status, Unavailable
from twin.store.crypt import HOW, Key, KeyInvalid, KeyMismatch, KeyMissing, SealBroken
from twin.store.engine import connect, session
from twin.store.files import (
    StoreBusy,
    fault,
    plain_dir,
    publish,
    raise_refused,
    recover_tmp,
    remove_path,
    tmp_path,
    write_bytes,
    write_json_atomic,
    write_private,
    writer_lock,
)
from twin.store.records import (
    ASSETS,
    CITY,
    COLLECTIONS,
    SEALED_LEVELS,
    STUB,
    TABLE_OWNERS,
    Record,
    from_us,
    records_table,
    removal,
    row_to_feature,
    sealed_table,
    stubs_table,
    to_records,
)
from twin.times import to_utc

FORMAT = "twin-store"
FORMAT_VERSION = 1
MAIN = "main"
_BRANCH_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

__all__ = ["Store", "StoreError", "NotAStore", "NotInStore", "AlreadyInStore", "StoreBusy", "Query", "Extent", "Page"]
_EXTENTS_KEPT = 32  # (branch, version, collection, types) extents a Store remembers
ENCRYPTION = "encryption.json"
_SEALED_VIEW = "_twin_sealed"  # the decrypted sealed rows: a table of the Store's in-memory DuckDB database


class StoreError(BadInput):
    """A request the store cannot satisfy (bad input); the message says why. Subclasses say which fault."""


class NotAStore(StoreError):
    """The directory is not an initialised twin store."""

    status = Status.not_found


class NotInStore(StoreError, NotFound):
    """An unknown branch, version, entity or table."""

    status = Status.not_found


class AlreadyInStore(StoreError, Conflict):
    """A branch or store that exists already."""

    status = Status.conflict


class Query:
    """Filters for reading entities; every field is optional.

    ``valid_at`` keeps entities valid at an instant; ``valid_during=(start, end)`` those whose validity
    [valid_from, valid_to) meets the closed interval [start, end] (None: open end), the OGC ``datetime`` rule.
    """

    def __init__(
        self,
        *,
        collection: str = CITY,
        bbox: Sequence[float] | None = None,
        polygon: shapely.Geometry | str | None = None,
        types: Iterable[str] | None = None,
        ids: Iterable[str] | None = None,
        exclude_ids: Iterable[str] | None = None,
        valid_at: datetime | None = None,
        valid_during: tuple[datetime | None, datetime | None] | None = None,
        classification_max: str | None = None,
        where: dict[str, Any] | None = None,
        filters: Iterable[tuple[str | Sequence[str], str, Any]] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> None:
        if collection not in COLLECTIONS:
            raise StoreError(f"unknown collection {collection!r}; known: {', '.join(COLLECTIONS)}")
        if bbox is not None:
            bbox = [float(v) for v in bbox]
            if len(bbox) != 4 or bbox[0] > bbox[2] or bbox[1] > bbox[3]:
                raise StoreError(f"bbox must be [minx, miny, maxx, maxy] with min <= max, got {bbox}")
        if isinstance(polygon, str):
            try:
                polygon = shapely.from_wkt(polygon)
            except shapely.errors.GEOSException as exc:
                raise StoreError(f"polygon is not valid WKT: {exc}") from exc
        if polygon is not None and not polygon.is_valid:
            raise StoreError(f"polygon is invalid: {shapely.is_valid_reason(polygon)}")
        if limit is not None and limit < 0 or offset < 0:
            raise StoreError("limit and offset must be >= 0")
        if valid_during is not None:
            if len(valid_during) != 2:
                raise StoreError(f"valid_during must be (start, end), got {valid_during!r}")
            start, end = (None if t is None else to_utc(t) for t in valid_during)
            if start is not None and end is not None and start > end:
                raise StoreError(f"valid_during starts after it ends: {start.isoformat()} > {end.isoformat()}")
            valid_during = (start, end)
        self.collection = collection
        self.bbox = bbox
        self.polygon = polygon
        self.types = sorted(set(types)) if types is not None else None
        self.ids = sorted(set(ids)) if ids is not None else None
        self.exclude_ids = sorted(set(exclude_ids)) if exclude_ids else None
        self.valid_at = valid_at
        self.valid_during = valid_during
        self.classification_max = classification_max
        self.filters = [_filter(k, "=", v) for k, v in sorted((where or {}).items())]
        self.filters += [_filter(*f) for f in filters or ()]
        self.limit = limit
        self.offset = offset


_OPS = {"=", "!=", "<", "<=", ">", ">="}


def _filter(path: str | Sequence[str], op: str, value: Any) -> tuple[str, str, Any]:
    """(JSON path into the body, operator, value) of a property filter, checked.

    ``path`` is a dotted string (``"use"``, ``"attributes.cadastre_id"``) or a sequence of keys when a key holds a
    dot (``("quality", "rmse", "1.2")``); numbers compare numerically, everything else as text.
    """
    keys = path.split(".") if isinstance(path, str) else list(path)
    if not keys or any(not k or not re.fullmatch(r"[A-Za-z0-9_.:-]+", k) for k in keys):
        raise StoreError(f"bad property path {path!r}")
    if op not in _OPS:
        raise StoreError(f"bad comparison {op!r}; use one of {', '.join(sorted(_OPS))}")
    return "$." + ".".join(f'"{k}"' for k in keys), op, value


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _holds(refs: set[str], folder: str) -> bool:
    """True when ``folder`` (a store path) is one of ``refs`` or holds one of them."""
    return folder in refs or any(r.startswith(folder + "/") for r in refs)


_MAX_VERSION = 2**63 - 1  # versions are int64 in the segments
_AS_OF_HELP = "give a version number (0, 1, 2, …) or an ISO 8601 time such as 2024-05-01T00:00:00Z"


def _parse_as_of(as_of: Any) -> int | datetime:
    """A version number or an aware UTC time from what a caller passed as ``as_of`` (not None), or a
    :class:`StoreError` starting with ``as_of:`` that says what is wrong with it."""
    if isinstance(as_of, bool) or not isinstance(as_of, int | str | datetime):
        raise StoreError(f"as_of: {as_of!r} is neither a version number nor a time; {_AS_OF_HELP}")
    if isinstance(as_of, str):
        s = as_of.strip()
        if not s:
            raise StoreError(f"as_of: empty; {_AS_OF_HELP}")
        if re.fullmatch(r"-?[0-9]+", s):
            if len(s.lstrip("-0")) > 19:  # beyond int64, and int() of a huge digit string is slow or refused
                raise StoreError(f"as_of: version {s[:40]}{'…' if len(s) > 40 else ''} is out of range "
                                 f"(0..{_MAX_VERSION}); {_AS_OF_HELP}")
            as_of = int(s)
        else:
            try:
                as_of = datetime.fromisoformat(s.replace("Z", "+00:00"))
            except ValueError:
                raise StoreError(f"as_of: {s[:80]!r} is neither a version number nor an ISO 8601 time; "
                                 f"{_AS_OF_HELP}") from None
    if isinstance(as_of, int):
        if not 0 <= as_of <= _MAX_VERSION:
            raise StoreError(f"as_of: version {as_of} is out of range (0..{_MAX_VERSION}); {_AS_OF_HELP}")
        return as_of
    try:
        return to_utc(as_of)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is past the last representable UTC time
        raise StoreError(f"as_of: {as_of.isoformat()} is out of range once converted to UTC") from None



@dataclass(frozen=True)
class Extent:
    """Where and when the live entities of one type lie at a version: store-CRS bbox, validity bounds, count.

    ``start`` / ``end`` are None when any entity's validity is open at that end."""

    bbox: tuple[float, float, float, float]
    start: datetime | None
    end: datetime | None
    count: int


@dataclass(frozen=True)
class Page:
    """One page of a query: its rows, how many entities match in all, and the version both were read at."""

    matched: int
    rows: list[dict[str, Any]]
    version: int


class Store:
    """A versioned, branchable city store in one directory. Safe for one writer and many readers at once.

    ``key``: the key confidential and secret rows are sealed with (docs/security_encryption.md); default the one of
    ``TWIN_KEY`` / ``TWIN_KEY_FILE``, read when first needed."""

    def __init__(self, root: Path | str, key: Key | None = None) -> None:
        self.root = Path(root)
        meta = self.root / "STORE.json"
        if not meta.exists():
            raise NotAStore(f"{self.root}: not a twin store (no STORE.json); run `twin init` first")
        info = json.loads(meta.read_text())
        if info.get("format") != FORMAT or info.get("format_version") != FORMAT_VERSION:
            raise NotAStore(f"{meta}: unsupported store format {info.get('format')!r} v{info.get('format_version')}")
        self.crs: str = info["crs"]
        self.time_zone: str | None = info.get("time_zone")  # the city's IANA zone, for local-time displays
        self._commits: dict[int, Commit] = {}
        self._segments: dict[int, str] = {}
        self._tables: dict[int, dict[str, dict[str, Any]]] = {}  # version -> table name -> {file, assets}
        self._refs: dict[int, list[str] | None] = {}  # version -> store files its assets name (None: not recorded)
        self._legacy: tuple[tuple[int, ...], set[str]] | None = None  # (versions, paths) of the unrecorded commits
        self._lock = threading.RLock()
        self._base = None
        self._local = threading.local()
        self._extents: OrderedDict[tuple[Any, ...], dict[str, Extent]] = OrderedDict()
        self._key_arg = key
        self._key_read = key is not None
        self._sealed: dict[int, dict[str, Any]] = {}  # version -> {rows, collections, levels} of its sealed rows
        self._unsealed: set[int] = set()  # versions whose sealed rows are in _twin_sealed (they never change)
        self._unsealed_tables: set[tuple[int, str]] = set()  # (version, table) decrypted into _sealed_table_name
        self._enc_cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    # ------------------------------------------------------------------ setup
    @classmethod
    def init(cls, root: Path | str, crs: str = "EPSG:4548", exist_ok: bool = True,
             time_zone: str | None = None) -> Store:
        """Create an empty store (idempotent when ``exist_ok``); ``time_zone``: the city's IANA time zone (e.g.
        Asia/Shanghai), which viewers use to show times in local time.

        STORE.json is published last, so the store exists exactly when it does; a disk that refuses raises
        :class:`~twin.errors.StorageError` and every folder this call made is removed again."""
        root = Path(root)
        meta = root / "STORE.json"
        if meta.exists():
            if not exist_ok:
                raise AlreadyInStore(f"{root}: a store already exists")
            return cls(root)
        import pyproj

        try:
            pyproj.CRS.from_user_input(crs)
        except pyproj.exceptions.CRSError as exc:
            raise StoreError(f"unknown CRS {crs!r}: {exc}") from exc
        if time_zone is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise StoreError(f"time zone {time_zone!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None
        made: list[Path] = []  # folders this call created, outermost first
        try:
            subs = [root / sub for sub in ("branches", "commits", "segments", "tmp")]
            for d in [*reversed(root.parents), root, *subs]:
                if not d.exists():
                    try:
                        d.mkdir()
                    except FileExistsError:  # made meanwhile by someone else: not ours to remove
                        continue
                    made.append(d)
            write_json_atomic(
                meta,
                {"format": FORMAT, "format_version": FORMAT_VERSION, "crs": crs, "created": datetime.now(UTC),
                 **({"time_zone": time_zone} if time_zone else {})},
                root / "tmp",
            )
        except BaseException as exc:
            for d in reversed(made):
                remove_path(d)
            raise_refused(exc, f"creating the store {root}")
        return cls(root)

    @property
    def _con(self):
        """One DuckDB cursor per thread, all on one database instance that loaded the spatial extension once:
        a server's worker threads would otherwise each pay the extension load on their first request.

        A Store that may decrypt (a key is set, or the store encrypts) never lets DuckDB spill to disk: its blocks
        would hold decrypted rows in clear (DuckDB cannot change this once it has spilled)."""
        con = getattr(self._local, "con", None)
        if con is None:
            with self._lock:
                if self._base is None:
                    base = connect()
                    try:
                        private = self.key is not None or self._encryption() is not None
                    except KeyInvalid:
                        private = True
                    if private:
                        base.execute("SET temp_directory = ''")
                    self._base = base
            con = self._local.con = session(self._base.cursor())
        return con

    def _no_spill(self) -> None:
        """Make sure DuckDB cannot write decrypted blocks to disk before rows are decrypted into it."""
        con = self._con
        if con.execute("SELECT current_setting('temp_directory')").fetchone()[0] != "":
            import duckdb

            try:
                con.execute("SET temp_directory = ''")
            except duckdb.Error:  # DuckDB has spilled already: it cannot be turned off any more
                raise Unavailable("this process's DuckDB has spilled to disk already, so it cannot hold decrypted "
                                 "data; open the store again (a new Store) to read its encrypted rows") from None

    # ------------------------------------------------------------------ encryption at rest
    @property
    def key(self) -> Key | None:
        """The key this store reads and writes sealed rows with: the one given, else ``TWIN_KEY`` /
        ``TWIN_KEY_FILE`` (read once, when first needed; a malformed one is :class:`~twin.store.crypt.KeyInvalid`)."""
        if not self._key_read:
            with self._lock:
                if not self._key_read:
                    self._key_arg = Key.from_env()
                    self._key_read = True
        return self._key_arg

    def _encryption(self) -> dict[str, Any] | None:
        """``encryption.json``: the id of the key the sealed files are encrypted with (None: nothing ever was)."""
        path = self.root / ENCRYPTION
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._enc_cache
        if cached is not None and cached[0] == stamp:
            return cached[1]
        doc = json.loads(path.read_text())
        self._enc_cache = (stamp, doc)
        return doc

    def _sealing(self) -> bool:
        """Whether confidential and secret rows are sealed: when a key is set or the store already encrypts (then
        writing them without the key is refused). A store that never had a key keeps every row plain."""
        return self.key is not None or self._encryption() is not None or bool(self._sealed)

    def encrypts(self) -> bool:
        """Whether this store keeps confidential and secret data encrypted (a key is set, or it holds sealed data):
        what derived caches of such data (tilesets) must then keep out of the store directory."""
        return self._sealing()

    def _check_key(self, doing: str) -> Key:
        """The key, checked against the one the store's sealed files were encrypted with."""
        key = self.key
        if key is None:
            raise KeyMissing(f"this store holds encrypted confidential data and {doing} needs it; {HOW}")
        enc = self._encryption()
        if enc is not None and enc.get("key_id") != key.id:
            raise KeyMismatch(f"the key does not match: the data was encrypted with key {enc.get('key_id')}, the key "
                              f"given ({key.source}) has id {key.id}")
        return key

    def _sealed_file(self, version: int, key_id: str) -> Path:
        return self.root / "segments" / f"{version:08d}.{key_id}.sealed"

    def _unseal(self, versions: Sequence[int], doing: str) -> None:
        """Decrypt the sealed rows of ``versions`` that are not yet in memory into ``_twin_sealed``, a table of this
        Store's in-memory database (never on disk; every thread's cursor sees it; native DuckDB storage scans
        several times faster than an Arrow table converted on every query)."""

        missing = [v for v in versions if v not in self._unsealed]
        if missing:
            key = self._check_key(doing)
            with self._lock:
                for v in missing:
                    if v in self._unsealed:
                        continue
                    rows = self._read_sealed(lambda kid, v=v: self._sealed_file(v, kid), f"segment {v:08d}",
                                             f"version {v}'s encrypted rows", key, doing)
                    self._no_spill()
                    con = self._con
                    con.register("_twin_unsealing", rows)
                    try:
                        con.execute(f"INSERT INTO {_SEALED_VIEW} BY NAME SELECT * FROM _twin_unsealing" if
                                    self._unsealed else
                                    f"CREATE OR REPLACE TABLE {_SEALED_VIEW} AS SELECT * FROM _twin_unsealing")
                    finally:
                        con.unregister("_twin_unsealing")
                    self._unsealed.add(v)
        else:
            self._check_key(doing)  # a rotation since: the old key must stop working here too

    def _read_sealed(self, path_of: Any, role: str, what: str, key: Key, doing: str) -> pa.Table:
        """The Parquet rows of the sealed file ``path_of(key id)``, decrypted in memory."""
        import pyarrow.parquet as pq

        for attempt in (0, 1):
            path = path_of((self._encryption() or {}).get("key_id", key.id))
            try:
                data = path.read_bytes()
                break
            except FileNotFoundError:  # a rotation switched keys meanwhile: read the new name
                if attempt:
                    raise SealBroken(f"segments/{path.name} is missing: {what} cannot be read") from None
                key = self._check_key(doing)
        return pq.read_table(pa.BufferReader(key.unseal(data, role, f"segments/{path.name}")))

    def _sealed_product(self, rel: str | Path, key_id: str) -> Path:
        """The sealed form of store file ``rel`` (e.g. ``products/terrain/<digest>/dtm.tif``), beside it."""
        path = self.root / rel
        return path.with_name(f"{path.name}.{key_id}.sealed")

    def _sealed_products(self, key_id: str) -> list[Path]:
        """Every sealed store file under ``products/`` (rasters of confidential assets) of key ``key_id``."""
        folder = self.root / "products"
        return sorted(folder.rglob(f"*.{key_id}.sealed")) if key_id and folder.is_dir() else []

    def _seal_files(self, rels: Sequence[str], key: Key, written: list[Path], remove_plain: bool = True) -> None:
        """Write the sealed form of each store file of ``rels`` (the file's path its role, so a sealed file moved
        elsewhere fails authentication); its plain file is removed when ``remove_plain``. The caller has recorded
        the key id (``_write_encryption``)."""
        for rel in rels:
            src, dst = self.root / rel, self._sealed_product(rel, key.id)
            tmp = tmp_path(self.root / "tmp", ".sealed")
            try:
                write_bytes(tmp, key.seal(src.read_bytes(), f"file {Path(rel).as_posix()}"))
                fault("file_sealed")
                publish(tmp, dst)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(dst)
            if remove_plain:
                src.unlink(missing_ok=True)

    def _plain_copy(self, rel: Path, asset: dict[str, Any]) -> Path:
        """A decrypted copy of sealed store file ``rel``, for readers that open paths (GDAL, worker processes): in
        ``TWIN_PLAIN_DIR``, else ``/dev/shm`` (memory, never on disk) when there is one, else the temporary folder;
        a folder only this user may enter, one file per content (its checksum), made once."""
        kid = (self._encryption() or {}).get("key_id")
        sealed = self._sealed_product(rel, kid) if kid else None
        if sealed is None or not sealed.is_file():
            return self.root / rel
        where = Path(rel).as_posix()
        key = self._check_key(f"reading {where}")
        digest = str(asset.get("checksum") or "")[:32] or hashlib.sha256(sealed.read_bytes()).hexdigest()[:32]
        dst = plain_dir() / digest / Path(rel).name
        if not dst.is_file():
            dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private(dst, key.unseal(sealed.read_bytes(), f"file {where}", where), replace=True)
        return dst

    def _sealed_files(self, kid: str, new_kid: str) -> list[tuple[Path, Path, str]]:
        """Every sealed file of key ``kid`` (row segments, bulk tables, store files) as (path, its name under key
        ``new_kid``, its role): what a rotation re-seals and the status counts."""
        out = [(self._sealed_file(v, kid), self._sealed_file(v, new_kid), f"segment {v:08d}") for v in
               sorted(self._sealed)]
        out += [(self._sealed_table_file(v, n, kid), self._sealed_table_file(v, n, new_kid), f"table {n} {v:08d}")
                for v, n in self._sealed_tables()]
        for src in self._sealed_products(kid):
            plain = src.relative_to(self.root).with_name(src.name[:-len(f".{kid}.sealed")])
            out.append((src, self._sealed_product(plain, new_kid), f"file {plain.as_posix()}"))
        return out

    def _sealed_table_file(self, version: int, name: str, key_id: str) -> Path:
        return self.root / "segments" / f"{version:08d}.{name}.{key_id}.sealed"

    def _sealed_tables(self) -> list[tuple[int, str]]:
        """(version, table) of every commit's sealed bulk-table file."""
        return [(v, n) for v, docs in sorted(self._tables.items()) for n, d in sorted(docs.items()) if d.get("sealed")]

    def _sealed_table_name(self, version: int, name: str) -> str:
        """The in-memory DuckDB table holding version ``version``'s sealed rows of bulk table ``name`` (decrypted
        on first use with the key; never on disk)."""
        target = f"_twin_sealed_{name}_{version}"
        if (version, name) in self._unsealed_tables:
            self._check_key(f"table {name!r}")  # a rotation since: the old key must stop working here too
            return target
        doing = f"reading the confidential rows of table {name!r}"
        key = self._check_key(doing)
        with self._lock:
            if (version, name) not in self._unsealed_tables:
                rows = self._read_sealed(lambda kid: self._sealed_table_file(version, name, kid),
                                         f"table {name} {version:08d}", f"version {version}'s encrypted {name} rows",
                                         key, doing)
                self._no_spill()
                con = self._con
                con.register("_twin_unsealing", rows)
                try:
                    con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM _twin_unsealing")
                finally:
                    con.unregister("_twin_unsealing")
                self._unsealed_tables.add((version, name))
        return target

    def _owner_levels(self, branch: str, owners: set[str], records: dict[tuple[str, str], Record]) -> dict[str, str]:
        """The classification of each bulk-table owner (an asset, layer or run): its row in this commit, else its
        live row on the branch (public when it has none: rows of an unknown owner are no secret of anyone's)."""
        out = {r.id: r.classification for (c, _), r in records.items() if c in TABLE_OWNERS and r.id in owners}
        missing = sorted(owners - set(out))
        for collection in TABLE_OWNERS if missing else ():
            sql, params = self._state_sql(branch, None, Query(collection=collection, ids=missing), "classification",
                                          order=False, stubs=True)
            if sql is not None:
                rows = self._con.execute(f"SELECT id, classification FROM ({sql})", params).fetchall()
                out.update({i: lv for i, lv in rows if i not in out})
        return out

    def _reads_sealed(self, sealed: list[int], collection: str | None, classification_max: str | None,
                      doing: str, stubs: bool = False) -> bool:
        """Whether a read over versions whose sealed ones are ``sealed`` decrypts them: always with the key; without
        it, a read that leaves out confidential and secret rows anyway (``classification_max`` at most internal),
        or one of a collection those versions sealed nothing of, reads the plain rows only (stubs keep it exact),
        and any other is :class:`KeyMissing`. ``stubs``: the writer's lookups, which take stubs for live rows."""
        if not sealed:
            return False
        if self.key is not None:
            self._unseal(sealed, doing)
            return True
        if stubs:
            return False
        if classification_max is not None:
            from data_models import Classification

            if Classification.parse(classification_max).rank < Classification.confidential.rank:
                return False
        if collection is not None and not any(collection in self._sealed[v].get("collections", ()) for v in sealed):
            return False
        raise KeyMissing(f"this store holds encrypted confidential data; set TWIN_KEY or TWIN_KEY_FILE to read "
                         f"{doing} (without the key only public and internal data can be read)")

    def _source(self, versions: Sequence[int], unseal: bool) -> str:
        """SQL over the rows of ``versions``: their plain segments, and their sealed rows when ``unseal``."""
        files = [str(self.root / "segments" / self._segments[v]) for v in versions]
        plain = "read_parquet([" + ", ".join(_sql_str(f) for f in files) + "], union_by_name = true)"
        sealed = [v for v in versions if v in self._sealed] if unseal else []
        if not sealed:
            return plain
        return (f"(SELECT * FROM {plain} UNION ALL BY NAME SELECT * FROM {_SEALED_VIEW} "
                f"WHERE version IN ({', '.join(str(v) for v in sealed)}))")

    def encryption_status(self) -> dict[str, Any]:
        """What is encrypted: the key id the sealed files use (None: none ever were), how many files, rows and bytes,
        and whether this process's key (if any) is that key. Reads no sealed file."""
        self.refresh()
        enc = self._encryption()
        kid = enc.get("key_id") if enc else None
        files = [src for src, _, _ in self._sealed_files(kid, kid)] if kid else []
        key = self.key
        return {"key_id": kid, "files": len(files), "rows": sum(int(d.get("rows", 0)) for d in self._sealed.values()),
                "bytes": sum(f.stat().st_size for f in files if f.exists()),
                "levels": sorted({lv for d in self._sealed.values() for lv in d.get("levels", ())}),
                "your_key_id": key.id if key is not None else None,
                "matches": None if key is None or kid is None else key.id == kid}

    def rotate_key(self, old: Key, new: Key, author: str = "twin") -> int:
        """Re-encrypt every sealed file with ``new`` (``old`` must be the key they use now), as one atomic switch:
        the new files are written beside the old ones under new names, then ``encryption.json`` is replaced, then
        the old files are removed. A crash before the switch leaves the old key in force (the next writer removes the
        new files), after it the new one (the next writer removes the old files). Returns the number of files."""
        if new.id == old.id:
            raise StoreError(f"the new key is the old one (key id {old.id}): generate another with "
                             "`twin keys generate FILE`")
        with writer_lock(self.root / ".lock"):
            self._clean_tmp()
            enc = self._encryption()
            if enc is None:
                raise StoreError("this store holds no encrypted data: there is no key to rotate (a key set in "
                                 "TWIN_KEY or TWIN_KEY_FILE is used from the first confidential commit on)")
            kid = enc.get("key_id")
            if kid != old.id:
                raise KeyMismatch(f"the key does not match: the data was encrypted with key {kid}, the old key "
                                  f"given ({old.source}) has id {old.id}")
            written: list[Path] = []
            try:
                for src, dst, role in self._sealed_files(kid, new.id):
                    tmp = tmp_path(self.root / "tmp", ".sealed")
                    try:
                        write_bytes(tmp, new.seal(old.unseal(src.read_bytes(), role,
                                                             src.relative_to(self.root).as_posix()), role))
                        publish(tmp, dst)
                    finally:
                        tmp.unlink(missing_ok=True)
                    written.append(dst)
                fault("rotation_written")
                write_json_atomic(self.root / ENCRYPTION, {
                    "key_id": new.id, "cipher": "AES-256-GCM", "since": datetime.now(UTC), "author": author,
                    "previous_key_id": kid}, self.root / "tmp")
            except BaseException as exc:
                for p in written:
                    p.unlink(missing_ok=True)
                raise_refused(exc, "rotating the store key")
            for src, _, _ in self._sealed_files(kid, new.id):
                src.unlink(missing_ok=True)
            self._key_arg, self._key_read = new, True
            return len(written)

    # ------------------------------------------------------------------ commits and branches
    def refresh(self) -> None:
        """Pick up commits published by other processes since the last call (cheap directory scan)."""
        with self._lock:
            for entry in os.scandir(self.root / "commits"):
                if not entry.name.endswith(".json"):
                    continue
                v = int(entry.name[:-5])
                if v in self._commits:
                    continue
                doc = json.loads(Path(entry.path).read_text())
                self._commits[v] = Commit.model_validate(doc["commit"])
                self._segments[v] = doc["segment"]
                self._tables[v] = doc.get("tables", {})
                self._refs[v] = doc.get("files")
                if doc.get("sealed"):
                    self._sealed[v] = doc["sealed"]

    def log(self, branch: str | None = None, with_base: bool = True) -> list[Commit]:
        """Commits, newest first: all of them, or those visible on ``branch`` (its base's history included)."""
        self.refresh()
        if branch is None:
            versions = sorted(self._commits)
        else:
            versions = self._visible_versions(branch, None) if with_base else [
                v for v, c in self._commits.items() if c.branch == branch
            ]
        return [self._commits[v] for v in sorted(versions, reverse=True)]

    def branches(self) -> list[Branch]:
        out = {MAIN: Branch(name=MAIN, base_branch=None, base_version=None, created=self._created(), author="twin")}
        for p in sorted((self.root / "branches").glob("*.json")):
            b = Branch.model_validate_json(p.read_text())
            out[b.name] = b
        return [out[k] for k in sorted(out)]

    def branch(self, name: str) -> Branch:
        for b in self.branches():
            if b.name == name:
                return b
        known = ", ".join(b.name for b in self.branches())
        raise NotInStore(f"unknown branch {name!r}; branches: {known}")

    def create_branch(
        self, name: str, from_branch: str = MAIN, at: int | str | datetime | None = None,
        author: str = "twin", description: str = "",
    ) -> Branch:
        """Fork ``name`` from ``from_branch`` at a version (default its head); edits on it are copy-on-write."""
        if not _BRANCH_RE.match(name):
            raise StoreError(f"bad branch name {name!r}: use lowercase letters, digits, '-' or '_' (max 64)")
        with writer_lock(self.root / ".lock"):
            if any(b.name == name for b in self.branches()):
                raise AlreadyInStore(f"branch {name!r} already exists")
            self.branch(from_branch)
            base = self.resolve_version(from_branch, at)
            b = Branch(
                name=name, base_branch=from_branch, base_version=base or None, created=datetime.now(UTC),
                author=author, description=description,
            )
            write_json_atomic(self.root / "branches" / f"{name}.json", b.model_dump(mode="json"), self.root / "tmp")
        return b

    def drop_branch(self, name: str) -> None:
        """Remove a branch that holds no commit and that no branch forks from (undoing a fork whose first commit
        failed); anything else is a :class:`AlreadyInStore` conflict, an unknown branch :class:`NotInStore`."""
        with writer_lock(self.root / ".lock"):
            self.branch(name)
            self.refresh()
            if name == MAIN or any(c.branch == name for c in self._commits.values()):
                raise AlreadyInStore(f"branch {name!r} holds commits: it cannot be dropped")
            if any(b.base_branch == name for b in self.branches()):
                raise AlreadyInStore(f"branch {name!r} has branches forked from it: it cannot be dropped")
            remove_path(self.root / "branches" / f"{name}.json")

    def head(self, branch: str = MAIN) -> int:
        """Latest version visible on a branch (0 for an empty store)."""
        vs = self._visible_versions(branch, None)
        if vs:
            return max(vs)
        b = self.branch(branch)
        return b.base_version or 0

    def resolve_version(self, branch: str = MAIN, as_of: int | str | datetime | None = None) -> int:
        """Turn ``as_of`` (None = latest, a version number, or a timestamp) into a version on ``branch``.

        Blank, malformed or out-of-range values (empty text, ``-1``, ``1e3``, year 10000, a version beyond 64 bits)
        are the caller's fault: a :class:`StoreError` (400) whose message starts with ``as_of:``; a well-formed
        version that was never committed is :class:`NotInStore` (404)."""
        self.refresh()
        if as_of is None:
            return self.head(branch)
        as_of = _parse_as_of(as_of)
        if isinstance(as_of, int):
            if as_of > max(self._commits, default=0):
                raise NotInStore(f"version {as_of} does not exist (latest is {max(self._commits, default=0)})")
            return as_of
        t = as_of
        vs = [v for v in self._visible_versions(branch, None) if self._commits[v].time <= t]
        if vs:
            return max(vs)
        b = self.branch(branch)
        return 0 if b.base_version is None else min(b.base_version, self.resolve_version(b.base_branch, t))

    def _visible_versions(self, branch: str, upto: int | None) -> list[int]:
        """Versions whose segments make up ``branch`` at ``upto``: its own commits plus its base's up to the fork."""
        self.refresh()
        b = self.branch(branch)
        own = [v for v, c in self._commits.items() if c.branch == branch and (upto is None or v <= upto)]
        if b.base_branch is None:
            return own
        fork = b.base_version or 0  # None: forked from an empty store
        base_upto = fork if upto is None else min(fork, upto)
        return own + (self._visible_versions(b.base_branch, base_upto) if base_upto > 0 else [])

    def _created(self) -> datetime:
        return to_utc(json.loads((self.root / "STORE.json").read_text())["created"])

    # ------------------------------------------------------------------ writing
    def commit(
        self,
        put: Iterable[Any] = (),
        remove: Iterable[str] = (),
        *,
        message: str,
        author: str = "twin",
        branch: str = MAIN,
        remove_collection: str = CITY,
        geometries: dict[str, shapely.Geometry] | None = None,
        tables: dict[str, pa.Table] | None = None,
    ) -> Commit | None:
        """Atomically write entity upserts and removals as one new version on ``branch``.

        Objects identical to the current version are skipped; if nothing changes, no commit is made and None is
        returned. Any exception leaves the store exactly as it was.

        ``tables`` holds bulk rows (e.g. "observations") with an ``asset_id`` column: for each asset id, the rows of
        the newest commit that wrote that asset to a table replace older ones (see ``table_sql``).
        """
        tables = {k: v for k, v in (tables or {}).items()}
        for name, t in tables.items():
            if not re.match(r"^[a-z][a-z0-9_]*$", name) or "asset_id" not in t.column_names:
                raise StoreError(f"table {name!r} needs a lowercase name and an asset_id column")
        geometries = geometries or {}
        records: dict[tuple[str, str], Record] = {}
        for r in to_records(put, geometries):
            records[(r.collection, r.id)] = r
        removals = sorted(set(remove))
        if not message.strip():
            raise StoreError("a commit needs a message")
        # files inside the store that the assets name (build products): kept by recovery, recorded with the commit
        in_store = {r.body["path"] for r in records.values()
                    if r.collection == ASSETS and isinstance(r.body.get("path"), str)
                    and not Path(r.body["path"]).is_absolute()}
        with writer_lock(self.root / ".lock"):
            self._clean_tmp(keep=in_store)
            self.branch(branch)
            current = self._current_digests(branch, {k[0] for k in records} | {remove_collection}, records, removals)
            rows: list[Record] = []
            ops: list[str] = []
            ends: list[str] = []  # the classification of the row each removal ends
            added = modified = 0
            for key in sorted(records):
                r = records[key]
                old = current.get(key)
                if old is not None and old[0] == r.digest:
                    continue
                rows.append(r)
                ops.append("add" if old is None else "modify")
                added += old is None
                modified += old is not None
            for eid in removals:
                old = current.get((remove_collection, eid))
                if old is None:
                    raise NotInStore(f"cannot remove {eid!r}: it does not exist on branch {branch!r}")
                rows.append(removal(remove_collection, eid, old[1]))
                ops.append("remove")
                ends.append(old[2])
            tables, digests = self._changed_tables(branch, tables)
            # the store files of confidential and secret assets (rasters a build or a run wrote) are sealed too
            plain_files = sorted({r.body["path"] for r in records.values() if r.body.get("path") in in_store
                                  and r.classification in SEALED_LEVELS and (self.root / r.body["path"]).is_file()}
                                 ) if self._sealing() else []
            if not rows and not tables:
                if plain_files:  # the records are unchanged: only their files are left to seal
                    key = self._check_key("sealing confidential files")
                    self._write_encryption(key)
                    self._seal_files(plain_files, key, [])
                return None
            # sealed: confidential and secret rows, and the removals of such rows (their id stays hidden too)
            levels = [r.classification for r in rows[:len(rows) - len(ends)]] + ends
            seal = [i for i, lv in enumerate(levels) if lv in SEALED_LEVELS] if self._sealing() else []
            # bulk-table rows are at the level of their owner: those of confidential and secret owners are sealed
            table_seal: dict[str, list[str]] = {}
            if tables and self._sealing():
                levels_of = self._owner_levels(branch, {a for d in digests.values() for a in d}, records)
                for name, d in digests.items():
                    if hidden := sorted(a for a in d if levels_of.get(a) in SEALED_LEVELS):
                        table_seal[name] = hidden
            seal_key = self._check_key("writing confidential or secret rows") if seal or table_seal or plain_files \
                else None
            self.refresh()
            version = max(self._commits, default=0) + 1
            last_time = max((c.time for c in self._commits.values()), default=None)
            now = datetime.now(UTC)
            commit = Commit(
                version=version,
                branch=branch,
                parent_version=self.head(branch) or None,
                time=max(now, last_time) if last_time else now,
                author=author,
                message=message,
                changes=ChangeSummary(added=added, modified=modified, removed=len(removals)),
            )
            segment = f"{version:08d}.parquet"
            seg_path = self.root / "segments" / segment
            written = [seg_path]
            table_docs: dict[str, dict[str, Any]] = {}
            files = sorted({r.body["path"] for r, op in zip(rows, ops, strict=True)
                            if op != "remove" and r.collection == ASSETS and r.body.get("path") in in_store})
            sealed_doc = None
            made_enc = False
            try:
                table = records_table(rows, ops, version)
                if seal:
                    sealed_at = set(seal)
                    mask = pa.array([i in sealed_at for i in range(len(rows))], pa.bool_())
                    hidden = table.filter(mask)
                    table = pa.concat_tables([table.filter(pc.invert(mask)),
                                              stubs_table(self._stubs(branch, rows, ops, seal), version)])
                    made_enc = self._write_encryption(seal_key) or made_enc
                    written.append(self._sealed_file(version, seal_key.id))
                    self._write_sealed(sealed_table(hidden), version, seal_key, written[-1])
                    sealed_doc = {"rows": hidden.num_rows,
                                  "collections": sorted(set(hidden.column("collection").to_pylist())),
                                  "levels": sorted({levels[i] for i in seal if ops[i] != "remove"})}
                self._write_segment(table, seg_path)
                for name, t in sorted(tables.items()):
                    doc = table_docs[name] = {"file": None, "rows": t.num_rows, "assets": sorted(digests[name]),
                                              "digests": digests[name]}
                    if name in table_seal:
                        mask = pc.is_in(t.column("asset_id"), pa.array(table_seal[name], pa.string()))
                        made_enc = self._write_encryption(seal_key) or made_enc
                        written.append(self._sealed_table_file(version, name, seal_key.id))
                        self._write_sealed(t.filter(mask), version, seal_key, written[-1],
                                           f"table {name} {version:08d}")
                        doc["sealed"] = table_seal[name]
                        t = t.filter(pc.invert(mask))
                    if t.num_rows:
                        doc["file"] = f"{version:08d}.{name}.parquet"
                        written.append(self.root / "segments" / doc["file"])
                        self._write_table(t, written[-1])
                if plain_files:
                    made_enc = self._write_encryption(seal_key) or made_enc
                    self._seal_files(plain_files, seal_key, written, remove_plain=False)
                fault("after_segment")
                write_json_atomic(
                    self.root / "commits" / f"{version:08d}.json",
                    {"commit": commit.model_dump(mode="json"), "segment": segment, "tables": table_docs,
                     "files": files, **({"sealed": sealed_doc} if sealed_doc else {})},
                    self.root / "tmp",
                )
            except BaseException as exc:
                for p in written:
                    p.unlink(missing_ok=True)
                if made_enc:
                    (self.root / ENCRYPTION).unlink(missing_ok=True)
                raise_refused(exc, f"committing version {version}")
            for rel in plain_files:  # committed: the sealed copies are the files now
                (self.root / rel).unlink(missing_ok=True)
            self.refresh()
            return commit

    def _clean_tmp(self, keep: Iterable[str] = ()) -> None:
        """Remove what writers that died left (called holding the writer lock, so no commit is under way): see
        :func:`twin.store.files.recover_tmp` for ``tmp/``; segment and table files no commit references; and, when
        no other build is running, product folders (``products/<kind>/<name>``) that neither a commit nor ``keep``
        (the store paths the commit being made names) references."""
        try:
            others_building = recover_tmp(self.root / "tmp")
            self.refresh()
            referenced = set(self._segments.values()) | {
                t["file"] for tables in self._tables.values() for t in tables.values() if t.get("file")
            }
            kid = (self._encryption() or {}).get("key_id")
            referenced |= {self._sealed_file(v, kid).name for v in self._sealed} if kid else set()
            referenced |= {self._sealed_table_file(v, n, kid).name for v, n in self._sealed_tables()} if kid else set()
            for p in (self.root / "segments").iterdir():
                if p.name in referenced:
                    continue
                head = p.name.split(".")[0]
                if p.name.endswith(".sealed") and head.isdigit() and int(head) in self._sealed and not (
                        kid and self._sealed_file(int(head), kid).exists()):
                    continue  # the only copy of a commit's sealed rows (encryption.json lost or restored): kept
                remove_path(p)
            for p in sorted((self.root / "products").rglob("*.sealed")) if kid else ():
                plain, _, rest = p.name.rpartition(".")[0].rpartition(".")
                if rest != kid and self._sealed_product(p.parent.relative_to(self.root) / plain, kid).exists():
                    remove_path(p)  # a rotation's leftover: the file under the key in force is there
            products = self.root / "products"
            if others_building or not products.is_dir():
                return
            found = {f"products/{g.name}/{p.name}": p for g in products.iterdir() if g.is_dir() for p in g.iterdir()}
            if not found:
                return
            refs = set(keep) | {f for files in self._refs.values() if files for f in files}
            if {k for k in found if not _holds(refs, k)}:
                refs |= self._legacy_refs()
            for key, p in sorted(found.items()):
                if not _holds(refs, key):
                    remove_path(p)
        except OSError as exc:
            raise_refused(exc, "removing what a killed writer left")

    def _legacy_refs(self) -> set[str]:
        """Store paths named by the assets of commits made before commits recorded their ``files``."""
        old = tuple(v for v in sorted(self._refs) if self._refs[v] is None)
        if not old:
            return set()
        if self._legacy is not None and self._legacy[0] == old:  # commits never change: one scan per Store
            return self._legacy[1]
        files = [str(self.root / "segments" / self._segments[v]) for v in old]
        rows = self._con.execute(
            "SELECT DISTINCT json_extract_string(body, '$.path') FROM read_parquet(["
            + ", ".join(_sql_str(f) for f in files) + "], union_by_name = true) WHERE collection = ?", [ASSETS],
        ).fetchall()
        self._legacy = (old, {p for (p,) in rows if p and not Path(p).is_absolute()})
        return self._legacy[1]

    def _stubs(self, branch: str, rows: list[Record], ops: list[str], seal: list[int]
               ) -> list[tuple[str, str, str, str, str]]:
        """(collection, id, op, type, classification) of the sealed rows whose id the branch holds in clear: their
        stubs go into the plain segment, so that readers without the key never take an older plain row of theirs
        for the live one. Ids first stored sealed leave no trace in clear."""
        versions = sorted(self._visible_versions(branch, None))
        if not versions:
            return []
        wanted = {(rows[i].collection, rows[i].id): (ops[i], rows[i].type, rows[i].classification) for i in seal}
        con = self._con
        con.register("_sealing", pa.table({"id": sorted({k[1] for k in wanted})}))
        try:
            found = con.execute(f"SELECT DISTINCT collection, id FROM {self._source(versions, False)} "
                                "WHERE id IN (SELECT id FROM _sealing)").fetchall()
        finally:
            con.unregister("_sealing")
        return sorted((c, i, *wanted[(c, i)]) for c, i in found if (c, i) in wanted)

    def _write_encryption(self, key: Key) -> bool:
        """Record the key id of the sealed files (before the first is written); True when this made the file."""
        enc = self._encryption()
        if enc is not None and enc.get("key_id") == key.id:
            return False
        write_json_atomic(self.root / ENCRYPTION, {"key_id": key.id, "cipher": "AES-256-GCM",
                                                   "since": datetime.now(UTC)}, self.root / "tmp")
        return enc is None

    def _write_sealed(self, table: pa.Table, version: int, key: Key, dst: Path, role: str | None = None) -> None:
        """Sealed rows as Parquet (zstd) encrypted in memory: no plaintext byte of them reaches the disk."""
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd", row_group_size=8192)
        tmp = tmp_path(self.root / "tmp", ".sealed")
        try:
            write_bytes(tmp, key.seal(sink.getvalue(), role or f"segment {version:08d}"))
            fault("sealed_written")
            publish(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _write_segment(self, table: pa.Table, dst: Path) -> None:
        """Write rows as a GeoParquet file in Hilbert order, so bbox filters prune row groups (the partial file is
        removed if anything fails)."""
        tmp = tmp_path(self.root / "tmp", ".parquet")
        con = self._con
        con.register("_rows", table)
        try:
            con.execute(
                f"""
                COPY (
                  SELECT * EXCLUDE (wkb), ST_GeomFromWKB(wkb)::GEOMETRY({_sql_str(self.crs)}) AS geometry
                  FROM _rows
                  ORDER BY collection,
                    CASE WHEN wkb IS NULL THEN NULL ELSE ST_Hilbert(
                      ST_Point((xmin + xmax) / 2, (ymin + ymax) / 2),
                      (SELECT {{min_x: min(xmin), min_y: min(ymin), max_x: max(xmax) + 1, max_y: max(ymax) + 1}}
                       ::BOX_2D FROM _rows)) END,
                    id
                ) TO {_sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 8192)
                """
            )
            fault("segment_written")
            publish(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            con.unregister("_rows")

    def _changed_tables(self, branch: str, tables: dict[str, pa.Table]
                        ) -> tuple[dict[str, pa.Table], dict[str, dict[str, str]]]:
        """Drop the rows of assets whose rows equal what the branch already holds (re-publishing is a no-op)."""
        import hashlib

        import pyarrow.ipc as ipc

        head = self.head(branch)
        visible = sorted(self._visible_versions(branch, head)) if head else []
        out: dict[str, pa.Table] = {}
        digests: dict[str, dict[str, str]] = {}
        for name, t in sorted(tables.items()):
            current: dict[str, str] = {}
            for v in visible:
                current.update(self._tables.get(v, {}).get(name, {}).get("digests", {}))
            keep: dict[str, str] = {}
            for a in pc.unique(t.column("asset_id")).to_pylist():
                if a is None:
                    raise StoreError(f"table {name!r} has rows without an asset_id")
                part = t.filter(pc.equal(t.column("asset_id"), a))
                sink = pa.BufferOutputStream()
                with ipc.new_stream(sink, part.schema) as w:
                    w.write_table(part)
                d = hashlib.blake2b(sink.getvalue().to_pybytes(), digest_size=16).hexdigest()
                if current.get(a) != d:
                    keep[a] = d
            if keep:
                mask = pc.is_in(t.column("asset_id"), pa.array(sorted(keep), pa.string()))
                out[name] = t.filter(mask)
                digests[name] = keep
        return out, digests

    def _write_table(self, table: pa.Table, dst: Path) -> None:
        """Bulk rows as Parquet, sorted by asset and time-like first column for pruning (the partial file is removed
        if anything fails)."""
        import pyarrow.parquet as pq

        tmp = tmp_path(self.root / "tmp", ".parquet")
        try:
            pq.write_table(table, tmp, compression="zstd", row_group_size=65536)
            fault("table_written")
            publish(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def table_names(self) -> list[str]:
        self.refresh()
        return sorted({n for t in self._tables.values() for n in t})

    def table_assets(self, name: str, branch: str = MAIN, as_of: Any = None) -> set[str]:
        """Asset ids with rows in bulk table ``name`` on a branch."""
        version = self.resolve_version(branch, as_of)
        return {a for v in self._visible_versions(branch, version)
                for a in self._tables.get(v, {}).get(name, {}).get("assets", [])}

    def table_sql(self, name: str, branch: str = MAIN, as_of: Any = None, owner: str | None = None,
                  owners: Iterable[str] | None = None) -> str | None:
        """A SQL subquery over table ``name`` as of a version on a branch (None when it has no rows there); of
        the rows of asset ``owner`` only, or of the assets ``owners``, when given (a reader without the key reads
        the rows of public and internal owners so).

        For each asset id the rows come from the newest visible commit that wrote that asset to the table.
        """
        version = self.resolve_version(branch, as_of)
        wanted = {owner} if owner is not None else set(owners) if owners is not None else None
        latest: dict[str, int] = {}
        for v in sorted(self._visible_versions(branch, version)):
            for a in self._tables.get(v, {}).get(name, {}).get("assets", []):
                if wanted is None or a in wanted:
                    latest[a] = v
        if not latest:
            return None
        by_version: dict[int, list[str]] = {}
        for a, v in latest.items():
            by_version.setdefault(v, []).append(a)
        parts = []
        for v, assets in sorted(by_version.items()):
            doc = self._tables[v][name]
            hidden = set(doc.get("sealed", ()))
            for group, sealed in ((sorted(a for a in assets if a not in hidden), False),
                                  (sorted(a for a in assets if a in hidden), True)):
                if not group:
                    continue
                src = self._sealed_table_name(v, name) if sealed else \
                    f"read_parquet({_sql_str(str(self.root / 'segments' / doc['file']))})"
                parts.append(f"SELECT * FROM {src} WHERE asset_id IN ({', '.join(_sql_str(a) for a in group)})")
        return "(" + " UNION ALL BY NAME ".join(parts) + ")"

    def read_table(self, name: str, branch: str = MAIN, as_of: Any = None, where: str = "",
                   params: list[Any] | None = None, columns: str = "*") -> pa.Table:
        """Rows of a bulk table as Arrow, optionally filtered by a SQL ``where`` with ``?`` parameters."""
        src = self.table_sql(name, branch, as_of)
        if src is None:
            raise NotInStore(f"no table {name!r} on branch {branch!r}; tables: {', '.join(self.table_names())}")
        sql = f"SELECT {columns} FROM {src} t" + (f" WHERE {where}" if where else "")
        return self._con.execute(sql, params or []).to_arrow_table()

    def _current_digests(
        self, branch: str, collections: set[str], records: dict[tuple[str, str], Record], removals: list[str]
    ) -> dict[tuple[str, str], tuple[str | None, str | None, str]]:
        """(collection, id) -> (digest, type, classification) of the live entities among those about to be written
        (without the key, an id whose newest row is sealed has a stub: no digest, no type)."""
        wanted = sorted({k[1] for k in records} | set(removals))
        if not wanted:
            return {}
        con = self._con
        con.register("_wanted", pa.table({"id": wanted}))
        try:
            out: dict[tuple[str, str], tuple[str | None, str | None, str]] = {}
            for collection in collections:
                sql, params = self._state_sql(branch, None, Query(collection=collection), "digest, type, "
                                              "classification", join_ids="_wanted", stubs=True)
                if sql is None:
                    continue
                for eid, digest, type_, level in con.execute(sql, params).fetchall():
                    out[(collection, eid)] = (digest, type_, level)
            return out
        finally:
            con.unregister("_wanted")

    # ------------------------------------------------------------------ reading
    def _state_sql(
        self, branch: str, as_of: Any, q: Query, select: str, join_ids: str | None = None,
        order: bool = True, count: bool = False, stubs: bool = False,
    ) -> tuple[str | None, list[Any]]:
        """SQL returning the live rows of a branch at a version that match ``q`` (None when nothing is stored).

        Sealed rows are read with the key (see :meth:`_reads_sealed` for a process without it); ``stubs``: without
        the key, stubs count as live rows (the writer's lookups: an id whose newest row is sealed exists)."""
        version = self.resolve_version(branch, as_of)
        versions = sorted(self._visible_versions(branch, version))
        if not versions:
            return None, []
        unseal = self._reads_sealed([v for v in versions if v in self._sealed], q.collection, q.classification_max,
                                    f"{q.collection} at version {version}", stubs)
        src = self._source(versions, unseal)
        params: list[Any] = [q.collection]
        cand = ["c.collection = ?"]
        if q.bbox is not None:
            cand.append("c.xmax >= ? AND c.xmin <= ? AND c.ymax >= ? AND c.ymin <= ?")
            params += [q.bbox[0], q.bbox[2], q.bbox[1], q.bbox[3]]
        if q.polygon is not None:
            minx, miny, maxx, maxy = q.polygon.bounds
            cand.append("c.xmax >= ? AND c.xmin <= ? AND c.ymax >= ? AND c.ymin <= ?")
            params += [minx, maxx, miny, maxy]
        if q.types is not None:
            cand.append("c.type IN (SELECT unnest(?::VARCHAR[]))")
            params.append(q.types)
        if q.ids is not None:
            cand.append("c.id IN (SELECT unnest(?::VARCHAR[]))")
            params.append(q.ids)
        if q.exclude_ids is not None:
            cand.append("c.id NOT IN (SELECT unnest(?::VARCHAR[]))")
            params.append(q.exclude_ids)
        if join_ids:
            cand.append(f"c.id IN (SELECT id FROM {join_ids})")
        live = [f"c.op IN ('add', 'modify', '{STUB}add', '{STUB}modify')" if stubs and not unseal
                else "c.op IN ('add', 'modify')"]
        if q.polygon is not None:
            live.append("ST_Intersects(ST_GeomFromWKB(c.geometry), ST_GeomFromText(?))")
            params.append(q.polygon.wkt)
        if q.bbox is not None:
            live.append("ST_Intersects(ST_GeomFromWKB(c.geometry), ST_MakeEnvelope(?, ?, ?, ?))")
            params += q.bbox
        if q.valid_at is not None:
            live.append("(c.valid_from IS NULL OR c.valid_from <= ?) AND (c.valid_to IS NULL OR c.valid_to > ?)")
            params += [to_utc(q.valid_at), to_utc(q.valid_at)]
        if q.valid_during is not None:
            start, end = q.valid_during
            if end is not None:
                live.append("(c.valid_from IS NULL OR c.valid_from <= ?)")
                params.append(end)
            if start is not None:
                live.append("(c.valid_to IS NULL OR c.valid_to > ?)")
                params.append(start)
        if q.classification_max is not None:
            from data_models import Classification

            allowed = [c.value for c in Classification if c.rank <= Classification.parse(q.classification_max).rank]
            live.append("c.classification IN (SELECT unnest(?::VARCHAR[]))")
            params.append(allowed)
        for path, op, value in q.filters:
            expr = f"json_extract_string(c.body, '{path}')"
            if isinstance(value, bool):
                live.append(f"{expr} {op} ?")
                params.append(str(value).lower())
            elif isinstance(value, int | float):
                live.append(f"TRY_CAST({expr} AS DOUBLE) {op} ?")
                params.append(float(value))
            else:
                live.append(f"{expr} {op} ?")
                params.append(str(value))
        # A row is live when no newer row for its id exists in the lineage. Only segments after the oldest can hold
        # a newer row, so the usual shape (one big base, small edits) anti-joins against the small edits only.
        newer = "" if len(versions) == 1 else (
            f" AND NOT EXISTS (SELECT 1 FROM {self._source(versions[1:], unseal)} s WHERE s.collection = c.collection "
            "AND s.id = c.id AND s.version > c.version)"
        )
        tail = ""
        if not count:
            if order:
                tail += " ORDER BY c.id"
            if q.limit is not None:
                tail += f" LIMIT {int(q.limit)}"
            if q.offset:
                tail += f" OFFSET {int(q.offset)}"
        head = "count(*)" if count else f"c.id, {select}"
        sql = f"SELECT {head} FROM {src} c WHERE {' AND '.join(cand + live)}{newer}{tail}"
        return sql, params

    # times leave DuckDB as epoch microseconds: converting TIMESTAMPTZ to Python would need pytz
    _ROW = ("collection, version, op, type, classification, epoch_us(valid_from) AS valid_from_us, "
            "epoch_us(valid_to) AS valid_to_us, body, geometry AS wkb")

    def digests(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> dict[str, str]:
        """id -> content digest of the live entities matching ``query``: what changed between two versions is the
        ids whose digests differ, found without reading any body (simulation runs key their inputs by it).

        Without the key this never needs the sealed rows: an id whose newest row is sealed and that was stored in
        clear before (its stub) has the digest ``sealed:<version>``; ids first stored sealed are not listed. (What
        lets a guard without the key tell which ids are hidden now, see docs/security_encryption.md.)"""
        sql, params = self._state_sql(branch, as_of, query or Query(), "coalesce(c.digest, 'sealed:' || c.version)",
                                      order=False, stubs=True)
        return {} if sql is None else dict(self._con.execute(sql, params).fetchall())

    # What readers layered on top of the store ask of it; a guard (twin.security.guard.GuardedStore) answers
    # them for its principal. ``base``: the store itself; ``view_key``: what the reader sees (None: everything);
    # ``peek``: a read the store makes to answer its caller (not an access of the caller); ``note``: what the
    # caller was given.
    @property
    def base(self) -> Store:
        return self

    view_key = None

    def peek(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> list[dict[str, Any]]:
        return self.features(branch, as_of, query)

    def note(self, collection: str, given: Iterable[tuple[str, str]]) -> None:
        """Nothing to note: the store itself keeps no account of its readers."""

    def all_classifications(self) -> set[str]:
        """Every classification any row of any version and branch has held (what decides whether a reader below
        the top clearance can share derived data, such as tilesets, with one who sees all)."""
        self.refresh()
        key = tuple(sorted(self._segments.items()))
        cached = getattr(self, "_all_levels", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        files = [str(self.root / "segments" / f) for f in self._segments.values()]
        levels = set() if not files else {r[0] for r in self._con.execute(
            "SELECT DISTINCT classification FROM read_parquet([" + ", ".join(_sql_str(f) for f in files)
            + "], union_by_name = true) WHERE op IN ('add', 'modify')").fetchall()}
        levels |= {lv for d in self._sealed.values() for lv in d.get("levels", ())}  # known without the key
        self._all_levels = (key, levels)
        return levels

    def classifications(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> set[str]:
        """The classifications among the live entities matching ``query`` (what a result derived from them
        inherits: the highest of them)."""
        sql, params = self._state_sql(branch, as_of, query or Query(), "classification", order=False)
        if sql is None:
            return set()
        return {r[0] for r in self._con.execute(f"SELECT DISTINCT classification FROM ({sql})", params).fetchall()}

    def features(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> list[dict[str, Any]]:
        """Live entities matching ``query`` as JSON-ready dicts (model shape + ``_store`` metadata)."""
        q = query or Query()
        sql, params = self._state_sql(branch, as_of, q, self._ROW)
        if sql is None:
            return []
        cur = self._con.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [row_to_feature(dict(zip(names, row, strict=True))) for row in cur.fetchall()]

    def count(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> int:
        q = query or Query()
        sql, params = self._state_sql(branch, as_of, q, "", count=True)
        return 0 if sql is None else int(self._con.execute(sql, params).fetchone()[0])

    def page(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> Page:
        """The rows of ``query``'s page (its limit and offset) and the number matching in all, both at one pinned
        version; no row query when the page starts past the last match."""
        q = query or Query()
        version = self.resolve_version(branch, as_of)
        if q.ids == []:
            return Page(0, [], version)
        matched = self.count(branch, version, q)
        rows = self.features(branch, version, q) if q.offset < matched else []
        return Page(matched, rows, version)

    def extents(self, branch: str = MAIN, as_of: Any = None, collection: str = CITY,
                types: Iterable[str] | None = None, restrict: Query | None = None) -> dict[str, Extent]:
        """Per entity type: bbox, validity bounds and count of the live entities at a version (of ``types`` only,
        when given; of those matching ``restrict`` — a guard's view — when given); remembered per version, which
        never changes once committed."""
        version = self.resolve_version(branch, as_of)
        q = restrict or Query(collection=collection, types=types)
        view = None if restrict is None else (restrict.classification_max, tuple(restrict.ids or ()),
                                              tuple(restrict.exclude_ids or ()),
                                              restrict.polygon.wkb if restrict.polygon is not None else None)
        key = (branch, version, collection, tuple(q.types) if q.types is not None else None, view)
        with self._lock:
            if key in self._extents:
                self._extents.move_to_end(key)
                return self._extents[key]
        sql, params = self._state_sql(branch, version, q, "type, xmin, ymin, xmax, ymax, valid_from, valid_to",
                                      order=False)
        out: dict[str, Extent] = {}
        if sql is not None:
            rows = self._con.execute(
                "SELECT type, min(xmin), min(ymin), max(xmax), max(ymax), "
                "CASE WHEN count(valid_from) = count(*) THEN epoch_us(min(valid_from)) END, "
                "CASE WHEN count(valid_to) = count(*) THEN epoch_us(max(valid_to)) END, count(*) "
                f"FROM ({sql}) GROUP BY type ORDER BY type", params,
            ).fetchall()
            for type_, xmin, ymin, xmax, ymax, start, end, n in rows:
                out[type_] = Extent((xmin, ymin, xmax, ymax), from_us(start), from_us(end), int(n))
        with self._lock:
            self._extents[key] = out
            while len(self._extents) > _EXTENTS_KEPT:
                self._extents.popitem(last=False)
        return out

    def table(self, branch: str = MAIN, as_of: Any = None, query: Query | None = None) -> pa.Table:
        """Live entities as an Arrow table (id, type, classification, valid time, bbox, body, wkb) for bulk work."""
        q = query or Query()
        sql, params = self._state_sql(
            branch, as_of, q, "type, classification, valid_from, valid_to, xmin, ymin, xmax, ymax, body, "
            "geometry AS wkb", order=True,
        )
        if sql is None:
            return pa.table({"id": pa.array([], pa.string())})
        return self._con.execute(sql, params).to_arrow_table()

    def get(self, entity_id: str, branch: str = MAIN, as_of: Any = None, collection: str = CITY) -> dict | None:
        """One live entity by id, or None: the model's JSON shape plus ``_store`` metadata (version, op,
        collection). Edit the dict and pass it to :meth:`commit` as it is; the metadata is dropped on the way in."""
        rows = self.features(branch, as_of, Query(collection=collection, ids=[entity_id]))
        return rows[0] if rows else None

    def history(self, entity_id: str, branch: str = MAIN, collection: str = CITY) -> list[dict[str, Any]]:
        """Every stored version of an entity visible on ``branch``, oldest first (removals included).

        Without the key, a version sealed in a store that encrypts is a placeholder with op ``sealed`` and only its
        classification when the id was stored in clear before (its stub), and absent otherwise."""
        versions = sorted(self._visible_versions(branch, self.head(branch)))
        if not versions:
            return []
        sealed = [v for v in versions if v in self._sealed]
        unseal = bool(sealed) and self.key is not None
        if unseal:
            self._unseal(sealed, f"the history of {entity_id}")
        src = self._source(versions, unseal)
        # with the key stubs are left out (their sealed rows are read); without it a stub is a placeholder: op
        # ``sealed`` (a removal stub is the removal itself: a tombstone holds nothing)
        row = self._ROW.replace("op, ", f"CASE WHEN op = '{STUB}remove' THEN 'remove' WHEN starts_with(op, '{STUB}') "
                                "THEN 'sealed' ELSE op END AS op, ", 1)
        hide = f" AND NOT starts_with(op, '{STUB}')" if unseal else ""
        cur = self._con.execute(
            f"SELECT id, {row} FROM {src} WHERE collection = ? AND id = ?{hide} ORDER BY version",
            [collection, entity_id],
        )
        names = [d[0] for d in cur.description]
        return [row_to_feature(dict(zip(names, row, strict=True))) for row in cur.fetchall()]

    def asset_path(self, asset: dict[str, Any]) -> Path:
        """The file of an asset record: source paths are absolute, build products are relative to the store root
        (a sealed one, of a confidential asset, is decrypted into a private folder outside the store first)."""
        p = Path(asset["path"])
        if p.is_absolute():
            return p
        return self.root / p if (self.root / p).exists() else self._plain_copy(p, asset)

    def changelog(self, version: int) -> list[dict[str, str]]:
        """The entity ids a commit touched and how (add / modify / remove). Without the key, the sealed rows of a store
        that encrypts are listed as op ``sealed`` when their id was stored in clear before, and left out otherwise."""
        self.refresh()
        if version not in self._commits:
            raise NotInStore(f"version {version} does not exist")
        unseal = version in self._sealed and self.key is not None
        if unseal:
            self._unseal([version], f"the changelog of version {version}")
        hide = f" WHERE NOT starts_with(op, '{STUB}')" if unseal else ""
        rows = self._con.execute(
            f"SELECT collection, id, CASE WHEN starts_with(op, '{STUB}') THEN op[{len(STUB) + 1}:] ELSE op END "
            f"FROM {self._source([version], unseal)}{hide} ORDER BY collection, id"
        ).fetchall()
        return [{"collection": c, "id": i, "op": o} for c, i, o in rows]

    def content_digest(self) -> str:
        """Hash of every published file (metadata, branches, commits and the segments they reference)."""
        import hashlib

        self.refresh()
        h = hashlib.sha256()
        segments = [self.root / "segments" / self._segments[v] for v in sorted(self._segments)]
        segments += [self.root / "segments" / t["file"] for v in sorted(self._tables)
                     for _, t in sorted(self._tables[v].items())]
        kid = (self._encryption() or {}).get("key_id")
        segments += [self._sealed_file(v, kid) for v in sorted(self._sealed)] if kid else []
        for sub in ("STORE.json", ENCRYPTION, "branches", "commits"):
            p = self.root / sub
            paths = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []
            for f in paths + (segments if sub == "commits" else []):
                h.update(str(f.relative_to(self.root)).encode())
                h.update(f.read_bytes())
        return h.hexdigest()
