"""Tilesets per (branch, version), built on first request into ``<store>/tiles/`` and shared between processes.

Layout (derived data: safe to delete, rebuilt on demand)::

    tiles/buildings/content/ab/<hash>.glb       content-addressed building tiles, shared by all versions
    tiles/buildings/meta/ab/<hash>.json         centre + region of each, so unchanged tiles are never re-read
    tiles/buildings/v<F>.<branch>.<version>.tileset.json
    tiles/terrain/<digest>/{content,subtrees}/  one implicit tileset per terrain input (DTM + imagery)
    tiles/terrain/<digest>.json                 its tileset.json (URIs start with <digest>/)
    tiles/pointcloud/<digest>/                  the point-cloud tileset of one set of clouds (twin.tiles.pointcloud)
    tiles/<kind>/.lock                          builders of one kind serialise on this flock

Files appear by atomic rename, so a reader (another uvicorn worker) sees a whole file or none; a builder that
finds the file it wanted already present after taking the lock uses it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twin.errors import NotFound
from twin.store import ASSETS, Query, Store, StoreError
from twin.store.files import writer_lock
from twin.tiles import buildings_tileset as buildings_mod
from twin.tiles import terrain as terrain_mod
from twin.tiles.buildings import fold_parts

KINDS = ("buildings", "terrain", "pointcloud")
Progress = Callable[[str, float], None]
_HEX = re.compile(r"^[0-9a-f]{8,64}$")
_BAD_PART = {"", ".", ".."}
_KNOWN: dict[tuple[str, str, str, int], Path] = {}  # (cache root, kind, branch, version) → tileset.json


class TileNotFound(NotFound):
    """Unknown branch, version, tileset or file — or a tileset the store has no data for (HTTP 404)."""


class TileCache:
    """Builds and locates the tilesets of one store; cheap to create per request."""

    def __init__(self, store: Store, root: Path | None = None, workers: int = 1) -> None:
        self.store = store
        self.root = Path(root) if root is not None else store.root / "tiles"
        self.workers = workers
        self.last_build: Any = None  # the BuildResult of the latest buildings build (tests, the CLI)

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
        key = (str(self.root), kind, branch, version)
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

    def _lock(self, kind: str):
        (self.root / kind).mkdir(parents=True, exist_ok=True)
        return writer_lock(self.root / kind / ".lock", timeout=3600.0)

    def _buildings(self, branch: str, version: int, progress: Progress | None) -> Path:
        base = self.root / "buildings"
        out = base / f"v{buildings_mod.FORMAT}.{branch}.{version}.tileset.json"
        if out.exists():
            return out
        with self._lock("buildings"):
            if out.exists():
                return out
            feats = self.store.features(branch, as_of=version, query=Query(types=["Building", "BuildingPart"]))
            feats = fold_parts(feats)
            self.last_build = buildings_mod.build_buildings(
                feats, self.store.crs, base, out, workers=self.workers, progress=progress,
                asset={"tilesetVersion": f"{branch}@{version}"})
        return out

    def terrain_inputs(self, branch: str, version: int) -> dict[str, Any]:
        inputs = terrain_mod.terrain_inputs(self.store, branch, version)
        if inputs is None:
            raise TileNotFound(f"no terrain on branch {branch!r} at version {version}: the store has neither a DTM "
                               "product (twin build) nor point clouds")
        return inputs

    def _terrain(self, branch: str, version: int, progress: Progress | None) -> Path:
        inputs = self.terrain_inputs(branch, version)
        base = self.root / "terrain"
        out = base / f"{terrain_mod.terrain_digest(inputs)}.json"
        if out.exists():
            return out
        with self._lock("terrain"):
            if out.exists():
                return out
            return terrain_mod.build_terrain_tileset(inputs, base, progress)

    def _pointcloud_dir(self, branch: str, version: int) -> Path:
        assets = self.store.features(branch, as_of=version, query=Query(collection=ASSETS))
        key = sorted([a["id"], a.get("checksum"), a.get("kind")] for a in assets
                     if a.get("kind") in ("pointcloud", "imagery"))
        if not any(k[2] == "pointcloud" for k in key):
            raise TileNotFound(f"no point clouds on branch {branch!r} at version {version}")
        digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]
        return self.root / "pointcloud" / digest

    def _pointcloud(self, branch: str, version: int, progress: Progress | None) -> Path:
        try:
            from twin.tiles.pointcloud import pointcloud_tileset_for_store
        except ImportError as exc:
            raise TileNotFound(f"point-cloud tiles are not available in this build ({exc})") from None
        out_dir = self._pointcloud_dir(branch, version)
        if (out_dir / "tileset.json").exists():
            return out_dir / "tileset.json"
        kwargs: dict[str, Any] = {"progress": progress}
        params = inspect.signature(pointcloud_tileset_for_store).parameters
        if "branch" in params:
            kwargs["branch"] = branch
        if "as_of" in params:
            kwargs["as_of"] = version
        if "workers" in params:
            kwargs["workers"] = self.workers
        with self._lock("pointcloud"):
            if (out_dir / "tileset.json").exists():
                return out_dir / "tileset.json"
            try:
                return Path(pointcloud_tileset_for_store(self.store, out_dir, **kwargs))
            except LookupError as exc:
                raise TileNotFound(str(exc)) from None

    # ------------------------------------------------------------------ files
    def known(self, kind: str, branch: str, version: int) -> Path | None:
        """The tileset.json of a (branch, version) when this process has already located it; no building."""
        path = _KNOWN.get((str(self.root), kind, branch, version))
        return path if path is not None and path.exists() else None

    def file(self, kind: str, branch: str, version: int, rel: str, build: bool = True) -> tuple[Path, bool] | None:
        """A content or subtree file of a tileset, and whether its URL is content-addressed (never changes).

        ``rel`` is checked before any file system access: no empty, ``.`` or ``..`` segments, no absolute path,
        no backslash or NUL, and the resolved file must lie inside the tileset's folder. With ``build=False`` a
        file that needs the tileset built (or located) first gives None instead."""
        if kind not in KINDS:
            raise TileNotFound(f"unknown tileset {kind!r}; tilesets: {', '.join(KINDS)}")
        parts = rel.split("/")
        if rel.startswith("/") or "\\" in rel or "\0" in rel or any(p in _BAD_PART for p in parts) \
                or any(p.startswith(".") for p in parts):
            raise TileNotFound(f"no such file {rel!r}")
        if kind == "buildings":
            if parts[0] != "content" or not rel.endswith(".glb") or len(parts) != 3 or not _HEX.match(parts[2][:-4]):
                raise TileNotFound(f"no such file {rel!r} in the buildings tileset")
            base, immutable = self.root / "buildings", True
        elif kind == "terrain":
            if len(parts) < 2 or not _HEX.match(parts[0]):
                raise TileNotFound(f"no such file {rel!r} in the terrain tileset")
            base, immutable = self.root / "terrain", True
        else:
            base, immutable = None, False
        if base is None and not build:
            known = self.known(kind, branch, version)
            base = known.parent if known is not None else None
        path = self._inside(base, rel) if base is not None else None
        if path is None or not path.is_file():
            if not build:
                return None
            tileset = self.tileset(kind, branch, version)  # (re)build: the cache may have been deleted
            base = base or tileset.parent
            path = self._inside(base, rel)
            if path is None or not path.is_file():
                raise TileNotFound(f"no such file {rel!r} in the {kind} tileset of {branch}@{version}")
        return path, immutable

    @staticmethod
    def _inside(base: Path, rel: str) -> Path | None:
        """``base/rel`` when it resolves (symlinks included) to a path inside ``base``; else None."""
        b = base.resolve()
        p = (b / rel).resolve()
        return p if p.is_relative_to(b) and p != b else None
