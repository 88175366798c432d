"""The audit log (twin.security.audit): hash-chained records, signed checkpoints, `twin audit verify` catching each
kind of tampering at the right record, appends from many processes, and no key or token material in the log."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from twin.errors import BadInput, Conflict  # noqa: E402
from twin.security.audit import (  # noqa: E402
    GENESIS,
    AuditLog,
    canonical,
    default_key_path,
    fingerprint,
    generate_key,
    load_signing_key,
    record_hash,
)

TWIN = str(Path(sys.executable).with_name("twin"))
N = 30  # records in the tampering fixture; checkpoints every 10


# ---------------------------------------------------------------------------------------------------- helpers
def _fill(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.append("alice" if i % 3 else "bob", ("read", "export", "write")[i % 3], [f"b{i:04d}", f"b{i + 1:04d}"],
                   client="10.0.0.7", size=2)


def _lines(log: AuditLog) -> list[bytes]:
    return log.log_path.read_bytes().splitlines(keepends=True)


def _write(log: AuditLog, lines: list[bytes]) -> None:
    log.log_path.write_bytes(b"".join(lines))


def _line(rec: dict) -> bytes:
    rec = {k: v for k, v in rec.items() if k != "hash"}
    rec["hash"] = record_hash(rec)
    return canonical(rec) + b"\n"


def _rechain(records: list[dict]) -> list[bytes]:
    """What an attacker without the key can do: recompute every hash and prev from the first record on."""
    out, prev = [], GENESIS
    for i, rec in enumerate(records):
        rec = {**rec, "seq": i, "prev": prev}
        line = _line(rec)
        prev = json.loads(line)["hash"]
        out.append(line)
    return out


@pytest.fixture
def key(tmp_path) -> Ed25519PrivateKey:
    return generate_key(tmp_path / "secrets" / "audit.key")


@pytest.fixture
def signed(tmp_path, key) -> AuditLog:
    """A store folder with N records and checkpoints every 10 records (the first one at record 0)."""
    store = tmp_path / "store"
    store.mkdir()
    log = AuditLog(store, signing_key=key, checkpoint_every=10)
    _fill(log, N)
    return log


@pytest.fixture
def plain(tmp_path) -> AuditLog:
    store = tmp_path / "plain"
    store.mkdir()
    log = AuditLog(store)
    _fill(log, N)
    return log


# ---------------------------------------------------------------------------------------------------- format
def test_records_are_canonical_chained_and_returned(plain):
    recs = [json.loads(x) for x in _lines(plain)]
    assert [r["seq"] for r in recs] == list(range(N))
    assert recs[0]["prev"] == GENESIS
    for a, b in zip(recs, recs[1:], strict=False):
        assert b["prev"] == a["hash"]
    for raw, rec in zip(_lines(plain), recs, strict=True):
        assert canonical(rec) + b"\n" == raw  # sorted keys, compact, one line
        assert rec["hash"] == record_hash(rec)
        assert set(rec) == {"seq", "time", "principal", "action", "target", "client", "size", "result", "prev",
                            "hash"}
        assert datetime.strptime(rec["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    got = plain.append("carol", "admin", {"op": "grant", "user": "dave"}, client=None, size=None,
                       extra={"route": "/admin/principals"})
    assert json.loads(_lines(plain)[-1]) == got
    assert got["seq"] == N and got["extra"] == {"route": "/admin/principals"} and got["client"] is None
    assert plain.verify().ok


def test_bad_input_writes_nothing(plain):
    size = plain.log_path.stat().st_size
    for kwargs in ({"action": "Read!"}, {"size": -1}, {"size": 1.5}, {"target": {1, 2}}, {"principal": ""},
                   {"target": {"a": float("nan")}}, {"extra": ["not", "a", "dict"]}):
        args = {"principal": "alice", "action": "read", "target": "x", "client": None, "size": 1, **kwargs}
        with pytest.raises(BadInput):
            plain.append(args.pop("principal"), args.pop("action"), args.pop("target"), **args)
    assert plain.log_path.stat().st_size == size


def test_no_key_or_token_material_reaches_the_log(tmp_path, key):
    (tmp_path / "s").mkdir()
    log = AuditLog(tmp_path / "s", signing_key=key)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    api_key = "twin_AbCdEfGhJkLm_" + "s3cr3t-S3CR3T_x" * 2 + "0123456789abc"  # key id, 43-character secret
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwcmluY2lwYWwtYWxpY2UifQ.c2lnbmF0dXJlLWJ5dGVz"
    secrets = [raw.hex(), base64.b64encode(raw).decode(), "hunter2-pass", "tok-123456789", "s3cr3t-S3CR3T",
               "Zm9vOmJhcjEyMw==", jwt, "MC4CAQAwBQYDK2Vw", "q9v8Xw7Lk3Jd0Mz5"]
    log.append("login-attempt " + api_key, "login-failed", {"api_key": api_key, "password": "hunter2-pass",
                                                             "query": "/items?bbox=1,2,3,4&access_token=tok-123456789"},
               client="Bearer " + jwt, size=None, result="unauthorized",
               extra={"headers": {"Authorization": "Basic Zm9vOmJhcjEyMw==", "X-Api-Key": api_key},
                      "body": pem, "note": f"key was {raw.hex()} / {base64.b64encode(raw).decode()}",
                      "nested": [{"client_secret": "q9v8Xw7Lk3Jd0Mz5"}]})
    text = log.log_path.read_text()
    for s in secrets:
        assert s not in text, s
    assert "AbCdEfGhJkLm" in text  # the public key id stays: who tried is still known
    assert "bbox=1,2,3,4" in text and "[redacted]" in text
    assert log.verify().ok


def test_big_targets_are_kept_as_a_digest(plain):
    ids = [f"building-{i:07d}" for i in range(5000)]
    rec = plain.append("alice", "read", ids, client="x", size=len(ids))
    t = rec["target"]
    assert t["truncated"] and t["count"] == 5000 and t["head"] == ids[:len(t["head"])] and len(t["head"]) > 100
    assert len(_lines(plain)[-1]) < 20_000
    assert plain.verify().ok


# ---------------------------------------------------------------------------------------------------- tampering
def test_verify_passes_on_an_intact_log(signed):
    r = signed.verify()
    assert r.ok and r.records == N and r.first_bad_seq is None
    assert r.checkpoints == 3 and r.last_checkpoint_seq == 20  # at records 0, 10 and 20


def _edit(lines):
    rec = json.loads(lines[17])
    rec["principal"] = "mallory"
    lines[17] = canonical(rec) + b"\n"  # the old hash kept
    return lines


def _edit_spacing(lines):
    lines[17] = lines[17].replace(b'","principal":', b'", "principal":')
    return lines


def _delete(lines):
    del lines[17]
    return lines


def _insert_forged(lines):
    """A made-up record 17 chained right after 16, put before the real 17."""
    r16 = json.loads(lines[16])
    fake = {**json.loads(lines[17]), "principal": "mallory", "prev": r16["hash"]}
    return [*lines[:17], _line(fake), *lines[17:]]


def _insert_copy(lines):
    return [*lines[:17], lines[3], *lines[17:]]


def _reorder(lines):
    lines[17], lines[18] = lines[18], lines[17]
    return lines


def _move_far(lines):
    rec = lines.pop(17)
    return [*lines, rec]


def _rehash_one(lines):
    """Record 17 edited and its own hash recomputed (the rest of the chain untouched)."""
    lines[17] = _line({**json.loads(lines[17]), "principal": "mallory"})
    return lines


def _torn(lines):
    lines[-1] = lines[-1][:40]
    return lines


@pytest.mark.parametrize(("tamper", "seq", "line", "words"), [
    (_edit, 17, 18, "record 17 edited (hash mismatch)"),
    (_edit_spacing, 17, 18, "record 17 edited (the line is not in canonical form)"),
    (_delete, 17, 18, "record 17 missing (seq jumps 16 → 18)"),
    (_insert_forged, 17, 19, "record 17 inserted or reordered: seq 17 at line 19 follows seq 17"),
    (_insert_copy, 17, 18, "record 3 inserted or reordered: seq 3 at line 18 follows seq 16"),
    (_reorder, 17, 18, "record 17 reordered: it is at line 19, after record 18 (line 18)"),
    (_move_far, 17, 18, f"record 17 reordered: it is at line {N}, after record 18"),
    (_rehash_one, 17, 19, "record 18 inserted or reordered, or record 17 edited with a recomputed hash"),
    (_torn, N - 1, N, f"line {N} is incomplete"),
])
def test_verify_fails_at_the_right_record(signed, tamper, seq, line, words):
    assert signed.verify().ok
    _write(signed, tamper(_lines(signed)))
    r = signed.verify()
    assert not r.ok
    assert words in r.problem, r.problem
    assert (r.first_bad_seq, r.line_no) == (seq, line), r
    assert r.file == str(signed.log_path)
    assert f"line {line}" in str(r)


def test_truncated_tail_is_caught_by_a_checkpoint(signed, key):
    signed.checkpoint()  # signs seq 29
    _write(signed, _lines(signed)[:25])
    r = signed.verify()
    assert not r.ok and r.first_bad_seq == 25 and r.line_no == 26
    assert "log truncated: checkpoint 3 at seq 29 but the log ends at 24" in r.problem
    _write(signed, [])
    assert "the log is empty" in signed.verify().problem


def test_rewrite_with_a_recomputed_chain_is_caught_by_a_checkpoint(signed):
    recs = [json.loads(x) for x in _lines(signed)]
    recs[14]["principal"] = "mallory"
    _write(signed, _rechain(recs))
    r = signed.verify()
    assert not r.ok
    assert r.problem.startswith("log rewritten: checkpoint 2 at seq 20 (checkpoints.jsonl line 3) signs hash "), r
    assert "records seq 11–20 were altered" in r.problem
    assert (r.first_bad_seq, r.line_no) == (11, 21)


def test_full_rewrite_with_its_own_key_and_checkpoints_is_caught_by_kept_copies(signed, tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir()
    shutil.copy(signed.public_path, kept / "public.pem")
    shutil.copy(signed.checkpoints_path, kept / "checkpoints.jsonl")
    fp = fingerprint(load_signing_key(tmp_path / "secrets" / "audit.key").public_key())
    # the attacker rewrites everything in the store: log (chain recomputed), a public key and checkpoints of theirs
    recs = [json.loads(x) for x in _lines(signed)]
    del recs[5]
    _write(signed, _rechain(recs))
    for p in (signed.public_path, signed.checkpoints_path):
        p.unlink()
    forged = AuditLog(signed.root, signing_key=Ed25519PrivateKey.generate())
    forged.checkpoint()
    assert forged.verify().ok  # against the store alone, the rewrite is consistent

    r = forged.verify(public_key=kept / "public.pem")
    assert not r.ok and "public.pem was replaced" in r.problem
    r = forged.verify(kept_fingerprint=fp)
    assert not r.ok and "is not the kept fingerprint" in r.problem
    r = forged.verify(checkpoints=kept / "checkpoints.jsonl")
    assert not r.ok and "signature invalid: signed by key" in r.problem and r.line_no == 1

    # with the attacker's key and checkpoints gone and the original public key back: the kept checkpoints decide
    signed.checkpoints_path.unlink()
    shutil.copy(kept / "public.pem", signed.public_path)
    r = signed.verify(public_key=kept / "public.pem", checkpoints=kept / "checkpoints.jsonl")
    assert not r.ok and r.problem.startswith("log rewritten: checkpoint 1 at seq 10"), r
    assert r.first_bad_seq == 1  # checkpoint 0 (seq 0) still matches


def test_forged_checkpoint_signatures_are_caught(signed):
    entries = [json.loads(x) for x in signed.checkpoints_path.read_bytes().splitlines()]
    recs = [json.loads(x) for x in _lines(signed)]
    recs[14]["principal"] = "mallory"
    lines = _rechain(recs)
    _write(signed, lines)
    # 1. the checkpoint's hash changed to the rewritten log's, the old signature kept
    entries[2]["hash"] = json.loads(lines[20])["hash"]
    signed.checkpoints_path.write_bytes(b"".join(canonical(e) + b"\n" for e in entries))
    r = signed.verify()
    assert not r.ok and r.problem == "checkpoint 2 signature invalid" and r.line_no == 3 and r.first_bad_seq == 20
    # 2. signed by another key under the real key's fingerprint
    body = {k: v for k, v in entries[2].items() if k != "sig"}
    entries[2]["sig"] = base64.b64encode(Ed25519PrivateKey.generate().sign(canonical(body))).decode()
    signed.checkpoints_path.write_bytes(b"".join(canonical(e) + b"\n" for e in entries))
    assert signed.verify().problem == "checkpoint 2 signature invalid"
    # 3. checkpoints present, public key removed
    signed.public_path.unlink()
    assert "no public key" in signed.verify().problem


def test_warnings_say_what_is_not_covered(plain, signed):
    assert plain.verify().ok and any("no checkpoints" in w for w in plain.verify().warnings)
    w = signed.verify().warnings
    assert any("records 21–29 come after the last checkpoint" in x for x in w)
    assert any("pass a kept copy" in x for x in w)


# ---------------------------------------------------------------------------------------------------- concurrency
def _worker(root: str, k: int, n: int) -> None:
    log = _SHARED if _SHARED is not None else AuditLog(root)

    def run(t: int) -> None:
        for i in range(n):
            log.append(f"p{k}", "read", [f"w{k}-{t}-{i}"], client=f"pid {os.getpid()}", size=1)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


_SHARED: AuditLog | None = None


def test_many_processes_and_threads_append_consecutive_seqs(tmp_path, key):
    global _SHARED
    _SHARED = AuditLog(tmp_path, signing_key=key, checkpoint_every=50)
    _SHARED.append("parent", "admin", "start", client=None, size=None)  # open descriptors before the fork
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), k, 100)) for k in range(4)]
    try:
        for p in procs:
            p.start()
        _worker(str(tmp_path), 9, 100)  # the parent appends meanwhile too
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
    finally:
        _SHARED = None
    recs = [json.loads(x) for x in (tmp_path / "audit" / "log.jsonl").read_bytes().splitlines()]
    total = 1 + 5 * 2 * 100
    assert [r["seq"] for r in recs] == list(range(total))
    assert {r["principal"] for r in recs} == {"parent", "p0", "p1", "p2", "p3", "p9"}
    r = AuditLog(tmp_path).verify()
    assert r.ok and r.records == total and r.checkpoints >= total // 50 - 1, r


def test_append_is_cheap(tmp_path):
    log = AuditLog(tmp_path)
    log.append("warm", "read", "x", client=None, size=0)
    n = 2000
    t0 = time.perf_counter()
    for i in range(n):
        log.append("alice", "read", {"collection": "buildings", "bbox": [1, 2, 3, 4], "i": i}, client="10.0.0.1",
                   size=100)
    per = (time.perf_counter() - t0) / n
    print(f"audit append: {per * 1e6:.0f} µs")
    assert per < 1e-3  # ~30 µs on a laptop; a loose bound for slow CI machines


# ---------------------------------------------------------------------------------------------------- checkpoints
def test_automatic_checkpoints_by_count_and_by_time(tmp_path, key):
    log = AuditLog(tmp_path, signing_key=key, checkpoint_every=10)
    _fill(log, 25)
    assert [c["count"] for c in log.checkpoints()] == [1, 11, 21]  # none yet, then every 10 records
    assert (tmp_path / "audit" / "public.pem").is_file()
    timed = AuditLog(tmp_path, signing_key=key, checkpoint_interval=0.2)
    _fill(timed, 2, start=25)
    deadline = time.monotonic() + 10
    while log.checkpoints()[-1]["count"] != 27 and time.monotonic() < deadline:
        time.sleep(0.05)  # a timer signs the unsigned tail within the interval
    assert log.checkpoints()[-1]["count"] == 27
    assert log.verify().ok and log.verify().last_checkpoint_seq == 26
    with AuditLog(tmp_path, signing_key=key) as last:  # closing signs the unsigned tail
        _fill(last, 3, start=27)
    assert log.checkpoints()[-1]["count"] == 30 and log.verify().last_checkpoint_seq == 29


def test_checkpoint_with_another_key_is_refused(signed):
    with pytest.raises(Conflict, match="not the signing key"):
        signed.checkpoint(Ed25519PrivateKey.generate())
    with pytest.raises(BadInput, match="no audit signing key"):
        AuditLog(signed.root).checkpoint()


def test_key_rotation_retires_the_old_key_and_both_keys_verify(signed, key, tmp_path):
    old_pub, old_cps = tmp_path / "old.pem", tmp_path / "old.jsonl"
    shutil.copy(signed.public_path, old_pub)
    shutil.copy(signed.checkpoints_path, old_cps)
    new = Ed25519PrivateKey.generate()
    with pytest.raises(Conflict, match="another key"):
        signed.install_public_key(new.public_key())
    signed.install_public_key(new.public_key(), force=True)
    assert len(list((signed.dir / "retired").iterdir())) == 2  # the old public.pem and checkpoints.jsonl
    rotated = AuditLog(signed.root, signing_key=new)
    _fill(rotated, 5, start=N)
    rotated.checkpoint()
    new_pub = tmp_path / "new.pem"
    shutil.copy(signed.public_path, new_pub)
    assert rotated.verify().ok
    r = rotated.verify(public_key=[old_pub, new_pub], checkpoints=old_cps)
    assert r.ok and r.checkpoints == 5, r  # 3 old + the first and the explicit one of the new key
    r = rotated.verify(public_key=new_pub, checkpoints=old_cps)
    assert not r.ok and "signed by key" in r.problem


def test_torn_last_write_is_moved_aside(plain):
    with open(plain.log_path, "ab") as f:
        f.write(b'{"action":"read","cli')  # a crash mid-write
    assert not plain.verify().ok
    rec = AuditLog(plain.root).append("alice", "read", "x", client=None, size=1)
    assert rec["seq"] == N
    assert plain.verify().ok
    assert b'{"action":"read","cli' in (plain.dir / "torn.log").read_bytes()


# ---------------------------------------------------------------------------------------------------- keys
def test_keys_live_outside_the_store_owner_only(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    (store / "STORE.json").write_text(json.dumps({"created": "2025-01-01T00:00:00Z"}))
    with pytest.raises(BadInput, match="inside the store"):
        generate_key(store / "audit" / "k.pem")
    path = tmp_path / "cfg" / "k.pem"
    generate_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    with pytest.raises(Conflict, match="exists already"):
        generate_key(path)
    generate_key(path, force=True)
    monkeypatch.setenv("TWIN_AUDIT_KEY", str(path))
    assert default_key_path(store) == path
    monkeypatch.delenv("TWIN_AUDIT_KEY")
    monkeypatch.setenv("TWIN_SECRETS_DIR", str(tmp_path / "sec"))
    p = default_key_path(store)
    assert p.parent == tmp_path / "sec" and p.name.startswith("audit-store-") and p.suffix == ".key"


# ---------------------------------------------------------------------------------------------------- reading
def test_read_streams_with_filters(plain):
    recs = list(plain.read())
    assert len(recs) == N and json.loads(json.dumps(recs)) == recs
    assert {r["principal"] for r in plain.read(principal="bob")} == {"bob"}
    assert len(list(plain.read(principal="bob"))) == 10
    assert [r["seq"] for r in plain.read(action="export", limit=3)] == [1, 4, 7]
    assert [r["seq"] for r in plain.read(newest_first=True, limit=3)] == [29, 28, 27]
    assert [r["seq"] for r in plain.tail(3, action="write")] == [23, 26, 29]
    assert [r["seq"] for r in plain.read(after=25)] == [26, 27, 28, 29]
    assert [r["seq"] for r in plain.read(before=3, newest_first=True)] == [2, 1, 0]
    t10 = recs[10]["time"]
    assert [r["seq"] for r in plain.read(since=t10, until=recs[13]["time"])] == [10, 11, 12]
    assert len(list(plain.read(since="1h"))) == N
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert list(plain.read(since=future)) == []
    with pytest.raises(BadInput, match="not a time"):
        plain.read(since="yesterday")
    assert list(AuditLog(plain.root / "nothing").read()) == []


# ---------------------------------------------------------------------------------------------------- the command
def _twin(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TWIN, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_cli_keygen_verify_show_and_fail(tmp_path):
    from twin.store import Store

    store = tmp_path / "store"
    Store.init(store)
    keyfile = tmp_path / "secrets" / "audit.key"
    env = {"TWIN_AUDIT_KEY": str(keyfile), "COLUMNS": "200"}
    r = _twin(env, "audit", "keygen", "-s", str(store))
    assert r.returncode == 0, r.stderr
    assert keyfile.is_file() and "fingerprint:" in r.stdout
    log = AuditLog(store)
    _fill(log, 9)
    r = _twin(env, "audit", "checkpoint", "-s", str(store), "--copy-to", str(tmp_path / "kept.jsonl"))
    assert r.returncode == 0 and "seq 9" in r.stdout, r.stderr
    r = _twin(env, "audit", "verify", "-s", str(store), "--checkpoints", str(tmp_path / "kept.jsonl"))
    assert r.returncode == 0 and "audit log ok: 10 record(s)" in r.stdout, r.stdout + r.stderr
    r = _twin(env, "audit", "show", "-s", str(store), "--user", "bob", "--json")
    shown = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.returncode == 0 and [x["seq"] for x in shown] == [1, 4, 7]

    lines = _lines(log)
    lines[5] = lines[5].replace(b'"principal":"alice"', b'"principal":"bobby"')
    _write(log, lines)
    r = _twin(env, "audit", "verify", "-s", str(store))
    assert r.returncode == 1
    assert "line 6" in r.stderr and "record 5 edited (hash mismatch)" in r.stderr, r.stderr
