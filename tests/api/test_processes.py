"""OGC API Processes over real HTTP (`twin serve`) with the small "sleepy" simulator of tests/api/sim_fixture.py:
processes, sync and async execution, progress, dismiss (the worker process is gone, nothing committed), the
concurrency limit, a restart with a lost job and a queued one, callbacks to a local HTTP server, and OWSLib."""

from __future__ import annotations

import http.server
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.server import Server, auth, serve
from tests.conftest import ROOT, make_buildings
from twin.store import Store

EXC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
ENV = {"TWIN_SIMULATORS": "tests.api.sim_fixture:Sleepy", "TWIN_JOBS_MAX": "1",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
ASYNC = {"Prefer": "respond-async"}


def _store(root: Path) -> Path:
    s = Store.init(root)
    s.commit(make_buildings(4), message="four buildings")
    return root


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
    return _store(tmp_path_factory.mktemp("processes") / "store")


@pytest.fixture(scope="module")
def server(store_root: Path, tmp_path_factory) -> Iterator[Server]:
    with serve(store_root, tmp_path_factory.mktemp("processes-serve"), ENV) as s:
        yield s


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=30, headers=auth(server.store)) as c:
        yield c


def until(check: Callable[[], Any], timeout: float = 20, every: float = 0.1) -> Any:
    """``check()``'s first truthy answer, polled; an AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out := check():
            return out
        time.sleep(every)
    raise AssertionError(f"not true after {timeout} s: {check}")


def job_file(store_root: Path, job_id: str) -> dict:
    return json.loads((store_root / "jobs" / f"{job_id}.json").read_text())


def gone(pid: int) -> bool:
    """The process no longer exists (a zombie would still be listed: it must have been reaped)."""
    return not Path(f"/proc/{pid}").exists()


def head(store_root: Path) -> int:
    return Store(store_root).head()


def submit(api: httpx.Client, inputs: dict, **body: Any) -> dict:
    r = api.post("/processes/sleepy/execution", json={"inputs": inputs, **body}, headers=ASYNC)
    assert r.status_code == 201, r.text
    return r.json()


def finished(api: httpx.Client, job_id: str, timeout: float = 20) -> dict:
    return until(lambda: (j := api.get(f"/jobs/{job_id}").json())["status"] in (
        "successful", "failed", "dismissed") and j, timeout)


# ---------------------------------------------------------------------------------------------- documents
def test_conformance_and_landing_page_name_processes(api: httpx.Client) -> None:
    conf = set(api.get("/conformance").json()["conformsTo"])
    base = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"
    classes = ("core", "ogc-process-description", "json", "html", "oas30", "job-list", "callback", "dismiss")
    assert {base + c for c in classes} <= conf
    links = {lk["rel"]: lk["href"] for lk in api.get("/?f=json").json()["links"]}
    for rel in ("service-desc", "http://www.opengis.net/def/rel/ogc/1.0/processes",
                "http://www.opengis.net/def/rel/ogc/1.0/job-list"):
        assert api.get(links[rel]).status_code == 200, rel


def test_processes_list_and_description(api: httpx.Client) -> None:
    doc = api.get("/processes").json()
    by_id = {p["id"]: p for p in doc["processes"]}
    assert {"sleepy", "sunlight"} <= set(by_id)
    p = by_id["sleepy"]
    assert p["jobControlOptions"] == ["sync-execute", "async-execute", "dismiss"]
    assert set(p["outputTransmission"]) == {"value", "reference"} and p["version"] == "1"
    d = api.get("/processes/sleepy").json()
    steps = d["inputs"]["steps"]
    assert steps["schema"]["type"] == "integer" and steps["schema"]["minimum"] == 1
    assert steps["schema"]["maximum"] == 200 and steps["schema"]["default"] == 4 and steps["minOccurs"] == 0
    assert steps["description"] == "how many sleeps"
    assert d["inputs"]["mode"]["schema"]["enum"] == ["plain", "fancy"]
    assert {"branch", "scenario", "as_of"} <= set(d["inputs"])
    assert set(d["outputs"]) == {"run", "sleepy_buildings"}
    sun = api.get("/processes/sunlight").json()
    assert {"sunlight_buildings", "run"} <= set(sun["outputs"]) and sun["inputs"]


def test_html_for_browsers_json_for_clients(api: httpx.Client) -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    for path in ("/processes", "/processes/sleepy", "/jobs"):
        page = api.get(path, headers={"Accept": browser})
        assert page.headers["content-type"].startswith("text/html") and "<table>" in page.text, path
        assert api.get(path + "?f=html").headers["content-type"].startswith("text/html")
        assert api.get(path, headers={"Accept": "*/*"}).headers["content-type"].startswith("application/json")
    assert "how many sleeps" in api.get("/processes/sleepy?f=html").text


def test_unknown_process_and_job_are_ogc_404s(api: httpx.Client) -> None:
    for method, path, kind in (("GET", "/processes/nope", "no-such-process"),
                               ("POST", "/processes/nope/execution", "no-such-process"),
                               ("GET", "/jobs/0123456789abcdef0123456789abcdef", "no-such-job"),
                               ("GET", "/jobs/0123456789abcdef0123456789abcdef/results", "no-such-job"),
                               ("DELETE", "/jobs/0123456789abcdef0123456789abcdef", "no-such-job"),
                               ("GET", "/jobs/..STORE.json", "no-such-job")):
        r = api.request(method, path, json={"inputs": {}} if method == "POST" else None)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["type"] == EXC + kind and r.json()["status"] == 404, path


def test_bad_inputs_are_400s_naming_the_input_and_create_no_job(api: httpx.Client, store_root: Path) -> None:
    before = (head(store_root), sorted(p.name for p in (store_root / "jobs").glob("*.json"))
              if (store_root / "jobs").exists() else [])
    cases = [({"inputs": {"steps": 1000}}, "steps"), ({"inputs": {"steps": "many"}}, "steps"),
             ({"inputs": {"step_s": 0}}, "step_s"), ({"inputs": {"mode": "loud"}}, "mode"),
             ({"inputs": {"stepz": 3}}, "stepz"), ({"inputs": {"as_of": "yesterday"}}, "as_of"),
             ({"inputs": {"branch": 7}}, "branch"), ({"inputs": {}, "response": "raw"}, "response"),
             ({"inputs": {}, "outputs": {"nope": {}}}, "nope"),
             ({"inputs": {}, "subscriber": {"successUri": "ftp://x"}}, "successUri"),
             ({"inputs": []}, "inputs")]
    for body, name in cases:
        for headers in ({}, ASYNC):
            r = api.post("/processes/sleepy/execution", json=body, headers=headers)
            assert r.status_code == 400, (body, r.text)
            assert name in r.json()["detail"], (body, r.text)
    r = api.post("/processes/sleepy/execution", json={"inputs": {"branch": "nowhere"}})
    assert r.status_code == 404 and "nowhere" in r.json()["detail"]
    assert api.post("/processes/sleepy/execution", content=b"{not json",
                    headers={"Content-Type": "application/json"}).status_code == 400
    after = (head(store_root), sorted(p.name for p in (store_root / "jobs").glob("*.json"))
             if (store_root / "jobs").exists() else [])
    assert after == before


# ---------------------------------------------------------------------------------------------- execution
def test_sync_execute_returns_the_results(api: httpx.Client, store_root: Path) -> None:
    v0 = head(store_root)
    r = api.post("/processes/sleepy/execution", json={"inputs": {"steps": 2, "factor": 2}})
    assert r.status_code == 200, r.text
    doc = r.json()
    run = doc["run"]["value"]
    assert run["status"] == "succeeded" and run["parameters"]["factor"] == 2 and run["simulator"] == "sleepy"
    assert doc["sleepy_buildings"]["href"].endswith(f"/runs/{run['id']}/tables/sleepy_buildings?f=json")
    assert head(store_root) == v0 + 1
    assert r.headers["location"].startswith(f"{str(api.base_url).rstrip('/')}/jobs/")
    job = api.get(r.headers["location"]).json()
    assert job["status"] == "successful" and job["progress"] == 100
    page = api.get(r.headers["location"], params={"f": "html"})
    assert page.headers["content-type"].startswith("text/html") and "successful" in page.text
    rels = {lk["rel"] for lk in job["links"]}
    assert "http://www.opengis.net/def/rel/ogc/1.0/results" in rels
    assert api.get(f"/runs/{run['id']}").status_code == 200
    by_value = api.post("/processes/sleepy/execution", json={
        "inputs": {"steps": 1, "factor": 3},
        "outputs": {"run": {}, "sleepy_buildings": {"transmissionMode": "value"}}}).json()
    rows = by_value["sleepy_buildings"]["value"]
    by_value_run = by_value["run"]["value"]["id"]
    heights = {b.id: b.height for b in make_buildings(4)}
    assert {row["entity_id"]: row["value"] for row in rows} == {k: 3 * h for k, h in heights.items()}
    raw = api.post("/processes/sleepy/execution", json={"inputs": {"steps": 1, "factor": 3}, "response": "raw",
                                                        "outputs": {"run": {"transmissionMode": "value"}}}).json()
    assert raw["id"] == by_value_run and raw["parameters"]["factor"] == 3  # an identical run is reused


def test_async_execute_reports_increasing_progress(api: httpx.Client) -> None:
    r = api.post("/processes/sleepy/execution", json={"inputs": {"steps": 25, "step_s": 0.1}}, headers=ASYNC)
    assert r.status_code == 201 and r.headers["preference-applied"] == "respond-async"
    job = r.json()
    assert job["status"] in ("accepted", "running") and r.headers["location"].endswith(f"/jobs/{job['jobID']}")
    seen: list[tuple[float, int, str, str]] = []  # (seconds since `updated` when the answer came, progress, …)
    not_ready = None
    while True:
        j = api.get(r.headers["location"]).json()
        stale = (datetime.now(UTC) - datetime.fromisoformat(j["updated"])).total_seconds()
        seen.append((stale, j["progress"], j["updated"], j["status"]))
        if j["status"] == "running" and not_ready is None:
            not_ready = api.get(f"/jobs/{job['jobID']}/results")
        if j["status"] in ("successful", "failed"):
            break
        assert len(seen) < 200
        time.sleep(0.25)
    assert j["status"] == "successful", j
    running = [s for s in seen if s[3] == "running"]
    progress = [s[1] for s in running]
    assert progress == sorted(progress) and len(set(progress)) >= 3, progress
    assert max(s[0] for s in running) <= 1.5, running  # a heartbeat at least every second (+ the answer's way)
    assert not_ready is not None and not_ready.status_code == 404
    assert not_ready.json()["type"] == EXC + "result-not-ready"
    res = api.get(f"/jobs/{job['jobID']}/results").json()
    assert res["run"]["value"]["parameters"]["steps"] == 25


def test_dismiss_stops_the_worker_and_commits_nothing(api: httpx.Client, store_root: Path) -> None:
    v0 = head(store_root)
    job = submit(api, {"steps": 200, "step_s": 0.1})
    jid = job["jobID"]
    until(lambda: api.get(f"/jobs/{jid}").json()["progress"] > 0)
    pid = job_file(store_root, jid)["pid"]
    assert not gone(pid)
    t0 = time.monotonic()
    r = api.delete(f"/jobs/{jid}")
    assert r.status_code == 200 and r.json()["status"] == "dismissed"
    until(lambda: gone(pid), timeout=2, every=0.02)
    assert time.monotonic() - t0 < 2
    time.sleep(0.5)
    assert head(store_root) == v0 and api.get(f"/jobs/{jid}").json()["status"] == "dismissed"
    assert api.get(f"/jobs/{jid}/results").status_code == 410
    assert api.delete(f"/jobs/{jid}").json()["status"] == "dismissed"
    queued_a = submit(api, {"steps": 30, "step_s": 0.1, "factor": 7})
    queued_b = submit(api, {"steps": 1, "factor": 8})
    assert api.get(f"/jobs/{queued_b['jobID']}").json()["status"] == "accepted"
    assert api.delete(f"/jobs/{queued_b['jobID']}").json()["status"] == "dismissed"
    assert api.delete(f"/jobs/{queued_a['jobID']}").json()["status"] == "dismissed"
    time.sleep(0.6)
    assert head(store_root) == v0 and api.get(f"/jobs/{queued_b['jobID']}").json()["status"] == "dismissed"


def test_dismissing_a_finished_job_is_a_409(api: httpx.Client) -> None:
    done = finished(api, submit(api, {"steps": 1, "factor": 4})["jobID"])
    assert done["status"] == "successful"
    r = api.delete(f"/jobs/{done['jobID']}")
    assert r.status_code == 409 and "already finished" in r.json()["detail"]
    assert api.get(f"/jobs/{done['jobID']}").json()["status"] == "successful"


def test_a_failing_simulator_fails_the_job(api: httpx.Client) -> None:
    r = api.post("/processes/sleepy/execution", json={"inputs": {"steps": 2, "fail": True}})
    assert r.status_code == 500 and "failed on purpose" in r.json()["detail"]
    job_id = r.headers["location"].rsplit("/", 1)[1]
    job = api.get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed" and "failed on purpose" in job["message"]
    assert api.get(f"/jobs/{job_id}/results").status_code == 500


def test_the_concurrency_limit_queues_jobs(api: httpx.Client) -> None:
    first = submit(api, {"steps": 15, "step_s": 0.1, "factor": 11})
    nobody = {"successUri": "http://127.0.0.1:9/nobody", "inProgressUri": "http://127.0.0.1:9/nobody"}
    second = submit(api, {"steps": 1, "factor": 12}, subscriber=nobody)  # an unreachable subscriber: only logged
    until(lambda: api.get(f"/jobs/{first['jobID']}").json()["status"] == "running")
    assert api.get(f"/jobs/{second['jobID']}").json()["status"] == "accepted"  # TWIN_JOBS_MAX=1
    a, b = finished(api, first["jobID"]), finished(api, second["jobID"])
    assert a["status"] == b["status"] == "successful"
    assert b["started"] >= a["finished"]


def test_job_list_filters(api: httpx.Client) -> None:
    everything = api.get("/jobs", params={"limit": 1000}).json()["jobs"]
    assert len(everything) >= 5 and {j["status"] for j in everything} >= {"successful", "dismissed", "failed"}
    ok = api.get("/jobs", params={"status": "successful", "limit": 1000}).json()["jobs"]
    assert ok and {j["status"] for j in ok} == {"successful"}
    assert len(api.get("/jobs", params={"limit": 2}).json()["jobs"]) == 2
    assert api.get("/jobs", params={"processID": "sunlight"}).json()["jobs"] == []
    assert len(api.get("/jobs", params={"processID": "sleepy", "limit": 1000}).json()["jobs"]) == len(everything)
    r = api.get("/jobs", params={"status": "asleep"})
    assert r.status_code == 400 and "status" in r.json()["detail"]


# ---------------------------------------------------------------------------------------------- callbacks
class _Hook(http.server.BaseHTTPRequestHandler):
    got: list[tuple[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.got.append((self.path, json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_callbacks_reach_the_subscriber(api: httpx.Client) -> None:
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{hook.server_address[1]}"
    try:
        sub = {"successUri": f"{url}/ok", "inProgressUri": f"{url}/running", "failedUri": f"{url}/failed"}
        good = submit(api, {"steps": 2, "factor": 21}, subscriber=sub)
        bad = submit(api, {"steps": 2, "fail": True, "factor": 22}, subscriber=sub)
        until(lambda: {p for p, _ in _Hook.got} >= {"/ok", "/running", "/failed"})
        by_path = {p: doc for p, doc in _Hook.got}
        assert by_path["/ok"]["run"]["value"]["parameters"]["factor"] == 21
        assert by_path["/running"]["status"] == "running"
        assert by_path["/failed"]["jobID"] == bad["jobID"] and by_path["/failed"]["status"] == "failed"
        assert finished(api, good["jobID"])["status"] == "successful"
    finally:
        hook.shutdown()


# ---------------------------------------------------------------------------------------------- OWSLib
def test_owslib_round_trip(server: Server) -> None:
    from owslib.ogcapi.processes import Processes

    p = Processes(server.base, headers=auth(server.store))  # OWSLib sends Accept: */* and gets JSON
    assert "sleepy" in {x["id"] for x in p.processes()}
    assert p.process("sleepy")["inputs"]["factor"]["schema"]["maximum"] == 100
    doc = p.execute("sleepy", inputs={})  # OWSLib then sends no inputs at all: the defaults
    assert doc["run"]["value"]["parameters"] == {"steps": 4, "step_s": 0.05, "factor": 1.0, "mode": "plain",
                                                 "fail": False}
    job = p.execute("sleepy", inputs={"steps": 2, "factor": 32}, async_=True)
    assert job["status"] in ("accepted", "running")
    until(lambda: p._request(path=f"jobs/{job['jobID']}")["status"] == "successful")
    results = p._request(path=f"jobs/{job['jobID']}/results")
    assert results["run"]["value"]["parameters"]["factor"] == 32


# ---------------------------------------------------------------------------------------------- restart
def test_restart_fails_the_lost_job_and_resumes_the_queued_one(tmp_path: Path) -> None:
    root = _store(tmp_path / "store")
    with serve(root, tmp_path / "one", ENV) as one:
        with httpx.Client(base_url=one.base, timeout=30, headers=auth(root)) as api:
            lost = submit(api, {"steps": 200, "step_s": 0.1})
            queued = submit(api, {"steps": 1, "factor": 41})
            until(lambda: api.get(f"/jobs/{lost['jobID']}").json()["progress"] > 0)  # the simulator runs
        pid = job_file(root, lost["jobID"])["pid"]
        os.killpg(pid, signal.SIGKILL)  # the machine stops: the worker (its own process group) and the server die
        os.killpg(one.proc.pid, signal.SIGKILL)  # without a shutdown
        one.proc.wait()
        until(lambda: gone(pid), timeout=5)
    assert job_file(root, lost["jobID"])["status"] == "running"  # as the dead server left it
    with serve(root, tmp_path / "two", ENV) as two, httpx.Client(base_url=two.base, timeout=30,
                                                                 headers=auth(root)) as api:
        listed = {j["jobID"]: j for j in api.get("/jobs").json()["jobs"]}
        assert {lost["jobID"], queued["jobID"]} <= set(listed)
        failed = api.get(f"/jobs/{lost['jobID']}").json()
        assert failed["status"] == "failed" and "server stopped" in failed["message"]
        resumed = finished(api, queued["jobID"])
        assert resumed["status"] == "successful"
        assert api.get(f"/jobs/{queued['jobID']}/results").json()["run"]["value"]["parameters"]["factor"] == 41


def test_a_second_server_on_the_store_dismisses_a_job_the_first_runs(api: httpx.Client, store_root: Path,
                                                                      tmp_path: Path) -> None:
    v0 = head(store_root)
    job = submit(api, {"steps": 200, "step_s": 0.1, "factor": 51})
    until(lambda: api.get(f"/jobs/{job['jobID']}").json()["progress"] > 0)
    pid = job_file(store_root, job["jobID"])["pid"]
    with serve(store_root, tmp_path, ENV) as other, httpx.Client(base_url=other.base, timeout=30,
                                                                 headers=auth(store_root)) as api2:
        assert api2.get(f"/jobs/{job['jobID']}").json()["status"] == "running"  # seen, not started twice
        t0 = time.monotonic()
        assert api2.delete(f"/jobs/{job['jobID']}").json()["status"] == "dismissed"
        until(lambda: gone(pid), timeout=2, every=0.02)
        assert time.monotonic() - t0 < 2
    assert api.get(f"/jobs/{job['jobID']}").json()["status"] == "dismissed" and head(store_root) == v0
