"""The cost of issue 14's security on the hot paths: the guard, the key check and the audit trail, side by side.

`twin serve` processes of the same code over the same store, all started in the same run:

- **A** ``TWIN_AUTH=0``: security off (every caller is the local admin; the guard gives an unrestricted view);
- **B** auth on, anonymous caller: the guard narrows every read to public data (no audit record: public only);
- **C** auth on, an analyst key with clearance ``confidential`` (``Authorization: Bearer twin_…``): the key check,
  the guard, and one hash-chained audit record per request that read non-public data;
- **Z** (for reference, the floor of A) the same app with ``TWIN_AUTH=0``, the routers reading the Store itself
  (``deps.get_store`` overridden: no GuardedStore) and no AuditTrail middleware, started from this script
  (``--serve-raw``): about the code before issue 14.

The store is the small demo city (generated, ingested and built into a temp dir), then one commit makes every 4th
building ``confidential`` and the layer ``traffic-hourly`` ``internal``; the buildings tileset is built into the
store (as ``twin demo`` does); B's public tileset is built on its first request into its server's cache dir
(``TWIN_CACHE_DIR``, a temp dir), during the warm-up. The audit log has a signing key (checkpoints every 1,000
records, as a server would), kept in a temp ``TWIN_SECRETS_DIR``.

Paths: a features page ``/collections/buildings/items?limit=100``, a layer window (one day, res 9, the whole city)
of the time layer ``pm25-idw`` (public), the same on ``traffic-hourly`` (internal: not B, which gets a 404), and
the buildings tile contents ``/tiles/main/latest/buildings/<uri>`` (every content URI of the tileset.json each
variant is served, in turn). For each path and variant: p50 of sequential requests (one client, keep-alive) and
requests/s with ``--clients`` concurrent clients (threads sharing one httpx client), after a warm-up. Load drift
(the machine may be busy) is cancelled by interleaving: the sequential requests alternate between the variants
request by request, the concurrent load comes in short bursts taking turns Z, A, B, C, Z, A, B, C … (the start
rotates each round);
the figures pool the rounds (p50 of all latencies; all answers over all seconds) with their ratios to A. One
uvicorn worker per server (the machine has 2 cores; only one server is loaded at a time). Also timed in-process:
one ``AuditLog.append`` (with and without the signing key), the argon2id check of a key (first use; later uses hit
the in-memory cache), and the layer query through a GuardedStore of each principal against the Store itself.

Run: .venv/bin/python bench/security_bench.py [--rounds 5] [--seq-seconds 0.6] [--conc-seconds 1.0] [--clients 8]
[--work DIR (kept and reused when prepared)]   (about 4 minutes on 2 cores; prints a Markdown table)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fastapi import Request

VARIANTS = ("Z", "A", "B", "C")
LABELS = {"Z": "Z: no guard, no audit", "A": "A: TWIN_AUTH=0", "B": "B: anonymous", "C": "C: analyst key"}
PUBLIC_LAYER, INTERNAL_LAYER = "pm25-idw", "traffic-hourly"
SLICES = 4  # a round's concurrent load per path and variant comes in this many bursts, the variants taking turns
DAY = {"start": "2024-06-01T00:00:00Z", "end": "2024-06-02T00:00:00Z", "res": "9"}


# ---------------------------------------------------------------------------------------------------- the store
def prepare(work: Path) -> dict:
    """The small demo city built into ``work/store``, with confidential buildings, an internal layer, the bench
    principal, an audit signing key and the store's buildings tileset; what the servers need (kept in
    ``work/prepared.json``, so ``--work`` reuses it)."""
    done = work / "prepared.json"
    if done.is_file():
        return json.loads(done.read_text())
    from twin.demo import generate
    from twin.pipeline.build import build
    from twin.pipeline.ingest import ingest_paths
    from twin.security import principals
    from twin.security.audit import default_key_path, generate_key
    from twin.store import CITY, LAYERS, Query, Store
    from twin.tiles.cache import TileCache

    t0 = time.perf_counter()
    src, root, secrets = work / "city", work / "store", work / "secrets"
    manifest = generate(src, size="small", seed=7)
    s = Store.init(root, manifest.get("crs", "EPSG:4548"), time_zone=manifest.get("time_zone"))
    files = [src / f["path"] for f in manifest["files"] if f["path"].startswith("sources/")]
    acquired = {str((src / f["path"]).resolve()): f.get("acquired") for f in manifest["files"]}
    ingest_paths(s, files, acquired=acquired, message="ingest demo city (small)")
    build(s)
    buildings = s.features(query=Query(collection=CITY, types=["Building"]))
    secret = sorted(buildings, key=lambda r: r["id"])[::4]
    layer = s.features(query=Query(collection=LAYERS, ids=[INTERNAL_LAYER]))
    s.commit([*({**r, "classification": "confidential"} for r in secret),
              *({**r, "classification": "internal"} for r in layer)],
             message="bench: every 4th building confidential, traffic-hourly internal")
    _, key = principals.add(s, "bench", ["analyst"], "confidential")
    secrets.mkdir(mode=0o700)
    generate_key(default_key_path(root, secrets))
    TileCache(s).tileset("buildings", "main", s.head())
    info = {"store": str(root), "secrets": str(secrets), "key": key, "buildings": len(buildings),
            "confidential": len(secret), "prepare_s": round(time.perf_counter() - t0, 1)}
    done.write_text(json.dumps(info))
    return info


# ---------------------------------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(variant: str, info: dict, cache: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "TWIN_STORE": info["store"], "TWIN_SECRETS_DIR": info["secrets"],
           "TWIN_CACHE_DIR": str(cache), "TWIN_AUTH": "0" if variant in ("Z", "A") else "1", "TWIN_ACCESS_LOG": "0",
           "TWIN_PORT": str(port)}
    env.pop("TWIN_AUDIT_KEY", None)
    twin = str(Path(sys.executable).with_name("twin"))
    cmd = ([sys.executable, __file__, "--serve-raw"] if variant == "Z" else
           [twin, "serve", "--store", info["store"], "--port", str(port), "--workers", "1"])
    with open(cache.parent / f"server-{variant}.log", "wb") as log:  # a file: a pipe nobody reads could fill up
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    proc.log = cache.parent / f"server-{variant}.log"  # type: ignore[attr-defined]
    return proc, f"http://127.0.0.1:{port}"


def wait(base: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.log.read_text()[-2000:]}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base} did not answer within {timeout} s")


async def _raw_store(request: Request):
    return request.app.state.store


def serve_raw() -> None:
    """Variant Z: the app of `twin serve` (TWIN_AUTH=0) with the routers reading the Store itself (no GuardedStore)
    and without the AuditTrail middleware: an approximation of the code before issue 14, the floor of A."""
    import uvicorn

    from twin.api.app import create_app
    from twin.api.auth import AuditTrail
    from twin.api.deps import get_store
    from twin.api.middleware import MAX_HEADER_BYTES
    from twin.config import get_settings

    settings = get_settings()
    app = create_app(settings.store, settings)

    app.dependency_overrides[get_store] = _raw_store
    app.user_middleware = [m for m in app.user_middleware if m.cls is not AuditTrail]
    uvicorn.run(app, host="127.0.0.1", port=settings.port, log_level="warning", proxy_headers=False,
                h11_max_incomplete_event_size=MAX_HEADER_BYTES)


# ---------------------------------------------------------------------------------------------------- load
def sequential(client: httpx.Client, urls: list[str], seconds: float) -> list[float]:
    """Latencies (s) of one client fetching ``urls`` in turn for ``seconds`` (at least one round of them)."""
    out: list[float] = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end or i < len(urls):
        t = time.perf_counter()
        r = client.get(urls[i % len(urls)])
        out.append(time.perf_counter() - t)
        if r.status_code != 200:
            raise RuntimeError(f"{urls[i % len(urls)]}: HTTP {r.status_code} {r.text[:200]}")
        i += 1
    return out


def alternating(clients: dict[str, httpx.Client], per: dict[str, list[str]], seconds: float) -> dict[str, list[float]]:
    """Sequential latencies (s) per variant, the variants taking turns request by request (Z, A, B, C, Z, …: one
    request in flight at a time), for ``seconds`` per variant: load drift hits every variant alike."""
    out: dict[str, list[float]] = {v: [] for v in per}
    end = time.perf_counter() + seconds * len(per)
    i = 0
    while time.perf_counter() < end or i < max(len(u) for u in per.values()):
        for v, urls in per.items():
            url = urls[i % len(urls)]
            t = time.perf_counter()
            r = clients[v].get(url)
            out[v].append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"{v} {url}: HTTP {r.status_code} {r.text[:200]}")
        i += 1
    return out


def concurrent(client: httpx.Client, pool: ThreadPoolExecutor, clients: int, urls: list[str],
               seconds: float) -> tuple[int, float]:
    """Requests answered by ``clients`` threads fetching ``urls`` (each from its own offset) for ``seconds``, and
    the seconds it took (until the last answer)."""
    end = time.perf_counter() + seconds
    errors: list[str] = []

    def run(k: int) -> int:
        n = 0
        while time.perf_counter() < end:
            url = urls[(k * 7 + n) % len(urls)]
            r = client.get(url)
            if r.status_code != 200:
                errors.append(f"{url}: HTTP {r.status_code}")
            n += 1
        return n

    t = time.perf_counter()
    n = sum(pool.map(run, range(clients)))
    elapsed = time.perf_counter() - t
    if errors:
        raise RuntimeError(errors[0])
    return n, elapsed


def content_uris(client: httpx.Client) -> list[str]:
    """Every content URI of the buildings tileset this server gives this client."""
    ts = client.get("/tiles/main/latest/buildings/tileset.json", timeout=600)
    ts.raise_for_status()
    out, stack = [], [ts.json()["root"]]
    while stack:
        tile = stack.pop()
        if "content" in tile:
            out.append("/tiles/main/latest/buildings/" + tile["content"]["uri"])
        stack += tile.get("children", [])
    return sorted(out)


# ---------------------------------------------------------------------------------------------------- in-process
def time_audit(tmp: Path, ids: list[str]) -> dict[str, float]:
    """µs per AuditLog.append of a features-page record (``ids``: the non-public ids of a page), without and
    with a signing key (a checkpoint every 1,000 records, as a server's log)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from twin.security.audit import AuditLog

    out = {}
    for name, key in (("no key", None), ("signing key", Ed25519PrivateKey.generate())):
        root = tmp / f"audit-{name.replace(' ', '-')}"
        root.mkdir()
        target = {"method": "GET", "path": "/collections/buildings/items", "query": "limit=100",
                  "ids": {"city": ids}}
        with AuditLog(root, signing_key=key) as log:
            for _ in range(50):
                log.append("bench", "read", target, client="127.0.0.1", size=len(ids))
            n, t = 2000, time.perf_counter()
            for _ in range(n):
                log.append("bench", "read", target, client="127.0.0.1", size=len(ids))
            out[name] = (time.perf_counter() - t) / n * 1e6
    return out


def time_key(info: dict) -> dict[str, float]:
    """ms of the argon2id verification of the bench key (first use) and µs of a later, cached authenticate_key."""
    from twin.security import principals
    from twin.store import Store

    s = Store(info["store"])
    p = principals.get(s, "bench")
    secret = principals.KEY_RE.match(info["key"])["secret"]
    firsts = []
    for _ in range(5):
        t = time.perf_counter()
        principals._HASHER.verify(p.keys[0].hash, secret)
        firsts.append(time.perf_counter() - t)
    principals.authenticate_key(s, info["key"])  # remembered from here on
    n, t = 2000, time.perf_counter()
    for _ in range(n):
        principals.authenticate_key(s, info["key"])
    return {"argon2 ms": statistics.median(firsts) * 1e3, "cached us": (time.perf_counter() - t) / n * 1e6}


def time_layer_query(info: dict, n: int = 30) -> dict[str, float]:
    """Median ms of the layer window's Layers.query on the Store itself and through a GuardedStore of each
    variant's principal (a new guard per call, as per request), and of the two guard steps that dominate it."""
    from twin.layers.registry import Layers
    from twin.security import principals
    from twin.security.guard import GuardedStore
    from twin.store import MAIN, Store

    s = Store(info["store"])
    bench = principals.get(s, "bench")
    q = {k: (int(v) if k == "res" else v) for k, v in DAY.items()}
    cases = {"Store": lambda: s, "guard local (A)": lambda: GuardedStore(s, principals.LOCAL_ADMIN),
             "guard anonymous (B)": lambda: GuardedStore(s, principals.ANONYMOUS),
             "guard analyst (C)": lambda: GuardedStore(s, bench)}
    out: dict[str, float] = {}
    for _ in range(2):  # twice, interleaved; the second pass is kept
        for name, make in cases.items():
            xs = []
            for _ in range(n):
                t = time.perf_counter()
                Layers(make()).query(PUBLIC_LAYER, **q)
                xs.append(time.perf_counter() - t)
            out[name] = statistics.median(xs) * 1e3
    for name, step in (("of which spec list (C)", lambda g: Layers(g).list()),
                       ("owners (C)", lambda g: g._owners(MAIN, None))):
        xs = []
        for _ in range(n):
            g = GuardedStore(s, bench)
            t = time.perf_counter()
            step(g)
            xs.append(time.perf_counter() - t)
        out[name] = statistics.median(xs) * 1e3
    return out


# ---------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seq-seconds", type=float, default=0.6, help="per path, variant and round")
    ap.add_argument("--conc-seconds", type=float, default=1.0, help="per path, variant and round")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--work", type=Path, default=None, help="kept and reused (default: a temp dir, removed)")
    ap.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)  # variant Z's server process
    a = ap.parse_args()
    if a.serve_raw:
        serve_raw()
        return
    load_before = os.getloadavg()[0]
    t_start = time.perf_counter()
    work = a.work or Path(tempfile.mkdtemp(prefix="twin-security-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="twin-security-bench-run-"))
    procs: dict[str, subprocess.Popen] = {}
    try:
        info = prepare(work)
        bases = {}
        for v in VARIANTS:
            (tmp / f"cache-{v}").mkdir()
            procs[v], bases[v] = start(v, info, tmp / f"cache-{v}")
        for v in VARIANTS:
            wait(bases[v], procs[v])
        headers = {"C": {"Authorization": f"Bearer {info['key']}"}}
        # idle connections are dropped after 1 s, before uvicorn's keep-alive timeout (5 s) closes them under a
        # request (a server sits idle while the others are measured)
        limits = httpx.Limits(max_connections=a.clients, max_keepalive_connections=a.clients, keepalive_expiry=1.0)
        clients = {v: httpx.Client(base_url=bases[v], headers=headers.get(v), limits=limits, timeout=600)
                   for v in VARIANTS}
        who = {v: clients[v].get("/auth/whoami").json() for v in VARIANTS}
        layer_q = "&".join(f"{k}={val}" for k, val in DAY.items())
        paths = {
            "features page (limit=100)": {v: ["/collections/buildings/items?limit=100"] for v in VARIANTS},
            f"layer window ({PUBLIC_LAYER}, public)": {v: [f"/layers/{PUBLIC_LAYER}/cells?{layer_q}"]
                                                       for v in VARIANTS},
            f"layer window ({INTERNAL_LAYER}, internal)": {v: [f"/layers/{INTERNAL_LAYER}/cells?{layer_q}"]
                                                           for v in ("Z", "A", "C")},
            "tile contents (buildings)": {v: content_uris(clients[v]) for v in VARIANTS},  # B builds its view here
        }
        # warm-up: every URL of every path twice per variant, then a short concurrent burst; sizes and audit check
        sizes: dict[str, dict[str, float]] = {}
        pool = ThreadPoolExecutor(a.clients)
        for name, per in paths.items():
            sizes[name] = {}
            for v, urls in per.items():
                sequential(clients[v], urls, 0.0)
                got = [len(clients[v].get(u).content) for u in urls]
                sizes[name][v] = statistics.mean(got)
                concurrent(clients[v], pool, a.clients, urls, 0.3)
        audit_log = Path(info["store"]) / "audit" / "log.jsonl"
        audit_before = audit_log.stat().st_size if audit_log.is_file() else 0
        audit_lines = {}
        for name, per in paths.items():  # one request each: does it write an audit record?
            for v, urls in per.items():
                n0 = _lines(audit_log)
                clients[v].get(urls[0])
                time.sleep(0.05)
                audit_lines[(name, v)] = _lines(audit_log) - n0
        seq: dict[tuple[str, str], list[float]] = {}
        conc: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for r in range(a.rounds):
            order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
            for name, per in paths.items():
                for v, lat in alternating(clients, {v: per[v] for v in order if v in per}, a.seq_seconds).items():
                    seq.setdefault((name, v), []).extend(lat)
                for _ in range(SLICES):
                    for v in order:
                        if v in per:
                            conc.setdefault((name, v), []).append(
                                concurrent(clients[v], pool, a.clients, per[v], a.conc_seconds / SLICES))
        pool.shutdown()
        for c in clients.values():
            c.close()
        t_load = time.perf_counter() - t_start
        audit_after = audit_log.stat().st_size if audit_log.is_file() else 0
        # in-process timings, with the servers idle
        for v in VARIANTS:
            procs[v].terminate()
        for v in VARIANTS:
            procs[v].wait(30)
        from twin.store import CITY, Query, Store

        s = Store(info["store"])
        conf_ids = sorted(r["id"] for r in s.features(query=Query(collection=CITY, types=["Building"]))
                          if r["classification"] != "public")
        first = sorted(r["id"] for r in s.features(query=Query(collection=CITY, types=["Building"])))[:100]
        page_ids = [i for i in conf_ids if i in set(first)]
        audit = time_audit(tmp, page_ids)
        key = time_key(info)
        layer = time_layer_query(info)
    except BaseException:
        for v, p in procs.items():
            if p.poll() is not None:
                print(f"server {v} exited with {p.returncode}: {p.log.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                p.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)

    # ------------------------------------------------------------------------------------------------ report
    print(f"small demo city: {info['buildings']} buildings, {info['confidential']} made confidential, "
          f"{INTERNAL_LAYER} internal (prepared in {info['prepare_s']} s); principals: "
          + ", ".join(f"{v} = {who[v].get('name')} ({who[v].get('clearance')})" for v in VARIANTS))
    print(f"{a.rounds} rounds; per round, path and variant: {a.seq_seconds} s sequential (1 client, the variants "
          f"alternating request by request) and {a.conc_seconds} s with {a.clients} concurrent clients (in {SLICES} "
          f"bursts, in turn); `twin serve --workers 1` per variant; {t_load:.0f} s to the end of the load; "
          f"{os.cpu_count()} cores, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    print(f"| path | variant | bytes (decoded) | audit records / request | p50 ms | p50 / A | "
          f"req/s ({a.clients} clients) | req/s / A |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, per in paths.items():
        base_p50 = statistics.median(seq[(name, "A")])
        base_rps = _rate(conc[(name, "A")])
        for v in per:
            p50 = statistics.median(seq[(name, v)])
            rps = _rate(conc[(name, v)])
            rp = "" if v == "A" else f"{p50 / base_p50:.2f}"
            rr = "" if v == "A" else f"{rps / base_rps:.2f}"
            rp, rr = (f"**{x}**" if x and v in ("B", "C") else x for x in (rp, rr))
            print(f"| {name} | {LABELS[v]} | {sizes[name][v]:,.0f} | {audit_lines[(name, v)]} | {p50 * 1e3:.1f} | "
                  f"{rp} | {rps:,.0f} | {rr} |")
    print(f"\naudit log grew {(audit_after - audit_before) / 1e6:.1f} MB during the load phase")
    print(f"AuditLog.append of a features-page record ({len(page_ids)} ids): {audit['no key']:.0f} µs "
          f"(no signing key), {audit['signing key']:.0f} µs (signing key, a checkpoint every 1,000)")
    print(f"\nLayers.query of the {PUBLIC_LAYER} window in-process (no HTTP), median ms: "
          + ", ".join(f"{k} {val:.1f}" for k, val in layer.items()))
    print(f"API key: argon2id verification (first use) {key['argon2 ms']:.1f} ms; later uses (in-memory cache) "
          f"{key['cached us']:.0f} µs")


def _rate(runs: list[tuple[int, float]]) -> float:
    """Requests/s over all rounds together (every answer counted, not a median of short windows)."""
    return sum(n for n, _ in runs) / sum(t for _, t in runs)


def _lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


if __name__ == "__main__":
    main()
