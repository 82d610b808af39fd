"""Activation shift: how far unlearning moved the residual stream of forget, neighbour and retain
prompts at the layers the adapter was trained on (forget should move, retain should not).

Activations are each chosen layer's output at the last prompt token, for held-out prompts.
Distances are in the full residual space: the mean per-prompt L2 shift |after_i - before_i|, the
centroid shift |mean(after) - mean(before)|, and the mean shift relative to the spread of the
"before" activations (their mean distance to their common centroid). The plot projects before and
after onto the top two principal components of the "before" activations (numpy SVD).
"""

from __future__ import annotations

import json

import numpy as np

from orin_unlearn.benchmarks.analysis.context import RunContext
from orin_unlearn.benchmarks.analysis.registry import Outcome, analysis
from orin_unlearn.benchmarks.plots import pyplot, save

TITLE = "Activation shift at the chosen layers (before vs after unlearning)"
SETS = ("forget", "neighbour", "retain")
PROMPTS_PER_SET = 48
COLOURS = {"forget": "tab:red", "neighbour": "tab:orange", "retain": "tab:blue"}


def pca(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean [d], components [k, d], explained variance ratio [k]) of the rows of `x`."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = s * s
    ratio = var[:k] / var.sum() if var.sum() > 0 else np.zeros(min(k, len(var)))
    return mean, vt[:k], ratio


def shift(before: np.ndarray, after: np.ndarray, scale: float = 1.0) -> dict[str, float]:
    """Distances moved by one set of paired activations ([n, d] each, row i = the same prompt)."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if before.shape != after.shape:
        raise ValueError(f"before {before.shape} and after {after.shape} must pair row by row")
    per_prompt = np.linalg.norm(after - before, axis=1)
    mean_l2 = float(per_prompt.mean())
    return {
        "mean_l2": mean_l2,
        "centroid": float(np.linalg.norm(after.mean(axis=0) - before.mean(axis=0))),
        "relative": mean_l2 / scale if scale > 0 else float("inf"),
    }


def spread(x: np.ndarray) -> float:
    """Mean distance of the rows of `x` to their centroid."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.linalg.norm(x - x.mean(axis=0), axis=1).mean())


@analysis("shift")
def run(ctx: RunContext) -> Outcome:
    layers = ctx.mask_layers()
    chosen = {name: ctx.sample(name, PROMPTS_PER_SET) for name in SETS}
    prompts = [p for group in chosen.values() for p in group]
    sets = np.array([name for name, group in chosen.items() for _ in group])
    acts = {which: ctx.residuals(which, prompts) for which in ("before", "after")}
    per_layer = {}
    for layer in layers:
        before, after = acts["before"][layer], acts["after"][layer]
        scale = spread(before)
        per_layer[str(layer)] = {
            "spread_before": scale,
            **{name: shift(before[sets == name], after[sets == name], scale) for name in SETS},
        }
    result = {"layers": layers, "prompts": {n: len(g) for n, g in chosen.items()}, "shift": per_layer}
    (ctx.out / "shift.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _plot(acts, sets, layers, per_layer, ctx.out / "shift.png")
    body = [
        "Residual stream at the last prompt token of held-out prompts, at the adapter's layers.",
        "Mean per-prompt L2 shift (relative to the spread of the activations before) and centroid shift:",
        "",
        "| layer | set | prompts | mean shift | relative | centroid shift |",
        "|---|---|---|---|---|---|",
    ]
    for layer, rows in per_layer.items():
        for name in SETS:
            r = rows[name]
            body.append(
                f"| {layer} | {name} | {len(chosen[name])} | {r['mean_l2']:.3f} | {r['relative']:.3f} | "
                f"{r['centroid']:.3f} |"
            )
    body += ["", "PCA plot: `analysis/shift.png`."]
    summary = {
        layer: {name: round(rows[name]["relative"], 4) for name in SETS} for layer, rows in per_layer.items()
    }
    return Outcome("ok", TITLE, "\n".join(body), {"relative_shift": summary}, ["shift.json", "shift.png"])


def _plot(acts: dict, sets: np.ndarray, layers: list[int], per_layer: dict, path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(len(layers), 2, figsize=(10, 4 * len(layers)), squeeze=False)
    for row, layer in enumerate(layers):
        before, after = acts["before"][layer], acts["after"][layer]
        mean, comps, ratio = pca(before)
        pb, pa = (before - mean) @ comps.T, (after - mean) @ comps.T
        ax = axes[row, 0]
        for name in SETS:
            m = sets == name
            ax.scatter(
                pb[m, 0], pb[m, 1], s=14, facecolors="none", edgecolors=COLOURS[name], label=f"{name} before"
            )
            ax.scatter(pa[m, 0], pa[m, 1], s=14, color=COLOURS[name], label=f"{name} after")
            for b, a in zip(pb[m], pa[m], strict=True):
                ax.plot([b[0], a[0]], [b[1], a[1]], color=COLOURS[name], lw=0.4, alpha=0.5)
        ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}% of variance before)")
        ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}%)" if len(ratio) > 1 else "PC2")
        ax.set_title(f"layer {layer}: hollow = before, filled = after", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
        ax = axes[row, 1]
        x = np.arange(len(SETS))
        ax.bar(
            x - 0.2, [per_layer[str(layer)][n]["relative"] for n in SETS], 0.4, label="mean per-prompt shift"
        )
        scale = per_layer[str(layer)]["spread_before"]
        cent = [per_layer[str(layer)][n]["centroid"] / scale if scale > 0 else 0.0 for n in SETS]
        ax.bar(x + 0.2, cent, 0.4, color="silver", label="centroid shift")
        ax.set_xticks(x, SETS)
        ax.set_ylabel("distance / spread before")
        ax.set_title(f"layer {layer}: distance moved", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)
