"""Masked vs unmasked LoRA (or any registered methods) at equal forgetting, across how much
retain data the run may use.

The mask's claim is locality: an adapter that can only read the concept's neurons should need
less retain data to leave everything else alone. Each point trains one method on the same forget
prompts with `retain_examples` retain + neighbour prompts (the probe's contrast and the KL term
see only those), then measures the held-out sets. Points whose leak is above the forget bar are
not at equal forgetting and are marked so in the table and the plot.

    orin-unlearn unlearn sweep --config train/configs/demo_tiny.yaml --out runs/sweep

Every finished point is written to sweep.json at once, and a rerun skips the points already
there, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

from orin_unlearn.benchmarks import plots
from orin_unlearn.edge.formats import write_json_atomic
from orin_unlearn.train.unlearn import methods as registry
from orin_unlearn.train.unlearn.config import UnlearnConfig

FORGET_BAR = 0.05  # held-out leak at or below which a point counts as forgotten
BUDGETS = (16, 64, 256, 0)  # retain + neighbour prompts; 0 = all of them
DEFAULT_METHODS = ("masked_lora", "lora")  # any registered methods may be swept
ACCURACIES = (("neighbour", "neighbour accuracy"), ("retain", "retain accuracy"))


def budget_label(budget: int) -> str:
    return "all" if budget == 0 else str(budget)


def point_key(method: str, budget: int, seed: int) -> str:
    return f"{method}-r{budget_label(budget)}-s{seed}"


def run_point(cfg: UnlearnConfig, run: Path) -> dict:
    """Train and measure one point; returns its row."""
    from orin_unlearn.train.unlearn.recipe import run_unlearning

    r = run_unlearning(cfg, run, save=False)
    after, before = r["after"], r["before"]
    return {
        "method": cfg.method,
        "retain_examples": cfg.retain_examples,
        "seed": cfg.seed,
        "leak": after["forget"]["leak"],
        "neighbour": after["neighbour"]["accuracy"],
        "retain": after["retain"]["accuracy"],
        "base_neighbour": before["neighbour"]["accuracy"],
        "base_retain": before["retain"]["accuracy"],
        "params": r["parameters"]["effective"],
        "wall_s": r["wall_s"],
    }


def sweep(
    cfg: UnlearnConfig,
    out: str | Path,
    methods: tuple[str, ...] = DEFAULT_METHODS,
    budgets: tuple[int, ...] = BUDGETS,
    seeds: tuple[int, ...] = (0,),
) -> dict:
    """Rows of every (method, budget, seed) point, kept in out/sweep.json as they finish."""
    unknown = [m for m in methods if m not in registry.METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; registered: {sorted(registry.METHODS)}")
    if any(b < 0 for b in budgets):
        raise ValueError(f"retain budgets must be >= 0 (0: all), got {list(budgets)}")
    out = Path(out)
    path = out / "sweep.json"
    done = {}
    if path.is_file():
        saved = json.loads(path.read_text())
        if _shared(saved["config"]) != _shared(cfg.to_dict()):
            raise ValueError(f"{path} holds a sweep of another config; give a new --out")
        done = saved["points"]
    for seed in seeds:
        for budget in budgets:
            for method in methods:
                key = point_key(method, budget, seed)
                if key in done:
                    continue
                point_cfg = dataclasses.replace(cfg, method=method, retain_examples=budget, seed=seed)
                done[key] = run_point(point_cfg, out / key)
                write_json_atomic(path, {"config": cfg.to_dict(), "points": done})
    result = {"config": cfg.to_dict(), "points": done, "table": table(list(done.values()))}
    write_json_atomic(path, result)
    return result


def _shared(config: dict) -> dict:
    """The config every point of a sweep shares (the sweep sets method, budget and seed)."""
    return {k: v for k, v in config.items() if k not in ("method", "retain_examples", "seed")}


def table(rows: list[dict]) -> list[dict]:
    """Per (budget, method): the mean over seeds of leak / neighbour / retain and of the base's
    neighbour / retain (each seed draws its own held-out sets), and whether every seed reached the
    forget bar."""
    groups: dict[tuple[int, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["retain_examples"], row["method"]), []).append(row)
    order = sorted(groups, key=lambda k: (k[0] == 0, k[0], k[1] != "masked_lora"))
    out = []
    for budget, method in order:
        g = groups[(budget, method)]
        out.append(
            {
                "retain_examples": budget,
                "method": method,
                "seeds": len(g),
                **{
                    name: statistics.fmean(r[name] for r in g)
                    for name in ("leak", "neighbour", "retain", "base_neighbour", "base_retain")
                },
                "forgotten": all(r["leak"] <= FORGET_BAR for r in g),
            }
        )
    return out


def markdown(result: dict) -> str:
    """Table of means over seeds, accuracies with their change from the base in points."""
    lines = [
        "| retain prompts | method | seeds | forget leak | neighbour (vs base) | retain (vs base) | forgotten |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["table"]:
        change = [100 * (r[n] - r[f"base_{n}"]) for n, _ in ACCURACIES]
        lines.append(
            f"| {budget_label(r['retain_examples'])} | {registry.label(r['method'])} | {r['seeds']} | "
            f"{r['leak']:.3f} | {r['neighbour']:.3f} ({change[0]:+.1f}) | "
            f"{r['retain']:.3f} ({change[1]:+.1f}) | {'yes' if r['forgotten'] else 'no'} |"
        )
    lines.append(f"\nforgotten = held-out leak <= {FORGET_BAR} on every seed.")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> Path:
    """Neighbour and retain accuracy vs retain prompts, one line per method; hollow markers are
    points that did not reach the forget bar."""
    plt = plots.pyplot()
    rows = result["table"]
    budgets = sorted({r["retain_examples"] for r in rows}, key=lambda b: (b == 0, b))
    x = {b: i for i, b in enumerate(budgets)}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (name, label) in zip(axes, ACCURACIES, strict=True):
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == method]
            xs, ys = [x[r["retain_examples"]] for r in mine], [r[name] for r in mine]
            (line,) = ax.plot(xs, ys, marker="o", label=registry.label(method))
            for r in mine:
                if not r["forgotten"]:
                    ax.plot(x[r["retain_examples"]], r[name], "o", mfc="white", mec=line.get_color())
        base = statistics.fmean(r[f"base_{name}"] for r in rows)
        ax.axhline(base, ls="--", c="grey", label="base")
        ax.set_xticks(range(len(budgets)), [budget_label(b) for b in budgets])
        ax.set_xlabel("retain + neighbour training prompts")
        ax.set_title(label)
    low = min(r[k] for r in rows for n, _ in ACCURACIES for k in (n, f"base_{n}"))
    axes[0].set_ylim(max(0.0, low - 0.05), 1.0)  # shared by both panels
    axes[0].legend(loc="lower right")
    fig.suptitle("at equal forgetting (hollow: leak above the forget bar)")
    fig.tight_layout()
    return plots.save(fig, path)
