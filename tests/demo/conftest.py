from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from twin.demo import generate


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def city(tmp_path_factory):
    """The small demo city (seed 7; TWIN_DEMO_TEST_SEED overrides), generated once per session."""
    seed = int(os.environ.get("TWIN_DEMO_TEST_SEED", "7"))
    out = tmp_path_factory.mktemp("demo_small")
    calls: list[tuple[str, float]] = []
    manifest = generate(out, size="small", seed=seed, progress=lambda s, f: calls.append((s, f)))
    return {"dir": out, "manifest": manifest, "progress": calls, "seed": seed}
