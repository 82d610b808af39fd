"""The export gate: an artifact ships only if it forgets and retains as well as its adapter did.

Quantisation and half precision can undo unlearning (an update below the rounding step simply
disappears), so every artifact is measured on the same held-out prompts and item bank as the
adapter model and compared:
- the greedy held-out forget leak may be at most `max_leak_increase` higher;
- on the item bank (where the run has one), the forget items ranked right at most
  `max_bank_change` higher (the knowledge does not come back), the neighbour and retain items
  ranked right at most `max_bank_change` lower;
- without a bank, the free-text retain accuracy at most `max_retain_drop` lower.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from orin_unlearn.benchmarks.forgetting import UnlearningMetrics
from orin_unlearn.edge.errors import ExportGateError

MAX_LEAK_INCREASE = 0.01
MAX_RETAIN_DROP = 0.01
MAX_BANK_CHANGE = 0.02  # 2 points of right rate: 7 of ~370 items


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


def _check(name: str, reference: float, artifact: float, limit: float, higher: bool) -> GateCheck:
    """Artifact at most `limit` higher (`higher`) or lower than the reference."""
    change = artifact - reference if higher else reference - artifact
    words = f"at most {100 * limit:g} point(s) {'higher' if higher else 'lower'}"
    return GateCheck(name, reference, artifact, words, change <= limit + 1e-12)


def gate(
    reference: UnlearningMetrics,
    artifact: UnlearningMetrics,
    max_leak_increase: float = MAX_LEAK_INCREASE,
    max_retain_drop: float = MAX_RETAIN_DROP,
    max_bank_change: float = MAX_BANK_CHANGE,
) -> GateVerdict:
    """Compare two measurements (never raises on a failed check).

    Raises ValueError only when the two were measured on different numbers of prompts or items.
    """
    banks = reference.knowledge is not None and artifact.knowledge is not None
    sets = ("forget",) + (() if banks else ("retain",))
    for name in sets:
        n_ref, n_art = reference.value(name, "n"), artifact.value(name, "n")
        if n_ref != n_art:
            raise ValueError(
                f"{name}: the reference was measured on {n_ref} prompts, the artifact on {n_art}: not comparable"
            )
    leak = (reference.value("forget", "leak"), artifact.value("forget", "leak"))
    checks = [_check("held-out forget leak", *leak, max_leak_increase, higher=True)]
    if not banks:
        retain = (reference.value("retain", "accuracy"), artifact.value("retain", "accuracy"))
        return GateVerdict(
            (*checks, _check("held-out retain accuracy", *retain, max_retain_drop, higher=False))
        )
    for name in ("forget", "neighbour", "retain"):
        ref, art = reference.knowledge.sets.get(name), artifact.knowledge.sets.get(name)
        if ref is None or art is None:
            continue
        if ref.n != art.n:
            raise ValueError(f"bank {name}: {ref.n} items for the reference, {art.n} for the artifact")
        label = f"bank {name} items ranked right"
        checks.append(_check(label, ref.right, art.right, max_bank_change, higher=name == "forget"))
    return GateVerdict(tuple(checks))


def raise_on_failure(variant: str, verdict: GateVerdict) -> None:
    if not verdict.ok:
        raise ExportGateError(f"export gate failed for {variant}: " + "; ".join(verdict.failures()))
