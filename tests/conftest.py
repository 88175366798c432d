"""Shared fixtures: the small demo city, temporary stores, small synthetic buildings, real data, a free port."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from data_models import Building
from twin.demo import generate
from twin.store import Store

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PYTHON = sys.executable
TWIN = str(Path(sys.executable).with_name("twin"))


def shared_data(sub: str) -> Path:
    """A folder of ../shared/data; in CI it must exist, elsewhere the test skips with the reason."""
    p = SHARED_DATA / sub
    if not p.exists():
        if os.environ.get("CI"):
            raise AssertionError(f"{p} is missing in CI")
        pytest.skip(f"real data folder {p} is absent on this machine")
    return p


def square(x: float, y: float, size: float = 10.0) -> dict:
    return {"type": "Polygon", "coordinates": [[[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]]}


def make_buildings(n: int, x0: float = 448_000.0, y0: float = 4_428_000.0, spacing: float = 20.0,
                   prefix: str = "b") -> list[Building]:
    side = max(1, int(n**0.5))
    return [
        Building(id=f"{prefix}{i:06d}", geometry=square(x0 + (i % side) * spacing, y0 + (i // side) * spacing),
                 height=10.0 + i % 50, use="residential")
        for i in range(n)
    ]


@pytest.fixture(scope="session")
def city(tmp_path_factory):
    """The small demo city (seed 7; TWIN_DEMO_TEST_SEED overrides), generated once per session for every test
    folder; read-only: tests write their stores and outputs elsewhere."""
    seed = int(os.environ.get("TWIN_DEMO_TEST_SEED", "7"))
    out = tmp_path_factory.mktemp("demo_small")
    calls: list[tuple[str, float]] = []
    manifest = generate(out, size="small", seed=seed, progress=lambda s, f: calls.append((s, f)))
    return {"dir": out, "manifest": manifest, "progress": calls, "seed": seed}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.init(tmp_path / "store")


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def built_city(city, tmp_path_factory) -> dict:
    """The small demo city ingested and built (all steps) into one store, shared read-only by the tiles, features,
    imagery and viewer tests: tests that commit must copy it (``shutil.copytree``) first."""
    from twin.demo.targets import ingest_message
    from twin.pipeline.build import build
    from twin.pipeline.ingest import ingest_paths
    from twin.security import principals

    out = city["dir"]
    root = tmp_path_factory.mktemp("built_city") / "store"
    s = Store.init(root, city["manifest"].get("crs", "EPSG:4548"), time_zone=city["manifest"].get("time_zone"))
    acquired = {str((out / f["path"]).resolve()): f.get("acquired") for f in city["manifest"]["files"]}
    ingest_paths(s, [out / "sources"], acquired=acquired, message=ingest_message("small", city["seed"]))
    build(s)
    # an admin (version 3; the build stays version 2): tests read the whole city as it over HTTP
    _, key = principals.add(s, "test-admin", ["admin"], "secret")
    from tests.api.server import remember_key

    remember_key(root, "test-admin", key)
    return {"store": root, "dir": out, "manifest": city["manifest"], "admin": {"Authorization": f"Bearer {key}"}}
