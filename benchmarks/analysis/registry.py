"""The analyses' registry and what each one hands back.

An analysis is `fn(ctx: RunContext) -> Outcome`, registered by name with `@analysis("name")`;
`orin-unlearn analyze` runs them (see `ORDER` in the package). Adding one is one small file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orin_unlearn.edge.registry import registrar

if TYPE_CHECKING:
    from orin_unlearn.benchmarks.analysis.context import RunContext


@dataclass
class Outcome:
    """One analysis's result: its status ("ok" or "skipped"), headline numbers, files written under
    RUN_DIR/analysis/, and the Markdown section (title, body) for report.md."""

    status: str
    title: str
    body: str
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    reason: str = ""

    @classmethod
    def skipped(cls, title: str, reason: str) -> Outcome:
        return cls("skipped", title, f"Skipped: {reason}.", reason=reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "summary": self.summary,
            "files": self.files,
            "section": {"title": self.title, "body": self.body},
        }


Analysis = Callable[["RunContext"], Outcome]
ANALYSES: dict[str, Analysis] = {}
analysis = registrar(ANALYSES)  # @analysis("name") registers an analysis


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a Markdown table; None (undefined) reads "undefined"."""
    return "undefined" if value is None else f"{value:.{digits}f}"
