"""Time `make demo` from a fresh clone to a running server, with the install included and excluded.

Run: .venv/bin/python bench/demo_startup.py   (clones the committed HEAD into a temp dir; needs the package index)
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def time_to_server(clone: Path, port: int) -> float:
    """Seconds from `make demo` to /health answering with a non-empty store."""
    env = {**os.environ, "TWIN_PORT": str(port)}
    t = time.perf_counter()
    p = subprocess.Popen(["make", "demo"], cwd=clone, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        while time.perf_counter() - t < 1800:
            if p.poll() is not None:
                raise RuntimeError(f"make demo exited {p.returncode}: {p.stderr.read().decode()[-2000:]}")
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                if r.status_code == 200 and r.json()["store_version"] > 0:
                    return time.perf_counter() - t
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not come up in 30 minutes")
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=30)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="twin-demo-bench-"))
    clone = tmp / "twin"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    cold = time_to_server(clone, 8765)
    for d in ("twin-store", "demo-city"):
        subprocess.run(["rm", "-rf", str(clone / d)], check=True)
    warm = time_to_server(clone, 8766)
    print("| make demo, fresh clone, small city | seconds to a running server |")
    print("|---|---|")
    print(f"| install included (new .venv) | {cold:.1f} |")
    print(f"| install excluded (.venv kept, sources and store regenerated) | {warm:.1f} |")


if __name__ == "__main__":
    main()
