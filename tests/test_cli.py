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


def test_a_blank_or_bad_as_of_is_one_error_line(tmp_path: Path) -> None:
    """Issue 11: `--as-of ""` was a traceback (a 500 in the API); now exit code 2 and a line naming as_of, while a
    version that was never committed stays 'not found' (exit code 4)."""
    assert _twin(tmp_path, "init").returncode == 0
    assert _twin(tmp_path, "ingest", str(write_buildings_geojson(tmp_path / "src" / "b.geojson", 2))).returncode == 0
    out = str(tmp_path / "out.city.json")
    for bad, why in (("", "as_of: empty"), (" ", "as_of: empty"), ("-1", "as_of: version -1 is out of range"),
                     ("soon", "as_of: 'soon' is neither a version number nor an ISO 8601 time")):
        r = _twin(tmp_path, "export", "cityjson", out, "--as-of", bad)
        assert r.returncode == 2 and r.stderr.startswith(f"error: {why}") and "Traceback" not in r.stderr, r.stderr
    r = _twin(tmp_path, "export", "cityjson", out, "--as-of", "7")
    assert r.returncode == 4 and "version 7 does not exist" in r.stderr
    r = _twin(tmp_path, "branch", "plan", "--at", "")
    assert r.returncode == 2 and r.stderr.startswith("error: as_of: empty")
    r = _twin(tmp_path, "export", "cityjson", out, "--as-of", " 1 ")  # resolves: no LoD geometry before a build
    assert r.returncode == 2 and "no buildings with 3D geometry" in r.stderr


# ---------------------------------------------------------------------------------------------------- a refusing disk


def _snapshot(root: Path) -> dict[str, tuple[int, str | None]]:
    """Every path under ``root`` with its mode and (for files) a hash of its bytes: 'exactly as it was'."""
    import hashlib

    out = {}
    for p in sorted([root, *root.rglob("*")]):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
                                          else None)
    return out


def _unprivileged() -> list[str]:
    """A command prefix under which file permissions apply: none for a normal user; for root, `setpriv` with every
    capability dropped (root without CAP_DAC_OVERRIDE is refused like any user; `nobody` cannot run the test's
    interpreter when it lives under /root)."""
    import shutil

    import pytest

    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set=-all", "--"]
    if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root without a working setpriv: cannot drop the capabilities that bypass permissions")
    return prefix


def _store_with_a_commit(tmp: Path) -> tuple[Path, Path]:
    from twin.pipeline.ingest import ingest_paths
    from twin.store import Store

    store = tmp / "store"
    ingest_paths(Store.init(store), [write_buildings_geojson(tmp / "src" / "a.geojson", 3)])
    extra = write_buildings_geojson(tmp / "src2" / "b.geojson", 5, y0=4_428_600)
    return store, extra


def _refused(r: subprocess.CompletedProcess, reason: str, noise: bool = False) -> None:
    """One `error:` line naming the store path and the reason, exit code 74, no traceback. ``noise``: lines that
    libtiff/GDAL print themselves (not twin's) may come before it."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 74 and "Traceback" not in r.stderr and (noise or len(lines) == 1), r.stderr
    assert [x for x in lines if x.startswith("error:")] == lines[-1:], r.stderr
    assert lines[-1].startswith("error: storage refused /") and lines[-1].endswith(f": {reason}"), lines[-1]


def _run(prefix: list[str], tmp: Path, store: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TWIN_STORE": str(store), "COLUMNS": "400"}
    return subprocess.run([*prefix, TWIN, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_a_store_the_user_may_not_write_is_one_error_line_and_stays_as_it_was(tmp_path: Path) -> None:
    """ingest, build and init on a store (or a parent folder) without write permission: exit code 74, one line
    naming the path, nothing written and nothing left behind."""
    store, extra = _store_with_a_commit(tmp_path)
    prefix = _unprivileged()
    locked = [store, *store.rglob("*")]
    for p in locked:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        probe = subprocess.run([*prefix, "touch", str(store / "probe")], capture_output=True, text=True)
        assert probe.returncode != 0 and "Permission denied" in probe.stderr  # the kernel really refuses
        before = _snapshot(store)
        _refused(_run(prefix, tmp_path, store, "ingest", str(extra)), "permission denied")
        _refused(_run(prefix, tmp_path, store, "build"), "permission denied")
        _refused(_run(prefix, tmp_path, store / "sub", "init"), "permission denied")
        assert _snapshot(store) == before
    finally:
        for p in locked:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert _twin(tmp_path, "log").returncode == 0  # the same store, writable again, is whole
    r = _run([], tmp_path, store, "ingest", str(extra))
    assert r.returncode == 0 and "committed version 2" in r.stdout


def _namespace() -> list[str]:
    """`unshare` into a user and mount namespace, where an unprivileged process may mount a read-only bind or a
    tiny tmpfs of its own; skips where the kernel does not allow it."""
    import shutil

    import pytest

    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    ok = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", "/mnt"],
                        capture_output=True, text=True)
    if ok.returncode != 0:
        pytest.skip(f"no user namespaces with mounts here: {ok.stderr.strip()}")
    return ["unshare", "-rm"]


def test_a_read_only_file_system_is_one_error_line_and_stays_as_it_was(tmp_path: Path) -> None:
    """The store on a read-only mount (a bind mount in a private namespace): EROFS, reported in one line."""
    store, extra = _store_with_a_commit(tmp_path)
    before = _snapshot(store)
    ro = [*_namespace(), "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(tmp_path)]
    probe = subprocess.run([*ro, "touch", str(store / "probe")], capture_output=True, text=True)
    assert probe.returncode != 0 and "Read-only file system" in probe.stderr
    _refused(_run(ro, tmp_path, store, "ingest", str(extra)), "the file system is read-only")
    _refused(_run(ro, tmp_path, store, "build"), "the file system is read-only")
    _refused(_run(ro, tmp_path, store / "sub", "init"), "the file system is read-only")
    assert _snapshot(store) == before


FULL_DISK = """
import json, os, subprocess, sys
from tests.test_cli import _snapshot
disk, twin, src, extra, laz = sys.argv[1:]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk], check=True)
def run(store, *args):
    env = {**os.environ, "TWIN_STORE": os.path.join(disk, store), "COLUMNS": "400"}
    r = subprocess.run([twin, *args], env=env, capture_output=True, text=True)
    return [r.returncode, r.stderr]
out = {"setup": [run("store", "init"), run("store", "ingest", src, laz)]}
fd = os.open(os.path.join(disk, "filler"), os.O_WRONLY | os.O_CREAT)  # fill the disk to the last block
try:
    while True:
        os.write(fd, b"\\0" * 4096)
except OSError as exc:
    out["filled"] = exc.errno
finally:
    os.close(fd)
from pathlib import Path
before = _snapshot(Path(disk) / "store")
out["ingest"] = run("store", "ingest", extra)
out["build"] = run("store", "build", "--workers", "1")
out["init"] = run("other", "init")
out["same"] = _snapshot(Path(disk) / "store") == before
out["other"] = os.path.exists(os.path.join(disk, "other"))
print(json.dumps(out))
"""


def test_a_full_disk_is_one_error_line_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """A real full file system (a 2 MB tmpfs in a private namespace, filled to the last block): ingest (DuckDB's
    segment write), build (GDAL's terrain rasters) and init (STORE.json) say so in one line with exit code 74; the
    store is byte-identical afterwards and a failed init leaves no folder."""
    import errno
    import json

    import laspy
    import numpy as np
    import pyproj

    from tests.conftest import PYTHON

    prefix = _namespace()
    src = write_buildings_geojson(tmp_path / "src" / "a.geojson", 3)
    extra = write_buildings_geojson(tmp_path / "src2" / "b.geojson", 400, y0=4_428_600)
    las = laspy.LasData(laspy.LasHeader(point_format=6, version="1.4"))
    las.header.scales, las.header.offsets = [0.01] * 3, [448_000, 4_428_000, 0]
    las.header.add_crs(pyproj.CRS.from_epsg(4548))
    rng = np.random.default_rng(2)
    las.x, las.y, las.z = 448_000 + rng.uniform(0, 300, 4000), 4_428_000 + rng.uniform(0, 200, 4000), np.full(4000, 40.)
    las.classification = np.full(4000, 2, np.uint8)
    laz = tmp_path / "lidar" / "t.laz"
    laz.parent.mkdir()
    las.write(laz)
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run([*prefix, PYTHON, "-c", FULL_DISK, str(disk), TWIN, str(src), str(extra), str(laz)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [rc for rc, _ in out["setup"]] == [0, 0] and out["filled"] == errno.ENOSPC
    for step in ("ingest", "build", "init"):
        rc, err = out[step]
        _refused(subprocess.CompletedProcess([], rc, "", err), "no space left on the device", noise=step == "build")
    assert out["same"] and not out["other"]


def test_version_and_help_name_every_option_and_show_flags_as_flags(tmp_path: Path) -> None:
    """`twin --version`; every option and argument of every command has help text; a flag's help shows no value
    type (typer's rich help printed `--no-serve <bool>`)."""
    import click
    import typer

    from twin import __version__
    from twin.cli import app

    r = _twin(tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"twin {__version__}"
    undocumented = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
            return
        undocumented.extend(f"{' '.join(path)} {p.opts[0]}" for p in cmd.params if not getattr(p, "help", None))

    walk(typer.main.get_command(app), ["twin"])
    assert not undocumented
    r = _twin(tmp_path, "demo", "--help")
    assert r.returncode == 0 and "--no-serve" in r.stdout and "<bool>" not in r.stdout
    assert "--port" in r.stdout and "<int>" in r.stdout


def test_progress_in_a_log_is_one_timed_line_per_step() -> None:
    """Not on a terminal, steps print ``<step> done in N s`` as they end, a long step a line per heartbeat."""
    import io

    from rich.console import Console

    from twin.cli.progress import LineProgress, progress

    out = io.StringIO()
    console = Console(file=out, force_terminal=False)
    p = progress(console)
    assert isinstance(p, LineProgress)
    p.heartbeat_s = 0.0
    with p:
        t = p.add_task("ingest: reading", total=1.0)
        p.update(t, completed=0.5)
        p.update(t, completed=1.0)
        u = p.add_task("build: heights", total=1.0)
        p.update(u, description="build: landcover")
    lines = out.getvalue().splitlines()
    assert lines[0] == "ingest: reading: 50% after 0 s"
    assert lines[1].startswith("ingest: reading done in ")
    assert lines[2].startswith("build: heights done in ") and lines[-1].startswith("build: landcover done in ")
