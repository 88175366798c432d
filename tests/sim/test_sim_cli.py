"""`twin sim …` as a user runs it (a subprocess on a real store), with the test volume simulator loaded through
``TWIN_SIMULATORS``: list, show, run with parameters, reuse, --out, runs, compare, and errors as one line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, TWIN, make_buildings
from twin.store import Store


def _twin(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TWIN_STORE": str(tmp / "store"), "COLUMNS": "200", "PYTHONPATH": str(ROOT),
           "TWIN_SIMULATORS": "tests.sim.volume_sim:VolumeSimulator"}
    return subprocess.run([TWIN, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture
def tmp_store(tmp_path: Path) -> Path:
    s = Store.init(tmp_path / "store")
    s.commit(make_buildings(4), message="four buildings")
    s.create_branch("plan", "main")
    s.commit([make_buildings(4)[0].model_copy(update={"height": 50.0})], message="taller", branch="plan")
    return tmp_path


def test_list_show_run_runs_compare(tmp_store: Path) -> None:
    r = _twin(tmp_store, "sim", "list")
    assert r.returncode == 0 and "test-volume" in r.stdout and "sunlight" in r.stdout
    r = _twin(tmp_store, "sim", "show", "test-volume")
    assert r.returncode == 0 and "factor" in r.stdout and "> 0" in r.stdout and "<= 10" in r.stdout
    assert json.loads(_twin(tmp_store, "sim", "show", "test-volume", "--json").stdout)["name"] == "test-volume"

    r = _twin(tmp_store, "sim", "run", "test-volume", "-p", "factor=2", "--json")
    assert r.returncode == 0, r.stderr
    base = json.loads(r.stdout)
    assert base["status"] == "succeeded" and base["parameters"]["factor"] == 2 and base["branch"] == "main"
    again = json.loads(_twin(tmp_store, "sim", "run", "test-volume", "-p", "factor=2", "--json").stdout)
    assert again["id"] == base["id"]  # reused
    out = tmp_store / "out"
    r = _twin(tmp_store, "sim", "run", "test-volume", "--branch", "plan", "-p", "factor=2", "--out", str(out))
    assert r.returncode == 0 and "succeeded on plan" in r.stdout, r.stdout + r.stderr
    plan = json.loads((out / "run.json").read_text())
    rows = list(csv.DictReader((out / "test_volume_buildings.csv").open()))
    assert len(rows) == 4 and {row["run_id"] for row in rows} == {plan["id"]}
    assert float(next(row for row in rows if row["entity_id"] == "b000000")["volume"]) == pytest.approx(100 * 50 * 2)

    listing = _twin(tmp_store, "sim", "runs").stdout
    assert base["id"] in listing and plan["id"] in listing
    r = _twin(tmp_store, "sim", "compare", base["id"], plan["id"])
    assert r.returncode == 0 and "1 changed" in r.stdout and "3 same" in r.stdout
    changed = json.loads(_twin(tmp_store, "sim", "compare", base["id"], plan["id"], "--json").stdout)
    assert [row["entity_id"] for row in changed["test_volume_buildings"]] == ["b000000"]
    assert changed["test_volume_buildings"][0]["volume_diff"] == pytest.approx(100 * (50 - 10) * 2)


def test_errors_are_one_line(tmp_store: Path) -> None:
    head = Store(tmp_store / "store").head("main")
    r = _twin(tmp_store, "sim", "run", "test-volume", "-p", "factor=-1")
    assert r.returncode == 2 and "factor:" in r.stderr and "Traceback" not in r.stderr
    r = _twin(tmp_store, "sim", "run", "nope")
    assert r.returncode == 4 and "unknown simulator 'nope'" in r.stderr
    r = _twin(tmp_store, "sim", "run", "test-volume", "--branch", "nowhere")
    assert r.returncode == 4 and "nowhere" in r.stderr
    r = _twin(tmp_store, "sim", "compare", "run-000000000000", "run-000000000001")
    assert r.returncode == 4 and "unknown run" in r.stderr
    assert Store(tmp_store / "store").head("main") == head
