"""How a `bench robustness` result is shown: the plot (leak per attack, relearning recovery, logit
lens, director probe), the terminal table with the robustness card, and the Markdown of the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orin_unlearn.benchmarks import plots, relearning_report, robustness_card

if TYPE_CHECKING:  # robustness imports this module to show its results
    from orin_unlearn.benchmarks.robustness import Robustness


def plot(result: Robustness, path: str | Path) -> Path:
    """Leak per attack for each model (bars), and the logit lens per layer when measured."""
    import numpy as np

    plt = plots.pyplot()

    names = list(result.attacks)
    labels = list(next(iter(result.attacks.values())))
    lens = result.readouts.get("logit_lens")
    probe = {k: v for k, v in result.readouts.get("director_probe", {}).items() if k != "skipped"}
    relearned = result.readouts.get("relearning")
    panels = 1 + bool(relearned) + bool(lens) + bool(probe)
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.6), squeeze=False)
    bars = axes[0][0]
    x, width = np.arange(len(names)), 0.8 / len(labels)
    for k, label in enumerate(labels):
        values = [result.leak(n, label) for n in names]
        bars.bar(x + (k - (len(labels) - 1) / 2) * width, values, width, label=label)
    bars.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    bars.set_ylim(0, 1.05)
    bars.set_ylabel("leak rate (held-out forget prompts)")
    bars.set_title(f"{result.concept!r}: leak under each attack")
    bars.legend(fontsize=8)
    if relearned:
        relearning_report.plot_panel(axes[0][1], relearned)
    if lens:
        ax = axes[0][1 + bool(relearned)]
        for label, rows in lens.items():
            ax.plot([r["layer"] for r in rows], [r["p_answer"] for r in rows], marker="o", label=label)
        ax.set_xticks(plots.spread(len(next(iter(lens.values()))), 16))
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel("p(fact's first token), teacher-forced")
        ax.set_ylim(0, 1.05)
        ax.set_title("logit lens: does the residual stream still hold the fact?")
        ax.legend(fontsize=8)
    if probe:
        ax = axes[0][-1]
        for label, rows in probe.items():
            layers = [r["layer"] for r in rows]
            ax.plot(
                layers,
                [r["concept_as_director"] for r in rows],
                marker="o",
                label=f"{label}: concept read as director's",
            )
            ax.plot(
                layers,
                [r["val_accuracy"] for r in rows],
                ls="--",
                marker=".",
                label=f"{label}: accuracy on unseen films",
            )
        ax.set_xticks(plots.spread(len(layers), 16))
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylim(0, 1.05)
        ax.set_title("linear probe: is the concept still its director's?")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return plots.save(fig, path)


def print_table(result: Robustness) -> None:
    from rich.console import Console
    from rich.table import Table

    labels = list(next(iter(result.attacks.values())))
    table = Table(title=f"robustness: leak rate of {result.concept!r} under attack")
    table.add_column("attack")
    table.add_column("prompts", justify="right")
    for label in labels:
        table.add_column(f"{label} leak", justify="right")
    for name, per_model in result.attacks.items():
        n = next(iter(per_model.values())).n
        table.add_row(name, str(n), *[f"{per_model[label].leak:.3f}" for label in labels])
    Console(width=110).print(table)
    if "relearning" in result.readouts:
        card = Table(title="robustness card (benchmarks/robustness_card.py)")
        card.add_column("")
        card.add_column("unlearned", justify="right")
        values = robustness_card.card(result)
        for label, get in robustness_card.ROWS:
            card.add_row(label, robustness_card.fmt(get(values)))
        Console(width=110).print(card)


def markdown(result: Robustness) -> str:
    labels = list(next(iter(result.attacks.values())))
    lines = [
        "| attack | prompts | " + " | ".join(f"{x} leak" for x in labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    for name, per_model in result.attacks.items():
        n = next(iter(per_model.values())).n
        lines.append(f"| {name} | {n} | " + " | ".join(f"{per_model[x].leak:.3f}" for x in labels) + " |")
    if result.models:
        lines += ["", "Models: " + "; ".join(f"{k}: {v}" for k, v in result.models.items()) + "."]
    if "relearning" in result.readouts:
        lines += ["", robustness_card.markdown({"unlearned": robustness_card.card(result)})]
        lines += ["", relearning_report.markdown(result.readouts["relearning"])]
    lens = result.readouts.get("logit_lens")
    if lens:
        models = list(lens)
        n = lens[models[0]][0]["n"]
        lines += [
            "",
            f"Logit lens on {n} held-out forget prompts, teacher-forced up to the fact (e.g. "
            '"Inception was directed by" -> "Christopher"): probability / top-1 rate of its first token '
            "read from each layer's residual stream.",
            "",
            "| layer | " + " | ".join(f"{m} p / top-1" for m in models) + " |",
            "|---|" + "---|" * len(models),
        ]
        for k in range(len(lens[models[0]])):
            cells = [f"{lens[m][k]['p_answer']:.3f} / {lens[m][k]['top1']:.2f}" for m in models]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    probe = result.readouts.get("director_probe")
    if probe and "skipped" in probe:
        lines += ["", f"Director probe: skipped ({probe['skipped']})."]
    elif probe:
        models = list(probe)
        first = probe[models[0]][0]
        lines += [
            "",
            f"Linear probe per layer (logistic regression on the residual stream at the last prompt token of "
            f"year / lead / plot questions, {first['n_train']} prompts about the director's other films and "
            f"same-era films by others): accuracy on films it never saw / share of the "
            f"{first['n_concept']} questions about the concept it reads as the director's.",
            "",
            "| layer | " + " | ".join(f"{m} accuracy / concept" for m in models) + " |",
            "|---|" + "---|" * len(models),
        ]
        for k in range(len(probe[models[0]])):
            cells = [
                f"{probe[m][k]['val_accuracy']:.2f} / {probe[m][k]['concept_as_director']:.2f}"
                for m in models
            ]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
