"""The export gate: an artifact ships only if it forgets and retains as well as its adapter did.

Quantisation and half precision can undo unlearning (an update below the rounding step simply
disappears), so every artifact is measured on the same held-out prompts as the adapter model and
compared: a held-out forget leak rate more than `max_leak_increase` worse, or a retain accuracy
more than `max_retain_drop` worse, fails the export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from orin_unlearn.benchmarks.forgetting import UnlearningMetrics
from orin_unlearn.edge.errors import ExportGateError

MAX_LEAK_INCREASE = 0.01
MAX_RETAIN_DROP = 0.01


@dataclass(frozen=True)
class GateCheck:
    """One comparison of the artifact with its reference."""

    check: str
    reference: float
    artifact: float
    limit: str
    ok: bool

    def failure(self) -> str:
        return f"{self.check} {self.artifact:.3f} vs {self.reference:.3f} ({self.limit})"


@dataclass(frozen=True)
class GateVerdict:
    """The gate's verdict on one artifact: ok when every check is."""

    checks: tuple[GateCheck, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failures(self) -> list[str]:
        return [c.failure() for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GateVerdict:
        return cls(tuple(GateCheck(**c) for c in data["checks"]))


def gate(
    reference: UnlearningMetrics,
    artifact: UnlearningMetrics,
    max_leak_increase: float = MAX_LEAK_INCREASE,
    max_retain_drop: float = MAX_RETAIN_DROP,
) -> GateVerdict:
    """Compare two `measure_unlearning` results (never raises on a failed check).

    Raises ValueError only when the two were measured on different numbers of prompts.
    """
    for name in ("forget", "retain"):
        n_ref, n_art = reference.value(name, "n"), artifact.value(name, "n")
        if n_ref != n_art:
            raise ValueError(
                f"{name}: the reference was measured on {n_ref} prompts, the artifact on {n_art}: not comparable"
            )
    leak_ref, leak_art = reference.value("forget", "leak"), artifact.value("forget", "leak")
    ret_ref, ret_art = reference.value("retain", "accuracy"), artifact.value("retain", "accuracy")
    return GateVerdict(
        (
            GateCheck(
                "held-out forget leak",
                leak_ref,
                leak_art,
                f"at most {100 * max_leak_increase:g} point(s) higher",
                leak_art - leak_ref <= max_leak_increase + 1e-12,
            ),
            GateCheck(
                "held-out retain accuracy",
                ret_ref,
                ret_art,
                f"at most {100 * max_retain_drop:g} point(s) lower",
                ret_ref - ret_art <= max_retain_drop + 1e-12,
            ),
        )
    )


def raise_on_failure(variant: str, verdict: GateVerdict) -> None:
    if not verdict.ok:
        raise ExportGateError(f"export gate failed for {variant}: " + "; ".join(verdict.failures()))
