"""The executor interface every parallel stage uses, and the worker-side helpers (shared state, portable errors).

A stage never names a pool: it asks :func:`twin.compute.executor` for one and calls ``map``/``submit``. Backends
differ in where tasks run (the calling process, local worker processes, later a Dask cluster), not in what a stage
sees: results stream back (in input order or as they complete), a worker's exception reaches the caller with its
message, ``progress`` counts results the caller has taken, and read-only state given as ``shared=`` is what
:func:`shared` returns inside a task.

Adding a Dask backend (``dask.distributed``) later, without touching the stages:

* a ``DaskExecutor(client, workers)`` class implementing :class:`Executor`: ``submit`` -> ``client.submit(call, fn,
  args, kwargs, pure=False)``; ``map`` submits (at most ``max_in_flight`` at a time) and yields ``future.result()``
  in input order, or via ``distributed.as_completed`` when ``ordered=False``; ``workers`` = the cluster's
  worker (thread) count;
* ``shared=``: a ``WorkerPlugin`` registered with ``client.register_plugin`` whose ``setup`` calls
  :func:`set_shared` on every worker (pickled once per worker, like the spawn/forkserver pools here); ``env=`` and
  ``initializer=`` go into that plugin's ``setup`` too;
* ``start=`` and ``preload=`` are hints for local process pools and are ignored (Dask workers are their own
  processes); errors arrive re-raised by ``future.result()``, which :func:`call` already makes picklable;
* ``twin.compute.register("dask", make)`` with ``make(workers, **options) -> Executor``, selected per call by
  ``kind="dask"`` or for every stage by the ``TWIN_EXECUTOR`` setting.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Literal, Protocol, Self, TypeVar, runtime_checkable

T = TypeVar("T")
Progress = Callable[[int, "int | None"], None]  # (results taken so far, total or None when the input is unsized)
StartMethod = Literal["fork", "forkserver", "spawn"]


class _Nothing:
    """The "no shared state" marker; unpickles as the same object, so workers can tell it apart."""

    def __reduce__(self) -> str:
        """Pickled by name: the module's one instance."""
        return "_NOTHING"

    def __repr__(self) -> str:
        """Readable in signatures and errors."""
        return "<no shared state>"


_NOTHING: Any = _Nothing()
_shared: Any = _NOTHING  # this worker process's shared state, set by the worker initializer
_thread = threading.local()  # in-process executors' shared state: per thread, so concurrent builds never mix


class WorkerError(RuntimeError):
    """A task's exception that could not travel back from its worker as itself: its type and message, as text."""


@runtime_checkable
class Executor(Protocol):
    """Where a stage's tasks run. Use as a context manager; ``close`` waits for running tasks, cancels the rest."""

    workers: int  # tasks that run at once (1: in the calling process)

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any], ordered: bool = True,
            progress: Progress | None = None, max_in_flight: int | None = None) -> Iterator[T]:
        """``fn(*args)`` for each ``args`` of ``zip(*iterables)``: results in input order (``ordered``) or as they
        complete; at most ``max_in_flight`` tasks submitted and not yet taken (None: all at once, like
        ``concurrent.futures``); ``progress(done, total)`` after each result the caller has taken. The first
        failing task's exception is raised from the iterator and the tasks not yet started are cancelled."""
        ...

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """``fn(*args, **kwargs)`` as a future (already done for the in-process backend)."""
        ...

    def close(self) -> None:
        """Release the workers (waits for running tasks; idempotent)."""
        ...

    def __enter__(self) -> Self:
        """The executor itself."""
        ...

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
                 ) -> None:
        """:meth:`close`."""
        ...


def shared() -> Any:
    """Inside a task: the read-only state the executor was given as ``shared=`` (LookupError when none was)."""
    value = getattr(_thread, "value", _NOTHING)
    if value is _NOTHING:
        value = _shared
    if value is _NOTHING:
        raise LookupError("no shared state: the executor was made without shared=")
    return value


def set_shared(value: Any) -> Any:
    """Make ``value`` what :func:`shared` returns in this (worker) process; returns the previous value."""
    global _shared
    old, _shared = _shared, value
    return old


def set_thread_shared(value: Any) -> Any:
    """Make ``value`` what :func:`shared` returns in this thread (in-process tasks); returns the previous value."""
    old = getattr(_thread, "value", _NOTHING)
    _thread.value = value
    return old


def worker_init(env: Mapping[str, str] | None, value: Any, initializer: Callable[..., Any] | None,
                initargs: Sequence[Any]) -> None:
    """Runs first in every worker process: environment (thread limits), shared state, then the user initializer."""
    if env:
        os.environ.update(env)
    _thread.__dict__.clear()  # a forked worker must not see the forking thread's in-process state
    if value is not _NOTHING:
        set_shared(value)
    if initializer is not None:
        initializer(*initargs)


def call(fn: Callable[..., T], args: Sequence[Any], kwargs: Mapping[str, Any] | None = None) -> T:
    """Run a task in a worker; an exception that would not survive pickling becomes a :class:`WorkerError` with the
    original type and message (else the pool would break instead of reporting it)."""
    try:
        return fn(*args, **(kwargs or {}))
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            raise WorkerError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}") from exc
        raise


def sized_total(iterables: Sequence[Iterable[Any]]) -> int | None:
    """How many tasks ``zip(*iterables)`` makes, when every input has a length; else None."""
    if not iterables or not all(hasattr(it, "__len__") for it in iterables):
        return None
    return min(len(it) for it in iterables)  # type: ignore[arg-type]
