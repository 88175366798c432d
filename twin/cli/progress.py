"""Progress of long commands: live rich bars in a terminal; in a log (CI, containers, ``make demo > log``) one line
per finished step with its time, and a line every ``HEARTBEAT_S`` for a step that runs long."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

HEARTBEAT_S = 30.0


class LineProgress:
    """The part of :class:`rich.progress.Progress` the CLI uses (``add_task``, ``update``, a context manager),
    written as plain lines: ``<step> done in 3.2 s`` when a step (a task, or a new description of it) ends."""

    def __init__(self, console: Console, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.console = console
        self.heartbeat_s = heartbeat_s
        self.tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, exc_type, *_) -> None:
        for task in self.tasks.values():
            if not task["done"]:
                self._line(task, "stopped at" if exc_type else "done in")

    def add_task(self, description: str, total: float = 1.0, **_: Any) -> int:
        tid = len(self.tasks)
        now = time.perf_counter()
        self.tasks[tid] = {"description": description, "total": total or 1.0, "completed": 0.0, "t0": now,
                           "beat": now, "done": False}
        return tid

    def update(self, task_id: int, *, completed: float | None = None, description: str | None = None,
               **_: Any) -> None:
        task = self.tasks[task_id]
        now = time.perf_counter()
        if description is not None and description != task["description"]:
            if not task["done"]:
                self._line(task, "done in")
            task.update(description=description, t0=now, beat=now, done=False)
        if completed is not None:
            task["completed"] = completed
        if task["done"]:
            return
        if task["completed"] >= task["total"]:
            self._line(task, "done in")
            task["done"] = True
        elif now - task["beat"] >= self.heartbeat_s:
            task["beat"] = now
            pct = 100.0 * task["completed"] / task["total"]
            self.console.print(f"{task['description']}: {pct:.0f}% after {now - task['t0']:.0f} s",
                               highlight=False, soft_wrap=True)

    def _line(self, task: dict[str, Any], what: str) -> None:
        elapsed = time.perf_counter() - task["t0"]
        if what == "stopped at":
            pct = 100.0 * task["completed"] / task["total"]
            self.console.print(f"{task['description']}: stopped at {pct:.0f}% after {elapsed:.1f} s",
                               highlight=False, soft_wrap=True)
        else:
            self.console.print(f"{task['description']} done in {elapsed:.1f} s", highlight=False, soft_wrap=True)
        task["done"] = True


def progress(console: Console) -> Progress | LineProgress:
    """Live bars when ``console`` is a terminal, else :class:`LineProgress`."""
    if not console.is_terminal:
        return LineProgress(console)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), console=console, transient=False)


class Stages:
    """Adapter from ``progress(stage, fraction)`` callbacks to one task per stage."""

    def __init__(self, progress: Progress | LineProgress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, stage: str, fraction: float) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=1.0)
        self.progress.update(self.tasks[stage], completed=min(max(fraction, 0.0), 1.0))
