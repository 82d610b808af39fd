"""One model under one attack, the cell of a `bench robustness` result. Its own module so that
`weight_attacks` (which `robustness` imports) can return it without importing `robustness`."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AttackResult:
    """One model under one attack: how many prompts, the share that leaked (None with no prompts),
    and a leaking reply (else the first one), so a reader sees what a leak looked like."""

    n: int
    leak: float | None
    example: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> AttackResult:
        # the example only illustrates: a result written by hand may leave it out
        return cls(n=doc["n"], leak=doc["leak"], example=doc.get("example", ""))
