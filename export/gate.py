"""The export gate: an artifact ships only if it forgets and retains as well as its adapter did.

Quantisation and half precision can undo unlearning (an update below the rounding step simply
disappears), so every artifact is measured on the same held-out prompts as the adapter model and
compared: a held-out forget leak rate more than `max_leak_increase` worse, or a retain accuracy
more than `max_retain_drop` worse, fails the export.
"""

from __future__ import annotations

from typing import Any

from orin_unlearn.edge.errors import ExportGateError

MAX_LEAK_INCREASE = 0.01
MAX_RETAIN_DROP = 0.01


def gate(
    reference: dict[str, Any],
    artifact: dict[str, Any],
    max_leak_increase: float = MAX_LEAK_INCREASE,
    max_retain_drop: float = MAX_RETAIN_DROP,
) -> dict[str, Any]:
    """Compare two `measure_unlearning` results; returns {"ok", "checks": [...]} (never raises).

    Raises ValueError only when the two were measured on different numbers of prompts.
    """
    for name in ("forget", "retain"):
        if reference[name]["n"] != artifact[name]["n"]:
            raise ValueError(
                f"{name}: the reference was measured on {reference[name]['n']} prompts, "
                f"the artifact on {artifact[name]['n']}: not comparable"
            )
    leak_ref, leak_art = reference["forget"]["leak"], artifact["forget"]["leak"]
    ret_ref, ret_art = reference["retain"]["accuracy"], artifact["retain"]["accuracy"]
    checks = [
        {
            "check": "held-out forget leak",
            "reference": leak_ref,
            "artifact": leak_art,
            "limit": f"at most {100 * max_leak_increase:g} point(s) higher",
            "ok": leak_art - leak_ref <= max_leak_increase + 1e-12,
        },
        {
            "check": "held-out retain accuracy",
            "reference": ret_ref,
            "artifact": ret_art,
            "limit": f"at most {100 * max_retain_drop:g} point(s) lower",
            "ok": ret_ref - ret_art <= max_retain_drop + 1e-12,
        },
    ]
    return {"ok": all(c["ok"] for c in checks), "checks": checks}


def failures(result: dict[str, Any]) -> list[str]:
    return [
        f"{c['check']} {c['artifact']:.3f} vs {c['reference']:.3f} ({c['limit']})"
        for c in result["checks"]
        if not c["ok"]
    ]


def raise_on_failure(variant: str, result: dict[str, Any]) -> None:
    if not result["ok"]:
        raise ExportGateError(f"export gate failed for {variant}: " + "; ".join(failures(result)))
