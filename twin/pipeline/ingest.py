"""Ingest: register source files in the catalog and load what they hold, as one atomic commit.

Everything is read and validated before anything is written, so a bad file anywhere in the batch leaves the
store exactly as it was. Re-ingesting unchanged bytes read with the same parameters (reader, ``--crs``, options,
declared time, classification, licence, producer: ``properties["read_with"]`` of the asset) is a no-op; a changed file
or changed parameters make a new asset version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from data_models import Building
from twin.catalog.assets import asset_id, describe, parse_time, read_with, same_reading, sha256_file
from twin.fusion.conflation import conflate
from twin.geo.crs import reproject
from twin.sources import ReadContext, Reader, SourceError, companions, reader_for
from twin.store import ASSETS, MAIN, Query, Store
from twin.store.files import faulty

Progress = Callable[[str, float], None]
_SKIP_NAMES = {"manifest.json"}


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files to ingest: explicit files as given, folders searched recursively for files a reader can open (the
    files a reader reads together with another, such as a Landsat MTL's band files, are left to that one)."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = {f: r for f in sorted(p.rglob("*")) if f.is_file() and (r := _reader(f)) is not None}
            covered = {c.resolve() for f, r in found.items() for c in companions(f, r)}
            out += [f for f in found if f.resolve() not in covered]
        elif p.is_file():
            out.append(p)
        else:
            raise SourceError(p, "no such file or folder")
    return out


def _reader(f: Path) -> Reader | None:
    if f.name in _SKIP_NAMES or f.name.startswith("."):
        return None
    try:
        return reader_for(f)
    except (SourceError, OSError):
        return None


def ingest_paths(
    store: Store,
    paths: Iterable[Path],
    *,
    kind: str | None = None,
    crs: str | None = None,
    acquired: str | datetime | Mapping[str, str | None] | None = None,
    classification: str = "public",
    licence: str | None = None,
    producer: str | None = None,
    options: dict[str, Any] | None = None,
    branch: str = MAIN,
    author: str = "twin",
    message: str | None = None,
    progress: Progress | None = None,
):
    """Ingest files and folders into ``branch`` as one commit; returns the Commit, or None if nothing changed.

    ``acquired`` is one time for all files, or a mapping from resolved file path to time (a delivery manifest);
    files that carry their own time (LAS creation date, TIFF datetime) use it when none is given. ``options`` go
    to the readers (e.g. ``bands``, ``columns``, ``coords``).
    """
    paths = list(paths)
    files = expand(paths)
    if not files:
        raise SourceError(", ".join(str(p) for p in paths), "no source files found")
    progress = faulty(progress or (lambda stage, frac: None))
    put: list[Any] = []
    geoms: dict[str, shapely.Geometry] = {}
    tables: dict[str, list[pa.Table]] = {}
    names: list[str] = []
    for n, path in enumerate(files):
        progress("ingest: reading sources", n / len(files))
        reader = reader_for(path, kind, options)
        k = reader.kind
        checksum = sha256_file(path)
        if path.stat().st_size == 0:
            raise SourceError(path, "the file is empty")
        aid = asset_id(path)
        prev = store.get(aid, branch, collection=ASSETS)
        when = parse_time(acquired.get(str(path.resolve())) if isinstance(acquired, Mapping) else acquired, path)
        params = read_with(reader.name, crs=crs, acquired=when, classification=classification, licence=licence,
                           producer=producer, options=options)
        if same_reading(prev, checksum, params):
            continue  # same bytes read the same way as the current asset version: nothing to do
        ctx = ReadContext(path=path, store_crs=store.crs, asset_id=aid, crs=crs, acquired=when,
                          classification=classification, options=dict(options or {}))
        got = reader.read(ctx)
        info = dict(got.info)
        file_time = info.pop("acquired", None)
        asset = describe(path, k, info, acquired=when or file_time, classification=classification,
                         licence=licence, producer=producer,
                         asset_version=1 if prev is None else int(prev["asset_version"]) + 1, checksum=checksum,
                         read_params=params)
        if asset.extent is not None and asset.crs:
            geoms[asset.id] = reproject(shapely.box(*asset.extent.bbox), asset.crs, store.crs)
        put.append(asset)
        put.extend(got.entities)
        for name, t in got.tables.items():
            tables.setdefault(name, []).append(t)
        names.append(path.name)
    progress("ingest: reading sources", 1.0)
    if not put:
        return None
    progress("ingest: conflating footprints", 0.0)
    put, remove, conflicts = _conflate(store, branch, put, (options or {}).get("priority"))
    progress("ingest: conflating footprints", 1.0)
    progress("ingest: committing", 0.0)
    msg = message or f"ingest {len(names)} file(s): {', '.join(names[:5])}{' …' if len(names) > 5 else ''}"
    if conflicts:
        msg += f" ({len(conflicts)} footprint conflict(s) recorded)"
    merged = {name: pa.concat_tables(ts, promote_options="default") for name, ts in tables.items()}
    commit = store.commit(put, remove, message=msg, author=author, branch=branch, geometries=geoms, tables=merged)
    progress("ingest: committing", 1.0)
    return commit


# Which footprint source wins when several describe one building (higher wins): cadastral vectors, then CityJSON
# models, then OpenStreetMap; LiDAR outline candidates (built by `twin build`) rank lowest and are replaced.
DEFAULT_PRIORITY = {"vector-ingest": 10, "cityjson-ingest": 8, "osm-ingest": 5}


def _conflate(store: Store, branch: str, put: list[Any], priority: Any) -> tuple[list[Any], list[str], list[dict]]:
    """Conflate incoming buildings with new ids against the branch's buildings from other deliveries.

    Buildings whose id the store already has are plain updates (a re-delivery of the same source). LiDAR outline
    candidates that an incoming footprint now explains are removed: the delivered footprint takes their place.
    """
    incoming = [e for e in put if isinstance(e, Building) and e.type == "Building"]
    if not incoming:
        return put, [], []
    existing = store.features(branch, query=Query(types=["Building"]))
    known = {e["id"] for e in existing}
    fresh = [b for b in incoming if b.id not in known]
    if not fresh or not existing:
        return put, [], []
    candidates = [e for e in existing if (e.get("attributes") or {}).get("candidate")]
    others = [e for e in existing if e not in candidates]
    result = conflate(others, fresh, source_priority=dict(priority or DEFAULT_PRIORITY))
    fresh_ids = {b.id for b in fresh}
    out = [e for e in put if not (isinstance(e, Building) and e.id in fresh_ids)] + list(result.put)
    remove: list[str] = []
    if candidates:
        new_geoms = np.asarray([b.geometry.to_shapely() for b in result.put], dtype=object)
        cand_geoms = np.asarray([shapely.geometry.shape(c["geometry"]) for c in candidates], dtype=object)
        if len(new_geoms):
            hit_new, hit_cand = shapely.STRtree(new_geoms).query(cand_geoms, predicate="intersects")[::-1]
            inter = shapely.area(shapely.intersection(new_geoms[hit_new], cand_geoms[hit_cand]))
            union = shapely.area(shapely.union(new_geoms[hit_new], cand_geoms[hit_cand]))
            remove = sorted({candidates[j]["id"] for j, r in zip(hit_cand, inter / union, strict=True) if r >= 0.3})
    return out, remove, result.conflicts
