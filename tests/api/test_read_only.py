"""Reads on a read-only store, over real HTTP from a `twin serve` that may not write the store directory.

Every tileset.json, every tile, the viewer and the features API answer 200 and nothing in the store changes (a
listing with modes, sizes and mtimes compared before and after); a tileset the store lacks is built into the server's
cache directory (``TWIN_CACHE_DIR``), never into the store; a cache directory that refuses (no permission, full) is a
503 that says what to do and leaves no temporary file.

Root ignores permissions, so when these tests run as root the server runs as uid 65534 (nobody) when the interpreter
is reachable by it, else as root without capabilities (then file modes bind it like any user: an interpreter under
/root, unreachable by nobody, is the usual case in containers). Each test checks with a probe process, run the same
way as the server, that the store really is unwritable for it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.test_serve import _wait
from tests.conftest import PYTHON, ROOT, TWIN
from twin.api.app import create_app
from twin.store import Store
from twin.tiles.cache import KINDS, server_cache_dir

NOBODY = 65534
PROBE = ("import os, sys; fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644); os.close(fd); "
         "os.unlink(sys.argv[1])")


def _drop_capabilities(last: int) -> None:
    """In the child before exec: empty the capability bounding set, so the program runs as root with no
    capabilities (no CAP_DAC_OVERRIDE: file modes apply to it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(last + 1):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


class Reader:
    """How the server and the probes run so that file modes bind them."""

    def __init__(self) -> None:
        self.uid = os.geteuid()
        self.kwargs: dict = {}
        self.how = "the current user"
        if self.uid != 0:
            return
        nobody = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
        try:
            ok = subprocess.run([PYTHON, "-c", "import twin.api.app"], cwd=ROOT, capture_output=True, timeout=120,
                                **nobody).returncode == 0
        except OSError:
            ok = False
        if ok:
            self.uid, self.kwargs, self.how = NOBODY, nobody, "uid 65534"
        else:
            last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
            self.kwargs = {"preexec_fn": lambda: _drop_capabilities(last)}
            self.how = "root without capabilities"

    def own(self, path: Path) -> Path:
        """``path`` made the reader's (so it may write there)."""
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.uid)
        return path

    def can_write(self, folder: Path) -> bool:
        """Whether a process run like the server can create a file in ``folder``."""
        r = subprocess.run([PYTHON, "-c", PROBE, str(folder / ".probe")], cwd=ROOT, capture_output=True, timeout=60,
                           **self.kwargs)
        return r.returncode == 0


def _listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``root`` (and root) with its mode, size and mtime: any write, even one undone, shows."""
    out = {".": (root.lstat().st_mode, root.lstat().st_size, root.lstat().st_mtime_ns)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = (Path(dirpath) / name).lstat()
            out[(Path(dirpath) / name).relative_to(root).as_posix()] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _chmod_tree(root: Path, writable: bool) -> None:
    """Folders 0555 and files 0444 (readable by anyone, writable by no one), or back to 0755 / 0644."""
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o755 if writable else 0o555)
        for name in filenames:
            os.chmod(Path(dirpath) / name, 0o644 if writable else 0o444)


@pytest.fixture(scope="module")
def reader() -> Reader:
    return Reader()


@pytest.fixture(scope="module")
def world() -> Iterator[Path]:
    """A folder every user can reach (pytest's own tmp folders are 0700), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="twin-read-only-"))
    path.chmod(0o755)
    yield path
    _chmod_tree(path, writable=True)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def built_store(built_city, world) -> Path:
    """A copy of the built city whose tilesets its writer built ahead, then made read-only: `twin build` (one cheap
    step, which commits nothing new) builds the head's tilesets into <store>/tiles/ after the pipeline."""
    root = world / "built" / "store"
    shutil.copytree(built_city["store"], root, ignore=shutil.ignore_patterns("tiles"))
    r = subprocess.run([TWIN, "build", "--store", str(root), "--only", "greenness", "--tiles", "--workers", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0, r.stdout + r.stderr
    tiles = root / "tiles"
    assert len(list((tiles / "buildings").glob("*.tileset.json"))) == 1, r.stdout
    assert len(list((tiles / "terrain").glob("*.json"))) == 1 and list((tiles / "pointcloud").glob("*/tileset.json"))
    assert not _no_tmp(tiles)
    root.parent.chmod(0o755)
    _chmod_tree(root, writable=False)
    return root


@pytest.fixture(scope="module")
def bare_store(built_city, world) -> Path:
    """A read-only copy of the built city with no tilesets built."""
    root = world / "bare" / "store"
    shutil.copytree(built_city["store"], root, ignore=shutil.ignore_patterns("tiles"))
    root.parent.chmod(0o755)
    _chmod_tree(root, writable=False)
    return root


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serve(reader: Reader, store: Path, cache: Path | str, headers: dict[str, str] | None = None,
           audit_dir: bool = True) -> Iterator[httpx.Client]:
    """`twin serve` over ``store`` run as the reader, with ``TWIN_CACHE_DIR=cache`` and no writable home."""
    port = _free_port()
    # the audit log of a read-only store goes where the server may write (a signed-in read must be traced)
    audit = reader.own(Path(tempfile.mkdtemp(prefix="twin-audit-", dir=Path(store).parent.parent)))
    env = {**os.environ, "TWIN_STORE": str(store), "TWIN_CACHE_DIR": str(cache), "HOME": "/nonexistent",
           **({"TWIN_AUDIT_DIR": str(audit)} if audit_dir else {})}
    if not audit_dir:
        env.pop("TWIN_AUDIT_DIR", None)
    env.pop("XDG_CACHE_HOME", None)
    server = subprocess.Popen([TWIN, "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, **reader.kwargs)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(base + "/health", server)
        with httpx.Client(base_url=base, timeout=120, headers=headers) as client:
            yield client
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    err = server.stderr.read() if server.stderr else ""
    assert "Traceback" not in err, err  # no 500 went by unnoticed


def _tile_files(store: Path, view: str | None = None) -> list[tuple[str, Path]]:
    """Every content and subtree file the store's tilesets hold for a view (None: the full one), with the URL it is
    served at: the view's own buildings; terrain and point cloud, named by the digest of their inputs, are the full
    view's when a view's inputs are the same (all public here), shared rather than copied."""
    out: list[tuple[str, Path]] = []
    tiles = store / "tiles"
    own = tiles / "views" / view if view else tiles
    for p in sorted((own / "buildings" / "content").rglob("*.glb")):
        out.append((f"/tiles/main/latest/buildings/{p.relative_to(own / 'buildings').as_posix()}", p))
    for p in sorted((tiles / "terrain").rglob("*")):
        if p.is_file() and p.relative_to(tiles / "terrain").parts[0] != p.name:  # inside <digest>/, not <digest>.json
            out.append((f"/tiles/main/latest/terrain/{p.relative_to(tiles / 'terrain').as_posix()}", p))
    (cloud,) = [d for d in (tiles / "pointcloud").iterdir() if d.is_dir()]
    for p in sorted(cloud.rglob("*")):
        if p.is_file() and p.name != "tileset.json":
            out.append((f"/tiles/main/latest/pointcloud/{p.relative_to(cloud).as_posix()}", p))
    return out


def _no_tmp(root: Path) -> list[str]:
    return [p.as_posix() for p in root.rglob("*") if ".tmp" in p.name]


def test_every_read_answers_200_on_a_read_only_store_and_changes_nothing(reader, built_store, world,
                                                                       built_city) -> None:
    from twin.api.routers.viewer import cesium_dir

    cache = reader.own(Path(tempfile.mkdtemp(prefix="cache-", dir=world)))
    assert reader.can_write(cache), f"the probe ({reader.how}) cannot even write its own cache folder"
    for folder in (built_store, built_store / "tiles", built_store / "tiles" / "buildings",
                   built_store / "tiles" / "terrain"):
        assert not reader.can_write(folder), f"{folder} is writable for the server ({reader.how})"
    before = _listing(built_store)
    # the writer built the full view and each lower clearance's (the city has a confidential compound)
    assert sorted(p.name for p in (built_store / "tiles" / "views").iterdir()) == ["internal", "public"]
    assert not (built_store / "tiles" / "views" / "public" / "terrain").exists()  # the full view's, by digest
    hidden = [b["id"].encode() for b in Store(built_store).features() if b["classification"] != "public"]
    assert hidden
    for p in (built_store / "tiles" / "views" / "public").rglob("*"):
        assert not p.is_file() or not any(h in p.read_bytes() for h in hidden), p  # no confidential id in any tile
    assert any(hidden[0] in p.read_bytes() for p in (built_store / "tiles" / "buildings").rglob("*.glb"))
    version = Store(built_store).head()
    with _serve(reader, built_store, cache) as c:
        for view, headers in ((None, built_city["admin"]), ("public", {})):  # an admin, and anonymous
            files = _tile_files(built_store, view)
            assert {u.split("/")[4] for u, _ in files} == set(KINDS) and len(files) > 50
            for kind in KINDS:
                for v in ("latest", str(version)):
                    r = c.get(f"/tiles/main/{v}/{kind}/tileset.json", headers=headers)
                    assert r.status_code == 200, (kind, v, r.text)
                    assert r.headers["content-type"] == "application/json" and r.json()["asset"]["version"] == "1.1"
                    assert r.headers["content-encoding"] == "gzip"  # compressed without a sidecar in the store
            gzipped = 0
            for url, path in files:
                # gzip (compressed now, kept in memory and the cache directory) for buildings, terrain and a few
                # point cloud tiles; the rest of the point cloud's ~140 MB as is, so the test stays fast
                cloud = url.split("/")[4] == "pointcloud"
                zip_it = not cloud or gzipped < 20
                if cloud and view:
                    continue  # the same files as the full view's, already read
                r = c.get(url, headers={**headers, "Accept-Encoding": "gzip" if zip_it else "identity"})
                assert r.status_code == 200, (view, url, r.text)
                assert r.content == path.read_bytes(), url
                gzipped += cloud and r.headers.get("content-encoding") == "gzip"
        url, path = files[0]
        plain = c.get(url, headers={"Accept-Encoding": "identity"})
        assert plain.content == path.read_bytes() and "content-encoding" not in plain.headers
        assert c.get(url, headers={"If-None-Match": plain.headers["etag"]}).status_code == 304
        viewer = ["/viewer/app.js", "/viewer/style.css"]
        if cesium_dir() is not None:
            viewer += ["/viewer/", "/viewer/cesium/Cesium.js", "/viewer/cesium/Widgets/widgets.css"]
        for url in viewer:
            r = c.get(url)
            assert r.status_code == 200, (url, r.text[:300])
        items = c.get("/collections/buildings/items", params={"limit": 5})
        assert items.status_code == 200, items.text
        feats = items.json()["features"]
        assert len(feats) == 5
        one = c.get(f"/collections/buildings/items/{feats[0]['id']}")
        assert one.status_code == 200 and one.json()["id"] == feats[0]["id"]
    assert _listing(built_store) == before  # nothing in the store was written, created, removed or touched
    built = server_cache_dir(Store(built_store), cache)[0]
    assert not any((built / kind).exists() for kind in KINDS)  # everything was served from <store>/tiles
    assert list((built / "gzip").rglob("*.gz")), "compressed bodies go to the cache directory"
    assert not _no_tmp(cache)


def test_a_missing_tileset_is_built_into_the_cache_directory_and_a_refusal_is_a_503(reader, bare_store,
                                                                                     world, built_city) -> None:
    cache = reader.own(Path(tempfile.mkdtemp(prefix="cache-", dir=world)))
    built = server_cache_dir(Store(bare_store), cache)[0]
    (built / "buildings").mkdir(parents=True)
    reader.own(built)
    reader.own(built / "buildings")
    blocked = built / "buildings" / "meta"  # the building tiles' metadata: refused half-way through the build
    blocked.mkdir()
    blocked.chmod(0o555)
    assert reader.can_write(built / "buildings") and not reader.can_write(blocked)
    assert not reader.can_write(bare_store)
    before = _listing(bare_store)
    with _serve(reader, bare_store, cache, built_city["admin"]) as c:  # the full view: <cache>/buildings
        r = c.get("/tiles/main/latest/buildings/tileset.json")
        assert r.status_code == 503, r.text
        detail = r.json()["detail"]
        assert "permission denied" in detail and str(blocked) in detail and "TWIN_CACHE_DIR" in detail
        assert "twin tiles build" in detail
        assert not list(built.rglob("*.tileset.json")) and not _no_tmp(cache)
        r = c.get("/tiles/main/latest/terrain/tileset.json")  # another kind still builds, into the cache
        assert r.status_code == 200, r.text
        sub = r.json()["root"]["implicitTiling"]["subtrees"]["uri"].format(level=0, x=0, y=0)
        assert c.get(f"/tiles/main/latest/terrain/{sub}").content[:4] == b"subt"
        assert len(list((built / "terrain").glob("*.json"))) == 1
        blocked.chmod(0o755)
        reader.own(blocked)  # the operator fixes the folder: the next request builds, no restart
        r = c.get("/tiles/main/latest/buildings/tileset.json")
        assert r.status_code == 200, r.text
        uri = next(t["content"]["uri"] for t in _tiles(r.json()["root"]) if "content" in t)
        glb = c.get(f"/tiles/main/latest/buildings/{uri}")
        assert glb.status_code == 200 and glb.content[:4] == b"glTF"
        assert glb.content == (built / "buildings" / uri).read_bytes()
    assert _listing(bare_store) == before
    assert not _no_tmp(cache)


def _tiles(tile: dict) -> Iterator[dict]:
    yield tile
    for child in tile.get("children", []):
        yield from _tiles(child)


def test_without_a_writable_cache_directory_a_missing_tileset_is_a_503_and_reads_go_on(reader, bare_store, world,
                                                                                        monkeypatch) -> None:
    cache = Path(tempfile.mkdtemp(prefix="no-cache-", dir=world))
    cache.chmod(0o555)
    assert not reader.can_write(cache)
    before = _listing(bare_store)
    with _serve(reader, bare_store, cache) as c:
        for kind in KINDS:
            r = c.get(f"/tiles/main/latest/{kind}/tileset.json")
            assert r.status_code == 503, (kind, r.text)
            detail = r.json()["detail"]
            assert "permission denied" in detail and "TWIN_CACHE_DIR" in detail and "twin tiles build" in detail
        assert c.get("/collections/buildings/items", params={"limit": 1}).status_code == 200
        assert c.get("/viewer/app.js").status_code == 200
    # the writer's command run by an account that may not write the store: one clear line and exit code 74
    r = subprocess.run([TWIN, "tiles", "build", "--store", str(bare_store), "--only", "buildings"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "250"},
                       **reader.kwargs)
    assert r.returncode == 74, r.stdout + r.stderr
    assert "permission denied" in r.stderr and str(bare_store / "tiles") in r.stderr and "Traceback" not in r.stderr
    assert _listing(bare_store) == before and list(cache.iterdir()) == []
    # on-demand builds switched off: the same answer, saying so (in process: no permission involved)
    monkeypatch.setenv("TWIN_CACHE_DIR", "off")
    r = TestClient(create_app(bare_store)).get("/tiles/main/latest/buildings/tileset.json")
    assert r.status_code == 503 and "on-demand builds are off" in r.json()["detail"]
    assert "twin tiles build" in r.json()["detail"]


@pytest.fixture
def tiny_disk(world, reader) -> Iterator[Path]:
    """A 64 kB tmpfs (a disk that fills during a build), when this process may mount one."""
    path = Path(tempfile.mkdtemp(prefix="full-", dir=world))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=64k,mode=0755,uid={reader.uid},gid={reader.uid}",
                        "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        path.rmdir()
        pytest.skip(f"cannot mount a small tmpfs to fill ({r.stderr.strip() or 'mount failed'})")
    yield path
    subprocess.run(["umount", str(path)], check=True)
    path.rmdir()


def test_a_full_cache_disk_is_a_503_and_leaves_no_temporary_file(reader, bare_store, tiny_disk) -> None:
    before = _listing(bare_store)
    with _serve(reader, bare_store, tiny_disk) as c:
        r = c.get("/tiles/main/latest/buildings/tileset.json")
        assert r.status_code == 503, r.text
        detail = r.json()["detail"]
        assert "no space left on the device" in detail and "TWIN_CACHE_DIR" in detail
        assert not _no_tmp(tiny_disk), _no_tmp(tiny_disk)
        assert not list(tiny_disk.rglob("*.tileset.json"))
        assert c.get("/collections/buildings/items", params={"limit": 1}).status_code == 200  # reads go on
    assert _listing(bare_store) == before


def test_signed_in_reads_are_refused_when_the_audit_log_cannot_be_written(reader, bare_store, world,
                                                                          built_city) -> None:
    """Every read of non-public data is traced, or not made: a read-only store without TWIN_AUDIT_DIR answers the
    anonymous public city and refuses signed-in principals with a 503 that says why and what to set."""
    cache = reader.own(Path(tempfile.mkdtemp(prefix="cache-", dir=world)))
    before = _listing(bare_store)
    with _serve(reader, bare_store, cache, audit_dir=False) as c:
        assert c.get("/collections/buildings/items", params={"limit": 1}).status_code == 200
        r = c.get("/collections/buildings/items", params={"limit": 1}, headers=built_city["admin"])
        assert r.status_code == 503 and "cannot be audited" in r.json()["detail"]
        assert "TWIN_AUDIT_DIR" in r.json()["detail"] or "audit" in r.json()["detail"]
    assert _listing(bare_store) == before
