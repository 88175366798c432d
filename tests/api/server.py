"""A real `twin serve` process for tests over HTTP: started on a free port, stopped and its stderr kept."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT, TWIN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base: str
    port: int
    proc: subprocess.Popen
    stderr: Path
    started: float  # time.perf_counter() when the process was spawned
    store: Path | None = None  # the store it serves

    def log_lines(self) -> list[str]:
        return self.stderr.read_text().splitlines()


def wait_for_port(port: int, proc: subprocess.Popen, stderr: Path, timeout: float = 90) -> None:
    """Until the port accepts a TCP connection; no HTTP request is sent (the first request stays the tests')."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited ({proc.returncode}): {stderr.read_text()[-3000:]}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} not open after {timeout} s: {stderr.read_text()[-3000:]}")


@contextmanager
def serve(store: Path, tmp: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Iterator[Server]:
    """`twin serve` over ``store`` with extra environment; tiles it may build go to ``tmp`` (the store stays
    untouched), its stderr to a file under ``tmp``."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    stderr = tmp / f"serve-{port}.stderr"
    full = {**os.environ, "TWIN_STORE": str(store), "TWIN_CACHE_DIR": str(tmp / "cache"), **(env or {})}
    for name in ("TWIN_PUBLIC_URL", "TWIN_TRUSTED_PROXIES", "TWIN_CORS_ORIGINS", "TWIN_ACCESS_LOG"):
        if env is None or name not in env:
            full.pop(name, None)
    with stderr.open("w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen([TWIN, "serve", "--port", str(port), *args], env=full, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        wait_for_port(port, proc, stderr)
        yield Server(f"http://127.0.0.1:{port}", port, proc, stderr, started, Path(store))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def raw_get(port: int, path: str, headers: dict[str, str] | None = None,
            timeout: float = 30) -> tuple[int, dict, bytes]:
    """A GET written byte by byte on a socket (any Host header, any size), read until the server closes:
    (status, headers with lower-case names, body)."""
    lines = [f"GET {path} HTTP/1.1"]
    given = {k.lower() for k in (headers or {})}
    if "host" not in given:
        lines.append(f"Host: 127.0.0.1:{port}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()] + ["Connection: close", "", ""]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall("\r\n".join(lines).encode("latin-1"))
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    out = {}
    for h in header_lines:
        k, _, v = h.partition(":")
        out[k.strip().lower()] = v.strip()
    if "content-length" in out:
        body = body[: int(out["content-length"])]
    return int(status_line.split()[1]), out, body


def key_for(store: Path, name: str = "test-admin", role: str = "admin", clearance: str = "secret") -> str:
    """An API key of principal ``name`` in ``store`` (made on first use; a running server sees it at once)."""
    from twin.security import principals
    from twin.store import Store

    cache = _KEYS.setdefault(str(Path(store).resolve()), {})
    if name not in cache:
        s = Store(store)
        try:
            cache[name] = principals.new_key(s, name)
        except Exception:  # noqa: BLE001 - not there yet
            cache[name] = principals.add(s, name, [role], clearance)[1]
    return cache[name]


def remember_key(store: Path, name: str, key: str) -> None:
    """Make :func:`key_for` answer ``key`` for principal ``name`` of ``store`` (made by a fixture)."""
    _KEYS.setdefault(str(Path(store).resolve()), {})[name] = key


def auth(store: Path, **kwargs: str) -> dict[str, str]:
    """The Authorization header of :func:`key_for`'s principal."""
    return {"Authorization": f"Bearer {key_for(store, **kwargs)}"}


_KEYS: dict[str, dict[str, str]] = {}
