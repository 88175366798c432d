"""Tilesets per (branch, version): built ahead by the store's writers into ``<store>/tiles/``, served from there.

Layout of a tile folder (derived data: safe to delete)::

    <root>/buildings/content/ab/<hash>.glb       content-addressed building tiles, shared by all versions
    <root>/buildings/meta/ab/<hash>.json         centre + region of each, so unchanged tiles are never re-read
    <root>/buildings/v<F>.<branch>.<version>.tileset.json
    <root>/terrain/<digest>/{content,subtrees}/  one implicit tileset per terrain input (DTM + imagery)
    <root>/terrain/<digest>.json                 its tileset.json (URIs start with <digest>/)
    <root>/pointcloud/<digest>/                  the point-cloud tileset of one set of clouds (twin.tiles.pointcloud)
    <root>/<kind>/.lock                          builders of one kind serialise on this flock

Two kinds of :class:`TileCache`. A *writer* (``twin build``, ``twin tiles build``, ``twin demo``) builds into
``<store>/tiles/``. A *server* (:meth:`TileCache.serving`) only reads ``<store>/tiles/`` and builds what is missing
into its own cache directory (:func:`server_cache_dir`: ``TWIN_CACHE_DIR`` or the user cache dir, one folder per
store), never into the store, so every read works on a read-only store; with no usable cache directory a missing
tileset is a 503 naming ``twin tiles build``. A disk that refuses a build (full, read-only, no permission) is a
:class:`twin.errors.StorageError` (503, exit code 74) naming the folder, and leaves no temporary file.

Files appear by atomic rename, so a reader (another uvicorn worker) sees a whole file or none. A tileset is built
once: threads of one process wait for the one that builds it (single flight per folder and kind), processes
serialise on the kind's flock, and each re-checks for the result after waiting.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from twin.errors import NotFound, StorageError, Unavailable, storage_error
from twin.store import ASSETS, Query, Store, StoreError
from twin.store.files import plain_dir, store_key, writer_lock
from twin.store.records import SEALED_LEVELS
from twin.tiles import buildings_tileset as buildings_mod
from twin.tiles import terrain as terrain_mod
from twin.tiles.buildings import fold_parts

KINDS = ("buildings", "terrain", "pointcloud")
Progress = Callable[[str, float], None]
_HEX = re.compile(r"^[0-9a-f]{8,64}$")
_BAD_PART = {"", ".", ".."}
_KNOWN: dict[tuple[str, str, str, int], Path] = {}  # (roots, kind, branch, version) → tileset.json
_FLIGHTS: dict[str, threading.Lock] = {}  # <root>/<kind> → the lock its builder holds in this process
_FLIGHTS_GUARD = threading.Lock()
OFF = ("off", "none")  # TWIN_CACHE_DIR values that switch a server's on-demand builds off
log = logging.getLogger("twin.tiles")


def _flight(key: str) -> threading.Lock:
    with _FLIGHTS_GUARD:
        return _FLIGHTS.setdefault(key, threading.Lock())


def server_cache_dir(store: Store, setting: Path | str | None) -> tuple[Path | None, str]:
    """Where a server builds the tilesets missing from ``<store>/tiles/`` (and keeps gzip bodies), and, when it may
    build none, why: ``<setting>/<store key>``; unset (or empty), ``$XDG_CACHE_HOME/twin/tiles/<store key>``
    (``~/.cache/…``); ``off``: no on-demand builds. A folder inside the store is refused (a GET never writes there).
    Whether the folder is writable shows at the first build (a 503 saying so)."""
    text = "" if setting is None else str(setting).strip()
    if text in ("", "."):
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        home = Path(os.path.expanduser("~"))
        if xdg and Path(xdg).is_absolute():
            base = Path(xdg) / "twin" / "tiles"
        elif home.is_absolute():
            base = home / ".cache" / "twin" / "tiles"
        else:  # no HOME and no passwd entry
            return None, "there is no user cache directory (no HOME); set TWIN_CACHE_DIR to a writable folder"
    elif text.lower() in OFF:
        return None, f"on-demand builds are off (TWIN_CACHE_DIR={text})"
    else:
        base = Path(text).expanduser()
    out = base.absolute() / store_key(store)
    if out.resolve().is_relative_to(store.root.resolve()):
        return None, f"the cache directory {out} lies inside the store, where a server never writes"
    return out, ""


_DIGEST_KINDS = ("terrain", "pointcloud")  # tilesets named by the digest of their inputs (see digest_roots)


class TileNotFound(NotFound):
    """Unknown branch, version, tileset or file — or a tileset the store has no data for (HTTP 404)."""


class TilesetNotBuilt(Unavailable):
    """A tileset the store's writers have not built and this server may not build (HTTP 503)."""


BUILD_AHEAD = "build the tilesets ahead with `twin build` or `twin tiles build` (the store's writers)"


class TileCache:
    """Builds and locates the tilesets of one store; cheap to create per request.

    ``root`` is the folder it builds into (default ``<store>/tiles``: a writer); ``shared`` are folders it only
    reads, looked in first. :meth:`serving` makes a server's cache."""

    def __init__(self, store: Store, root: Path | None = None, workers: int = 1) -> None:
        self.store = store
        self.root: Path | None = Path(root) if root is not None else store.root / "tiles"
        self.shared: list[Path] = []
        # roots whose terrain and point-cloud tilesets this view may read too: those are named by the digest of
        # their inputs, so one with the digest of this view's inputs holds exactly what this view may see
        self.digest_roots: list[Path] = []
        self.not_built = ""  # why a cache without a root builds nothing (said in its 503)
        self.hint = ""  # added to a storage error's message: what to do about it
        self.workers = workers
        self.last_build: Any = None  # the BuildResult of the latest buildings build (tests, the CLI)
        # a principal who may not see everything gets tilesets of its own, under views/<view> of every root: a
        # public tileset has no confidential building in any tile, and no tile of another view is reachable
        view = getattr(store, "tile_view", lambda: None)()
        self.view = view
        if root is None and self.private:  # never confidential tiles in clear inside a store that encrypts
            self.root = plain_dir() / "tiles" / store_key(store.base)
        if view is not None and self.root is not None:
            self.root = self.root / "views" / view

    @cached_property
    def private(self) -> bool:
        """Whether this view's tiles may show data the store keeps encrypted (confidential or secret): then they
        are built outside the store, in the private folder of decrypted copies (``twin.store.files.plain_dir``)."""
        base = self.store.base
        if not base.encrypts() or not (base.all_classifications() & SEALED_LEVELS):
            return False
        return self.view is None or self.view.split("-area-")[0] in SEALED_LEVELS

    @classmethod
    def serving(cls, store: Store, cache_dir: Path | None, not_built: str = "") -> TileCache:
        """A server's cache: reads ``<store>/tiles/`` (never writes there) and builds what is missing into
        ``cache_dir``; with ``cache_dir`` None, a missing tileset is a :class:`TilesetNotBuilt` saying ``not_built``."""
        cache = cls(store)
        views = Path("views", cache.view) if cache.view is not None else Path()
        cache.shared = [] if cache.private else [store.root / "tiles" / views]
        if cache.view is not None:
            cache.digest_roots = [store.root / "tiles", *([Path(cache_dir)] if cache_dir is not None else [])]
        cache.root = Path(cache_dir) / views if cache_dir is not None else None
        cache.not_built = not_built or "this server has no cache directory"
        cache.hint = f"set TWIN_CACHE_DIR to a writable folder, or {BUILD_AHEAD}"
        return cache

    def views_below(self) -> list[TileCache]:
        """Writer caches of the tilesets of each clearance below what this (full) cache shows, for a store that holds
        data above public: ``<store>/tiles/views/<level>`` (public, internal, ...), built ahead so that a server of a
        read-only store answers every clearance (an area-limited view is built by the server, on demand)."""
        from data_models import Classification, Principal
        from twin.security.guard import GuardedStore

        held = {Classification(c) for c in self.store.base.all_classifications()}
        top = max(held, key=lambda c: c.rank, default=Classification.public)
        out = []
        for level in (c for c in Classification if c.rank < top.rank):
            reader = Principal(id=f"principal-tiles-{level.value}", name=f"tiles-{level.value}", roles=["viewer"],
                               clearance=level)
            cache = TileCache(GuardedStore(self.store.base, reader), workers=self.workers)
            cache.digest_roots = list(self.roots)
            out.append(cache)
        return out

    @property
    def roots(self) -> list[Path]:
        """The folders tilesets are looked up in, in order: the shared (read-only) ones, then the own root."""
        out = list(self.shared)
        if self.root is not None and self.root not in out:
            out.append(self.root)
        return out

    def _key(self) -> str:
        return "\0".join(str(r) for r in self.roots)

    # ------------------------------------------------------------------ versions
    def version(self, branch: str, version: str | int) -> int:
        """The canonical version of a request: ``latest`` is the branch head; a number is the newest version
        visible on the branch at or before it (so equal states share one tileset)."""
        try:
            self.store.branch(branch)
        except StoreError as exc:
            raise TileNotFound(str(exc)) from None
        if str(version) == "latest":
            return self.store.head(branch)
        text = str(version)
        if not text.isdigit():
            raise TileNotFound(f"version must be a number or 'latest', got {text!r}")
        v = int(text)
        known = [c.version for c in self.store.log()]
        if v != 0 and v not in known:
            raise TileNotFound(f"version {v} does not exist (latest is {max(known, default=0)})")
        visible = [c.version for c in self.store.log(branch) if c.version <= v]
        return max(visible, default=0)

    # ------------------------------------------------------------------ tilesets
    def tileset(self, kind: str, branch: str, version: int, progress: Progress | None = None) -> Path:
        """The tileset.json of ``kind`` for a canonical (branch, version), building it if needed.

        Remembered per process: a (branch, version) state never changes, so later requests skip the asset query
        while the file is there."""
        if kind in ("terrain", "pointcloud") and getattr(self.store, "area", None) is not None:
            # rasters and point clouds are not clipped to a reader's area yet: not served rather than leaked
            raise TileNotFound(f"the {kind} tileset is not available to a reader limited to an area")
        key = (self._key(), kind, branch, version)
        known = _KNOWN.get(key)
        if known is not None and known.exists():
            return known
        if kind == "buildings":
            path = self._buildings(branch, version, progress)
        elif kind == "terrain":
            path = self._terrain(branch, version, progress)
        elif kind == "pointcloud":
            path = self._pointcloud(branch, version, progress)
        else:
            raise TileNotFound(f"unknown tileset {kind!r}; tilesets: {', '.join(KINDS)}")
        if len(_KNOWN) > 4096:
            _KNOWN.clear()
        _KNOWN[key] = path
        return path

    def _build(self, kind: str, what: str, find: Callable[[Path], Path | None], make: Callable[[Path], Path]) -> Path:
        """``find(<root>/<kind>)`` in the first root that has it; else ``make(<own root>/<kind>)``, once: threads of
        this process wait for the one building (single flight), processes serialise on ``<kind>/.lock``, and each
        looks again after waiting. A refusing disk is a StorageError (503) naming the folder."""
        for r in self.roots + (self.digest_roots if kind in _DIGEST_KINDS else []):
            found = find(r / kind)
            if found is not None:
                return found
        if self.root is None:
            raise TilesetNotBuilt(f"the {what} is not built and this server builds none: {self.not_built}; "
                                  f"{BUILD_AHEAD}")
        base = self.root / kind
        with _flight(str(base)):
            found = find(base)
            if found is not None:
                return found
            t0 = time.perf_counter()
            try:
                base.mkdir(parents=True, exist_ok=True)
                with writer_lock(base / ".lock", timeout=3600.0):
                    found = find(base)
                    if found is not None:
                        return found
                    out = make(base)
            except (OSError, StorageError) as exc:
                err = exc if isinstance(exc, StorageError) else storage_error(exc, f"building the {what} into {base}")
                if self.hint and err is not None:
                    raise StorageError(f"{err}; {self.hint}") from exc
                if err is None or err is exc:
                    raise
                raise err from exc
            log.info("built the %s into %s in %.1f s", what, base, time.perf_counter() - t0)
            return out

    def _buildings(self, branch: str, version: int, progress: Progress | None) -> Path:
        name = f"v{buildings_mod.FORMAT}.{branch}.{version}.tileset.json"

        def make(base: Path) -> Path:
            feats = self.store.features(branch, as_of=version, query=Query(types=["Building", "BuildingPart"]))
            self.last_build = buildings_mod.build_buildings(
                fold_parts(feats), self.store.crs, base, base / name, workers=self.workers, progress=progress,
                asset={"tilesetVersion": f"{branch}@{version}"})
            return base / name

        return self._build("buildings", f"buildings tileset of {branch}@{version}", lambda b: _file(b / name), make)

    def terrain_inputs(self, branch: str, version: int) -> dict[str, Any]:
        inputs = terrain_mod.terrain_inputs(self.store, branch, version)
        if inputs is None:
            raise TileNotFound(f"no terrain on branch {branch!r} at version {version}: the store has neither a DTM "
                               "product (twin build) nor point clouds")
        return inputs

    def _terrain(self, branch: str, version: int, progress: Progress | None) -> Path:
        inputs = self.terrain_inputs(branch, version)
        name = f"{terrain_mod.terrain_digest(inputs)}.json"
        return self._build("terrain", f"terrain tileset of {branch}@{version}", lambda b: _file(b / name),
                           lambda b: terrain_mod.build_terrain_tileset(inputs, b, progress))

    def _pointcloud_digest(self, branch: str, version: int) -> str:
        assets = self.store.features(branch, as_of=version, query=Query(collection=ASSETS))
        key = sorted([a["id"], a.get("checksum"), a.get("kind")] for a in assets
                     if a.get("kind") in ("pointcloud", "imagery"))
        if not any(k[2] == "pointcloud" for k in key):
            raise TileNotFound(f"no point clouds on branch {branch!r} at version {version}")
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]

    def _pointcloud(self, branch: str, version: int, progress: Progress | None) -> Path:
        try:
            from twin.tiles.pointcloud import pointcloud_tileset_for_store
        except ImportError as exc:
            raise TileNotFound(f"point-cloud tiles are not available in this build ({exc})") from None
        digest = self._pointcloud_digest(branch, version)
        kwargs: dict[str, Any] = {"progress": progress}
        params = inspect.signature(pointcloud_tileset_for_store).parameters
        if "branch" in params:
            kwargs["branch"] = branch
        if "as_of" in params:
            kwargs["as_of"] = version
        if "workers" in params:
            kwargs["workers"] = self.workers

        def make(base: Path) -> Path:
            try:
                return Path(pointcloud_tileset_for_store(self.store, base / digest, **kwargs))
            except LookupError as exc:
                raise TileNotFound(str(exc)) from None

        return self._build("pointcloud", f"point-cloud tileset of {branch}@{version}",
                           lambda b: _file(b / digest / "tileset.json"), make)

    # ------------------------------------------------------------------ files
    def known(self, kind: str, branch: str, version: int) -> Path | None:
        """The tileset.json of a (branch, version) when this process has already located it; no building."""
        path = _KNOWN.get((self._key(), kind, branch, version))
        return path if path is not None and path.exists() else None

    def file(self, kind: str, branch: str, version: int, rel: str, build: bool = True) -> tuple[Path, bool] | None:
        """A content or subtree file of a tileset, and whether its URL is content-addressed (never changes).

        ``rel`` is checked before any file system access: no empty, ``.`` or ``..`` segments, no absolute path,
        no backslash or NUL, and the resolved file must lie inside the tileset's folder. Building and terrain files
        are looked up in every root (their names are content hashes); point-cloud files beside their tileset.json.
        With ``build=False`` a file that needs the tileset built (or located) first gives None instead."""
        if kind not in KINDS:
            raise TileNotFound(f"unknown tileset {kind!r}; tilesets: {', '.join(KINDS)}")
        parts = rel.split("/")
        if rel.startswith("/") or "\\" in rel or "\0" in rel or any(p in _BAD_PART for p in parts) \
                or any(p.startswith(".") for p in parts):
            raise TileNotFound(f"no such file {rel!r}")
        if kind == "buildings":
            if parts[0] != "content" or not rel.endswith(".glb") or len(parts) != 3 or not _HEX.match(parts[2][:-4]):
                raise TileNotFound(f"no such file {rel!r} in the buildings tileset")
            immutable = True
        elif kind == "terrain":
            if len(parts) < 2 or not _HEX.match(parts[0]):
                raise TileNotFound(f"no such file {rel!r} in the terrain tileset")
            immutable = True
        else:
            immutable = False
        if kind == "pointcloud":
            known = self.known(kind, branch, version)
            bases = [known.parent] if known is not None else []
        else:
            bases = [r / kind for r in self.roots + (self.digest_roots if kind in _DIGEST_KINDS else [])]
        found = self._first(bases, rel)
        if found is not None or not build:
            return (found, immutable) if found is not None else None
        tileset = self.tileset(kind, branch, version)  # (re)build: the tiles may have been deleted
        found = self._first([tileset.parent] if kind == "pointcloud" else bases, rel)
        if found is None:
            raise TileNotFound(f"no such file {rel!r} in the {kind} tileset of {branch}@{version}")
        return found, immutable

    @classmethod
    def _first(cls, bases: list[Path], rel: str) -> Path | None:
        for base in bases:
            path = cls._inside(base, rel)
            if path is not None and path.is_file():
                return path
        return None

    @staticmethod
    def _inside(base: Path, rel: str) -> Path | None:
        """``base/rel`` when it resolves (symlinks included) to a path inside ``base``; else None."""
        b = base.resolve()
        p = (b / rel).resolve()
        return p if p.is_relative_to(b) and p != b else None


def _file(path: Path) -> Path | None:
    return path if path.is_file() else None
