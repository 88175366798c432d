"""Encryption at rest (issue 14 item 5, docs/security_encryption.md): confidential and secret rows are sealed
(AES-256-GCM) with a key kept outside the store; no byte of the store holds them in clear, reads with the key equal
reads of the same store written in clear, a wrong key is a clear error that never shows a key, rotation switches
keys atomically, and a copy without the key reads its public data."""

from __future__ import annotations

import base64
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from data_models import Building, Classification, LayerSpec, Principal, SourceAsset
from tests.conftest import make_buildings, square
from twin.cli import app
from twin.security.guard import GuardedStore
from twin.store import ASSETS, CITY, Query, Store
from twin.store.crypt import Key, KeyInvalid, KeyMismatch, KeyMissing, SealBroken

SECRET = "SECRET-BUNKER-7"  # a value only a confidential row holds
HIDDEN_ID = "bunker-born-secret"  # an entity first stored sealed: its id must not be in clear either
T0 = datetime(2024, 1, 1, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWIN_KEY", raising=False)
    monkeypatch.delenv("TWIN_KEY_FILE", raising=False)


def _history_of_a_city(store: Store) -> None:
    """Commits touching every case: plain rows, confidential and secret rows, a public building made confidential
    (its old version in clear), a confidential one made public, removals of sealed rows, a confidential asset, a
    branch with its own sealed edit."""
    bs = make_buildings(12)
    store.commit(bs, message="v1 public city")
    bunker = bs[3].model_copy(update={"classification": Classification.confidential, "attributes": {"name": SECRET}})
    born = Building(id=HIDDEN_ID, geometry=square(448_500, 4_428_500), classification="secret", height=7.0,
                    attributes={"name": SECRET + "-annex"})
    asset = SourceAsset(id="asset-vault", kind="vector", path="/data/vault.geojson", checksum="0" * 64,
                        size_bytes=2, classification="confidential", ingested=T0, properties={"note": SECRET})
    store.commit([bunker, born, asset, bs[4].model_copy(update={"classification": Classification.internal}),
                  bs[7].model_copy(update={"classification": Classification.confidential})], message="v2 classify")
    store.commit([bs[5].model_copy(update={"classification": Classification.secret})], remove=[bs[6].id], message="v3")
    store.commit([bunker.model_copy(update={"height": 99.0})], message="v4 edit sealed")
    store.commit([], remove=[HIDDEN_ID, bs[7].id], message="v5 remove sealed entities")
    store.commit([bs[5].model_copy(update={"classification": Classification.public})], message="v6 declassify")
    store.create_branch("plan", at=4)
    store.commit([bunker.model_copy(update={"height": 50.0})], branch="plan", message="v7 on plan")


def _reads(store: Store) -> dict:
    """Everything the store answers, at every version and on both branches."""
    out: dict = {}
    for branch in ("main", "plan"):
        for v in range(1, store.head(branch) + 1):
            for c in (CITY, ASSETS):
                q = Query(collection=c)
                out[(branch, v, c)] = (store.features(branch, v, q), store.count(branch, v, q),
                                       store.digests(branch, v, q), store.classifications(branch, v, q),
                                       store.extents(branch, v, c), store.table(branch, v, q).to_pylist(),
                                       store.page(branch, v, Query(collection=c, limit=3, offset=2)).rows,
                                       store.features(branch, v, Query(collection=c, bbox=[448_000, 4_428_000,
                                                                                          448_045, 4_428_045])))
    for eid in ("b000003", "b000005", "b000006", "b000007", HIDDEN_ID, "asset-vault"):
        for branch in ("main", "plan"):
            out[("history", eid, branch)] = store.history(eid, branch, ASSETS if eid.startswith("asset") else CITY)
    for v in range(1, store.head("plan") + 1):
        out[("changelog", v)] = store.changelog(v)
    out["levels"] = store.all_classifications()
    return out


@pytest.fixture
def key() -> Key:
    return Key.generate()


@pytest.fixture
def sealed(tmp_path: Path, key: Key) -> Store:
    Store.init(tmp_path / "sealed")
    store = Store(tmp_path / "sealed", key=key)
    _history_of_a_city(store)
    return store


def _all_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]


def _needles(text: str) -> list[bytes]:
    return [text.encode(), text.encode("utf-16-le"), json.dumps(text).encode()]


# -------------------------------------------------------------------------------- no plaintext


def test_no_file_of_the_store_holds_a_confidential_value(sealed: Store, tmp_path: Path) -> None:
    sealed_files = sorted((sealed.root / "segments").glob("*.sealed"))
    assert len(sealed_files) == 5  # v2, v3, v4, v5, v7 sealed something; v1 and v6 did not
    for path, data in _all_bytes(sealed.root):
        for needle in _needles(SECRET) + _needles(HIDDEN_ID) + _needles("/data/vault.geojson"):
            assert needle not in data, f"{path.relative_to(sealed.root)} holds {needle!r}"
    # and not behind the compression either: every plain segment, decompressed, is free of them
    for seg in sorted((sealed.root / "segments").glob("*.parquet")):
        text = json.dumps(pq.read_table(seg).drop_columns(["geometry"]).to_pylist(), default=str)
        assert SECRET not in text and HIDDEN_ID not in text and "vault" not in text, seg.name
    # the check is not blind: the same history written without a key holds the value in clear, found by it
    Store.init(tmp_path / "plain")
    plain = Store(tmp_path / "plain")
    _history_of_a_city(plain)
    assert any(SECRET.encode() in data for _, data in _all_bytes(plain.root))
    # sealed files are the format the docs describe, under the key's id
    assert all(p.read_bytes()[:8] == b"TWINSEAL" and p.name.split(".")[1] == sealed.key.id for p in sealed_files)
    assert json.loads((sealed.root / "encryption.json").read_text())["key_id"] == sealed.key.id


def test_the_key_is_never_written_into_the_store(sealed: Store, key: Key) -> None:
    raw = key._raw
    for path, data in _all_bytes(sealed.root):
        for needle in (raw, key.text().encode(), raw.hex().encode()):
            assert needle not in data, path


# -------------------------------------------------------------------------------- reads with the key


def test_reads_with_the_key_equal_reads_of_the_same_store_in_clear(sealed: Store, tmp_path: Path,
                                                                   key: Key) -> None:
    Store.init(tmp_path / "plain")
    plain = Store(tmp_path / "plain")
    _history_of_a_city(plain)
    assert not any((plain.root / "segments").glob("*.sealed"))
    want = _reads(plain)
    assert _reads(sealed) == want
    assert _reads(Store(sealed.root, key=key)) == want  # a fresh process decrypting from disk
    assert sealed.get("b000003")["attributes"] == {"name": SECRET}


def test_the_key_comes_from_twin_key_or_twin_key_file(sealed: Store, key: Key, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_KEY", key.text())
    assert Store(sealed.root).get("b000003")["attributes"] == {"name": SECRET}
    monkeypatch.delenv("TWIN_KEY")
    raw = tmp_path / "raw.key"
    raw.write_bytes(key._raw)
    b64 = tmp_path / "b64.key"
    b64.write_text(base64.urlsafe_b64encode(key._raw).decode().rstrip("=") + "\n")
    for f in (raw, b64):
        monkeypatch.setenv("TWIN_KEY_FILE", str(f))
        assert Store(sealed.root).get(HIDDEN_ID, as_of=4)["attributes"] == {"name": SECRET + "-annex"}
    monkeypatch.setenv("TWIN_KEY", key.text())
    with pytest.raises(KeyInvalid, match="both TWIN_KEY and TWIN_KEY_FILE"):
        Store(sealed.root).features()


# -------------------------------------------------------------------------------- wrong or missing key


def test_a_wrong_key_is_a_clear_error_that_shows_no_key(sealed: Store, key: Key) -> None:
    wrong = Key.generate()
    for read in (lambda s: s.features(), lambda s: s.history("b000003"), lambda s: s.changelog(2),
                 lambda s: s.count(query=Query(classification_max="public"))):
        with pytest.raises(KeyMismatch) as info:
            read(Store(sealed.root, key=wrong))
        msg = str(info.value)
        assert f"encrypted with key {key.id}" in msg and wrong.id in msg and "does not match" in msg
        for k in (key, wrong):
            assert k.text() not in msg and k._raw.hex() not in msg
    with pytest.raises(KeyMismatch):  # nor can it write a sealed row beside the others
        Store(sealed.root, key=wrong).commit([Building(id="x", geometry=square(448_900, 4_428_900),
                                                       classification="secret")], message="mixed keys")
    assert "x" not in {f["id"] for f in sealed.features()}
    assert repr(key) == str(key) == f"Key(id={key.id}, from generated)"


def test_a_store_that_decrypts_never_lets_duckdb_spill_to_disk(sealed: Store, key: Key) -> None:
    s = Store(sealed.root, key=key)
    s.features()
    assert s._con.execute("SELECT current_setting('temp_directory')").fetchone()[0] == ""


def test_a_tampered_sealed_file_fails_authentication(sealed: Store, key: Key) -> None:
    path = next((sealed.root / "segments").glob("00000002.*.sealed"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(SealBroken, match="fails authentication"):
        Store(sealed.root, key=key).features()
    other = next((sealed.root / "segments").glob("00000003.*.sealed"))
    path.write_bytes(other.read_bytes())  # a whole sealed file moved to another version: its role differs
    with pytest.raises(SealBroken):
        Store(sealed.root, key=key).features()


def test_a_copy_without_the_key_reads_its_public_and_internal_data(sealed: Store, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(sealed.root, copy)
    bare = Store(copy)
    for branch in ("main", "plan"):
        for v in range(1, bare.head(branch) + 1):
            for level in ("public", "internal"):
                q = Query(classification_max=level)
                assert bare.features(branch, v, q) == sealed.features(branch, v, q)
                assert bare.count(branch, v, q) == sealed.count(branch, v, q)
                assert bare.extents(branch, v, restrict=q) == sealed.extents(branch, v, restrict=q)
    # b000003 was public at v1 and is confidential since v2: without the key its old version is not live
    assert "b000003" not in bare.digests(query=Query(classification_max="public"))
    # a read that would need the sealed rows says what is missing
    with pytest.raises(KeyMissing, match="holds encrypted confidential data; set TWIN_KEY or TWIN_KEY_FILE"):
        bare.features()
    with pytest.raises(KeyMissing):
        bare.count(query=Query(classification_max="confidential"))
    assert bare.features(as_of=1) == sealed.features(as_of=1)  # before anything was sealed
    assert bare.all_classifications() == sealed.all_classifications()
    # the guard's public view is the same with and without the key
    anon = Principal(id="principal-anonymous", name="anonymous", roles=["viewer"], clearance="public")
    assert GuardedStore(bare, anon).features() == GuardedStore(sealed, anon).features()
    assert GuardedStore(bare, anon).history("b000003") == GuardedStore(sealed, anon).history("b000003") == []
    assert GuardedStore(bare, anon).history("b000005") == GuardedStore(sealed, anon).history("b000005")
    for v in range(1, bare.head() + 1):  # earlier versions leave out what is hidden now, without the key too
        assert GuardedStore(bare, anon).changelog(v) == GuardedStore(sealed, anon).changelog(v)
        assert GuardedStore(bare, anon).features(as_of=v) == GuardedStore(sealed, anon).features(as_of=v)
    assert "b000003" not in {f["id"] for f in GuardedStore(bare, anon).features(as_of=1)}
    # digests need no key: an id whose newest row is sealed and was in clear before has a placeholder digest
    assert bare.digests()["b000003"] == "sealed:4" and HIDDEN_ID not in bare.digests(as_of=4)
    # without the key, a sealed version of an id stored in clear is a placeholder, one never in clear is absent
    assert [r["_store"]["op"] for r in bare.history("b000003")] == ["add", "sealed", "sealed"]
    assert bare.history("b000003")[1]["classification"] == "confidential"
    assert bare.history(HIDDEN_ID) == [] and HIDDEN_ID not in {r["id"] for r in bare.changelog(2)}
    assert [r["_store"]["op"] for r in bare.history("b000007")] == ["add", "sealed", "remove"]
    assert bare.history("b000007")[-1] == sealed.history("b000007")[-1]  # a removal hides nothing
    assert bare.changelog(5) == [{"collection": CITY, "id": "b000007", "op": "remove"}]
    assert GuardedStore(bare, anon).history("b000007") == GuardedStore(sealed, anon).history("b000007") == []


def test_without_the_key_public_commits_work_and_sealed_ones_are_refused(sealed: Store, tmp_path: Path,
                                                                         key: Key) -> None:
    bare = Store(sealed.root)
    before = sealed.content_digest()
    with pytest.raises(KeyMissing, match="TWIN_KEY"):
        bare.commit([Building(id="new-secret", geometry=square(448_900, 4_428_900), classification="secret")],
                    message="no key")
    with pytest.raises(KeyMissing):  # removing a sealed entity writes a sealed tombstone
        bare.commit([], remove=["b000003"], message="no key")
    assert sealed.content_digest() == before
    c = bare.commit([Building(id="kiosk", geometry=square(448_950, 4_428_950))], message="public, no key")
    assert c is not None and Store(sealed.root, key=key).get("kiosk")["_store"]["op"] == "add"
    # a public edit of an id whose newest row is sealed (a stub) supersedes it, with the key too
    bare.commit([make_buildings(12)[3]], message="b000003 public again")
    assert Store(sealed.root, key=key).get("b000003")["classification"] == "public"
    assert Store(sealed.root, key=key).get("b000003")["_store"]["op"] == "modify"


def test_a_store_without_a_key_stays_in_clear_as_before(store: Store) -> None:
    store.commit([Building(id="v", geometry=square(448_000, 4_428_000), classification="secret",
                           attributes={"name": SECRET})], message="no key anywhere")
    assert not (store.root / "encryption.json").exists() and not any((store.root / "segments").glob("*.sealed"))
    assert store.get("v")["attributes"] == {"name": SECRET}
    assert store.encryption_status()["key_id"] is None


def test_a_failed_sealed_commit_leaves_the_store_identical(store: Store, key: Key,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    s = Store(store.root, key=key)
    s.commit(make_buildings(4), message="public")
    before = s.content_digest()
    for point in ("sealed_written", "after_segment", "json_written"):
        monkeypatch.setenv("TWIN_FAULT", f"{point}:raise")
        with pytest.raises(RuntimeError, match="injected fault"):
            s.commit([Building(id="b", geometry=square(448_500, 4_428_500), classification="secret")], message="x")
        monkeypatch.delenv("TWIN_FAULT")
        assert s.content_digest() == before, point
        assert not (store.root / "encryption.json").exists() and not any((store.root / "segments").glob("*.sealed"))
        assert not any((store.root / "tmp").iterdir())


# -------------------------------------------------------------------------------- rotation


def test_rotation_keeps_reads_and_retires_the_old_key(sealed: Store, key: Key) -> None:
    want = _reads(Store(sealed.root, key=key))
    new = Key.generate()
    assert sealed.rotate_key(key, new) == 5
    names = sorted(p.name for p in (sealed.root / "segments").glob("*.sealed"))
    assert len(names) == 5 and all(f".{new.id}." in n for n in names)
    assert _reads(Store(sealed.root, key=new)) == want
    with pytest.raises(KeyMismatch, match=f"encrypted with key {new.id}"):
        Store(sealed.root, key=key).features()
    with pytest.raises(KeyMismatch):  # an open Store with the old key stops reading too
        Store(sealed.root, key=key).history("b000003")
    with pytest.raises(KeyMismatch):  # and rotating again needs the key in force
        sealed.rotate_key(key, Key.generate())
    st = Store(sealed.root, key=new).encryption_status()
    assert (st["key_id"], st["files"], st["matches"]) == (new.id, 5, True)
    for _, data in _all_bytes(sealed.root):
        assert SECRET.encode() not in data


def test_a_failed_rotation_leaves_the_old_key_in_force(sealed: Store, key: Key,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    before = sealed.content_digest()
    want = Store(sealed.root, key=key).features()
    monkeypatch.setenv("TWIN_FAULT", "rotation_written:raise")
    with pytest.raises(RuntimeError, match="injected fault"):
        sealed.rotate_key(key, Key.generate())
    monkeypatch.delenv("TWIN_FAULT")
    assert sealed.content_digest() == before and Store(sealed.root, key=key).features() == want
    # what a killed rotation leaves (new files, no switch) the next writer removes
    stray = sealed.root / "segments" / "00000002.0badc0de.sealed"
    stray.write_bytes(b"TWINSEAL")
    sealed.commit([Building(id="k", geometry=square(448_960, 4_428_960))], message="after")
    assert not stray.exists()
    # a lost encryption.json never costs the sealed rows: a writer keeps them, the key still reads them
    (sealed.root / "encryption.json").unlink()
    Store(sealed.root).commit([Building(id="k2", geometry=square(448_970, 4_428_970))], message="after loss")
    assert len(list((sealed.root / "segments").glob("*.sealed"))) == 5
    assert Store(sealed.root, key=key).features() == want + [Store(sealed.root, key=key).get(i) for i in ("k", "k2")]


# -------------------------------------------------------------------------------- keys and the CLI


def test_keys_of_the_wrong_length_are_refused_without_showing_them(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(os.urandom(17))
    with pytest.raises(KeyInvalid, match=r"holds 17 bytes") as info:
        Key.load(short)
    assert short.read_bytes().hex() not in str(info.value)
    with pytest.raises(KeyInvalid, match="decodes to 24 bytes"):
        Key.parse(base64.b64encode(b"x" * 24).decode(), "TWIN_KEY")
    with pytest.raises(KeyInvalid, match="does not exist"):
        Key.load(tmp_path / "none.key")
    with pytest.raises(KeyInvalid, match="empty"):
        Key.parse("  \n", "TWIN_KEY")


def test_cli_generate_status_rotate(sealed: Store, key: Key, tmp_path: Path) -> None:
    f = tmp_path / "new.key"
    r = runner.invoke(app, ["keys", "generate", str(f)])
    assert r.exit_code == 0, r.output
    assert f.stat().st_mode & 0o777 == 0o600
    new = Key.load(f)
    assert new.id in r.output and new.text() not in r.output
    assert runner.invoke(app, ["keys", "generate", str(f)]).exit_code != 0  # never overwritten
    old = tmp_path / "old.key"
    old.write_text(key.text())
    env = {"TWIN_KEY_FILE": str(old)}
    r = runner.invoke(app, ["keys", "status", "--store", str(sealed.root), "--json"], env=env)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert (doc["key_id"], doc["files"], doc["matches"]) == (key.id, 5, True)
    r = runner.invoke(app, ["keys", "rotate", "--new", str(f), "--store", str(sealed.root)], env=env)
    assert r.exit_code == 0, r.output
    assert f"{key.id} → {new.id}" in r.output
    r = runner.invoke(app, ["keys", "status", "--store", str(sealed.root)], env=env)
    assert "does not match" in r.output and key.text() not in r.output
    assert Store(sealed.root, key=new).get("b000003")["attributes"] == {"name": SECRET}


def test_cli_refuses_a_key_file_of_the_wrong_length(sealed: Store, key: Key, tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import TWIN

    bad = tmp_path / "bad.key"
    bad.write_bytes(os.urandom(31))
    old = tmp_path / "old.key"
    old.write_text(key.text())
    env = {k: v for k, v in os.environ.items() if k not in ("TWIN_KEY", "TWIN_KEY_FILE")}
    r = subprocess.run([TWIN, "keys", "rotate", "--old", str(old), "--new", str(bad), "--store", str(sealed.root)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "bad.key" in r.stderr and "31 bytes" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([TWIN, "keys", "status", "--store", str(sealed.root)],
                       env={**env, "TWIN_KEY_FILE": str(bad)}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "31 bytes" in r.stderr and "Traceback" not in r.stderr
    for out in (r.stdout, r.stderr):
        assert key.text() not in out and bad.read_bytes().hex() not in out


# -------------------------------------------------------------------------------- bulk tables


def _cells(owner: str, n: int, base: float) -> pa.Table:
    return pa.table({"asset_id": [owner] * n, "cell": pa.array(range(n), pa.uint64()),
                     "note": [f"{owner}-cell-{i}" for i in range(n)], "value": [base + i for i in range(n)]})


def _table_history(store: Store) -> None:
    """A public and a confidential layer with their cells in one commit; then new cells of the confidential one
    alone (its owner is not in that commit: its level comes from the store)."""
    public = LayerSpec(name="open-layer", variable="v", unit="1", kind="intensive", aggregation="mean",
                       resolutions=[9])
    vault = public.model_copy(update={"name": "vault-layer", "classification": Classification.confidential})
    store.commit([public, vault], message="layers",
                 tables={"cells": pa.concat_tables([_cells("open-layer", 5, 1.0), _cells("vault-layer", 5, 100.0)])})
    store.commit([], message="new vault cells", tables={"cells": _cells("vault-layer", 7, 200.0)})


def _table_reads(store: Store) -> dict:
    return {(v, owner): store._con.execute(f"SELECT * FROM {store.table_sql('cells', as_of=v, owner=owner)} "
                                           "ORDER BY asset_id, cell").to_arrow_table().to_pylist()
            for v in (1, 2) for owner in ("open-layer", "vault-layer")}


def test_bulk_rows_of_a_confidential_owner_are_sealed(tmp_path: Path, key: Key) -> None:
    Store.init(tmp_path / "s")
    store = Store(tmp_path / "s", key=key)
    _table_history(store)
    Store.init(tmp_path / "plain")
    plain = Store(tmp_path / "plain")
    _table_history(plain)
    # no file holds the confidential owner's rows in clear (the same history without a key does)
    for path, data in _all_bytes(store.root):
        assert b"vault-layer-cell-" not in data, path.relative_to(store.root)
    for seg in sorted((store.root / "segments").glob("*.cells.parquet")):
        assert "vault-layer-cell" not in json.dumps(pq.read_table(seg).to_pylist())
    assert any("vault-layer-cell" in json.dumps(pq.read_table(p).to_pylist())
               for p in (plain.root / "segments").glob("*.cells.parquet"))
    sealed_tables = sorted(p.name for p in (store.root / "segments").glob("*.cells.*.sealed"))
    assert sealed_tables == [f"00000001.cells.{key.id}.sealed", f"00000002.cells.{key.id}.sealed"]
    assert not (store.root / "segments" / "00000002.cells.parquet").exists()  # version 2 had no public rows
    # reads with the key equal the plain store's, also from a fresh process-like Store
    want = _table_reads(plain)
    assert _table_reads(store) == want == _table_reads(Store(store.root, key=key))
    assert len(want[(2, "vault-layer")]) == 7 and want[(2, "open-layer")] == want[(1, "open-layer")]
    # without the key: the public owner's rows read, the confidential one's are a clear KeyMissing
    bare = Store(store.root)
    assert bare._con.execute(f"SELECT count(*) FROM {bare.table_sql('cells', owner='open-layer')}").fetchone() == (5,)
    assert bare.table_sql("cells", owners=["open-layer"]) is not None
    with pytest.raises(KeyMissing, match="TWIN_KEY"):
        bare.read_table("cells")
    anon = Principal(id="principal-anonymous", name="anonymous", roles=["viewer"], clearance="public")
    assert GuardedStore(bare, anon).read_table("cells").column("asset_id").unique().to_pylist() == ["open-layer"]
    with pytest.raises(KeyMismatch):
        Store(store.root, key=Key.generate()).read_table("cells")
    # rotation re-encrypts the table files too, and status counts them
    new = Key.generate()
    assert store.rotate_key(key, new) == 3  # the confidential layer's own row, and its two tables of cells
    assert _table_reads(Store(store.root, key=new)) == want
    assert sorted(p.name for p in (store.root / "segments").glob("*.sealed")) == sorted([
        f"00000001.{new.id}.sealed", f"00000001.cells.{new.id}.sealed", f"00000002.cells.{new.id}.sealed"])
    assert Store(store.root, key=new).encryption_status()["files"] == 3


# -------------------------------------------------------------------------------- store files (rasters)


def _product(store: Store, name: str, level: str, data: bytes) -> SourceAsset:
    rel = Path("products") / "runs" / "r1" / name
    (store.root / rel).parent.mkdir(parents=True, exist_ok=True)
    (store.root / rel).write_bytes(data)
    return SourceAsset(id=f"asset-{name}", kind="product", path=str(rel), checksum=f"{len(data):064x}",
                       size_bytes=len(data), classification=level, ingested=T0)


def test_store_files_of_confidential_assets_are_sealed(tmp_path: Path, key: Key,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_PLAIN_DIR", str(tmp_path / "plain-copies"))
    Store.init(tmp_path / "s")
    store = Store(tmp_path / "s", key=key)
    secret_raster = b"II*\x00" + SECRET.encode() * 5000
    open_raster = b"II*\x00" + b"open data " * 100
    vault, public = _product(store, "vault.tif", "confidential", secret_raster), _product(store, "open.tif", "public",
                                                                                          open_raster)
    store.commit([vault, public], message="run files")
    folder = store.root / "products" / "runs" / "r1"
    assert sorted(p.name for p in folder.iterdir()) == ["open.tif", f"vault.tif.{key.id}.sealed"]
    for path, data in _all_bytes(store.root):
        assert SECRET.encode() not in data, path
    # readers get the path of a decrypted copy outside the store, the same bytes; a public file stays where it is
    got = Store(store.root, key=key).asset_path(vault.model_dump(mode="json"))
    assert got.read_bytes() == secret_raster and store.root not in got.parents
    assert got.is_relative_to(tmp_path / "plain-copies") and oct(got.stat().st_mode & 0o777) == "0o600"
    assert Store(store.root).asset_path(public.model_dump(mode="json")) == folder / "open.tif"
    # without the key, or with another, a clear error
    with pytest.raises(KeyMissing, match="products/runs/r1/vault.tif"):
        Store(store.root).asset_path(vault.model_dump(mode="json"))
    with pytest.raises(KeyMismatch):
        Store(store.root, key=Key.generate()).asset_path(vault.model_dump(mode="json"))
    # a sealed file moved to another name fails authentication
    moved = folder / f"other.tif.{key.id}.sealed"
    shutil.copy(folder / f"vault.tif.{key.id}.sealed", moved)
    with pytest.raises(SealBroken, match="altered"):
        Store(store.root, key=key).asset_path({**vault.model_dump(mode="json"), "checksum": "1" * 64,
                                               "path": "products/runs/r1/other.tif"})
    moved.unlink()
    # rotation re-seals it under the new key
    new = Key.generate()
    store.rotate_key(key, new)
    assert sorted(p.name for p in folder.iterdir()) == ["open.tif", f"vault.tif.{new.id}.sealed"]
    assert Store(store.root, key=new).asset_path({**vault.model_dump(mode="json"), "checksum": "2" * 64}
                                                 ).read_bytes() == secret_raster


def test_a_failed_commit_leaves_a_confidential_file_in_place_and_nothing_sealed(tmp_path: Path, key: Key,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    Store.init(tmp_path / "s")
    store = Store(tmp_path / "s", key=key)
    store.commit(make_buildings(2), message="v1")
    vault = _product(store, "vault.tif", "confidential", b"II*\x00" + SECRET.encode())
    before = store.content_digest()
    monkeypatch.setenv("TWIN_FAULT", "after_segment:raise")
    with pytest.raises(RuntimeError, match="injected fault"):
        store.commit([vault], message="v2")
    monkeypatch.delenv("TWIN_FAULT")
    folder = store.root / "products" / "runs" / "r1"
    assert sorted(p.name for p in folder.iterdir()) == ["vault.tif"] and Store(store.root).content_digest() == before
