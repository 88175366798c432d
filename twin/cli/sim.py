"""`twin sim …`: list, describe and run simulators, list runs and compare them (issue 12).

One CLI for every simulator of the registry (:mod:`twin.sim.engine`): parameters come as ``-p key=value`` (a value
that parses as JSON is taken as such: ``-p step_min=2``, ``-p ground=false``), are validated by the simulator's
parameter model, and a run shows its progress as a bar.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from twin.cli import StoreOpt, _open, _progress, _store_path, app, console, parse_options
from twin.config import get_settings

sim_app = typer.Typer(no_args_is_help=True, help="simulations: run a simulator on a branch or scenario, compare runs")
app.add_typer(sim_app, name="sim")


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` strings to parameters; values that parse as JSON (numbers, booleans, lists) are taken as JSON."""
    out: dict[str, Any] = {}
    for key, value in parse_options(pairs or [], flag="-p").items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@sim_app.command("list")
def list_simulators():
    """The simulators this installation has."""
    from twin.sim.engine import simulators

    t = Table("name", "title", "version", "reads", "writes")
    for sim in simulators().values():
        t.add_row(sim.name, sim.title, sim.version, ", ".join(sim.reads), ", ".join(sim.writes))
    console.print(t)


@sim_app.command("show")
def show(name: str = typer.Argument(..., help="simulator name"),
         as_json: bool = typer.Option(False, "--json", help="print the description and JSON Schema")):
    """A simulator's parameters: name, type, default, range and meaning."""
    from twin.sim.engine import describe, get

    d = describe(get(name))
    if as_json:
        console.print_json(json.dumps(d))
        return
    console.print(f"[bold]{d['name']}[/] {d['version']}: {d['title']}\n{d['description']}\n")
    t = Table("parameter", "type", "default", "range / values", "description")
    schema = d["parameters"]
    for key, prop in schema.get("properties", {}).items():
        prop = _resolve(prop, schema)
        rng = [f"{op} {prop[k]}" for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                                                  ("exclusiveMaximum", "<")) if k in prop]
        if "enum" in prop:
            rng.append(" | ".join(map(str, prop["enum"])))
        t.add_row(key, str(prop.get("type", "")), escape(json.dumps(prop.get("default"))), ", ".join(rng),
                  escape(prop.get("description", "")))  # "[t_s, q]" is text, not rich markup
    console.print(t)
    console.print("outputs: " + "; ".join(f"{k}: {v}" for k, v in d["writes"].items()))


def _resolve(prop: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A property with its ``$ref`` / single ``anyOf`` / ``allOf`` branch merged in (enums and nullable types)."""
    out = dict(prop)
    for key in ("allOf", "anyOf"):
        for sub in prop.get(key, []):
            if "$ref" in sub:
                sub = schema.get("$defs", {}).get(sub["$ref"].rsplit("/", 1)[-1], {})
            if sub.get("type") != "null":
                out = {**sub, **{k: v for k, v in out.items() if k not in ("allOf", "anyOf")}}
    if "$ref" in prop:
        out = {**schema.get("$defs", {}).get(prop["$ref"].rsplit("/", 1)[-1], {}), **out}
    return out


@sim_app.command("run")
def run(
    name: str = typer.Argument(..., help="simulator name (`twin sim list`)"),
    store: Path = StoreOpt,
    branch: str = typer.Option(None, help="branch to run on (default: main)"),
    scenario: str = typer.Option(None, help="scenario to run on (its branch); excludes --branch"),
    at: str = typer.Option(None, help="version number or ISO time to read (default: head)"),
    param: list[str] = typer.Option(None, "-p", "--param", help="parameter KEY=VALUE (repeatable)"),
    out: Path = typer.Option(None, help="also write the run record, result tables (CSV) and files to this folder"),
    as_json: bool = typer.Option(False, "--json", help="print the run record as JSON"),
    no_reuse: bool = typer.Option(False, "--no-reuse", help="compute even when an identical run exists"),
    workers: int = typer.Option(None, min=1, help="processes (default: all cores)"),
):
    """Run a simulator on a branch or scenario and record the run (an identical earlier run is reused)."""
    from twin.sim import engine

    params = parse_params(param)
    checked = engine.parameters(engine.get(name), params)  # a bad parameter is an error before the bar appears
    with _store_or_study(store, engine.get(name), checked, out) as s, _progress(stderr=as_json) as p:
        task = p.add_task(f"{name} on {scenario or branch or 'main'}", total=1.0)

        def progress(fraction: float, message: str) -> None:
            p.update(task, completed=fraction, description=f"{name}: {message}" if message else name)

        r = engine.run(s, name, params, branch=branch, scenario=scenario, as_of=at, progress=progress,
                       author=get_settings().author, reuse=not no_reuse, workers=workers)
        if out is not None:
            write_run(s, r, out)
    if as_json:
        console.print_json(r.model_dump_json())
        return
    console.print(f"run [bold]{r.id}[/] {r.status.value} on {r.branch} v{r.version} in "
                  f"{r.timings.get('total', 0):.1f} s" + (f" (incremental from {r.reused_from})" if r.reused_from
                                                          else ""))
    for k, v in r.summary.items():
        if k != "params_key":
            console.print(f"  {k}: {v}", highlight=False)
    console.print("  outputs: " + ", ".join(r.outputs))


@contextmanager
def _store_or_study(store: Path | None, sim: Any, params: Any, out: Path | None) -> Iterator[Any]:
    """The store; or, for a standalone study (the simulator's ``standalone(params)`` names its CRS and files, no
    store is there, ``--out`` is given), a scratch store that lives for the run only: the results are what
    ``--out`` receives."""
    from twin.store import NotAStore, Store

    try:
        yield _open(store)
        return
    except NotAStore:
        study = getattr(sim, "standalone", None)
        setup = study(params) if study is not None and out is not None else None
        if setup is None:
            raise
    crs, files = setup
    with tempfile.TemporaryDirectory(prefix="twin-study-") as tmp:
        console.print(f"no store at {_store_path(store)}: a standalone study (results only in {out})")
        s = Store.init(Path(tmp) / "store", crs)
        # the study's first version records its input files (a run reads a version ≥ 1)
        from data_models import SourceKind
        from twin.catalog.assets import describe

        s.commit([describe(f, SourceKind.product, {"crs": crs, "role": "study input"}, acquired=None,
                           classification="public") for f in files],
                 message=f"study: {', '.join(f.name for f in files)}", author="twin")
        yield s


def write_run(store, r, out: Path) -> None:
    """The run record (run.json), each result table as CSV and the run's files, into ``out``."""
    import pyarrow.csv as pacsv

    from twin.sim import engine

    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(r.model_dump_json(indent=2))
    for name in r.tables:
        pacsv.write_csv(engine.result_table(store, r, name), out / f"{name}.csv")
    for o in r.outputs:
        if o.startswith(f"{r.id}-"):  # a file the run wrote
            path, _ = engine.result_file(store, r, o[len(r.id) + 1:])
            shutil.copyfile(path, out / path.name)
    console.print(f"wrote {out}")


@sim_app.command("runs")
def runs(store: Path = StoreOpt, branch: str = typer.Option(None, help="only runs visible on this branch"),
         simulator: str = typer.Option(None, help="only runs of this simulator"),
         limit: int = typer.Option(20, help="how many, newest first")):
    """Recorded runs, newest first."""
    from twin.sim.engine import runs as all_runs

    t = Table("run", "simulator", "branch", "version", "status", "submitted (UTC)", "seconds", "summary")
    for r in all_runs(_open(store), branch, simulator)[:limit]:
        summary = ", ".join(f"{k}={v}" for k, v in r.summary.items() if k != "params_key" and
                            isinstance(v, int | float | str))[:80]
        t.add_row(r.id, r.simulator, r.branch, str(r.version), r.status.value, f"{r.submitted:%Y-%m-%d %H:%M:%S}",
                  f"{r.timings.get('total', 0):.1f}", summary or (r.error or "")[:80])
    console.print(t)


@sim_app.command("compare")
def compare(run_a: str = typer.Argument(..., help="the baseline run"),
            run_b: str = typer.Argument(..., help="the run to compare with it (b - a)"),
            store: Path = StoreOpt,
            out: Path = typer.Option(None, help="write each difference table as CSV (entities) and GeoJSON (cells)"),
            as_json: bool = typer.Option(False, "--json", help="print the entities that differ as JSON")):
    """Per-entity and per-cell differences of two runs of the same simulator."""
    import pyarrow.compute as pc

    from twin.layers.registry import to_geojson
    from twin.sim.engine import changed_only
    from twin.sim.engine import compare as run_compare

    c = run_compare(_open(store), run_a, run_b)
    if as_json:
        console.print_json(json.dumps({name: changed_only(t).to_pylist() for name, t in c.entities.items()},
                                      default=str))
    else:
        for k, v in c.totals.items():
            console.print(f"{k}: {v['a']:g} → {v['b']:g} ({v['diff']:+g})", highlight=False)
        for name, t in c.entities.items():
            counts = {s: int(pc.sum(pc.equal(t["status"], s)).as_py() or 0)
                      for s in ("added", "removed", "changed", "same")}
            console.print(f"[bold]{name}[/]: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        for name, t in c.cells.items():
            d = t["difference"]
            console.print(f"[bold]{name}[/]: {t.num_rows} cells, diff min {pc.min(d).as_py()}, "
                          f"mean {pc.mean(d).as_py()}, max {pc.max(d).as_py()}")
    if out is not None:
        import pyarrow.csv as pacsv

        out.mkdir(parents=True, exist_ok=True)
        for name, t in c.entities.items():
            pacsv.write_csv(t, out / f"{name}.csv")
        for name, t in c.cells.items():
            (out / f"{name}.geojson").write_text(json.dumps(to_geojson(t)))
        console.print(f"wrote {out}")
