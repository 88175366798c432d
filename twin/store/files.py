"""Crash-safe file primitives: atomic replace with fsync, the store's single-writer lock, claims of live writers on
``tmp/``, the mapping of a refusing disk to :class:`~twin.errors.StorageError`, and the fault hook tests use."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from twin.errors import Status, StorageError, TwinError, storage_error

CLAIM = ".claim"  # suffix of the lock files that live writers hold in tmp/
_HELD: set[str] = set()  # claim files this process holds (its own claims never block its own recovery)
_REFUSALS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
_QUOTED = re.compile(r'"([^"]+)"')


class StoreBusy(TwinError, RuntimeError):
    """Another process held the writer lock for longer than the timeout."""

    status = Status.busy


def refused(exc: BaseException, what: str = "", path: Path | str | None = None) -> StorageError | None:
    """A :class:`StorageError` when ``exc`` says the disk refused a write (full, quota, read-only, no permission),
    None otherwise. Besides OSErrors this reads the errors of libraries that write files themselves (DuckDB's
    ``IO Error: Could not write file "…": No space left on device``, GDAL's), which carry the reason as text.
    ``path`` names the file when the error does not (a failed flush or close)."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, OSError) and not exc.filename and path is not None and exc.errno in _REFUSALS:
        exc = OSError(exc.errno, exc.strerror, str(path))
    err = storage_error(exc, what)
    if err is not None or isinstance(exc, TwinError):
        return err
    text = str(exc)
    for code in _REFUSALS:
        if os.strerror(code) in text:
            m = _QUOTED.search(text)
            name = getattr(exc, "filename", None) or (m.group(1) if m else None) or path
            return storage_error(OSError(code, os.strerror(code), name), what)
    return None


def raise_refused(exc: BaseException, what: str = "", path: Path | str | None = None) -> NoReturn:
    """Re-raise ``exc`` (from an ``except`` block) as the :class:`StorageError` :func:`refused` makes of it, or as
    itself when the disk did not refuse."""
    err = refused(exc, what, path)
    if err is not None and err is not exc:
        raise err from exc
    raise exc


def disk_refuses(folder: Path, what: str = "", size: int = 1 << 20) -> StorageError | None:
    """A :class:`StorageError` when ``folder`` cannot take a ``size``-byte file now (full, read-only, no
    permission), else None: for failures whose library hides the reason (GDAL reports a COG it could not finish
    as "not recognized as being in a supported file format"). The probe file is removed either way."""
    probe = tmp_path(folder, ".probe")
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return refused(OSError(exc.errno, exc.strerror, str(folder)), what)
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    return None


def fault(point: str) -> None:
    """Test hook: ``TWIN_FAULT=<point>:<raise|kill>`` raises, or SIGKILLs this process, at a named point (points
    may hold colons: the action is what follows the last one)."""
    spec = os.environ.get("TWIN_FAULT", "")
    name, _, action = spec.rpartition(":")
    if name != point:
        return
    if action == "kill":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected fault at {point}")


def faulty(progress: Callable[[str, float], None]) -> Callable[[str, float], None]:
    """A progress callback that also passes the fault points ``<stage>@start``, ``@mid`` and ``@end``."""

    def report(stage: str, fraction: float) -> None:
        progress(stage, fraction)
        fault(f"{stage}@{'start' if fraction <= 0 else 'end' if fraction >= 1 else 'mid'}")

    return report


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_path(tmp_dir: Path, suffix: str) -> Path:
    return tmp_dir / f"{uuid.uuid4().hex}{suffix}"


def publish(src: Path, dst: Path) -> None:
    """Atomically move a finished file into place (fsync file, rename, fsync directory)."""
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(src, dst)
    fsync_dir(dst.parent)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it; a disk that refuses raises :class:`StorageError` naming ``path``."""
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise_refused(exc, "writing", path)


def write_json_atomic(path: Path, obj: Any, tmp_dir: Path) -> None:
    """Write JSON so that readers see either the old file or the complete new one, never a torn one; on any failure
    the temporary file is removed (a refusing disk raises :class:`StorageError`)."""
    tmp = tmp_path(tmp_dir, ".json")
    try:
        write_bytes(tmp, (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode("utf-8"))
        fault("json_written")
        publish(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        raise_refused(exc, f"writing {path.name}")


@contextmanager
def writer_lock(lock_file: Path, timeout: float = 120.0) -> Iterator[None]:
    """Exclusive advisory lock serialising writers across processes; readers never take it.

    The kernel drops a flock when its holder dies, so a writer killed by SIGKILL never leaves the store locked
    (the lock file itself stays, empty, and is reused). A store the process may not write raises
    :class:`StorageError` here, before anything is written.
    """
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise_refused(exc, "taking the writer lock")
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreBusy(
                        f"{lock_file}: another writer held the store for more than {timeout:.0f} s"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# ---------------------------------------------------------------------------------------------------- claims


@contextmanager
def claim(tmp_dir: Path, what: str) -> Iterator[Path]:
    """Mark this process as a live writer of files outside the writer lock (a build's terrain rasters in ``tmp/``
    and ``products/``) until the block ends: an flock held on ``tmp/<what>-<uuid>.claim``. The kernel drops it when
    the process dies, so :func:`recover_tmp` tells a live claim from a dead one without trusting pids or clocks."""
    while True:
        path = tmp_dir / f"{what}-{uuid.uuid4().hex}{CLAIM}"
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise_refused(exc, f"claiming {tmp_dir} for a {what}")
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # a recovery took the file between its creation and the flock: claim again
    _HELD.add(str(path))
    try:
        yield path
    finally:
        _HELD.discard(str(path))
        path.unlink(missing_ok=True)
        os.close(fd)


def _is_live(path: Path) -> bool:
    """True when another open file (of a live process, this one included) holds the flock of claim ``path``; a dead
    claim is removed while its lock is held, so no new claimant can be using it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        path.unlink(missing_ok=True)
        return False
    finally:
        os.close(fd)


def remove_path(path: Path) -> None:
    """Remove a file, link or folder tree, whatever a writer left; gone already is fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def recover_tmp(tmp_dir: Path) -> bool:
    """Remove what dead writers left in ``tmp_dir`` (files, partial segments and tables, JSON being published,
    folders of terrain rasters, claims of dead builds); returns True when another live process holds a claim.

    Called with the writer lock held, so no commit is writing there. Entries as new as the oldest live claim of
    another process may be that process's work in progress and are kept (a later recovery removes them if they
    outlive it); everything older is a leftover. Times are inode change times, which only grow.
    """
    tmp_dir.mkdir(parents=True, exist_ok=True)
    entries = list(tmp_dir.iterdir())
    since: int | None = None
    for p in entries:
        if p.name.endswith(CLAIM) and str(p) not in _HELD and _is_live(p):
            try:
                t = p.stat().st_ctime_ns
            except FileNotFoundError:
                continue
            since = t if since is None else min(since, t)
    for p in entries:
        if p.name.endswith(CLAIM):
            continue  # live ones stay, dead ones went in _is_live
        if since is not None:
            try:
                if p.lstat().st_ctime_ns >= since:
                    continue
            except FileNotFoundError:
                continue
        remove_path(p)
    return since is not None


def store_key(store) -> str:
    """A folder name for one store: its name and a hash of its resolved path and creation time (a store deleted and
    created again at the same path gets a fresh cache; two stores never share one)."""
    root = Path(store.root).resolve()
    try:
        created = str(json.loads((root / "STORE.json").read_text(encoding="utf-8")).get("created", ""))
    except (OSError, ValueError):
        created = ""
    digest = hashlib.sha256(f"{root}\n{created}".encode()).hexdigest()[:16]
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', root.name)[:40] or 'store'}-{digest}"


def write_private(path: Path, data: bytes, *, replace: bool) -> None:
    """``data`` into ``path`` readable by its owner only (0600), whole or not at all (a temporary file beside it,
    fsynced, then moved into place). ``replace``: over an existing file; else an existing one is kept and
    :class:`FileExistsError` raised (of two concurrent writers, the first wins)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def plain_dir() -> Path:
    """Where decrypted copies of sealed store files go, outside every store: ``$TWIN_PLAIN_DIR``, else
    ``/dev/shm/twin-plain-<uid>`` (memory, gone at reboot) where there is a ``/dev/shm``, else
    ``<tmp>/twin-plain-<uid>``; created readable by this user only."""
    import tempfile

    given = os.environ.get("TWIN_PLAIN_DIR", "").strip()
    shm = Path("/dev/shm")
    base = Path(given) if given else (shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir()))
    folder = base if given else base / f"twin-plain-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not given and folder.stat().st_uid != (os.getuid() if hasattr(os, "getuid") else folder.stat().st_uid):
        raise PermissionError(f"{folder} belongs to another user: set TWIN_PLAIN_DIR to a private folder")
    return folder
