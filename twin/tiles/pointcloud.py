"""Point clouds as OGC 3D Tiles 1.1: an octree of glTF (GLB) POINTS tiles with ADD refinement, built out of core.

Pipeline (see docs/tiles_pointcloud.md):

1. headers: CRS, units and extent of each LAS/LAZ (the ingest checks, :mod:`twin.sources.pointcloud`); a local
   east-north-up frame at the data's centre and a root cube in it;
2. stream: chunks are read, transformed to ECEF by pyproj then to ENU, coloured, Morton-coded and routed to
   partitions (octree cells ``lp`` levels down), buffered in memory and spilled to disk past a budget; files are
   split into point ranges over ``workers`` processes;
3. octree: each partition is sorted once and subsampled level by level (one point per voxel of the node's spacing,
   the rest passed down; small cubes keep everything); partitions run in parallel, the nodes above ``lp`` are merged;
4. tileset.json (``asset.version`` 1.1): ENU root ``transform``, tight ``box`` volumes that contain each node's
   points and its children's, geometric error = node spacing (0 for leaves).

The output appears atomically: everything is written to a sibling temporary folder that replaces ``out_dir`` at the
end, so a failure leaves no partial tileset (and an older tileset stays as it was).
"""

from __future__ import annotations

import json
import math
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from twin.compute import Executor, executor
from twin.sources import SourceError
from twin.sources.imagery import acquired_of as raster_acquired
from twin.sources.imagery import raster_info
from twin.tiles.pointcloud_colour import Image, ImageSampler, prepare_image
from twin.tiles.pointcloud_octree import MAX_LEAF, VOXEL_BITS, empty_records, process_partition, write_node
from twin.tiles.pointcloud_source import Frame, Reader, Source, Spill, inspect, load_partition, make_frame

Progress = Callable[[str, float], None]
CHUNK = 1_000_000  # points per read
SPILL_BUDGET = 512 * 2**20  # bytes of buffered records before they go to disk (≈ 14 M points)
PARTITION_TARGET = 2_000_000  # points per partition aimed at (a surface spreads over 4^lp cells)
MAX_LP = 5
FORMAT = 1  # bumped when the output changes, so cached tilesets are rebuilt


@dataclass
class ImageInput:
    """An image offered for colouring points without RGB: its path, band names (None: from the file) and date."""

    path: Path
    bands: list[str] | None = None
    acquired: str | None = None


def build_pointcloud_tileset(paths: Sequence[Path], crs: str | Sequence[str | None] | None, out_dir: Path,
                             imagery: Sequence[Path | ImageInput] = (), progress: Progress | None = None,
                             workers: int = 1, *, chunk: int = CHUNK, spill_budget: int = SPILL_BUDGET,
                             max_leaf: int = MAX_LEAF, extras: dict[str, Any] | None = None) -> Path:
    """Tile LAS/LAZ files into ``out_dir/tileset.json`` + GLB content; returns the tileset.json path.

    ``crs`` declares the CRS of files without one (one for all, or one per path; checked against headers that have
    one). ``imagery`` colours files without RGB (bands named red/green/blue, most recent first). Errors (bad file,
    CRS that cannot be placed on the globe) raise ``SourceError`` naming the file and leave ``out_dir`` untouched.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no point-cloud files to tile")
    crss = list(crs) if isinstance(crs, (list, tuple)) else [crs] * len(paths)
    if len(crss) != len(paths):
        raise ValueError(f"{len(crss)} CRSs for {len(paths)} files")
    progress = progress or (lambda stage, frac: None)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir()
        _build(paths, crss, tmp, list(imagery), progress, max(1, int(workers)), chunk, spill_budget, max_leaf,
               extras or {})
        _replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "tileset.json"


def _replace(tmp: Path, out_dir: Path) -> None:
    """Move the finished tileset into place (the old one, if any, is removed after the swap)."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)


def _utc(value: Any) -> str | None:
    """An acquisition time as UTC ISO text (sortable), or None."""
    if value is None or value == "":
        return None
    t = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _images(imagery: list[Path | ImageInput]) -> list[Image]:
    """Images with red/green/blue bands, most recent first (undated last)."""
    out = []
    for item in imagery:
        spec = item if isinstance(item, ImageInput) else ImageInput(Path(item))
        bands, acquired = spec.bands, spec.acquired
        if bands is None or acquired is None:
            info = raster_info(Path(spec.path))
            bands = bands or info["bands"]
            acquired = acquired or raster_acquired(info)
        img = prepare_image(Path(spec.path), bands, _utc(acquired))
        if img is not None:
            out.append(img)
    return sorted(out, key=lambda i: i.acquired or "", reverse=True)


def _partition_level(total: int) -> int:
    """How many levels down the partitions are: ~PARTITION_TARGET points each on a surface."""
    if total <= PARTITION_TARGET:
        return 1
    return min(MAX_LP, math.ceil(math.log(total / PARTITION_TARGET, 4)) + 1)


def _ranges(sources: list[Source], workers: int, chunk: int) -> list[tuple[int, int, int]]:
    """(source index, start, count) read tasks: whole files, split into ``workers`` pieces when large."""
    tasks = []
    for i, s in enumerate(sources):
        pieces = max(1, min(workers, s.count // max(chunk, 1)))
        bounds = np.linspace(0, s.count, pieces + 1).astype(np.int64)
        tasks += [(i, int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    return tasks


def _read_task(args: tuple) -> tuple[Any, ...]:
    """Worker: read one range into spill files; returns ("ok", histogram, {partition: file}) or the error."""
    src, frame, images, start, count, chunk, folder, tag, lp, budget = args
    sampler = ImageSampler(images) if images and src.rgb_shift is None else None
    try:
        spill = Spill(Path(folder), tag, lp, budget)
        for rec in Reader(src, frame, sampler, parallel=False).read(start, count, chunk):
            spill.add(rec)
        spill.flush()
        return "ok", spill.hist, spill.files
    except SourceError as exc:  # SourceError does not survive pickling: send its parts
        return "error", exc.path, exc.problem
    finally:
        if sampler is not None:
            sampler.close()


def _octree_task(args: tuple) -> tuple[list[dict[str, Any]], dict[tuple[int, int], np.ndarray]]:
    """Worker: load one partition from its spill files, subsample it and write its nodes."""
    files, lp, upper_counts, out_dir, max_leaf = args
    rec = load_partition([], files)
    for f in files:
        Path(f).unlink(missing_ok=True)
    return process_partition(rec, lp, upper_counts, Path(out_dir), max_leaf)


def _pool(workers: int) -> Executor:
    """Worker processes from a clean fork server that imported this module once (forking this process can deadlock
    in PROJ/GDAL state; spawn where there is no fork server); one worker: the calling process."""
    return executor(workers, start="forkserver", preload=["twin.tiles.pointcloud"])


def _build(paths: list[Path], crss: list[str | None], out: Path, imagery: list[Path | ImageInput],
           progress: Progress, workers: int, chunk: int, budget: int, max_leaf: int, extras: dict[str, Any]) -> None:
    """Write the tileset into ``out`` (a fresh folder)."""
    progress("pointcloud: headers", 0.0)
    sources = [inspect(p, c) for p, c in zip(paths, crss, strict=True)]
    images = _images(imagery) if any(s.rgb_shift is None for s in sources) else []
    frame = make_frame(sources)
    total = sum(s.count for s in sources)
    lp = _partition_level(total)
    spill_dir = out / "_spill"
    tasks = _ranges(sources, workers, chunk)

    # 1. stream every file into partitions
    hist = np.zeros(8 ** lp, dtype=np.int64)
    files: dict[int, list[str]] = {}
    memory: dict[int, list[np.ndarray]] = {}
    pool = _pool(workers)
    serial = pool.workers == 1
    try:
        if serial:
            spill = Spill(spill_dir, "0", lp, budget)
            sampler = ImageSampler(images) if images else None
            done = 0
            try:
                for i, start, count in tasks:
                    src = sources[i]
                    reader = Reader(src, frame, sampler if src.rgb_shift is None else None)
                    for rec in reader.read(start, count, chunk):
                        spill.add(rec)
                        done += len(rec)
                        progress("pointcloud: reading", done / total)
            finally:
                if sampler is not None:
                    sampler.close()
            hist = spill.hist
            memory = spill.parts
            files = {k: [v] for k, v in spill.files.items()}
        else:
            args = [(sources[i], frame, images, start, count, chunk, str(spill_dir), f"{n}", lp, budget // workers)
                    for n, (i, start, count) in enumerate(tasks)]
            for n, res in enumerate(pool.map(_read_task, args)):  # in task order
                if res[0] == "error":
                    raise SourceError(res[1], res[2])
                hist += res[1]
                for k, f in res[2].items():
                    files.setdefault(k, []).append(f)
                progress("pointcloud: reading", (n + 1) / len(args))
        if int(hist.sum()) != total:
            raise SourceError(", ".join(map(str, paths)), f"read {int(hist.sum()):,} points where the headers "
                                                          f"promise {total:,}")

        # 2. the octree, partition by partition
        upper_counts = [hist.reshape(8 ** level, -1).sum(axis=1) for level in range(lp)]
        parts = [int(k) for k in np.flatnonzero(hist)]
        nodes: list[dict[str, Any]] = []
        upper: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}

        def collect(part: int, result: tuple[list[dict[str, Any]], dict[tuple[int, int], np.ndarray]]) -> None:
            nodes.extend(result[0])
            for key, rec in result[1].items():
                upper.setdefault(key, []).append((part, rec))

        if serial:
            for n, k in enumerate(parts):
                rec = load_partition(memory.pop(k, []), files.get(k, []))
                for f in files.get(k, []):
                    Path(f).unlink(missing_ok=True)
                collect(k, process_partition(rec, lp, upper_counts, out, max_leaf))
                del rec
                progress("pointcloud: octree", (n + 1) / len(parts))
        else:
            # largest partitions first, so no worker is left with a big one at the end
            order = sorted(parts, key=lambda k: -int(hist[k]))
            args2 = [(files[k], lp, upper_counts, str(out), max_leaf) for k in order]
            for n, (k, result) in enumerate(zip(order, pool.map(_octree_task, args2), strict=True)):
                collect(k, result)
                progress("pointcloud: octree", (n + 1) / len(args2))
    finally:
        pool.close()  # waits for running tasks (they write spill files) before the spill folder goes
        shutil.rmtree(spill_dir, ignore_errors=True)
    for (level, key), pieces in sorted(upper.items()):  # pieces in partition order: the same output for any workers
        recs = [rec for _, rec in sorted(pieces, key=lambda p: p[0])]
        nodes.append(write_node(out, level, key, np.concatenate(recs) if recs else empty_records()))

    # 3. tileset.json
    progress("pointcloud: tileset", 1.0)
    tileset = _tileset(nodes, frame, sources, images, total, extras)
    (out / "tileset.json").write_text(json.dumps(tileset, separators=(",", ":")), encoding="utf-8")


def _tileset(nodes: list[dict[str, Any]], frame: Frame, sources: list[Source], images: list[Image], total: int,
             extras: dict[str, Any]) -> dict[str, Any]:
    """The tileset.json dict: explicit octree with box volumes in the root's ENU frame."""
    by_key: dict[tuple[int, int], dict[str, Any]] = {(n["level"], n["key"]): n for n in nodes}
    for level, key in list(by_key):  # every ancestor exists (normally with content already)
        while level > 0:
            level, key = level - 1, key >> 3
            if (level, key) in by_key:
                break
            by_key[(level, key)] = {"level": level, "key": key, "count": 0}
    children: dict[tuple[int, int], list[tuple[int, int]]] = {k: [] for k in by_key}
    for level, key in by_key:
        if level > 0:
            children[(level - 1, key >> 3)].append((level, key))
    lo: dict[tuple[int, int], np.ndarray] = {}
    hi: dict[tuple[int, int], np.ndarray] = {}
    for k in sorted(by_key, key=lambda t: -t[0]):  # deepest first: children's bounds are known
        n = by_key[k]
        los = [np.asarray(n["lo"])] if "lo" in n else []
        his = [np.asarray(n["hi"])] if "hi" in n else []
        los += [lo[c] for c in children[k]]
        his += [hi[c] for c in children[k]]
        lo[k], hi[k] = np.min(los, axis=0), np.max(his, axis=0)

    def tile(k: tuple[int, int]) -> dict[str, Any]:
        level = k[0]
        centre = (lo[k] + hi[k]) / 2
        half = (hi[k] - lo[k]) / 2 + 1e-3 + 1e-6 * float(np.abs(hi[k] - lo[k]).max())  # float32 rounding
        t: dict[str, Any] = {
            "boundingVolume": {"box": [*(float(v) for v in centre), float(half[0]), 0.0, 0.0, 0.0,
                                       float(half[1]), 0.0, 0.0, 0.0, float(half[2])]},
            "geometricError": _spacing(frame, level) if children[k] else 0.0,
        }
        if "uri" in by_key[k]:
            t["content"] = {"uri": by_key[k]["uri"]}
        if children[k]:
            t["children"] = [tile(c) for c in sorted(children[k])]
        return t

    root = tile((0, 0))
    root["refine"] = "ADD"
    root["transform"] = frame.matrix()
    colour = {
        "sources": [{"path": s.path, "colour": "rgb" if s.rgb_shift is not None else ("imagery" if images else
                                                                                         "palette")}
                    for s in sources],
        "images": [i.describe() for i in images],
        "color_0": "linear RGB (sRGB values converted), normalized uint16",
    }
    return {
        "asset": {"version": "1.1", "generator": "twin.tiles.pointcloud"},
        "geometricError": 2 * _spacing(frame, 0),
        "root": root,
        "extras": {"twin": {"format": FORMAT, "points": total, "colour": colour,
                            "frame": {"cube_min": frame.cube_min.tolist(), "size": frame.size,
                                      "voxels_per_side": 2 ** VOXEL_BITS}, **extras}},
    }


def _spacing(frame: Frame, level: int) -> float:
    """Voxel size of a level-``level`` node: its geometric error."""
    return frame.size / 2 ** (level + VOXEL_BITS)


def pointcloud_tileset_for_store(store: Any, out_dir: Path, progress: Progress | None = None, *, branch: str = "main",
                                 as_of: Any = None, workers: int = 1) -> Path:
    """The tileset of a store's point-cloud assets (coloured from its imagery assets); returns tileset.json.

    A tileset already in ``out_dir`` built from the same asset versions is reused. Raises ``LookupError`` when the
    branch has no point clouds.
    """
    from twin.store import ASSETS, Query

    assets = store.features(branch=branch, as_of=as_of, query=Query(collection=ASSETS))
    clouds = sorted((a for a in assets if a.get("kind") == "pointcloud"), key=lambda a: a["id"])
    if not clouds:
        raise LookupError(f"no point-cloud assets on branch {branch!r}")
    images = sorted((a for a in assets if a.get("kind") == "imagery"), key=lambda a: a["id"])
    inputs = {
        "pointclouds": [[a["id"], a.get("checksum"), a["path"], a.get("crs")] for a in clouds],
        "imagery": [[a["id"], a.get("checksum"), a["path"], (a.get("properties") or {}).get("bands"),
                     a.get("acquired")] for a in images],
    }
    tileset = Path(out_dir) / "tileset.json"
    if tileset.exists():
        try:
            twin = json.loads(tileset.read_text(encoding="utf-8")).get("extras", {}).get("twin", {})
            if twin.get("format") == FORMAT and twin.get("inputs") == inputs:
                return tileset
        except (OSError, ValueError):
            pass  # unreadable: rebuild
    imagery = [ImageInput(Path(a["path"]), (a.get("properties") or {}).get("bands"),
                          str(a["acquired"]) if a.get("acquired") else None) for a in images]
    return build_pointcloud_tileset([Path(a["path"]) for a in clouds], [a.get("crs") for a in clouds], out_dir,
                                    imagery, progress, workers, extras={"inputs": inputs})
