"""The two local backends: :class:`InProcess` (the calling process, one task at a time) and :class:`LocalPool`
(a ``concurrent.futures`` process pool with a chosen start method, shared state and worker environment)."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from types import TracebackType
from typing import Any, Self

from twin.compute.base import (
    _NOTHING,
    Progress,
    StartMethod,
    T,
    call,
    set_thread_shared,
    sized_total,
    worker_init,
)


class _Context:
    """Context-manager plumbing shared by the backends."""

    def close(self) -> None:  # pragma: no cover - overridden
        """Release resources."""

    def __enter__(self) -> Self:
        """The executor itself."""
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        """Close on leaving the block, error or not."""
        self.close()


class InProcess(_Context):
    """Tasks run in the calling process, lazily as results are asked for: tests, small jobs, ``workers=1``.

    Exceptions propagate unchanged; ``shared`` is set for the constructing thread until :meth:`close` (the previous
    value is restored; other threads' builds are unaffected); ``initializer`` runs once, here. ``env`` is not
    applied: it is meant for worker processes."""

    workers = 1

    def __init__(self, *, shared: Any = _NOTHING, initializer: Callable[..., Any] | None = None,
                 initargs: Sequence[Any] = ()) -> None:
        self._set = shared is not _NOTHING
        self._old = set_thread_shared(shared) if self._set else _NOTHING
        self._closed = False
        if initializer is not None:
            initializer(*initargs)

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any], ordered: bool = True,
            progress: Progress | None = None, max_in_flight: int | None = None) -> Iterator[T]:
        """``fn(*args)`` per input, computed when the caller asks for the next result (input order)."""
        total = sized_total(iterables)
        args = zip(*iterables, strict=False)  # like map(): stops at the shortest

        def stream() -> Iterator[T]:
            for done, a in enumerate(args, 1):
                yield fn(*a)
                if progress is not None:
                    progress(done, total)

        return stream()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn`` now; its result or exception in a done future."""
        fut: Future[T] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:
            fut.set_exception(exc)
        return fut

    def close(self) -> None:
        """Restore the shared state this executor replaced."""
        if not self._closed and self._set:
            set_thread_shared(self._old)
        self._closed = True


def start_method(preferred: StartMethod) -> StartMethod:
    """``preferred`` where the platform has it, else ``spawn`` (always there)."""
    return preferred if preferred in multiprocessing.get_all_start_methods() else "spawn"


class LocalPool(_Context):
    """``workers`` processes of this machine (``concurrent.futures``), started with ``start`` (see below).

    * ``fork``: workers are copies of this process, so ``shared`` is inherited, never pickled (the fastest way to
      hand large read-only data to workers); only safe where the parent holds no thread-owned state a child touches;
    * ``forkserver``: workers fork from a clean server process that imported ``preload`` modules once: cheap starts
      without the parent's threads/locks (PROJ, GDAL, DuckDB); ``shared`` and arguments are pickled;
    * ``spawn``: fresh interpreters (portable, slowest start); ``shared`` is pickled once per worker.

    ``spawn`` and ``forkserver`` re-import the caller's ``__main__``: scripts need an ``if __name__ == "__main__"``
    guard. ``env`` is set in each worker before ``initializer(*initargs)``; variables read when a library loads
    (``OMP_NUM_THREADS``) only take effect with ``spawn``/``forkserver`` or before the parent imports that library.
    A start method the platform lacks falls back to ``spawn``."""

    def __init__(self, workers: int, *, start: StartMethod = "spawn", shared: Any = _NOTHING,
                 initializer: Callable[..., Any] | None = None, initargs: Sequence[Any] = (),
                 env: Mapping[str, str] | None = None, preload: Sequence[str] = ()) -> None:
        self.workers = max(1, int(workers))
        self.start = start_method(start)
        ctx = multiprocessing.get_context(self.start)
        if self.start == "forkserver" and preload:
            ctx.set_forkserver_preload(list(preload))
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=worker_init,
                                         initargs=(dict(env or {}), shared, initializer, tuple(initargs)))

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any], ordered: bool = True,
            progress: Progress | None = None, max_in_flight: int | None = None) -> Iterator[T]:
        """Submit now (all, or ``max_in_flight``), stream results; see :meth:`twin.compute.Executor.map`."""
        total = sized_total(iterables)
        args = zip(*iterables, strict=False)  # like map(): stops at the shortest
        limit = max_in_flight if max_in_flight and max_in_flight > 0 else None
        pending: deque[Future[T]] = deque()

        def fill() -> None:
            while limit is None or len(pending) < limit:
                a = next(args, None)
                if a is None:
                    return
                pending.append(self._pool.submit(call, fn, a))

        fill()
        return self._stream(pending, fill, ordered, progress, total)

    @staticmethod
    def _stream(pending: deque[Future[T]], fill: Callable[[], None], ordered: bool, progress: Progress | None,
                total: int | None) -> Iterator[T]:
        """Yield results, topping the pool up before each yield so workers stay busy while the caller works."""
        done = 0
        try:
            while pending:
                if ordered:
                    fut = pending.popleft()
                else:
                    wait(pending, return_when=FIRST_COMPLETED)
                    fut = next(f for f in pending if f.done())  # the earliest submitted of those done
                    pending.remove(fut)
                result = fut.result()
                fill()
                yield result
                done += 1
                if progress is not None:
                    progress(done, total)
        finally:
            for f in pending:
                f.cancel()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """``fn(*args, **kwargs)`` in a worker."""
        return self._pool.submit(call, fn, args, kwargs)

    def close(self) -> None:
        """Wait for running tasks, cancel queued ones, stop the workers."""
        self._pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["InProcess", "LocalPool", "start_method"]
