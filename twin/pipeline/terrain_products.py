"""Raster products of the build (DTM, DSM, nDSM as COGs) kept in the store and catalogued as assets.

Files go to ``<store>/products/terrain/<digest>/`` where the digest covers the input clouds' checksums, the
resolution and the CRS: a rebuild over the same clouds reuses the folder and commits nothing new, a re-flown area
gives a new folder (older versions keep pointing at theirs). The asset ``path`` is relative to the store root
(:meth:`twin.store.Store.asset_path` resolves it), so a copied or moved store stays whole.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from data_models import TERRAIN_PRODUCT_IDS, TERRAIN_PRODUCTS, Classification, Extent, SourceAsset, SourceKind
from twin.catalog.assets import sha256_file
from twin.geo.crs import bbox_wgs84

PRODUCT_IDS = TERRAIN_PRODUCT_IDS
_DESCRIPTIONS = {"dtm": "digital terrain model (ground, gaps filled)", "dsm": "digital surface model (highest point)",
                 "ndsm": "normalised heights above ground (DSM − DTM)"}


def terrain_digest(clouds: list[dict[str, Any]], resolution: float, crs: str, method: str) -> str:
    """A short digest of what the terrain rasters are made from."""
    key = {"clouds": sorted((a["id"], a["checksum"]) for a in clouds), "resolution": resolution, "crs": crs,
           "method": method, "format": 1}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _present(path: Path) -> bool:
    """A product file is there in clear or sealed (a confidential one, encrypted at rest by the store's commit)."""
    return path.is_file() or any(path.parent.glob(f"{path.name}.*.sealed"))


def terrain_products(store_root: Path, clouds: list[dict[str, Any]], las_bounds: list[list[float]], crs: str,
                     resolution: float, workers: int | None, progress: Any = None) -> tuple[list[SourceAsset], Any,
                                                                                            Path | None]:
    """DTM/DSM/nDSM COGs and treetops of ``clouds`` by block (:mod:`twin.reality3d.terrain_blocks`).

    The rasters land in the content-addressed folder unless that exact set is there already; returns the product
    assets, the :class:`TiledTerrain` and the folder when this call created it (removed by the build if it fails)."""
    from twin.reality3d.terrain_blocks import terrain_by_tile

    method_key = "terrain-tiled"
    digest = terrain_digest(clouds, resolution, crs, method_key)
    rel = Path("products") / "terrain" / digest
    folder = store_root / rel
    tmp = store_root / "tmp" / f"terrain-{digest}-{uuid.uuid4().hex[:12]}"  # per build: concurrent builds never share
    try:
        tt = terrain_by_tile([Path(a["path"]) for a in clouds], tmp, resolution=resolution,
                             crs=clouds[0].get("crs"), to_crs=crs, las_bounds=las_bounds, workers=workers,
                             progress=progress)
        created = None
        # the facts of the files as made (the same bytes as a folder already there: it is content-addressed)
        facts = {n: (sha256_file(tmp / f"{n}.tif"), (tmp / f"{n}.tif").stat().st_size) for n in TERRAIN_PRODUCTS}
        if not all(_present(folder / f"{n}.tif") for n in TERRAIN_PRODUCTS):
            folder.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            try:
                tmp.rename(folder)
                created = folder
            except OSError:  # another build put a complete folder there first: use it
                if not all(_present(folder / f"{n}.tif") for n in TERRAIN_PRODUCTS):
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    acquired = max((a["acquired"] for a in clouds if a.get("acquired")), default=None)
    ingested = max(a["ingested"] for a in clouds)
    bbox = [float(v) for v in tt.bounds]
    assets = [
        SourceAsset(
            id=PRODUCT_IDS[name], kind=SourceKind.product, path=str(rel / f"{name}.tif"), crs=crs,
            extent=Extent(bbox=bbox, bbox_wgs84=bbox_wgs84(bbox, crs)), acquired=acquired,
            checksum=facts[name][0], size_bytes=facts[name][1],
            classification=max(Classification(a.get("classification", "public")) for a in clouds),
            producer="twin build", ingested=ingested,
            properties={"product": name, "description": _DESCRIPTIONS[name], "resolution": resolution,
                        "method": f"terrain-{tt.ground_method}", "blocks": tt.blocks,
                        "nodata_fraction": round(tt.nodata_fraction, 4),
                        "sources": sorted(a["id"] for a in clouds), "units": "m"},
        )
        for name in TERRAIN_PRODUCTS
    ]
    return assets, tt, created
