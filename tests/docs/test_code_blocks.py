"""The code blocks of README.md and docs/*.md run, as written, against the small demo city (issue 13).

One test per document; its blocks run in document order in one subprocess (tests/docs/run_blocks.py) whose folder
holds what the docs name:

* ``twin-store``: a copy of the session's built demo store (``built_city``; each document gets its own copy, 5 MB,
  so blocks may commit, branch and run simulations), also ``$TWIN_STORE``;
* ``demo-city``: the demo's sources and truth (``twin demo``'s default ``$TWIN_DEMO_DIR``), read-only;
* the reader's own input files the docs name: ``tower.geojson`` (a tower as a lon/lat Feature) and ``change.json``
  (one scenario edit), see :data:`INPUTS`.

Python (```python blocks): all of them run, statement by statement in one namespace per document, so later blocks
use names from earlier ones. **The convention: a block makes its point visibly.** Each top-level expression
statement is an answer, as a Python prompt would show it, and must not be empty: not None, False, zero, nor a
list / dict / table / array without items (a tuple: none of its items). ``print(...)`` output and ``assert``
statements count as answers too. A block that raises, gives an empty answer, or gives no answer at all fails, named
by its file and line.

Shell (```bash / ```sh / ```console blocks): a line runs when every command on it starts with ``twin`` — or
``curl``, when the document's blocks name ``localhost:8000``: then a real ``twin serve`` runs on the document's store
and ``localhost:8000`` / ``127.0.0.1:8000`` are rewritten to its port; curl fails on HTTP errors (a ``.curlrc`` with
``fail-with-body``). A run line must exit 0 and print something other than a table without rows. Never run: the
commands in ``blocks.SKIPPED`` (twin serve, demo, ingest, build, tiles build), other programs (make, pip, python,
ogrinfo…), here-documents, and usage synopses — lines with optional syntax ``[…]``, alternatives ``a | b``, an
ellipsis (``PATH...``, ``…``), a ``<placeholder>`` or an upper-case metavariable (``RUN_A``, ``OUT.json``) outside
quotes. Fences other than these (```text, ```json, none) are shown, never run: use ```text for a signature or a
synopsis that is not meant to run.

How a line runs: ``twin`` commands without shell syntax (split at ``;`` / ``&&``, words as the shell splits them)
run as the console script does (``twin.cli.main``), each in a child forked from a server that imported twin once (a
fresh interpreter per command costs a second of imports, about 25 s over the docs); any other line runs in
``bash -e -o pipefail``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from contextlib import nullcontext
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT
from tests.docs.blocks import Block, blocks, commands, synopsis, twin_argv

RUNNER = Path(__file__).with_name("run_blocks.py")
DOC_PORTS = ("localhost:8000", "127.0.0.1:8000")
TIMEOUT_S = 300  # one document, all its blocks
COMMAND_TIMEOUT_S = 120

# inputs the docs name as the reader's own files: a 30 m x 30 m, 90 m tower (lon/lat, reprojected on the way in) in
# the small demo city, and one scenario edit
INPUTS = {
    "tower.geojson": {"type": "Feature", "properties": {"id": "tower-cli", "height": 90.0, "use": "residential"},
                      "geometry": {"type": "Polygon", "coordinates": [[
                          [116.39916, 39.90389], [116.39951, 39.90389], [116.39951, 39.90416],
                          [116.39916, 39.90416], [116.39916, 39.90389]]]}},
    "change.json": {"kind": "rainfall_event", "intensity_mm_h": 30, "duration_min": 60},
}


def documents() -> list[Path]:
    """README.md and docs/*.md holding at least one Python or shell block."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [d for d in docs if any(b.lang in ("python", "shell") for b in blocks(d, ROOT))]


def _plan(doc: Path, server: bool) -> list[dict]:
    out = []
    for b in blocks(doc, ROOT):
        if b.lang == "python":
            out.append({"kind": "python", "line": b.line, "code": b.code})
        elif b.lang == "shell":
            cmds = [{"line": c.line, "text": c.text, "skip": c.skip, "argv": c.argv} for c in commands(b, server)]
            out.append({"kind": "shell", "line": b.line, "commands": cmds})
    return out


def _needs_server(doc: Path) -> bool:
    for b in blocks(doc, ROOT):
        if b.lang == "python" and any(p in b.code for p in DOC_PORTS):
            return True
        if b.lang == "shell" and any(c.skip is None and c.text.startswith("curl") for c in commands(b, True)):
            return True
    return False


def _workspace(tmp: Path, built_city: dict) -> dict[str, str]:
    """The document's folder (store copy, demo link, inputs) and the environment its blocks see."""
    shutil.copytree(built_city["store"], tmp / "twin-store")
    (tmp / "demo-city").symlink_to(built_city["dir"], target_is_directory=True)
    for name, body in INPUTS.items():
        (tmp / name).write_text(json.dumps(body))
    (tmp / ".curlrc").write_text("fail-with-body\nsilent\nshow-error\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env.update(TWIN_STORE=str(tmp / "twin-store"), TWIN_DEMO_DIR=str(tmp / "demo-city"),
               TWIN_CACHE_DIR=str(tmp / "cache"), CURL_HOME=str(tmp),
               PATH=f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}")
    from tests.api.server import key_for

    # the API key the docs call $TWIN_API_KEY: an analyst's, as `twin user add NAME --role analyst` prints one
    env["TWIN_API_KEY"] = key_for(tmp / "twin-store", name="docs-analyst", role="analyst")
    return env


def _empty_table(stdout: str) -> bool:
    """A rich table printed with a header and no rows."""
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    return any(a.startswith("┡") and b.startswith("└") for a, b in zip(lines, lines[1:], strict=False))


def _problems(doc: str, plan: list[dict], report: list[dict]) -> list[str]:
    out = []
    for res in report:
        where = f"{doc}:{res['line']}"
        if res["error"]:
            out.append(f"{where} ({res['kind']} block) failed:\n{res['error']}")
            continue
        if res["kind"] == "python":
            for a in res["answers"]:
                if a["empty"]:
                    out.append(f"{doc}:{a['line']}: empty answer ({a['empty']}): {a['repr']}")
            if not (res["answers"] or res["stdout"].strip() or res["asserts"]):
                out.append(f"{where}: the block gives no answer (no expression, print or assert)")
        else:
            for c in res["commands"]:
                if c["skip"]:
                    continue
                if not c["stdout"].strip():
                    out.append(f"{doc}:{c['line']}: `{c['text']}` printed nothing")
                elif _empty_table(c["stdout"]):
                    out.append(f"{doc}:{c['line']}: `{c['text']}` printed a table without rows:\n{c['stdout']}")
    if len(report) < len(plan) and not any(r["error"] for r in report):
        out.append(f"{doc}: the runner stopped after {len(report)} of {len(plan)} blocks")
    return out


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_code_blocks_run(doc: Path, built_city: dict, tmp_path: Path) -> None:
    rel = doc.relative_to(ROOT).as_posix()
    work = tmp_path / "work"  # the blocks' folder; plan and report stay outside it
    work.mkdir()
    env = _workspace(work, built_city)
    server = _needs_server(doc)
    plan = _plan(doc, server)
    if server:
        from tests.api.server import serve

        ctx = serve(work / "twin-store", tmp_path / "server")
    else:
        ctx = nullcontext(None)
    t0 = time.perf_counter()
    report_path = tmp_path / "report.json"
    with ctx as srv:
        replace = {p: f"127.0.0.1:{srv.port}" for p in DOC_PORTS} if srv else {}
        (tmp_path / "plan.json").write_text(json.dumps({
            "root": str(ROOT), "doc": rel, "blocks": plan, "replace": replace, "env": {},
            "timeout": COMMAND_TIMEOUT_S,
        }))
        try:
            p = subprocess.run([PYTHON, str(RUNNER), str(tmp_path / "plan.json"), str(report_path)], cwd=work,
                               env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{rel}: its blocks ran past {TIMEOUT_S} s")
    report = json.loads(report_path.read_text()) if report_path.exists() else []
    problems = _problems(rel, plan, report)
    if p.returncode != 0:
        problems.append(f"{rel}: the runner exited {p.returncode}:\n{p.stderr[-3000:]}")
    assert not problems, "\n\n".join(problems)
    ran = sum(1 for r in report if r["kind"] == "python") + sum(
        1 for r in report if r["kind"] == "shell" for c in r["commands"] if not c["skip"])
    print(f"{rel}: {ran} blocks / command lines ran in {time.perf_counter() - t0:.1f} s")


def test_readme_runs_python_and_twin_lines() -> None:
    """The README's Python block and some of its twin lines are among what runs (the rule skips no more)."""
    bs = blocks(ROOT / "README.md", ROOT)
    assert any(b.lang == "python" for b in bs)
    runs = [c.text for b in bs if b.lang == "shell" for c in commands(b, False) if c.skip is None]
    assert any(t.startswith("twin log") for t in runs) and any(t.startswith("twin export cityjson") for t in runs)


@pytest.mark.parametrize("line, why", [
    ("twin log", None),
    ("twin sim list; twin sim show sunlight", None),
    ("twin ingest PATH... [--crs EPSG:4548]", "optional syntax"),
    ("twin scenario list | show tower", "alternatives"),
    ("twin sim compare RUN_A RUN_B", "RUN_A"),
    ("twin export cityjson OUT.json", "OUT.json"),
    ("curl http://localhost:8000/jobs/<id>", "placeholder"),
    ("""twin scenario edit tower --edit '{"kind": "rainfall_event", "intensity_mm_h": 60}'""", None),
    ("""twin scenario edit t --edit '{"coordinates": [[1, 2]]}'""", None),
])
def test_synopsis_rule(line: str, why: str | None) -> None:
    got = synopsis(line)
    assert (got is None) if why is None else (got is not None and why in got)


def test_skip_rules() -> None:
    block = Block("x.md", "shell", 10, "make demo\ntwin serve --port 8000\ntwin log  # newest first\n"
                  "twin sim run sunlight \\\n  -p step_min=10\ncurl localhost:8000/\n", )
    got = [(c.line, c.text, c.skip is None) for c in commands(block, server=False)]
    assert got == [(10, "make demo", False), (11, "twin serve --port 8000", False), (12, "twin log", True),
                   (13, "twin sim run sunlight -p step_min=10", True), (15, "curl localhost:8000/", False)]
    assert commands(block, server=True)[-1].skip is None
    assert [c.argv for c in commands(block, server=True) if c.skip is None] == [
        [["log"]], [["sim", "run", "sunlight", "-p", "step_min=10"]], None]  # curl runs in bash
    assert twin_argv("""twin sim list; twin scenario edit t --edit '{"a": 1}'""") == [
        ["sim", "list"], ["scenario", "edit", "t", "--edit", '{"a": 1}']]
    assert twin_argv('twin log > log.txt') is None and twin_argv('twin scenario show "$ID"') is None


@pytest.mark.parametrize("value, is_empty", [
    (None, True), (False, True), (0, True), ([], True), ({}, True), ((1, []), True), ((), True), (..., True),
    (True, False), (3, False), ([0], False), ((1, (True, [])), False), ("x", False), (object(), False),
])
def test_empty_answers(value, is_empty: bool) -> None:
    from tests.docs.run_blocks import empty

    assert (empty(value) is not None) == is_empty
