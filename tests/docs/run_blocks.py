"""Run one document's code blocks in order, in the current folder: ``python run_blocks.py PLAN.json REPORT.json``.

The plan (written by test_code_blocks.py) lists the blocks: Python code, run statement by statement in one namespace
shared by the document's blocks, or shell command lines, run with ``bash -e -o pipefail -c``. The report holds, per
block, its stdout, its answers (the values of its top-level expression statements, as a Python prompt shows them)
and the first error; running stops at the first block that fails. Tracebacks name the Markdown file and its lines.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import json
import linecache
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any


def empty(value: Any, top: bool = True) -> str | None:
    """Why an answer is empty (None, False, zero, no rows, no items; a tuple with an empty item, checked one level
    down: ``(True, [])`` is a non-empty answer), or None."""
    if value is None or value is False:
        return f"{value!r}"
    if value is Ellipsis:
        return "a placeholder (...)"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "zero" if value == 0 else None
    if isinstance(value, tuple) and top:
        if not value:
            return "an empty tuple"
        for k, item in enumerate(value):
            why = empty(item, top=False)
            if why:
                return f"item {k} of the tuple is empty: {why}"
        return None
    rows = getattr(value, "num_rows", None)
    if isinstance(rows, int):
        return "no rows" if rows == 0 else None
    size = getattr(value, "size", None)
    if isinstance(size, int) and hasattr(value, "shape"):
        return "no elements" if size == 0 else None
    try:
        return "no items" if len(value) == 0 else None
    except TypeError:
        return None


def _short(value: Any, n: int = 300) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 — a repr that fails is still an answer
        text = f"<{type(value).__name__}: repr failed: {exc}>"
    return text if len(text) <= n else text[: n - 1] + "…"


def _is_print(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name) and node.value.func.id == "print")


def run_python(block: dict[str, Any], ns: dict[str, Any], filename: str) -> dict[str, Any]:
    answers: list[dict[str, Any]] = []
    res: dict[str, Any] = {"kind": "python", "line": block["line"], "answers": answers, "error": None,
                           "stdout": "", "asserts": False, "seconds": 0.0}
    try:  # padded, so line numbers are the Markdown file's
        tree = ast.parse("\n" * (block["line"] - 1) + block["code"], filename=filename)
    except SyntaxError as exc:
        res["error"] = "".join(traceback.format_exception_only(type(exc), exc))
        return res
    res["asserts"] = any(isinstance(n, ast.Assert) for n in ast.walk(tree))
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        for node in tree.body:
            try:
                if isinstance(node, ast.Expr) and not _is_print(node):
                    value = eval(compile(ast.Expression(node.value), filename, "eval"), ns)  # noqa: S307
                    answers.append({"line": node.lineno, "repr": _short(value), "empty": empty(value)})
                else:
                    exec(compile(ast.Module([node], []), filename, "exec"), ns)  # noqa: S102
            except BaseException as exc:  # noqa: BLE001 — the report carries it to the test
                res["error"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))
                break
    res["stdout"] = out.getvalue()
    res["seconds"] = round(time.perf_counter() - t0, 2)
    return res


# what the twin commands import, loaded once into the fork server that forks each command (a fresh interpreter
# per command costs about a second of imports)
PRELOAD = ["__main__", "twin.cli", "twin.store", "twin.sim.engine", "twin.sim.scenarios", "twin.sim.sunlight",
           "twin.pipeline.scenarios", "twin.tiles.cache", "twin.products.cityjson_export", "twin.geo.crs", "pandas",
           "pyarrow.pandas_compat"]
_forks: Any = None


def _twin_main(argv: list[str], out: str, err: str) -> None:
    """In a forked child: ``twin ARGV`` exactly as the console script runs it, stdout and stderr into files."""
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    sys.argv = ["twin", *argv]
    from twin.cli import main

    sys.exit(main())


def run_twin(argvs: list[list[str]], timeout: float) -> tuple[int | str, str, str]:
    """A line of twin commands, one forked child each, stopping at the first that fails (as ``bash -e``)."""
    global _forks
    if _forks is None:
        _forks = multiprocessing.get_context("forkserver")
        _forks.set_forkserver_preload(PRELOAD)
    stdout = stderr = ""
    for argv in argvs:
        with tempfile.TemporaryDirectory() as tmp:
            out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
            p = _forks.Process(target=_twin_main, args=(argv, out, err))
            p.start()
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join()
                rc: int | str = "timeout"
            else:
                rc = p.exitcode
            stdout += Path(out).read_text(errors="replace") if os.path.exists(out) else ""
            stderr += Path(err).read_text(errors="replace") if os.path.exists(err) else ""
        if rc != 0:
            return rc, stdout, stderr + (f"timed out after {timeout} s" if rc == "timeout" else "")
    return 0, stdout, stderr


def run_shell(block: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    res: dict[str, Any] = {"kind": "shell", "line": block["line"], "commands": [], "error": None}
    t0 = time.perf_counter()
    for cmd in block["commands"]:
        if cmd["skip"]:
            res["commands"].append({**cmd, "seconds": 0.0})
            continue
        t1 = time.perf_counter()
        if cmd.get("argv"):
            rc, stdout, stderr = run_twin(cmd["argv"], timeout)
        else:
            try:
                p = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", cmd["text"]], env=env,
                                   capture_output=True, text=True, timeout=timeout)
                rc, stdout, stderr = p.returncode, p.stdout, p.stderr
            except subprocess.TimeoutExpired as exc:
                rc, stdout, stderr = "timeout", exc.stdout or "", f"timed out after {timeout} s"
                stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
        res["commands"].append({**cmd, "rc": rc, "stdout": stdout[-4000:], "stderr": stderr[-4000:],
                                "seconds": round(time.perf_counter() - t1, 2)})
        if rc != 0:
            res["error"] = f"line {cmd['line']}: `{cmd['text']}` exited {rc}:\n{stderr[-3000:] or stdout[-3000:]}"
            break
    res["seconds"] = round(time.perf_counter() - t0, 2)
    return res


def main(plan_path: str, report_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    doc = plan["doc"]
    filename = str(Path(plan["root"]) / doc)
    text = Path(filename).read_text(encoding="utf-8")
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    env = {**os.environ, **plan["env"]}
    report: list[dict[str, Any]] = []
    for block in plan["blocks"]:
        for old, new in plan["replace"].items():
            if block["kind"] == "python":
                block["code"] = block["code"].replace(old, new)
            else:
                for cmd in block["commands"]:
                    cmd["text"] = cmd["text"].replace(old, new)
                    if cmd.get("argv"):
                        cmd["argv"] = [[w.replace(old, new) for w in argv] for argv in cmd["argv"]]
        if block["kind"] == "python":
            res = run_python(block, ns, filename)
        else:
            res = run_shell(block, env, plan["timeout"])
        report.append(res)
        Path(report_path).write_text(json.dumps(report, indent=1))  # so far, should the next block hang
        if res["error"]:
            break
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
