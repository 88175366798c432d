"""The buildings tileset: a quadtree on a fixed grid of the store CRS, LoD by distance, content-addressed GLBs.

Layout. Leaf tiles are ``leaf_size`` squares aligned to multiples of ``leaf_size`` in the store CRS; a building
belongs to the leaf holding the centre of its bounding box. A tile ``rank`` levels above the leaves covers
``2^rank × 2^rank`` leaves. Because the grid is anchored to the CRS and not to the city's extent, a building edit
or a new district never moves the other buildings to other tiles.

LoD (REPLACE refinement). Leaves show each building's finest LoD (2.2, else 1.3, else 1.2) and have geometric error
0. A rank-1 tile shows LoD1.2 of every building below it; rank ``r ≥ 2`` shows LoD1.2 of the buildings at least
``16 m × 2^(r-2)`` in size (the larger of height and footprint diagonal), at most :data:`MAX_FEATURES` of them.
A tile's geometric error is the larger of the largest roof deviation of its LoD1.2 blocks from the finest LoD and
the size of the largest building it leaves out, raised where needed to stay above its children's errors.

Content addressing. A tile's GLB is named by the hash of what it shows: the building ids with the store versions
of their rows, the LoD policy, the CRS, the property list and :data:`FORMAT`. Files are shared by every branch and
version; a commit that changes one building re-encodes only the tiles listing it. A ``meta`` JSON next to each
GLB keeps what the tileset.json needs (centre, region) so unchanged tiles are never decoded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twin.compute import executor, shared
from twin.tiles.buildings import COARSE, FINEST, encode_buildings, iter_faces, lod_keys, pick_lod
from twin.tiles.ecef import translation
from twin.tiles.metadata import BUILDING_PROPERTIES

FORMAT = 3  # bump when the GLB or tileset layout changes: new names, old files are never reused by mistake
LEAF_SIZE = 256.0  # store CRS units (metres for projected CRSs)
RANK2_MIN_SIZE = 16.0  # metres: smallest building kept at rank 2, doubled per rank above
MAX_FEATURES = 4000  # buildings per coarse tile at most (the largest are kept)
MIN_ERROR = 0.5  # metres: floor of a non-leaf tile's geometric error
Progress = Callable[[str, float], None]


@dataclass
class Summary:
    """What tiling needs to know about a building without encoding it."""

    index: int
    id: str
    version: int
    cx: float
    cy: float
    size: float
    lod_error: float  # roof deviation of the coarse LoD from the finest, metres


@dataclass
class Tile:
    """One tile of the plan: its key, members (indices into the summaries), LoD policy and children."""

    key: tuple[int, int, int]  # (rank, i, j)
    members: list[int] = field(default_factory=list)
    excluded_size: float = 0.0
    children: list[tuple[int, int, int]] = field(default_factory=list)
    policy: str = FINEST
    content: str | None = None  # hash
    error: float = 0.0


def summarise(index: int, b: dict[str, Any]) -> Summary | None:
    """Centre, size and LoD1.2 error of a building; None when it has no LoD geometry."""
    keys = lod_keys(b)
    if not keys:
        return None
    coarse = np.asarray(b["lods"][pick_lod(b, COARSE)]["vertices"], dtype=np.float64).reshape(-1, 3)
    lo, hi = coarse.min(axis=0), coarse.max(axis=0)
    diag = float(math.hypot(hi[0] - lo[0], hi[1] - lo[1]))
    error, height = 0.0, float(hi[2] - lo[2])
    fine_key = pick_lod(b, FINEST)
    if fine_key != pick_lod(b, COARSE):
        fine = b["lods"][fine_key]
        fv = np.asarray(fine["vertices"], dtype=np.float64).reshape(-1, 3)
        roof = [i for rings, kind in iter_faces(fine) if kind == "RoofSurface" for r in rings for i in r]
        z = fv[roof, 2] if roof else fv[:, 2]
        error = float(max(abs(z.max() - hi[2]), abs(hi[2] - z.min()), abs(fv[:, 2].max() - hi[2])))
        height = max(height, float(fv[:, 2].max() - fv[:, 2].min()))
    return Summary(index, b["id"], int((b.get("_store") or {}).get("version", 0)), float((lo[0] + hi[0]) / 2),
                   float((lo[1] + hi[1]) / 2), max(diag, height), error)


def min_size(rank: int) -> float:
    """Smallest building a tile of ``rank`` shows (0: all)."""
    return 0.0 if rank <= 1 else RANK2_MIN_SIZE * 2 ** (rank - 2)


def plan(summaries: list[Summary], leaf_size: float = LEAF_SIZE) -> tuple[dict[tuple[int, int, int], Tile],
                                                                          tuple[int, int, int] | None]:
    """The quadtree: tiles by key, and the root key (None when there is no building)."""
    if not summaries:
        return {}, None
    tiles: dict[tuple[int, int, int], Tile] = {}
    leaves: dict[tuple[int, int], list[int]] = {}
    for k, s in enumerate(summaries):
        leaves.setdefault((math.floor(s.cx / leaf_size), math.floor(s.cy / leaf_size)), []).append(k)
    for (i, j), members in leaves.items():
        tiles[(0, i, j)] = Tile((0, i, j), members, policy=FINEST)
    rank, level = 0, list(leaves)
    while len(level) > 1:
        rank += 1
        parents: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for i, j in level:
            parents.setdefault((i >> 1, j >> 1), []).append((i, j))
        for (pi, pj), kids in parents.items():
            t = Tile((rank, pi, pj), policy=COARSE, children=[(rank - 1, i, j) for i, j in sorted(kids)])
            tiles[t.key] = t
        level = list(parents)
    top = (rank, *level[0])
    # members of coarse tiles, bottom-up: every building below, filtered by size, capped
    for r in range(1, rank + 1):
        for t in (t for t in tiles.values() if t.key[0] == r):
            below = [m for c in t.children for m in _all_below(tiles, c)]
            keep = [m for m in below if summaries[m].size >= min_size(r)]
            keep.sort(key=lambda m: (-summaries[m].size, summaries[m].id))
            t.members = keep[:MAX_FEATURES]
            shown = set(t.members)
            t.excluded_size = max((summaries[m].size for m in below if m not in shown), default=0.0)
    # the root is the highest tile with more than one child (a chain of single children adds nothing)
    root = top
    while len(tiles[root].children) == 1:
        root = tiles[root].children[0]
    return tiles, root


def _all_below(tiles: dict[tuple[int, int, int], Tile], key: tuple[int, int, int]) -> list[int]:
    t = tiles[key]
    if key[0] == 0:
        return t.members
    return [m for c in t.children for m in _all_below(tiles, c)]


def content_hash(summaries: list[Summary], members: list[int], policy: str, crs: str) -> str:
    """Name of a tile's GLB: the hash of everything its bytes depend on."""
    ids = sorted((summaries[m].id, summaries[m].version) for m in members)
    key = [FORMAT, crs, policy, [p.name for p in BUILDING_PROPERTIES], ids]
    return hashlib.sha256(json.dumps(key, separators=(",", ":")).encode()).hexdigest()[:40]


def assign_errors(tiles: dict[tuple[int, int, int], Tile], summaries: list[Summary], root: tuple[int, int, int]
                  ) -> None:
    """Geometric errors bottom-up: 0 at leaves; above, what the tile gets wrong, kept above its children's."""
    def visit(key: tuple[int, int, int]) -> float:
        t = tiles[key]
        child_max = max((visit(c) for c in t.children), default=None)
        if key[0] == 0:
            t.error = 0.0
            return 0.0
        own = max([summaries[m].lod_error for m in t.members] + [t.excluded_size, MIN_ERROR])
        t.error = own if child_max is None else max(own, child_max + MIN_ERROR)
        return t.error

    visit(root)


@dataclass
class BuildResult:
    """What a tileset build did: the tileset.json path, tile counts, which contents were encoded."""

    path: Path
    tiles: int = 0
    buildings: int = 0
    encoded: list[str] = field(default_factory=list)
    reused: int = 0
    seconds: float = 0.0


def _content_paths(root: Path, h: str) -> tuple[Path, Path]:
    return root / "content" / h[:2] / f"{h}.glb", root / "meta" / h[:2] / f"{h}.json"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` so readers (other workers) see the old file or the whole new one, never a torn one; a write
    the disk refuses (full, read-only) raises and leaves no temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _encode_task(args: tuple[str, list[int], str, str, str]) -> tuple[str, dict[str, Any] | None]:
    """Encode one tile and write its GLB then its meta (the meta's presence marks a complete pair). Members are
    indices into the building list the executor shares (:func:`twin.compute.shared`)."""
    h, members, policy, crs, root = args
    everything: list[dict[str, Any]] = shared()
    buildings = [everything[m] for m in members]
    out = encode_buildings(buildings, policy, crs)
    glb_path, meta_path = _content_paths(Path(root), h)
    if out is None:
        meta: dict[str, Any] | None = None
        atomic_write(meta_path, b"null")
    else:
        glb, meta = out
        atomic_write(glb_path, glb)
        atomic_write(meta_path, json.dumps(meta).encode())
    return h, meta


def build_buildings(buildings: list[dict[str, Any]], crs: str, root: Path, out: Path, *, workers: int = 1,
                    progress: Progress | None = None, leaf_size: float = LEAF_SIZE,
                    asset: dict[str, Any] | None = None) -> BuildResult:
    """Tile ``buildings`` (store dicts) into ``root`` (content cache) and write the tileset JSON to ``out``."""
    import time

    t0 = time.perf_counter()
    step = progress or (lambda stage, fraction: None)
    summaries = [s for s in (summarise(i, b) for i, b in enumerate(buildings)) if s is not None]
    tiles, top = plan(summaries, leaf_size)
    result = BuildResult(out, tiles=len(tiles), buildings=len(summaries))
    metas: dict[str, dict[str, Any] | None] = {}
    todo: list[tuple[str, list[int], str, str, str]] = []
    seen: set[str] = set()
    for t in tiles.values():
        if not t.members:
            continue
        t.content = content_hash(summaries, t.members, t.policy, crs)
        if t.content in seen:
            continue
        seen.add(t.content)
        meta_path = _content_paths(root, t.content)[1]
        if meta_path.exists() and (_content_paths(root, t.content)[0].exists() or meta_path.read_bytes() == b"null"):
            metas[t.content] = json.loads(meta_path.read_text())
            result.reused += 1
        else:
            members = [summaries[m].index for m in sorted(t.members, key=lambda m: summaries[m].id)]
            todo.append((t.content, members, t.policy, crs, str(root)))
    step("buildings: encode tiles", 0.0)
    # forked encoders read the buildings from this process's memory, only indices are sent (unpickling the dicts
    # cost as much as encoding them); where fork is missing they are pickled once per worker
    with executor(workers, tasks=len(todo), start="fork", shared=buildings) as ex:
        for n, (h, meta) in enumerate(ex.map(_encode_task, todo), 1):
            metas[h] = meta
            step("buildings: encode tiles", n / len(todo))
    step("buildings: encode tiles", 1.0)
    result.encoded = [task[0] for task in todo]
    doc = tileset_json(tiles, top, summaries, metas, asset or {})
    atomic_write(out, json.dumps(doc, separators=(",", ":")).encode())
    result.seconds = time.perf_counter() - t0
    return result


def _union(regions: list[list[float]]) -> list[float]:
    r = np.asarray(regions)
    return [float(r[:, 0].min()), float(r[:, 1].min()), float(r[:, 2].max()), float(r[:, 3].max()),
            float(r[:, 4].min()), float(r[:, 5].max())]


def tileset_json(tiles: dict[tuple[int, int, int], Tile], root: tuple[int, int, int] | None,
                 summaries: list[Summary], metas: dict[str, dict[str, Any] | None], asset: dict[str, Any]
                 ) -> dict[str, Any]:
    """The explicit tileset: region volumes (content ∪ children), transforms relative to the nearest ancestor's."""
    doc: dict[str, Any] = {"asset": {"version": "1.1", "generator": "twin", **asset}}
    if root is None:  # no building: a valid, empty tileset
        doc.update(geometricError=0.0, root={"boundingVolume": {"region": [0, 0, 0, 0, 0, 0]},
                                             "geometricError": 0.0, "refine": "REPLACE"})
        return doc
    assign_errors(tiles, summaries, root)

    def node(key: tuple[int, int, int], origin: np.ndarray) -> dict[str, Any] | None:
        t = tiles[key]
        meta = metas.get(t.content) if t.content else None
        out: dict[str, Any] = {"geometricError": round(t.error, 3), "refine": "REPLACE"}
        regions = []
        here = origin
        if meta:
            here = np.asarray(meta["center"])
            out["transform"] = translation(here - origin)
            h = t.content
            out["content"] = {"uri": f"content/{h[:2]}/{h}.glb", "boundingVolume": {"region": meta["region"]}}
            regions.append(meta["region"])
        kids = [c for c in (node(k, here) for k in t.children) if c is not None]
        regions += [c["boundingVolume"]["region"] for c in kids]
        if not regions:
            return None
        out["boundingVolume"] = {"region": _union(regions)}
        if kids:
            out["children"] = kids
        return out

    tree = node(root, np.zeros(3))
    if tree is None:
        tree = {"boundingVolume": {"region": [0, 0, 0, 0, 0, 0]}, "geometricError": 0.0, "refine": "REPLACE"}
    w, s, e, n = tree["boundingVolume"]["region"][:4]
    diag = 6_371_000.0 * math.hypot((e - w) * math.cos((s + n) / 2), n - s)
    doc["geometricError"] = round(max(2 * tree["geometricError"], diag, MIN_ERROR), 3)
    doc["root"] = tree
    return doc
