"""Describe a source file as a SourceAsset: checksum, kind, CRS, extent and acquisition time."""

from __future__ import annotations

import hashlib
import re
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


def describe(
    path: Path, kind: SourceKind, info: dict[str, Any], *, acquired: datetime | None, classification: str,
    licence: str | None = None, producer: str | None = None, asset_version: int = 1, checksum: str | None = None,
) -> SourceAsset:
    """A SourceAsset from a reader's ``info`` (crs, bbox, …); the rest of ``info`` goes into properties."""
    crs = info.get("crs")
    bbox = info.get("bbox")
    extent = None
    if bbox is not None:
        extent = Extent(bbox=bbox, bbox_wgs84=bbox_wgs84(bbox, crs) if crs else None)
    props = {k: v for k, v in info.items() if k not in ("crs", "bbox")}
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
