"""Describe a source file as a SourceAsset: checksum, kind, CRS, extent, acquisition time and what it was read with."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from data_models import Extent, SourceAsset, SourceKind
from twin.geo.crs import bbox_wgs84
from twin.sources import SourceError
from twin.times import to_utc


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def asset_id(path: Path) -> str:
    """Stable asset id from the file's folder and name, so re-delivering a file updates the same asset."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{path.parent.name}/{path.name}".lower()).strip("-")
    return f"src-{slug}"


def parse_time(value: str | datetime | None, path: Path) -> datetime | None:
    """A declared acquisition time as aware UTC; bad text is an error naming the file."""
    try:
        return to_utc(value)
    except ValueError:
        raise SourceError(path, f"acquisition time {value!r} is not ISO 8601") from None


def read_with(reader: str, *, crs: str | None, acquired: datetime | None, classification: str,
              licence: str | None = None, producer: str | None = None,
              options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What an ingest read a file with (the reader, the declared CRS and time, classification, licence, producer and
    the reader options) as JSON, with a ``digest`` of it: the same bytes read with other parameters give other
    entities (a different ``--crs`` moves every feature), so the ingest re-reads a file when the digest differs."""
    params = {
        "reader": reader, "crs": crs.strip() if isinstance(crs, str) and crs.strip() else None,
        "acquired": acquired.isoformat() if acquired is not None else None, "classification": str(classification),
        "licence": licence, "producer": producer, "options": dict(options or {}),
    }
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    out = json.loads(text)
    out["digest"] = hashlib.sha256(text.encode()).hexdigest()[:32]
    return out


def same_reading(asset: Mapping[str, Any] | None, checksum: str, params: Mapping[str, Any]) -> bool:
    """True when a stored asset holds the same bytes read with the same parameters (re-ingesting it changes
    nothing); an asset stored before the parameters were recorded counts as read with unknown ones."""
    if asset is None or asset.get("checksum") != checksum:
        return False
    return ((asset.get("properties") or {}).get("read_with") or {}).get("digest") == params["digest"]


def describe(
    path: Path, kind: SourceKind, info: dict[str, Any], *, acquired: datetime | None, classification: str,
    licence: str | None = None, producer: str | None = None, asset_version: int = 1, checksum: str | None = None,
    read_params: dict[str, Any] | None = None,
) -> SourceAsset:
    """A SourceAsset from a reader's ``info`` (crs, bbox, …); the rest of ``info`` goes into properties, and
    ``read_params`` (:func:`read_with`) into ``properties["read_with"]``."""
    crs = info.get("crs")
    bbox = info.get("bbox")
    extent = None
    if bbox is not None:
        extent = Extent(bbox=bbox, bbox_wgs84=bbox_wgs84(bbox, crs) if crs else None)
    props = {k: v for k, v in info.items() if k not in ("crs", "bbox")}
    if read_params is not None:
        props["read_with"] = read_params
    return SourceAsset(
        id=asset_id(path),
        kind=kind,
        path=str(path.resolve()),
        crs=crs,
        extent=extent,
        acquired=acquired,
        checksum=checksum or sha256_file(path),
        size_bytes=path.stat().st_size,
        licence=licence,
        classification=classification,
        producer=producer,
        asset_version=asset_version,
        properties=props,
    )
