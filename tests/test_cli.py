"""The `twin` command as a user runs it: a subprocess, real store, readable errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT, TWIN
from tests.helpers_geojson import write_buildings_geojson


def _twin(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TWIN_STORE": str(tmp / "store"), "TWIN_AUTHOR": "cli-user", "COLUMNS": "200"}
    return subprocess.run([TWIN, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_init_ingest_log_branch(tmp_path: Path) -> None:
    r = _twin(tmp_path, "log")
    assert r.returncode == 4 and "not a twin store" in r.stderr and "Traceback" not in r.stderr
    assert _twin(tmp_path, "init").returncode == 0
    src = write_buildings_geojson(tmp_path / "src" / "b.geojson", 4)
    r = _twin(tmp_path, "ingest", str(src), "-m", "first delivery")
    assert r.returncode == 0 and "committed version 1" in r.stdout
    r = _twin(tmp_path, "ingest", str(src))
    assert r.returncode == 0 and "nothing changed" in r.stdout
    r = _twin(tmp_path, "branch", "park-plan", "--description", "new park")
    assert r.returncode == 0 and "from main at version 1" in r.stdout
    listing = _twin(tmp_path, "branch").stdout
    assert "park-plan" in listing and "new park" in listing
    log = _twin(tmp_path, "log").stdout
    assert "first delivery" in log and "cli-user" in log and "+5" in log
    r = _twin(tmp_path, "branch", "park-plan")
    assert r.returncode == 5 and "already exists" in r.stderr
    r = _twin(tmp_path, "ingest", str(tmp_path / "nope.geojson"))
    assert r.returncode == 2 and "nope.geojson: no such file" in r.stderr
    assert _twin(tmp_path, "build").returncode == 0  # no point cloud yet: nothing to derive
    assert "build" in _twin(tmp_path, "--help").stdout
