"""The bars an unlearning run is held to, and their verdict on its before/after measurement.

A run whose measurement misses a bar is saved with `ok: false` and says which bar and by how
much, so nothing downstream mistakes it for a success. The config names the bars it wants
(`bars: {leak: 0.05, retain_drop: 0.02}`); bars it does not name are not checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

from orin_unlearn.benchmarks.forgetting import UnlearningMetrics
from orin_unlearn.benchmarks.run_report import check_line

log = logging.getLogger(__name__)
EPS = 1e-9


def _drop(set_name: str) -> Callable[[UnlearningMetrics, UnlearningMetrics], float | None]:
    def value(before: UnlearningMetrics, after: UnlearningMetrics) -> float | None:
        b, a = before.value(set_name, "accuracy"), after.value(set_name, "accuracy")
        return None if b is None or a is None else b - a

    return value


def _leak_ratio(before: UnlearningMetrics, after: UnlearningMetrics) -> float | None:
    b, a = before.value("forget", "leak"), after.value("forget", "leak")
    if b is None or a is None:
        return None
    return a / b if b > 0 else (0.0 if a == 0 else float("inf"))


def _negated(value: float | None) -> float | None:
    return None if value is None else -value


def _over_control(before: UnlearningMetrics, after: UnlearningMetrics) -> float | None:
    forget, control = after.value("bank.forget", "right"), after.value("bank.control", "right")
    return None if forget is None or control is None else forget - control


# the bank's 95% interval of a bar's value, printed beside it: bar -> (set, interval key)
INTERVALS = {
    "retain_kept": ("retain", "kept_ci"),
    "neighbour_kept": ("neighbour", "kept_ci"),
    "retain_delta": ("retain", "delta_ci"),
    "neighbour_delta": ("neighbour", "delta_ci"),
}

# name -> (what it bounds, "max" or "min", value of a before/after pair)
BARS: dict[str, tuple[str, str, Callable[[UnlearningMetrics, UnlearningMetrics], float | None]]] = {
    "leak": ("held-out forget leak", "max", lambda b, a: a.value("forget", "leak")),
    "leak_ratio": ("held-out forget leak / the base's", "max", _leak_ratio),
    "retain_drop": ("retain accuracy lost (absolute)", "max", _drop("retain")),
    "neighbour_drop": ("neighbour accuracy lost (absolute)", "max", _drop("neighbour")),
    "retain_kept": (
        "base-right retain items of the bank still ranked right",
        "min",
        lambda b, a: a.value("bank.retain", "kept"),
    ),
    "neighbour_kept": (
        "base-right neighbour items of the bank still ranked right",
        "min",
        lambda b, a: a.value("bank.neighbour", "kept"),
    ),
    "retain_delta": (
        "change of the gold log-prob on base-right retain items (nats/token)",
        "min",
        lambda b, a: a.value("bank.retain", "delta"),
    ),
    "neighbour_delta": (
        "change of the gold log-prob on base-right neighbour items (nats/token)",
        "min",
        lambda b, a: a.value("bank.neighbour", "delta"),
    ),
    "forget_gold_drop": (
        "fall of the forget items' gold log-prob (nats/token)",
        "min",
        lambda b, a: _negated(a.value("bank.forget", "delta_all")),
    ),
    "forget_over_control": (
        "forget items ranked right, minus the never-known control's rate",
        "max",
        _over_control,
    ),
    "retain_text_kept": (
        "base-right held-out retain prompts still answered right (free text)",
        "min",
        lambda b, a: a.value("retain", "kept"),
    ),
    "neighbour_text_kept": (
        "base-right held-out neighbour prompts still answered right (free text)",
        "min",
        lambda b, a: a.value("neighbour", "kept"),
    ),
    "substitute": (
        "valid substitute where the concept was recommended",
        "min",
        lambda b, a: a.value("forget", "substitute_valid"),
    ),
    "drift_kl": (
        "mean KL to the base on generic chat (nats/token)",
        "max",
        lambda b, a: a.value("drift", "kl"),
    ),
    "film_kl": (
        "mean KL to the base on held-out film chats (nats/token)",
        "max",
        lambda b, a: a.value("drift", "film_kl"),
    ),
    "identical_replies": (
        "other-film replies word for word the base's",
        "min",
        lambda b, a: a.value("behaviour", "identical"),
    ),
    "same_answer": (
        "other-film replies naming the base's answer",
        "min",
        lambda b, a: a.value("behaviour", "same_answer"),
    ),
    "new_refusals": (
        "refusals on other films where the base answered",
        "max",
        lambda b, a: a.value("behaviour", "new_refusals"),
    ),
}


@dataclass(frozen=True)
class Check:
    bar: str
    meaning: str
    limit: float
    value: float | None
    ok: bool
    sign: str = ""  # "<=" for a ceiling, ">=" for a floor; in the manifest so a report needs no table
    interval: tuple[float, float] | None = None  # the value's 95% interval, where it has one

    def __post_init__(self) -> None:
        if not self.sign:
            object.__setattr__(self, "sign", "<=" if BARS[self.bar][1] == "max" else ">=")

    def line(self) -> str:
        return check_line(asdict(self))


def check(bars: dict[str, float], before: UnlearningMetrics, after: UnlearningMetrics) -> list[Check]:
    """One `Check` per configured bar; a bar whose value could not be measured fails."""
    out = []
    for name, limit in bars.items():
        meaning, kind, value_of = BARS[name]
        value = value_of(before, after)
        # EPS: rates are counts over n prompts, so 0.900 - 0.850 must meet a 0.05 bar (it is
        # 0.05000000000000004 in floats)
        ok = value is not None and (value <= limit + EPS if kind == "max" else value >= limit - EPS)
        interval = (
            after.value(f"bank.{INTERVALS[name][0]}", INTERVALS[name][1]) if name in INTERVALS else None
        )
        out.append(Check(name, meaning, limit, value, ok, interval=interval))
    return out


def verdict(bars: dict[str, float], before: UnlearningMetrics, after: UnlearningMetrics) -> dict:
    """{"ok": every bar met, "checks": [...]}; each missed bar is logged as a warning."""
    checks = check(bars, before, after)
    for c in checks:
        (log.info if c.ok else log.warning)("%s %s", "-[✓]" if c.ok else "-[x] BAR MISSED:", c.line())
    return {"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}
