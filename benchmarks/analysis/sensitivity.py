"""Layer sensitivity: how much each layer's MLP neurons matter for the forget answers, from the
run's neuron scores (probe/scores.safetensors, [layers, d_ff] per signal; see
train/unlearn/scores.py), with the layers the adapter was trained on marked.

Per layer: saliency mass (sum over neurons of |activation x gradient|), Fisher mass (sum of squared
gradients) and gradient norm, sqrt(Fisher mass): the root mean square over forget examples of the
norm of d log p(forget answer) / d (MLP activations) at the answer positions. Spearman's rank
correlation of saliency and Fisher is given over layers and over every neuron; a constant signal
has no ranks, so its correlation is "undefined" and it is not plotted.
"""

from __future__ import annotations

import json

import numpy as np

from orin_unlearn.benchmarks.analysis.context import RunContext
from orin_unlearn.benchmarks.analysis.ranks import spearman
from orin_unlearn.benchmarks.analysis.registry import Outcome, analysis, fmt
from orin_unlearn.benchmarks.plots import pyplot, save, spread

TITLE = "Layer sensitivity (gradient norm, saliency, Fisher)"


def layer_sensitivity(scores: dict[str, np.ndarray]) -> dict:
    """Per-layer masses and the saliency / Fisher rank correlations of a scores dict."""
    for key in ("saliency", "fisher"):
        if key not in scores:
            raise KeyError(f"scores lack {key!r}; have {sorted(scores)}")
    saliency = np.asarray(scores["saliency"], dtype=np.float64)
    fisher = np.asarray(scores["fisher"], dtype=np.float64)
    if saliency.shape != fisher.shape or saliency.ndim != 2:
        raise ValueError(f"saliency {saliency.shape} and fisher {fisher.shape} must both be [layers, d_ff]")
    sal_mass, fis_mass = saliency.sum(axis=1), fisher.sum(axis=1)
    return {
        "layers": saliency.shape[0],
        "saliency_mass": sal_mass.tolist(),
        "fisher_mass": fis_mass.tolist(),
        "grad_norm": np.sqrt(np.clip(fis_mass, 0, None)).tolist(),
        "spearman_layers": spearman(sal_mass, fis_mass),
        "spearman_neurons": spearman(saliency.ravel(), fisher.ravel()),
    }


@analysis("sensitivity")
def run(ctx: RunContext) -> Outcome:
    result = layer_sensitivity(ctx.scores())
    chosen = ctx.mask_layers()
    result["chosen_layers"] = chosen
    (ctx.out / "sensitivity.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(result, ctx.out / "sensitivity.png")
    body = [
        f"From the run's neuron scores; layers the adapter was trained on: {chosen} (the mask",
        "chooses layers by the combined saliency, Fisher and forget-vs-retain contrast score).",
        "",
        "| layer | gradient norm | saliency mass | Fisher mass | chosen |",
        "|---|---|---|---|---|",
    ]
    for i in range(result["layers"]):
        body.append(
            f"| {i} | {result['grad_norm'][i]:.4g} | {result['saliency_mass'][i]:.4g} | "
            f"{result['fisher_mass'][i]:.4g} | {'yes' if i in chosen else ''} |"
        )
    body += [
        "",
        f"Spearman(saliency, Fisher): over layers {fmt(result['spearman_layers'])}, "
        f"over neurons {fmt(result['spearman_neurons'])}. Plot: `analysis/sensitivity.png`.",
    ]
    summary = {k: result[k] for k in ("spearman_layers", "spearman_neurons", "chosen_layers")}
    return Outcome("ok", TITLE, "\n".join(body), summary, ["sensitivity.json", "sensitivity.png"])


def plot(result: dict, path) -> list[str]:
    """One figure, one panel per signal (each over layers), chosen layers shaded; a constant signal
    is left out. Returns the names of the signals drawn."""
    plt = pyplot()
    series = {
        "gradient norm": result["grad_norm"],
        "saliency mass": result["saliency_mass"],
        "Fisher mass": result["fisher_mass"],
    }
    drawn = {k: v for k, v in series.items() if np.ptp(np.asarray(v, dtype=np.float64)) > 0}
    layers = np.arange(result["layers"])
    fig, axes = plt.subplots(1, max(len(drawn), 1), figsize=(3.4 * max(len(drawn), 1), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], drawn.items(), strict=False):
        for layer in result.get("chosen_layers", []):
            ax.axvspan(layer - 0.4, layer + 0.4, color="gold", alpha=0.35, lw=0)
        ax.bar(layers, values, color="tab:purple")
        ax.set_xticks(spread(len(layers), 16))
        ax.set_xlabel("layer (chosen shaded)")
        ax.set_title(name, fontsize=9)
    if not drawn:
        axes[0, 0].text(0.5, 0.5, "every signal is constant: nothing to plot", ha="center", va="center")
        axes[0, 0].set_axis_off()
    rho = f"Spearman(saliency, Fisher): layers {fmt(result['spearman_layers'])}, neurons {fmt(result['spearman_neurons'])}"
    fig.suptitle(rho, fontsize=9)
    fig.tight_layout()
    save(fig, path)
    return list(drawn)
