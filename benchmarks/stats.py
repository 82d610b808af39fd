"""The intervals and tests behind every "kept" and "changed" figure, from scipy.stats.

- `wilson`: the 95% Wilson score interval of k successes in n (10 of 19 is 0.32-0.73: counting
  right answers on a few prompts cannot tell 90% from 95%);
- `bootstrap_mean`: a percentile bootstrap interval of a mean of paired differences (per item:
  model minus base), with a fixed seed so a report is reproducible;
- `ks_test`: the two-sample Kolmogorov-Smirnov test, TOFU's "forget quality": are the forget
  items' scores distributed as those of a film the model never knew?

    wilson(10, 19)                        # (0.317, 0.727)
    bootstrap_mean(deltas, seed=0)        # (low, high)
    ks_test(forget_lp, control_lp)        # KSResult(statistic, pvalue)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The Wilson score interval of k successes in n trials; None when n is 0."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap_mean(
    values: Sequence[float], seed: int = 0, confidence: float = CONFIDENCE, resamples: int = RESAMPLES
) -> tuple[float, float] | None:
    """A percentile bootstrap interval of the mean of `values` (paired differences); None when
    there are none, the value itself when there is one."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None
    if x.size == 1 or np.ptp(x) == 0.0:
        return float(x.mean()), float(x.mean())
    from scipy.stats import bootstrap

    result = bootstrap(
        (x,),
        np.mean,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@dataclass(frozen=True)
class KSResult:
    """The two-sample Kolmogorov-Smirnov statistic (largest gap between the two empirical CDFs)
    and its p-value: a high p means the samples cannot be told apart."""

    statistic: float
    pvalue: float


def ks_test(a: Sequence[float], b: Sequence[float]) -> KSResult | None:
    """The two-sided two-sample KS test of `a` against `b`; None when either is empty."""
    if len(a) == 0 or len(b) == 0:
        return None
    from scipy.stats import ks_2samp

    result = ks_2samp(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return KSResult(float(result.statistic), float(result.pvalue))
