"""Per-request latency: time to first token, per-token times, tokens/s, lengths, as JSON lines.

recorder = LatencyRecorder("runs/demo/bench/latency.jsonl")
timer = recorder.start(prompt_tokens=42)
... timer.token() after each generated token ...
record = timer.finish("stop")
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


class RequestTimer:
    """The clock of one request; `token()` after every generated token."""

    def __init__(self, recorder: LatencyRecorder, prompt_tokens: int):
        self.recorder = recorder
        self.prompt_tokens = prompt_tokens
        self.started = time.perf_counter()
        self.stamps: list[float] = []

    def token(self) -> None:
        self.stamps.append(time.perf_counter())

    def finish(self, finish_reason: str, **extra: Any) -> dict[str, Any]:
        """Close the request, append its record to the recorder's file (if any) and return it."""
        ended = time.perf_counter()
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]
        decode_s = self.stamps[-1] - self.stamps[0] if len(self.stamps) > 1 else 0.0
        record = {
            "time": time.time(),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": len(self.stamps),
            "ttft_s": self.stamps[0] - self.started if self.stamps else None,
            "token_s": gaps,
            "decode_tokens_per_s": (len(gaps) / decode_s) if decode_s > 0 else None,
            "total_s": ended - self.started,
            "finish_reason": finish_reason,
        } | extra
        self.recorder.write(record)
        return record


class LatencyRecorder:
    """Creates request timers and appends their records to `path` (JSON lines), thread-safely."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def start(self, prompt_tokens: int) -> RequestTimer:
        return RequestTimer(self, prompt_tokens)

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        line = json.dumps(record) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a latency file (a truncated last line, from a crash, is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
