"""Where a server builds the tilesets its store lacks (the cache directory, one folder per store, never the store),
and that concurrent builders of one tileset in a process build it once."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import make_buildings
from twin.store import Store
from twin.tiles.cache import TileCache, TilesetNotBuilt, server_cache_dir, store_key


def test_cache_directory_default_setting_off_and_inside_the_store(tmp_path, monkeypatch) -> None:
    store = Store.init(tmp_path / "stores" / "city")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    key = store_key(store)
    assert key.startswith("city-") and len(key) == len("city-") + 16
    for unset in (None, "", "."):
        assert server_cache_dir(store, unset) == (tmp_path / "xdg" / "twin" / "tiles" / key, "")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert server_cache_dir(store, None)[0] == tmp_path / "home" / ".cache" / "twin" / "tiles" / key
    assert server_cache_dir(store, tmp_path / "c") == (tmp_path / "c" / key, "")
    for off in ("off", "OFF", "none"):
        where, why = server_cache_dir(store, off)
        assert where is None and "on-demand builds are off" in why
    where, why = server_cache_dir(store, store.root / "tiles")
    assert where is None and "inside the store" in why


def test_a_store_created_again_at_the_same_path_gets_a_fresh_cache(tmp_path) -> None:
    first = store_key(Store.init(tmp_path / "s"))
    assert store_key(Store(tmp_path / "s")) == first  # stable for one store
    shutil.rmtree(tmp_path / "s")
    assert store_key(Store.init(tmp_path / "s")) != first  # its tiles would be another city's
    other = Store.init(tmp_path / "elsewhere" / "s")
    assert store_key(other) != first


def test_a_server_builds_into_its_cache_never_into_the_store_and_once(tmp_path) -> None:
    store = Store.init(tmp_path / "store")
    store.commit(make_buildings(30), message="buildings")
    cache_dir = tmp_path / "cache"
    builders: set[int] = set()
    start = threading.Barrier(8)

    def first_request(_: int):
        progress = lambda stage, fraction: builders.add(threading.get_ident())  # noqa: E731
        start.wait()  # all eight ask at once
        return TileCache.serving(store, cache_dir).tileset("buildings", "main", store.head(), progress=progress)

    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(first_request, range(8)))
    assert len(set(paths)) == 1 and paths[0].is_relative_to(cache_dir)
    assert len(builders) == 1  # one thread built it; the seven others found it
    assert not (store.root / "tiles").exists()
    # once the store's writer has built it, the server reads the store's copy
    written = TileCache(store).tileset("buildings", "main", store.head())
    assert written.is_relative_to(store.root / "tiles")
    served = TileCache.serving(store, None, "off for this test").tileset("buildings", "main", store.head())
    assert served == written


def test_without_a_cache_directory_a_missing_tileset_says_how_to_build_it(tmp_path) -> None:
    store = Store.init(tmp_path / "store")
    with pytest.raises(TilesetNotBuilt, match="twin tiles build") as err:
        TileCache.serving(store, None, "on-demand builds are off (TWIN_CACHE_DIR=off)").tileset("buildings", "main", 0)
    assert err.value.answer.http == 503 and "TWIN_CACHE_DIR=off" in str(err.value)
    assert not (store.root / "tiles").exists()
