"""The executor interface on both local backends: results and their order, errors with the worker's message,
progress, shared state and environment reaching workers, bounded submission, and the factory's choices."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from tests.compute import tasks
from twin import compute
from twin.compute import Executor, InProcess, LocalPool, WorkerError, executor, shared

POOLS = ["fork", "forkserver", "spawn"]


def _pool(start: str, **kw) -> LocalPool:
    if compute.start_method(start) != start:
        pytest.skip(f"no {start} start method on this platform")
    return LocalPool(2, start=start, **kw)


def test_workers_1_runs_in_the_calling_process_lazily() -> None:
    ex = executor(1)
    assert isinstance(ex, InProcess) and isinstance(ex, Executor) and ex.workers == 1
    seen: list[int] = []

    def record(x: int) -> int:
        seen.append(x)
        return x * 10

    with ex:
        out = ex.map(record, [1, 2, 3])
        assert seen == []  # nothing runs before the caller asks
        assert next(out) == 10 and seen == [1]
        assert list(out) == [20, 30]
        assert ex.map(tasks.pid, range(3)).__next__() == os.getpid()
        assert list(ex.map(tasks.add, [1, 2], [10, 20])) == [11, 22]


def test_in_process_errors_progress_shared_submit() -> None:
    calls: list[tuple[int, int | None]] = []
    with executor(1, shared=["a", "b", "c"], initializer=tasks.init, initargs=("here",)) as ex:
        assert list(ex.map(tasks.pick, [2, 0], progress=lambda d, t: calls.append((d, t)))) == ["c", "a"]
        assert calls == [(1, 2), (2, 2)]
        with pytest.raises(ValueError, match="task 2 failed on purpose"):
            list(ex.map(tasks.fail_at, range(4), [2] * 4))
        assert ex.submit(tasks.add, 2, b=3).result() == 5
        fut = ex.submit(tasks.fail_at, 1, 1)
        assert isinstance(fut.exception(), ValueError)
        assert tasks._INIT[-1] == "here"
    with pytest.raises(LookupError):
        shared()  # restored on close


def test_in_process_shared_state_is_per_thread() -> None:
    got: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def build(name: str) -> None:
        with executor(1, shared=[name]) as ex:
            barrier.wait()  # both executors exist at once
            got[name] = list(ex.map(tasks.pick, [0]))[0]

    threads = [threading.Thread(target=build, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {"one": "one", "two": "two"}


@pytest.mark.parametrize("start", POOLS)
def test_pool_results_in_order_from_other_processes(start: str) -> None:
    with _pool(start) as ex:
        assert ex.workers == 2 and isinstance(ex, Executor)
        delays = [0.3, 0.0, 0.1, 0.0]
        assert list(ex.map(tasks.slow_square, range(4), delays)) == [0, 1, 4, 9]
        pids = set(ex.map(tasks.pid, range(4)))
        assert pids and os.getpid() not in pids
        assert ex.submit(tasks.add, 2, b=3).result() == 5


def test_pool_streams_as_completed_when_unordered() -> None:
    with LocalPool(2, start=compute.start_method("fork")) as ex:
        out = list(ex.map(tasks.slow_square, [1, 2, 3], [1.0, 0.0, 0.0], ordered=False))
        assert sorted(out) == [1, 4, 9] and out[-1] == 1  # the slow one last


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_pool_worker_error_reaches_the_caller_with_its_message(start: str) -> None:
    with _pool(start) as ex:
        with pytest.raises(ValueError, match="task 3 failed on purpose"):
            list(ex.map(tasks.fail_at, range(6), [3] * 6))
        with pytest.raises(WorkerError, match=r"tests\.compute\.tasks\.Unpicklable: file1\.laz: not a LAS file"):
            list(ex.map(tasks.fail_unpicklable, [1]))
        with pytest.raises(ValueError, match="task 1 failed"):
            ex.submit(tasks.fail_at, 1, 1).result()
        assert list(ex.map(tasks.square, [4])) == [16]  # the pool survives its tasks' errors


def test_pool_progress_counts_results_taken() -> None:
    calls: list[tuple[int, int | None]] = []
    with LocalPool(2, start="fork" if compute.start_method("fork") == "fork" else "spawn") as ex:
        out = ex.map(tasks.square, [1, 2, 3], progress=lambda d, t: calls.append((d, t)))
        assert next(out) == 1 and calls == []  # called once the caller is done with a result
        assert list(out) == [4, 9]
        assert calls == [(1, 3), (2, 3), (3, 3)]
        calls.clear()
        list(ex.map(tasks.square, iter([1, 2]), progress=lambda d, t: calls.append((d, t))))
        assert calls == [(1, None), (2, None)]  # an unsized input has no total


@pytest.mark.parametrize("start", POOLS)
def test_pool_shared_state_env_and_initializer_reach_workers(start: str) -> None:
    data = [f"building {i}" for i in range(50)]
    with _pool(start, shared=data, env={"TWIN_TEST_THREADS": "1"}, initializer=tasks.init,
               initargs=(start,)) as ex:
        assert list(ex.map(tasks.pick, [49, 0, 7])) == ["building 49", "building 0", "building 7"]
        assert set(ex.map(tasks.env, ["TWIN_TEST_THREADS"] * 4)) == {"1"}
        assert all(r[-1] == start for r in ex.map(tasks.initialized, range(4)))
    assert "TWIN_TEST_THREADS" not in os.environ  # workers only


def test_pool_without_shared_state_says_so() -> None:
    with LocalPool(2, start="spawn") as ex:
        with pytest.raises(LookupError, match="without shared="):
            list(ex.map(tasks.pick, [0]))


def test_fork_workers_see_their_pool_state_not_the_forking_threads() -> None:
    if compute.start_method("fork") != "fork":
        pytest.skip("no fork")
    with executor(1, shared=["in-process"]), LocalPool(2, start="fork", shared=["pool"]) as ex:
        assert list(ex.map(tasks.pick, [0, 0])) == ["pool", "pool"]


def test_max_in_flight_bounds_what_is_submitted() -> None:
    taken = 0

    def items() -> Iterator[int]:
        nonlocal taken
        for i in range(10):
            taken += 1
            yield i

    with LocalPool(2, start="spawn") as ex:
        out = ex.map(tasks.square, items(), max_in_flight=3)
        assert taken == 3  # submitted at the call, no more
        assert next(out) == 0 and taken == 4  # topped up as results are taken
        assert list(out) == [i * i for i in range(1, 10)]
        assert taken == 10
        everything = ex.map(tasks.square, items())
        assert taken == 20  # unbounded: all at once, like concurrent.futures
        assert len(list(everything)) == 10


def test_factory_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(executor(4, tasks=1), InProcess)
    assert isinstance(executor(0), InProcess)
    assert isinstance(executor(8, kind="inprocess"), InProcess)
    with executor(8, tasks=2, start="spawn") as ex:
        assert isinstance(ex, LocalPool) and ex.workers == 2
    with pytest.raises(ValueError, match="unknown executor kind 'nope'"):
        executor(2, kind="nope")
    monkeypatch.setenv("TWIN_WORKERS", "3")
    monkeypatch.setenv("TWIN_EXECUTOR", "fake")
    made: list[int] = []
    compute.register("fake", lambda workers, **options: made.append(workers) or InProcess())
    try:
        assert compute.default_workers() == 3
        assert isinstance(executor(None), InProcess) and made == [3]
    finally:
        compute._KINDS.pop("fake")
    monkeypatch.delenv("TWIN_WORKERS")
    monkeypatch.setenv("TWIN_EXECUTOR", "inprocess")
    assert compute.default_workers() == (os.cpu_count() or 1)
    assert isinstance(executor(None), InProcess)
