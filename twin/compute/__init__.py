"""One way to run a stage's tasks in parallel: the :class:`Executor` interface, its backends and the factory.

Bottom layer: imports nothing of twin but :mod:`twin.config`. Stages call :func:`executor` with a worker count and
the start method they need (see :class:`LocalPool`); ``workers=1`` runs in the calling process. Settings:
``TWIN_WORKERS`` (default worker count where a stage passes None) and ``TWIN_EXECUTOR`` (the backend, ``local`` by
default). New backends (Dask) plug in with :func:`register`; see :mod:`twin.compute.base`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twin.compute.base import (
    _NOTHING,
    Executor,
    Progress,
    StartMethod,
    WorkerError,
    set_shared,
    shared,
)
from twin.compute.local import InProcess, LocalPool, start_method
from twin.config import get_settings

Factory = Callable[..., Executor]  # make(workers, *, start, shared, initializer, initargs, env, preload)


def _local(workers: int, **options: Any) -> Executor:
    """``workers`` local processes, or the calling process for one."""
    if workers <= 1:
        return _inprocess(workers, **options)
    return LocalPool(workers, **options)


def _inprocess(workers: int, *, shared: Any = _NOTHING, initializer: Callable[..., Any] | None = None,
               initargs: Sequence[Any] = (), **hints: Any) -> Executor:
    """The calling process whatever ``workers`` says (start/env/preload are process-pool hints)."""
    return InProcess(shared=shared, initializer=initializer, initargs=initargs)


_KINDS: dict[str, Factory] = {"local": _local, "inprocess": _inprocess}


def register(kind: str, make: Factory) -> None:
    """Make ``kind`` available to :func:`executor` (and the ``TWIN_EXECUTOR`` setting), e.g. ``"dask"``."""
    _KINDS[kind] = make


def default_workers() -> int:
    """``TWIN_WORKERS`` when set, else the machine's cores."""
    return int(get_settings().workers or os.cpu_count() or 1)


def executor(workers: int | None = None, *, kind: str | None = None, tasks: int | None = None,
             start: StartMethod = "spawn", shared: Any = _NOTHING, initializer: Callable[..., Any] | None = None,
             initargs: Sequence[Any] = (), env: Mapping[str, str] | None = None,
             preload: Sequence[str] = ()) -> Executor:
    """An executor of ``workers`` (None: :func:`default_workers`), at most ``tasks`` when given, at least 1.

    ``kind`` picks the backend (None: ``TWIN_EXECUTOR`` if set, else ``local``: :class:`InProcess` for one worker,
    else :class:`LocalPool`). ``start``, ``env`` and ``preload`` are honoured by process pools; ``shared`` is what
    :func:`shared` returns inside tasks; ``initializer(*initargs)`` runs once per worker."""
    n = default_workers() if workers is None else int(workers)
    if tasks is not None:
        n = min(n, tasks)
    n = max(1, n)
    name = kind or get_settings().executor
    try:
        make = _KINDS[name]
    except KeyError:
        raise ValueError(f"unknown executor kind {name!r} (known: {', '.join(sorted(_KINDS))})") from None
    return make(n, start=start, shared=shared, initializer=initializer, initargs=initargs, env=env,
                preload=preload)


__all__ = ["Executor", "InProcess", "LocalPool", "Progress", "StartMethod", "WorkerError", "default_workers",
           "executor", "register", "set_shared", "shared", "start_method"]
