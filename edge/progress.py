"""Progress that shows in a log file as well as on a terminal.

rich's live progress bar draws only on a terminal: with stdout redirected to a file, a 16-minute
`orin-unlearn unlearn` wrote nothing until it ended. `progress_bar()` returns rich's `Progress`
when stdout is a terminal (or a notebook) and otherwise a `LogProgress` with the same calls the
project uses (`add_task`, `advance`, `update`, used as a context manager), which logs one plain
line per active task every few seconds and when the task completes:

    INFO orin_unlearn.progress: train 12/60 (20%) 1m04s elapsed, ~4m16s left loss=0.412

The lines go to `logging` (logger "orin_unlearn.progress", INFO), not to stdout: stdout carries
a command's results (a table and, last, one JSON object), and the CLI's logging handler writes to
stderr and flushes every record, so `cmd > log 2>&1` shows progress as it happens while
`cmd > result.json` keeps the result clean and the progress on the terminal. (Called as a
library with no logging configured, the lines are dropped like any other INFO record.)

    with progress_bar() as progress:
        task = progress.add_task("train", total=steps)
        for step in range(steps):
            ...
            progress.update(task, advance=1, loss=loss)
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

log = logging.getLogger("orin_unlearn.progress")

DEFAULT_INTERVAL_S = 5.0


def default_columns() -> tuple[ProgressColumn, ...]:
    """The project's bar: description, bar, done/total, elapsed time."""
    return (
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )


def duration(seconds: float) -> str:
    """`4s`, `1m04s`, `2h03m10s`."""
    s = max(0, round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.4g}"


def _field(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    fields: dict[str, Any]
    started: float
    last_line: float
    done: bool = False
    visible: bool = True

    @property
    def finished(self) -> bool:
        return self.total is not None and self.completed >= self.total


class LogProgress:
    """rich `Progress`'s calls that the project uses, as plain log lines: one per task every
    `interval_s` seconds of the clock (checked whenever the task moves) and one when it completes."""

    def __init__(
        self,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
        disable: bool = False,
    ):
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s}")
        self.interval_s = interval_s
        self.clock = clock
        self.logger = logger
        self.disable = disable
        self._tasks: dict[int, _Task] = {}

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def add_task(
        self,
        description: str,
        start: bool = True,
        total: float | None = 100.0,
        completed: float = 0,
        visible: bool = True,
        **fields: Any,
    ) -> int:
        now = self.clock()
        task_id = len(self._tasks)
        self._tasks[task_id] = _Task(description, total, completed, dict(fields), now, now, visible=visible)
        return task_id

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(
        self,
        task_id: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        visible: bool | None = None,
        refresh: bool = False,
        **fields: Any,
    ) -> None:
        task = self._tasks[task_id]
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        if description is not None:
            task.description = description
        if visible is not None:
            task.visible = visible
        task.fields.update(fields)
        self._maybe_log(task)

    def _maybe_log(self, task: _Task) -> None:
        if task.done:
            return
        now = self.clock()
        if task.finished:
            task.done = True
        elif now - task.last_line < self.interval_s:
            return
        task.last_line = now
        if not self.disable and task.visible:
            self.logger.info("%s", self._line(task, now))

    @staticmethod
    def _line(task: _Task, now: float) -> str:
        elapsed = now - task.started
        if task.total:
            percent = int(100 * task.completed / task.total)
            done = f"{_number(task.completed)}/{_number(task.total)} ({percent}%)"
        else:
            done = _number(task.completed)
        text = f"{task.description} {done} {duration(elapsed)} elapsed"
        if task.total and 0 < task.completed < task.total:
            left = elapsed / task.completed * (task.total - task.completed)
            text += f", ~{duration(left)} left"
        extra = " ".join(f"{k}={_field(v)}" for k, v in task.fields.items())
        return f"{text} {extra}" if extra else text


def is_interactive(stream: IO[str] | None = None) -> bool:
    """Whether rich can draw a live bar on `stream` (default: stdout): a terminal or a notebook."""
    console = Console(file=stream if stream is not None else sys.stdout)
    return console.is_terminal or console.is_jupyter


def progress_bar(
    *columns: str | ProgressColumn,
    stream: IO[str] | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
    disable: bool = False,
) -> Progress | LogProgress:
    """rich's `Progress` with `columns` (default: `default_columns()`) when `stream` (default:
    stdout) is a terminal; otherwise a `LogProgress` logging every `interval_s` seconds.
    `disable` silences either (e.g. on every process of a distributed run but the main one)."""
    if is_interactive(stream):
        console = Console(file=stream) if stream is not None else None
        return Progress(*(columns or default_columns()), console=console, disable=disable)
    return LogProgress(interval_s, clock, disable=disable)
