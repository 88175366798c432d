"""Cold start: what a server's first requests would each pay, done once at start-up; single-flight for the rest.

Measured on the small demo store (2 cores), a fresh process's first request paid: DuckDB's start with the spatial
extension (~0.45 s), DuckDB's first query over the store's Parquet files (~0.5 s), PROJ's operation search for each
CRS pair the features routes use (0.1-0.5 s each, ~1 s for the four), the first extents of the head version. None of
it was shared between concurrent first requests (the CRS caches are filled by whoever finishes first, so 20 first
requests ran 20 PROJ searches and 20 extents scans): 20 concurrent first requests took 4.5-9 s each there (~18 s on
a larger store), against ~1 s once warm.
:func:`warm` pays it once in the app's lifespan, before uvicorn accepts connections; :class:`SingleFlight` makes
concurrent callers of the same computation (the extents of a version just committed) wait for one of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from twin.api import ogc
from twin.geo import crs
from twin.store import ASSETS, MAIN, Query, Store

T = TypeVar("T")
log = logging.getLogger("twin.api")


class _Call:
    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class SingleFlight:
    """Run ``fn`` once for concurrent callers with the same key; the others wait for its result (or error)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call] = {}

    def do(self, key: Hashable, fn: Callable[[], T]) -> T:
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if leader:
                call = self._calls[key] = _Call()
        assert call is not None
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.value
        try:
            call.value = fn()
            return call.value
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()


FLIGHTS = SingleFlight()


def extents(store: Store, branch: str, version: int) -> dict[str, Any]:
    """The collections' extents at a version, computed once however many requests ask at the same time."""
    return FLIGHTS.do(("extents", str(store.root), branch, version),
                      lambda: store.extents(branch, version, types=list(ogc.BY_TYPE)))


def warm(store: Store) -> dict[str, float]:
    """Do what first requests would pay (see the module doc); returns the milliseconds of each step. A step that
    fails is logged and left to the requests, which then answer the error as usual."""
    timings: dict[str, float] = {}

    def step(name: str, fn: Callable[[], object]) -> None:
        t = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # the request that needs it reports it properly
            log.warning("warm-up step %s failed: %s", name, exc)
        timings[name] = round((time.perf_counter() - t) * 1000, 1)

    def transformers() -> None:
        uris = ogc.supported_crs(store)
        src = crs.crs_uri(store.crs)
        for uri in uris:
            if uri != src:
                crs.shared_transformer(src, uri)
                crs.shared_transformer(uri, src)
            crs.north_first(uri)
            crs.from_uri(uri).area_of_use  # noqa: B018 (PROJ database read)

    # PROJ's searches run beside DuckDB's start (both release the GIL for most of their time)
    proj = threading.Thread(target=step, args=("proj", transformers), name="twin-warm-proj")
    proj.start()
    step("commits", store.head)
    step("duckdb", lambda: store.count(MAIN, None, Query(limit=1)))
    step("extents", lambda: extents(store, MAIN, store.head()))
    step("items", lambda: store.page(MAIN, None, Query(types=["Building"], limit=1)))
    step("assets", lambda: store.count(MAIN, None, Query(collection=ASSETS)))
    step("queryables", lambda: [ogc.queryables(c) for c in ogc.COLLECTIONS])
    proj.join()
    return timings
