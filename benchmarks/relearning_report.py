"""How a relearning protocol result (`relearning.protocol`) is shown: its setup and every cell as
Markdown, and the recovery per attacker as a plot panel of `bench robustness`."""

from __future__ import annotations

from typing import Any


def markdown(result: dict) -> str:
    """The protocol's setup and every cell, as Markdown."""
    split, before, control = result["split"], result["before"], result["control"]
    lines = [
        f"Relearning protocol: the attacker trains on {split['n_train']} prompts about the facts "
        f"{', '.join(split['train_facts'])} of {result['concept']!r} (or {split['n_related']} prompts "
        f"about its neighbours); recall is measured on {split['n_heldout']} prompts about "
        f"{', '.join(split['heldout_facts'])}. Never-known control: the base, attacked the same way on "
        f"the fictitious {control['title']!r} ({control['director']}, {control['year']}, "
        f"{control['lead']}, about {', '.join(control['themes'])}). Before any attack, V recall: base "
        f"{before['base']:.3f}, unlearned {before['unlearned']:.3f}, control {before['control']:.3f}. "
        f"Recovery = unlearned - control; the worst case counts cells whose retain (on "
        f"{split['n_retain']} held-out retain {retain_words(split)}) stays within "
        f"{result['retain_tolerance']:.0%} of the unlearned model's." + bank_words(split, before),
        "",
        "| attacker | steps | V recall unlearned | V recall control | recovery | V items right: unlearned / "
        "control / recovery | retain | counted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cells"]:
        retain = "-" if c["retain"] is None else f"{c['retain']:.3f}"
        bank = "-"
        if c.get("bank_recovery") is not None:
            bank = f"{c['bank_unlearned']:.3f} / {c['bank_control']:.3f} / {c['bank_recovery']:+.3f}"
        lines.append(
            f"| {c['attacker']} | {c['steps']} | {c['unlearned']:.3f} | {c['control']:.3f} | "
            f"{c['recovery']:+.3f} | {bank} | {retain} | {'yes' if c['retain_ok'] else 'no'} |"
        )
    lines.append("")
    for steps, cell in result["worst"].items():
        worst = "no counted cell" if cell is None else f"{cell['recovery']:+.3f} ({cell['attacker']})"
        lines.append(f"- worst recovery at {steps} steps: {worst}")
    return "\n".join(lines)


def retain_words(split: dict) -> str:
    if split.get("retain_measure") == "bank":
        return "items of the bank ranked right"
    return "prompts answered right"


def bank_words(split: dict, before: dict) -> str:
    """The bank's view in one sentence, when the protocol scored one."""
    if "bank_unlearned" not in before or before["bank_unlearned"] is None:
        return ""
    return (
        f" The item bank scores the concept's {split['n_bank_forget_v']} V items and the control's "
        f"{split['n_bank_control_v']} teacher-forced; before any attack, ranked right: base "
        f"{before['bank_base']:.3f}, unlearned {before['bank_unlearned']:.3f}, control {before['bank_control']:.3f}."
    )


def plot_panel(ax: Any, result: dict) -> None:
    """Recovery per attacker at each step count (hatched: retain fell too far, not counted)."""
    import numpy as np

    names = list(dict.fromkeys(c["attacker"] for c in result["cells"]))
    steps = sorted({c["steps"] for c in result["cells"]})
    x, width = np.arange(len(names)), 0.8 / len(steps)
    for k, n in enumerate(steps):
        cells = {c["attacker"]: c for c in result["cells"] if c["steps"] == n}
        bars = ax.bar(
            x + (k - (len(steps) - 1) / 2) * width,
            [cells[a]["recovery"] for a in names],
            width,
            label=f"{n} steps",
        )
        for bar, a in zip(bars, names, strict=True):
            if not cells[a]["retain_ok"]:
                bar.set_hatch("//")
    ax.axhline(0.10, color="k", ls="--", lw=0.8, label="bar (25 steps)")
    ax.set_xticks(x, names, rotation=35, ha="right", fontsize=7)
    ax.set_ylim(-0.5, 1.05)
    ax.set_ylabel("V recall: unlearned - never-known control")
    ax.set_title("relearning on T facts: recovery of V facts")
    ax.legend(fontsize=7)
