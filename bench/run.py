"""`make bench`: run every benchmark script in bench/ one after another (or those named), each in its own process.

Each script prints its own table; docs/benchmarks.md records the results with the command of each script.
Usage: ``python bench/run.py [name ...]`` where a name is a script's stem without ``_bench`` (e.g. ``h3``).
Scripts named ``large_*`` (about an hour each on 2 cores) run only when named.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != "run.py")
    if argv:
        wanted = {a.removesuffix("_bench") for a in argv}
        unknown = wanted - {p.stem.removesuffix("_bench") for p in scripts}
        if unknown:
            names = ", ".join(p.stem.removesuffix("_bench") for p in scripts)
            print(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {names}", file=sys.stderr)
            return 2
        scripts = [p for p in scripts if p.stem.removesuffix("_bench") in wanted]
    else:
        scripts = [p for p in scripts if not p.name.startswith("large_")]
    failed = []
    for p in scripts:
        print(f"== {p.name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(p)], cwd=HERE.parent)
        print(f"== {p.name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(p.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
