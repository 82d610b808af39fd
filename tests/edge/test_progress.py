"""edge/progress.py: plain progress lines at the interval when stdout is not a terminal, rich's
bar when it is."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest
from rich.progress import Progress

from orin_unlearn.edge.progress import LogProgress, duration, progress_bar


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="orin_unlearn.progress")

    def get() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "orin_unlearn.progress"]

    return get


@pytest.fixture(autouse=True)
def auto_detect(monkeypatch):
    # rich lets these override terminal detection; the tests decide by the stream alone
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


def test_non_tty_logs_at_the_interval_and_at_completion(lines):
    clock = FakeClock()
    progress = progress_bar(stream=io.StringIO(), interval_s=5.0, clock=clock)
    assert isinstance(progress, LogProgress)
    with progress:
        task = progress.add_task("train", total=60)
        for _ in range(59):  # one step per second: a line every 5 s, none in between
            clock.now += 1.0
            progress.update(task, advance=1, loss=0.5)
        assert len(lines()) == 11  # at 5, 10, ..., 55 s
        clock.now += 0.4
        progress.advance(task)  # the 60th step completes the task: a line at once
        assert len(lines()) == 12
        clock.now += 100
        progress.advance(task)  # nothing after completion
    got = lines()
    assert len(got) == 12
    assert got[0] == "train 5/60 (8%) 5s elapsed, ~55s left loss=0.5"
    assert got[-1] == "train 60/60 (100%) 59s elapsed loss=0.5"


def test_lines_carry_the_current_description_and_remaining_time(lines):
    clock = FakeClock()
    with LogProgress(interval_s=5.0, clock=clock) as progress:
        task = progress.add_task("train", total=60)
        clock.now += 64
        progress.update(task, advance=12, description="train forget_ce=0.123")
    assert lines() == ["train forget_ce=0.123 12/60 (20%) 1m04s elapsed, ~4m16s left"]


def test_each_task_has_its_own_interval(lines):
    clock = FakeClock()
    with LogProgress(interval_s=5.0, clock=clock) as progress:
        a = progress.add_task("probe forget", total=100)
        clock.now += 3
        b = progress.add_task("probe retain", total=100)
        clock.now += 3  # a: 6 s since start, b: 3 s
        progress.advance(a, 10)
        progress.advance(b, 10)
        assert [m.split()[1] for m in lines()] == ["forget"]
        clock.now += 2  # b: 5 s
        progress.advance(a, 10)
        progress.advance(b, 10)
    assert [m.split()[1] for m in lines()] == ["forget", "retain"]


def test_fast_tasks_log_only_their_completion(lines):
    clock = FakeClock()
    with LogProgress(interval_s=5.0, clock=clock) as progress:
        task = progress.add_task("score", total=3)
        for _ in range(3):
            clock.now += 0.1
            progress.advance(task)
    assert lines() == ["score 3/3 (100%) 0s elapsed"]


def test_disabled_progress_logs_nothing(lines):
    clock = FakeClock()
    with progress_bar(stream=io.StringIO(), clock=clock, disable=True) as progress:
        task = progress.add_task("train", total=2)
        clock.now += 10
        progress.advance(task, 2)
    assert lines() == []


def test_tty_stream_gets_richs_bar(lines):
    stream = TtyStream()
    progress = progress_bar(stream=stream)
    assert isinstance(progress, Progress)
    with progress:
        task = progress.add_task("train", total=2)
        progress.update(task, advance=2)
    assert "train" in stream.getvalue()
    assert lines() == []


def test_durations():
    assert [duration(s) for s in (0, 4.4, 64, 3600 + 190)] == ["0s", "4s", "1m04s", "1h03m10s"]


def test_redirected_stdout_shows_progress_through_logging():
    """A real subprocess with stdout to a pipe (as `cmd > log 2>&1`): the log shows the lines."""
    code = (
        "import logging, time\n"
        "from orin_unlearn.edge.progress import progress_bar\n"
        "logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s')\n"
        "with progress_bar(interval_s=0.0) as p:\n"
        "    t = p.add_task('work', total=3)\n"
        "    for _ in range(3):\n"
        "        p.advance(t)\n"
        "import sys; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout
    assert "orin_unlearn.progress: work 3/3 (100%)" in proc.stdout
    assert proc.stdout.count("orin_unlearn.progress: work") == 3
    assert proc.stdout.strip().endswith("[]")  # torch-free
