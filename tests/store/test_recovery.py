"""Recovery of what killed writers leave, claims of live builds, as_of parsing and a refusing disk at store level."""

from __future__ import annotations

import json
import subprocess
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from data_models import SourceAsset, SourceKind
from tests.conftest import PYTHON, ROOT, make_buildings
from twin.errors import NotFound, StorageError
from twin.store import NotInStore, Store, StoreError
from twin.store.files import CLAIM, write_bytes, write_json_atomic


def _product(store: Store, name: str) -> SourceAsset:
    """A build product asset whose file lies inside the store (path relative to the root), written for real."""
    rel = Path("products") / "terrain" / name / "dtm.tif"
    (store.root / rel).parent.mkdir(parents=True)
    (store.root / rel).write_bytes(b"a raster")
    return SourceAsset(id=f"prd-{name}", kind=SourceKind.product, path=str(rel), checksum="0" * 64, size_bytes=8)


def test_leftovers_of_killed_writers_never_block_a_commit(store: Store) -> None:
    """Everything a killed ingest or build can leave (the empty terrain folder of issue 11 included) is removed by
    the next commit, which succeeds; committed data stay as they were."""
    store.commit(make_buildings(10), message="good")
    v1 = store.features()
    tmp, seg = store.root / "tmp", store.root / "segments"
    (tmp / "terrain-0123456789abcdef").mkdir()  # what `twin build` killed in the terrain step leaves
    (tmp / "terrain-fedcba9876543210" / "sub").mkdir(parents=True)
    (tmp / "terrain-fedcba9876543210" / ".dtm.tiled.tif").write_bytes(b"II*\x00half a raster")
    (tmp / "0f0f.parquet").write_bytes(b"PAR1 partial segment")
    (tmp / "1e1e.json").write_text('{"commit": {"vers')  # write_json_atomic killed before its rename
    (tmp / "build-dead.claim").write_text("")  # the claim of a build that died (nobody holds its flock)
    (seg / "00000002.parquet").write_bytes(b"PAR1 published, never committed")
    (seg / "00000002.layer_values.parquet").write_bytes(b"PAR1 half a table")
    c = store.commit(make_buildings(3, prefix="n"), message="after the crash")
    assert c is not None and c.version == 2
    assert list(tmp.iterdir()) == []
    assert sorted(p.name for p in seg.iterdir()) == ["00000001.parquet", "00000002.parquet"]
    s = Store(store.root)
    assert s.count(as_of=1) == 10 and s.count() == 13
    assert s.changelog(2) == [{"collection": "city", "id": f"n{i:06d}", "op": "add"} for i in range(3)]
    assert s.features(as_of=1) == v1


def test_unreferenced_product_folders_go_referenced_ones_stay(store: Store) -> None:
    """A build killed after moving its rasters into products/ but before committing leaves a folder no commit
    names: the next commit removes it, but never one a commit (or the commit being made) references."""
    kept = _product(store, "aaaa")
    store.commit([kept], message="build: reality3d")
    doc = json.loads((store.root / "commits" / "00000001.json").read_text())
    assert doc["files"] == ["products/terrain/aaaa/dtm.tif"]
    orphan = store.root / "products" / "terrain" / "bbbb"
    orphan.mkdir()
    (orphan / "dtm.tif").write_bytes(b"complete but never committed")
    pending = _product(store, "cccc")  # made by the build that is committing now
    store.commit([pending], message="build again")
    assert sorted(p.name for p in (store.root / "products" / "terrain").iterdir()) == ["aaaa", "cccc"]
    # a store written before commits recorded their files: its assets' paths are found in the segments
    for f in (store.root / "commits").iterdir():
        d = json.loads(f.read_text())
        d.pop("files")
        f.write_text(json.dumps(d))
    orphan.mkdir()
    store.commit(make_buildings(1), message="an ingest")
    assert sorted(p.name for p in (store.root / "products" / "terrain").iterdir()) == ["aaaa", "cccc"]


HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from twin.store.files import claim
    tmp = Path(sys.argv[1])
    with claim(tmp, "build") as c:
        (tmp / "terrain-live").mkdir()
        print(c.name, flush=True)
        sys.stdin.readline()
    """
)


def test_a_live_build_claim_protects_its_work_until_it_dies(store: Store) -> None:
    """A commit made while another process builds leaves that build's files alone (it holds an flock on its claim);
    once the build is gone, the next commit removes them. Older leftovers go at once."""
    tmp = store.root / "tmp"
    (tmp / "terrain-dead").mkdir()  # older than the live claim: a leftover
    orphan = _product(store, "dddd").path
    p = subprocess.Popen([PYTHON, "-c", HOLDER, str(tmp)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        name = p.stdout.readline().strip()
        assert name.startswith("build-") and name.endswith(CLAIM)
        store.commit(make_buildings(2), message="while a build runs")
        assert sorted(x.name for x in tmp.iterdir()) == sorted([name, "terrain-live"])
        assert (store.root / orphan).exists()  # another build may be about to commit it
    finally:
        p.communicate("done\n", timeout=30)
    assert p.returncode == 0
    (tmp / "terrain-live").mkdir(exist_ok=True)  # as if the build had been killed before removing it
    store.commit(make_buildings(3), message="after the build")
    assert list(tmp.iterdir()) == []
    assert not (store.root / orphan).exists()


@pytest.mark.parametrize("as_of", ["", "   ", "-1", "+3", "1e3", "yesterday", "2024-13-01", "9" * 40,
                                   "9999-12-31T23:00:00-05:00", -1, 2**63, True, 1.5])
def test_blank_malformed_or_out_of_range_as_of_is_bad_input(store: Store, as_of) -> None:
    """Every read resolves ``as_of`` in one place: what is not a usable version or time is a 400 naming as_of."""
    store.commit(make_buildings(2), message="v1")
    with pytest.raises(StoreError, match=r"^as_of: ") as err:
        store.features(as_of=as_of)
    assert not isinstance(err.value, NotFound) and err.value.answer.http == 400
    with pytest.raises(StoreError, match=r"^as_of: "):
        store.resolve_version("main", as_of)


def test_well_formed_as_of_resolves_or_is_not_found(store: Store) -> None:
    store.commit(make_buildings(2), message="v1")
    t1 = store.log()[0].time
    store.commit(make_buildings(5), message="v2")
    assert [store.resolve_version("main", v) for v in ("1", " 2 ", 0, "0002")] == [1, 2, 0, 2]
    assert store.resolve_version("main", t1.isoformat()) == 1
    assert store.resolve_version("main", "2000-01-01") == 0
    assert store.resolve_version("main", datetime(2999, 1, 1, tzinfo=UTC)) == 2
    with pytest.raises(NotInStore, match="version 3 does not exist") as err:
        store.count(as_of="3")
    assert err.value.answer.http == 404


def test_a_full_disk_is_a_storage_error_naming_the_file(tmp_path: Path) -> None:
    """/dev/full answers every write with ENOSPC: the write helper says so in one line, with the path."""
    with pytest.raises(StorageError, match=r"^storage refused /dev/full \(writing\): no space left on the device$"):
        write_bytes(Path("/dev/full"), b"x" * 100_000)
    # the atomic JSON writer removes its temporary file whatever fails (here: the target is a folder)
    (tmp_path / "target").mkdir()
    (tmp_path / "tmp").mkdir()
    with pytest.raises(IsADirectoryError):
        write_json_atomic(tmp_path / "target", {"a": 1}, tmp_path / "tmp")
    assert list((tmp_path / "tmp").iterdir()) == []
