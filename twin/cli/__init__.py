"""The `twin` command: set up a store, generate the demo city, ingest sources, build, serve, inspect history."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from twin import __version__
from twin.cli.progress import LineProgress, Stages, progress
from twin.config import get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="twin: urban spatiotemporal digital twin.")
console = Console(soft_wrap=True)  # long lines wrap in the terminal, not mid-word in a log



def _hide_flag_types() -> None:
    """typer's rich help prints a value type for every option, flags too (``--no-serve <bool>``); a flag takes no
    value, so it gets none."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_twin", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._twin = True
    TyperOption.display_type_rich = display_type_rich


_hide_flag_types()


def _version(value: bool) -> None:
    if value:
        console.print(f"twin {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """twin: urban spatiotemporal digital twin."""


StoreOpt = typer.Option(None, "--store", "-s", help="store directory (default $TWIN_STORE or ./twin-store)")
HostOpt = typer.Option(None, help="bind address (default $TWIN_HOST, 127.0.0.1)")
PortOpt = typer.Option(None, help="port (default $TWIN_PORT, 8000)")


def _store_path(store: Path | None) -> Path:
    return store if store is not None else get_settings().store


def _open(store: Path | None):
    from twin.store import Store

    return Store(_store_path(store))


def _open_as(store: Path | None):
    """The store as the principal of ``$TWIN_API_KEY`` (what it may see only), else as the local admin; reads are
    tracked for the audit record of an export."""
    from twin.security.session import open_store

    key = get_settings().api_key
    return open_store(_store_path(store), key.get_secret_value() if key is not None else None)


def _progress(stderr: bool = False) -> Progress | LineProgress:
    """Progress on stdout, or on stderr when stdout carries a result (``--json``): bars in a terminal, timed lines
    in a log."""
    return progress(Console(stderr=True) if stderr else console)


_Stages = Stages


@app.command()
def init(store: Path = StoreOpt, crs: str = typer.Option(None, help="store CRS (default $TWIN_CRS, EPSG:4548)"),
         time_zone: str = typer.Option(None, "--time-zone", help="the city's IANA time zone, e.g. Asia/Shanghai "
                                                                  "(viewers show times in it)")):
    """Create an empty store (does nothing if one exists)."""
    from twin.store import Store

    s = Store.init(_store_path(store), crs or get_settings().crs, time_zone=time_zone)
    console.print(f"store ready at [bold]{s.root}[/] (CRS {s.crs}, version {s.head()})")


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="source files or folders"),
    store: Path = StoreOpt,
    kind: str = typer.Option(None, help="a kind (pointcloud, imagery, vector, cityjson, sensors, trajectories) or a "
                                        "reader (las, pdal, landsat, raster, osm, sensorthings …) when the file name "
                                        "does not tell; see docs/sources.md"),
    crs: str = typer.Option(None, help="CRS of files that do not declare one (never guessed)"),
    acquired: str = typer.Option(None, help="acquisition time (ISO 8601) for files that do not carry one"),
    classification: str = typer.Option("public", help="public | internal | confidential | secret"),
    licence: str = typer.Option(None, help="licence of the data (SPDX id or text)"),
    producer: str = typer.Option(None, help="who produced the data"),
    bands: str = typer.Option(None, help="imagery band mapping, e.g. red,green,blue,nir"),
    columns: str = typer.Option(None, help="CSV column mapping, e.g. time=timestamp,station=station_id"),
    tz: str = typer.Option(None, help="time zone of CSV times that carry none, e.g. +08:00 or Asia/Shanghai"),
    coords: str = typer.Option(None, help="web coordinates to convert to WGS84: gcj02 | bd09"),
    entity_type: str = typer.Option(None, "--as", help="map features to: building|road|water|landcover|vegetation"),
    option: list[str] = typer.Option(None, "--option", "-o", help="reader option KEY=VALUE (repeatable)"),
    branch: str = typer.Option("main", help="branch to commit to"),
    message: str = typer.Option(None, "--message", "-m", help="commit message (default: what was ingested)"),
):
    """Register source files in the catalog and load what they hold, in one atomic commit."""
    from twin.pipeline.ingest import ingest_paths

    options = parse_options(option or [])
    for key, value in (("bands", bands), ("columns", columns), ("tz", tz), ("coords", coords),
                       ("entity_type", entity_type)):
        if value is not None:
            options[key] = value
    s = _open(store)
    with _progress() as p:
        commit = ingest_paths(
            s, paths, kind=kind, crs=crs, acquired=acquired, classification=classification, licence=licence,
            producer=producer, options=options, branch=branch, author=get_settings().author, message=message,
            progress=_Stages(p),
        )
    _report(commit)


def parse_options(pairs: list[str], flag: str = "--option") -> dict[str, str]:
    """KEY=VALUE strings to a dict; a pair without '=' is a usage error naming ``flag``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{flag} expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


@app.command()
def build(
    store: Path = StoreOpt,
    branch: str = typer.Option("main", help="branch to build"),
    only: list[str] = typer.Option(None, "--only", help="run only these steps (repeatable); default: all"),
    workers: int = typer.Option(None, min=1, help="processes for per-tile work (default: all cores)"),
    tiles: bool = typer.Option(None, "--tiles/--no-tiles", help="then build the branch head's 3D tilesets into "
                               "<store>/tiles/, what servers read (default: yes, unless --only is given)"),
):
    """Fuse what the catalog and the store hold (heights, land cover, changes, …), commit the results, then build
    the 3D tilesets of the branch head into <store>/tiles/ so that servers only read."""
    from twin.compute import default_workers
    from twin.pipeline.build import build as run_build

    s = _open(store)
    report: dict = {}
    with _progress() as p:
        commit = run_build(s, branch=branch, author=get_settings().author, progress=_Stages(p), only=only,
                           report=report, workers=workers)
    for step, what in report.items():
        console.print(f"  {step}: {what}", highlight=False)
    _report(commit)
    if tiles if tiles is not None else not only:
        _build_tilesets(s, branch, "latest", None, workers or default_workers())


def _check_exposure(store, host: str, auth: bool, allow_anonymous_only: bool) -> None:
    """Beyond a loopback address the API needs authentication on, and an admin (else nobody could ever read
    non-public data or manage users) unless told ``--allow-anonymous-only``."""
    import ipaddress

    from twin.errors import BadInput
    from twin.security.principals import has_admin

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return
    if not auth:
        raise BadInput(f"TWIN_AUTH=0 (no authentication) is refused on {host}: every caller would be an admin; "
                       "serve on 127.0.0.1, or turn authentication on")
    if not has_admin(store) and not allow_anonymous_only:
        raise BadInput(f"no admin exists in {store.root}, so on {host} only public data could ever be read: add "
                       "one first (`twin user add NAME --role admin --clearance secret`), or pass "
                       "--allow-anonymous-only")


def _report(commit) -> None:
    if commit is None:
        console.print("nothing changed: no new version")
    else:
        c = commit.changes
        console.print(
            f"committed version [bold]{commit.version}[/] on {commit.branch}: "
            f"+{c.added} ~{c.modified} -{c.removed} ({commit.message})"
        )


@app.command()
def serve(
    store: Path = StoreOpt,
    host: str = HostOpt,
    port: int = PortOpt,
    workers: int = typer.Option(1, min=1, help="worker processes (stateless; all read the same store)"),
    access_log: Annotated[bool | None, typer.Option(
        "--access-log/--no-access-log", help="one JSON line per request on stderr (default $TWIN_ACCESS_LOG)")] = None,
    allow_anonymous_only: bool = typer.Option(False, "--allow-anonymous-only", help="listen beyond loopback "
                                              "although no admin exists yet (callers see public data only)"),
):
    """Serve the API over the store; commits made meanwhile by other processes show up without a restart.

    Links point at $TWIN_PUBLIC_URL, else at http://<host>:<port>; X-Forwarded-* headers count only from
    $TWIN_TRUSTED_PROXIES; browsers on other origins may call it when $TWIN_CORS_ORIGINS names them."""
    import os

    import uvicorn

    from twin.api.app import create_app
    from twin.api.middleware import MAX_HEADER_BYTES

    settings = get_settings()
    updates: dict = {"host": host or settings.host, "port": port or settings.port}
    if access_log is not None:
        updates["access_log"] = access_log
    settings = settings.model_copy(update=updates)
    host, port = settings.host, settings.port
    path = _store_path(store)
    application = create_app(path, settings)  # fail here, with a clear message, if the store cannot be opened
    _check_exposure(application.state.store, host, settings.auth, allow_anonymous_only)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"twin serving {path} at [bold]http://{shown}:{port}/[/]  (Ctrl-C to stop)")
    console.print(f"3D viewer: [bold]http://{shown}:{port}/viewer/[/]")
    if settings.public_url:
        console.print(f"links point at {settings.public_url}")
    elif host in ("0.0.0.0", "::"):
        console.print(f"links point at http://{shown}:{port}: set TWIN_PUBLIC_URL to the address clients use")
    # uvicorn's own X-Forwarded-* handling (on by default for 127.0.0.1) is off: twin.api.middleware.PublicURL
    # believes only $TWIN_TRUSTED_PROXIES. The header bound applies to h11; the middleware bounds httptools too.
    options = {"host": host, "port": port, "log_level": "warning", "proxy_headers": False,
               "h11_max_incomplete_event_size": MAX_HEADER_BYTES}
    if workers > 1:
        os.environ.update({"TWIN_STORE": str(path.resolve()), "TWIN_HOST": host, "TWIN_PORT": str(port),
                           "TWIN_ACCESS_LOG": "1" if settings.access_log else "0"})
        uvicorn.run("twin.api.app:app_from_env", factory=True, workers=workers, **options)
    else:
        uvicorn.run(application, **options)


@app.command()
def log(
    store: Path = StoreOpt,
    branch: str = typer.Option(None, help="only commits visible on this branch"),
    limit: int = typer.Option(20, help="how many"),
):
    """Show commits, newest first."""
    s = _open(store)
    t = Table("version", "branch", "time (UTC)", "author", "changes", "message")
    for c in s.log(branch)[:limit]:
        ch = c.changes
        t.add_row(str(c.version), c.branch, f"{c.time:%Y-%m-%d %H:%M:%S}", c.author,
                  f"+{ch.added} ~{ch.modified} -{ch.removed}", c.message)
    console.print(t)


@app.command()
def branch(
    name: str = typer.Argument(None, help="create this branch (omit to list branches)"),
    store: Path = StoreOpt,
    from_branch: str = typer.Option("main", "--from", help="branch to fork from"),
    at: str = typer.Option(None, help="version number or ISO time to fork at (default: head)"),
    description: str = typer.Option("", help="what the branch is for"),
):
    """List branches, or create one (a copy-on-write fork for a scenario)."""
    s = _open(store)
    if name is None:
        t = Table("branch", "base", "at version", "head", "created (UTC)", "description")
        for b in s.branches():
            t.add_row(b.name, b.base_branch or "", str(b.base_version or ""), str(s.head(b.name)),
                      f"{b.created:%Y-%m-%d %H:%M:%S}", b.description)
        console.print(t)
        return
    b = s.create_branch(name, from_branch, at, author=get_settings().author, description=description)
    console.print(f"created branch [bold]{b.name}[/] from {b.base_branch} at version {b.base_version or 0}")


export_app = typer.Typer(no_args_is_help=True, help="Export the city model to standard formats.")
app.add_typer(export_app, name="export")


@export_app.command("cityjson")
def export_cityjson(
    out: Path = typer.Argument(..., help="output .city.json file"),
    store: Path = StoreOpt,
    bbox: str = typer.Option(None, help="minx,miny,maxx,maxy in the store CRS"),
    lod: list[str] = typer.Option(None, "--lod", help="LoD to include (repeatable; default all), e.g. 1.2"),
    branch: str = typer.Option("main", help="branch to export"),
    as_of: str = typer.Option(None, help="version number or ISO time"),
):
    """Buildings with every LoD, semantic surfaces, quality and provenance as CityJSON 2.0."""
    from twin.products.cityjson_export import export_cityjson as run_export

    box = [float(v) for v in bbox.split(",")] if bbox else None
    if box is not None and len(box) != 4:
        raise typer.BadParameter("--bbox needs four numbers: minx,miny,maxx,maxy")
    s = _open_as(store)
    n = run_export(s, out, bbox=box, lods=lod or None, branch=branch, as_of=as_of)
    from twin.security.session import audit_export

    audit_export(s, "cityjson", {"out": str(out), "bbox": box, "lods": lod or None, "branch": branch,
                                 "as_of": as_of}, n["buildings"], get_settings().secrets_dir)
    console.print(f"wrote {n['buildings']} buildings ({n['vertices']} vertices) to [bold]{out}[/]")


tiles_app = typer.Typer(no_args_is_help=True, help="3D Tiles 1.1 tilesets, built into <store>/tiles/ for servers "
                                                    "to read.")
app.add_typer(tiles_app, name="tiles")


@tiles_app.command("build")
def tiles_build(
    store: Path = StoreOpt,
    branch: str = typer.Option("main", help="branch"),
    version: str = typer.Option("latest", help="version number or 'latest'"),
    only: list[str] = typer.Option(None, "--only", help="buildings | terrain | pointcloud (repeatable; default all)"),
    workers: int = typer.Option(1, min=1, help="processes for encoding tiles"),
):
    """Build the tilesets of a branch and version into <store>/tiles/, where servers read them (a server builds a
    missing one into its cache directory, never into the store)."""
    _build_tilesets(_open(store), branch, version, only, workers)


def _build_tilesets(s, branch: str, version: str, only: list[str] | None, workers: int) -> None:
    """The writer's tileset build of ``twin tiles build`` and ``twin build``: each kind into <store>/tiles/, a kind
    the store has no data for reported as skipped."""
    from twin.tiles.cache import KINDS, TileCache, TileNotFound

    kinds = only or list(KINDS)
    for k in kinds:
        if k not in KINDS:
            raise typer.BadParameter(f"--only takes one of {', '.join(KINDS)}, got {k!r}")
    full = TileCache(s, workers=workers)
    v = full.version(branch, version)
    for cache in (full, *full.views_below()):  # and each lower clearance's own tilesets (no hidden object in them)
        console.print(f"tilesets of {branch}@{v}{f' for clearance {cache.view}' if cache.view else ''} into "
                      f"{cache.root}", highlight=False)
        with _progress() as p:
            stages = _Stages(p)
            for kind in kinds:
                t0 = time.perf_counter()
                try:
                    path = cache.tileset(kind, branch, v, progress=stages)
                except TileNotFound as exc:
                    console.print(f"  {kind}: skipped ({exc})", highlight=False)
                    continue
                extra = ""
                if kind == "buildings" and cache.last_build is not None:
                    r = cache.last_build
                    extra = f" ({r.buildings} buildings, {r.tiles} tiles, {len(r.encoded)} encoded, {r.reused} reused)"
                console.print(f"  {kind}: {path}{extra} in {time.perf_counter() - t0:.1f} s", highlight=False)


@app.command()
def demo(
    size: str = typer.Option("small", help="tiny (~15 buildings) | small (~300) | medium (~3,000) | large "
                                           "(100,000+)"),
    seed: int = typer.Option(7, help="random seed: the same seed gives byte-identical sources"),
    out: Path = typer.Option(None, help="where to write the sources (default $TWIN_DEMO_DIR or ./demo-city, with "
                                        "-<size> and -seed<N> added for other sizes and seeds)"),
    store: Path = typer.Option(None, "--store", "-s", help="store directory (default $TWIN_STORE or ./twin-store, "
                                                           "with -<size> and -seed<N> added likewise)"),
    no_serve: bool = typer.Option(False, "--no-serve", help="stop after building; do not start the server"),
    host: str = HostOpt, port: int = PortOpt,
):
    """Generate the Beijing sample city, ingest and build it, then serve it.

    Each size and seed has its own folder and store; a demo never merges into a folder or store that holds another
    city (it refuses, saying which to use)."""
    from twin.demo import generate, targets
    from twin.pipeline.build import build as run_build
    from twin.pipeline.ingest import ingest_paths
    from twin.store import Store

    settings = get_settings()
    explicit = settings.model_fields_set
    out = out or (settings.demo_dir if "demo_dir" in explicit else targets.default_path(settings.demo_dir, size, seed))
    store = store or (settings.store if "store" in explicit else targets.default_path(settings.store, size, seed))
    targets.check_folder(out, size, seed)
    targets.check_store(store, size, seed)
    t0 = time.perf_counter()
    with _progress() as p:
        stages = _Stages(p)
        gen = p.add_task("generate sample city", total=1.0)
        manifest = generate(out, size=size, seed=seed,
                            progress=lambda stage, done: p.update(gen, completed=done,
                                                                  description=f"generate sample city: {stage}"))
        s = Store.init(store, manifest.get("crs", settings.crs), time_zone=manifest.get("time_zone"))
        files = [out / f["path"] for f in manifest["files"] if f["path"].startswith("sources/")]
        acquired = {str((out / f["path"]).resolve()): f.get("acquired") for f in manifest["files"]}
        c1 = ingest_paths(s, files, acquired=acquired, author=settings.author, progress=stages,
                          message=targets.ingest_message(size, seed))
        c2 = run_build(s, author=settings.author, progress=stages)
        from twin.tiles.cache import TileCache

        full = TileCache(s)
        for cache in (full, *full.views_below()):  # the admin's and each lower clearance's (the anonymous viewer's)
            for kind in ("buildings", "terrain"):  # what the viewer opens with; the point cloud builds when shown
                cache.tileset(kind, "main", s.head(), progress=stages)
    for c in (c1, c2):
        _report(c)
    console.print(f"demo city ready in {time.perf_counter() - t0:.1f} s: sources {out}, store {s.root}, version "
                  f"{s.head()}", highlight=False)
    if not no_serve:
        serve(store=store, host=host, port=port, workers=1)


# sub-commands in their own modules (they import app, console and the helpers above)
from twin.cli import audit as _audit  # noqa: E402,F401
from twin.cli import keys as _keys  # noqa: E402,F401
from twin.cli import scenario as _scenario  # noqa: E402,F401
from twin.cli import sim as _sim  # noqa: E402,F401
from twin.cli import user as _user  # noqa: E402,F401


def main() -> None:
    """Entry point: user errors (bad file, unknown branch, busy store) and storage conditions (disk full, read-only
    store) print one clear line, not a traceback, and exit with the code ``twin.errors.TABLE`` gives their status
    (2 for any other ValueError)."""
    from twin.errors import TwinError, storage_error

    try:
        app()
    except (TwinError, ValueError, OSError) as exc:
        err = exc if isinstance(exc, TwinError) else storage_error(exc)
        if err is None and isinstance(exc, OSError):
            raise  # a lost file or a bug: the traceback is what a developer needs
        Console(stderr=True).print(f"[bold red]error:[/] {err or exc}", highlight=False)
        raise SystemExit(err.answer.exit_code if err is not None else 2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
