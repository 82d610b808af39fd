"""Prompt-perturbation stability: does the model give the same answer to paraphrases of one
question, before and after unlearning?

A family is the set of prompts that ask the same thing about the same film (or request): every
template (train and held-out) of one world family with the same slots, i.e. the same family name,
reference answer, subjects and request. Its instability is the fraction of its paraphrases whose
normalised answer (case-folded, whitespace collapsed, end punctuation dropped) differs from the
family's modal answer: 0 when every paraphrase gets the same answer, at most 1 - 1/n for n
paraphrases that all disagree. Refusing every paraphrase is stable; refusing some and answering
others is not.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from orin_unlearn.benchmarks.analysis.context import RunContext
from orin_unlearn.benchmarks.analysis.registry import Outcome, analysis, fmt
from orin_unlearn.benchmarks.plots import pyplot, save
from orin_unlearn.benchmarks.world import Prompt

TITLE = "Prompt-perturbation stability (answers across paraphrases)"
FAMILIES_PER_SET = {"forget": 12, "neighbour": 8, "retain": 8}


def normalise(answer: str) -> str:
    return re.sub(r"\s+", " ", answer.casefold()).strip().rstrip(".!?").strip()


def instability(answers: Sequence[str]) -> float:
    """Fraction of answers that differ from the modal (most frequent) normalised answer."""
    if not answers:
        raise ValueError("instability of an empty family is undefined")
    counts = Counter(normalise(a) for a in answers)
    return 1.0 - max(counts.values()) / len(answers)


def families(prompts: Sequence[Prompt]) -> dict[str, list[Prompt]]:
    """Prompts grouped into paraphrase families (same family, answer, subjects and request)."""
    out: dict[str, list[Prompt]] = {}
    for p in prompts:
        key = json.dumps([p.family, p.answer, p.subjects, p.answer_film, p.request], sort_keys=True)
        out.setdefault(key, []).append(p)
    return {k: v for k, v in out.items() if len(v) >= 2}


def _label(members: list[Prompt]) -> str:
    p = members[0]
    about = p.subjects[0] if p.subjects else (p.answer_film or "")
    return f"{p.family}: {about}"[:48]


def _choose(ctx: RunContext) -> dict[str, list[list[Prompt]]]:
    chosen: dict[str, list[list[Prompt]]] = {}
    for name, n in FAMILIES_PER_SET.items():
        groups = sorted(families(ctx.splits.get(name)).items())
        rng = random.Random(f"{ctx.seed}:stability:{name}")
        picked = groups if len(groups) <= n else rng.sample(groups, n)
        chosen[name] = [members for _, members in sorted(picked)]
    return chosen


@analysis("stability")
def run(ctx: RunContext) -> Outcome:
    chosen = _choose(ctx)
    flat = [p for groups in chosen.values() for members in groups for p in members]
    replies = {
        which: dict(zip(map(id, flat), ctx.answers(which, flat), strict=True))
        for which in ("before", "after")
    }
    rows = []
    for name, groups in chosen.items():
        for members in groups:
            row = {"set": name, "family": _label(members), "paraphrases": len(members)}
            for which in ("before", "after"):
                answers = [replies[which][id(p)] for p in members]
                row[which] = instability(answers)
                row[f"{which}_modal"] = Counter(map(normalise, answers)).most_common(1)[0][0]
            rows.append(row)
    summary = {
        name: {
            "families": sum(r["set"] == name for r in rows),
            "before": float(np.mean([r["before"] for r in rows if r["set"] == name])),
            "after": float(np.mean([r["after"] for r in rows if r["set"] == name])),
        }
        for name in chosen
        if any(r["set"] == name for r in rows)
    }
    result = {"definition": instability.__doc__, "summary": summary, "families": rows}
    (ctx.out / "stability.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _plot(rows, ctx.out / "stability.png")
    body = [
        "Instability = fraction of a family's paraphrases whose answer differs from its most common",
        "answer (0 = every paraphrase answered alike). Mean over families:",
        "",
        "| set | families | before | after |",
        "|---|---|---|---|",
    ]
    body += [
        f"| {n} | {s['families']} | {fmt(s['before'])} | {fmt(s['after'])} |" for n, s in summary.items()
    ]
    body += ["", "Per family: `analysis/stability.json`, plot `analysis/stability.png`."]
    return Outcome("ok", TITLE, "\n".join(body), summary, ["stability.json", "stability.png"])


def _plot(rows: list[dict], path) -> None:
    plt = pyplot()
    colours = {"forget": "tab:red", "neighbour": "tab:orange", "retain": "tab:blue"}
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(rows) + 1.6))
    ax.barh(y - 0.2, [r["before"] for r in rows], 0.4, color="lightgrey", label="before")
    ax.barh(y + 0.2, [r["after"] for r in rows], 0.4, color=[colours[r["set"]] for r in rows], label="after")
    ax.set_yticks(y, [f"[{r['set']}] {r['family']}" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("instability: share of paraphrases off the modal answer")
    ax.set_xlim(0, 1)
    ax.legend(loc="lower right")
    ax.set_title("Answer changes across paraphrases: before (grey), after (coloured by set)", fontsize=10)
    fig.tight_layout()
    save(fig, path)
