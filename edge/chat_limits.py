"""Limits on rendering a chat template: a model's template is code, and an imported checkpoint's
can loop for hours (nested `range(100000)` loops kept `serve` from ever listening) or write
gigabytes. Every render, the probe renders at load included, gets a time limit and a limit on
the size of what it writes, and the sandbox's `*` and `**` are bounded, so a template cannot
build a huge string or number in one step.

A render past its time is stopped by raising `RenderLimitError` in the thread that renders
(`PyThreadState_SetAsyncExc`, from one watchdog thread): Jinja compiles a template to Python, so
a loop stops at its next bytecode. A single long C call (a huge `str.center`, say) is not cut
short, but what it writes then passes the size limit.

    text = render_bounded(template, {"messages": [...]}, seconds=RENDER_SECONDS)
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import threading
import time
from collections.abc import Iterator, Mapping, Sized
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

RENDER_SECONDS = 2.0  # real templates render a chat in milliseconds
MAX_RENDER_CHARS = 4 << 20  # a kiosk chat (64 messages of 8000 characters) is 0.5 M characters
MAX_EXPONENT = 1024


class RenderLimitError(Exception):
    """A chat template that ran past its time or wrote more than its size limit."""


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox transformers renders chat templates in, with `*` and `**` bounded."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, Sized) and isinstance(times, int) and len(seq) * times > MAX_RENDER_CHARS:
                    raise SecurityError(f"a chat template may not repeat a value {times} times")
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"a chat template may not raise to the power {right}")
        return super().call_binop(context, operator, left, right)


class _Watchdog:
    """One daemon thread that raises RenderLimitError in each thread whose render passed its
    deadline. Arming and disarming hold the same lock as the raising, so once `disarm` has
    returned nothing is raised for that render any more."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, int]] = {}  # token -> (deadline, thread id)
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> int:
        with self._cond:
            token = next(self._tokens)
            self._armed[token] = (time.monotonic() + seconds, threading.get_ident())
            if self._thread is None or not self._thread.is_alive():  # none yet, or lost in a fork
                self._thread = threading.Thread(target=self._run, name="chat-template-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
            return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token in [t for t, (deadline, _) in self._armed.items() if deadline <= now]:
                    _, thread = self._armed.pop(token)
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(
                        ctypes.c_ulong(thread), ctypes.py_object(RenderLimitError)
                    )
                soonest = min((deadline for deadline, _ in self._armed.values()), default=None)
                self._cond.wait(None if soonest is None else max(0.0, soonest - now))


_WATCHDOG = _Watchdog()


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise RenderLimitError in this thread if the body runs past `seconds`."""
    token = _WATCHDOG.arm(seconds)
    try:
        yield
    finally:
        _WATCHDOG.disarm(token)


def render_bounded(
    template: jinja2.Template,
    context: Mapping[str, Any],
    seconds: float | None = None,
    max_chars: int | None = None,
) -> str:
    """`template` rendered with `context`, at most `seconds` (default RENDER_SECONDS) and
    `max_chars` characters (default MAX_RENDER_CHARS); RenderLimitError past either."""
    seconds = RENDER_SECONDS if seconds is None else seconds
    max_chars = MAX_RENDER_CHARS if max_chars is None else max_chars
    parts: list[str] = []
    size = 0
    try:
        with time_limit(seconds):
            chunks = template.generate(**context)
            try:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_chars:
                        raise RenderLimitError(f"the chat template wrote more than {max_chars} characters")
                    parts.append(chunk)
            finally:
                chunks.close()
    except RenderLimitError as e:
        raise RenderLimitError(str(e) or f"the chat template ran for more than {seconds:g} s") from None
    return "".join(parts)
