"""Crash-safe file primitives: atomic replace with fsync, and the store's single-writer lock."""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twin.errors import Status, TwinError


class StoreBusy(TwinError, RuntimeError):
    """Another process held the writer lock for longer than the timeout."""

    status = Status.busy


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


def write_json_atomic(path: Path, obj: Any, tmp_dir: Path) -> None:
    """Write JSON so that readers see either the old file or the complete new one, never a torn one."""
    tmp = tmp_path(tmp_dir, ".json")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
    publish(tmp, path)


@contextmanager
def writer_lock(lock_file: Path, timeout: float = 120.0) -> Iterator[None]:
    """Exclusive advisory lock serialising writers across processes; readers never take it.

    The kernel drops a flock when its holder dies, so a writer killed by SIGKILL never leaves the store locked.
    """
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
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
