"""Tasks for the executor tests: module-level (picklable by reference), light imports (spawned workers load this)."""

from __future__ import annotations

import os
import time

from twin.compute import shared


class Unpicklable(Exception):
    """An exception whose constructor does not match its args: it cannot be unpickled (like SourceError)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


def square(x: int) -> int:
    """x squared."""
    return x * x


def add(a: int, b: int) -> int:
    """a + b."""
    return a + b


def slow_square(x: int, delay: float) -> int:
    """x squared after ``delay`` seconds (to shuffle completion order)."""
    time.sleep(delay)
    return x * x


def fail_at(x: int, bad: int) -> int:
    """x, or a ValueError naming x when x == bad."""
    if x == bad:
        raise ValueError(f"task {x} failed on purpose")
    return x


def fail_unpicklable(x: int) -> int:
    """Raises an exception that cannot travel back as itself."""
    raise Unpicklable(f"file{x}.laz", "not a LAS file")


def pid(_: int) -> int:
    """The process id the task ran in."""
    return os.getpid()


def pick(i: int) -> str:
    """Item ``i`` of the executor's shared list."""
    return shared()[i]


def env(name: str) -> str | None:
    """An environment variable as the worker sees it."""
    return os.environ.get(name)


_INIT: list[str] = []


def init(tag: str) -> None:
    """Initializer: remember ``tag`` in this process."""
    _INIT.append(tag)


def initialized(_: int) -> list[str]:
    """What :func:`init` recorded in this process."""
    return list(_INIT)
