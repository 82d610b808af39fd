"""Plot plumbing shared by the benchmarks: matplotlib on the Agg backend, imported only when a
plot is drawn, one way to save a figure, and plots that are skipped (with a warning) where
matplotlib is not installed, e.g. a Jetson with the runtime only (`pip install ".[bench]"` adds it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | Path) -> Path:
    """Write `fig` as a PNG at `path` (its folder made if missing) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def draw(plot: Callable[[Any, Path], Any], result: Any, path: str | Path) -> Path | None:
    """`plot(result, path)`, or None with a warning when matplotlib is not installed."""
    try:
        return plot(result, Path(path))
    except ImportError as e:
        log.warning("no plot %s: %s (pip install matplotlib)", path, e)
        return None


def spread(n: int, most: int) -> list[int]:
    """At most `most` of the indices 0..n-1, evenly spaced, always the first and the last: which
    layers a per-layer plot labels or draws when a real model has 30 of them."""
    if n <= most:
        return list(range(n))
    if most < 2:
        raise ValueError(f"need room for at least 2 of {n} indices, got {most}")
    return sorted({round(k * (n - 1) / (most - 1)) for k in range(most)})
