"""Fixtures of the building and terrain tile tests: a private copy of the built small city with its tilesets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from twin.store import Store
from twin.tiles.cache import TileCache


def copy_store(src: Path, dst: Path) -> Path:
    """Copy a store (tile caches included, so a copy starts warm)."""
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="session", autouse=True)
def server_cache(tmp_path_factory) -> Path:
    """The cache directory the servers of these tests build missing tilesets into (``TWIN_CACHE_DIR``; inherited by
    the ``twin serve`` processes they start), instead of the user's ``~/.cache``."""
    path = tmp_path_factory.mktemp("server_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TWIN_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def city_tiles(built_city, tmp_path_factory) -> dict:
    """The small city's buildings and terrain tilesets at the head of main, built once into a store copy
    (tiles are written under the store, and ``built_city`` is shared read-only)."""
    root = copy_store(built_city["store"], tmp_path_factory.mktemp("tiles_city") / "store")
    store = Store(root)
    cache = TileCache(store)
    version = store.head()
    buildings = cache.tileset("buildings", "main", version)
    result = cache.last_build
    terrain = cache.tileset("terrain", "main", version)
    return {"root": root, "store": store, "cache": cache, "version": version, "buildings": buildings,
            "terrain": terrain, "result": result}
