"""Score every MLP neuron of every layer with three concept-specific signals.

All three look at the concept, not at the model in general (the published notebooks scored
the mean of all logits, which is concept-free):
- saliency: |activation x gradient| of the log-probability of the forget answer tokens;
- Fisher: squared gradient of that same objective (diagonal Fisher information);
- contrast: |mean forget activation - mean retain (and neighbour) activation| / pooled std,
  from the probe.
Each is a [layers, d_ff] tensor indexed by MLP neuron (the input of `mlp.down_proj`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train.unlearn.probe import Example, batches, capture_mlp_inputs

SIGNALS = ("saliency", "fisher", "contrast")


def answer_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over each row of log p(label) at the labelled positions (labels shifted as in HF)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    mask = target != -100
    picked = logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(dim=1)


def gradient_scores(
    model, tokenizer: ChatTokenizer, forget: Sequence[Example], batch_size: int, progress=None
) -> dict:
    """Saliency and diagonal Fisher per neuron, averaged over forget examples."""
    device = next(model.parameters()).device
    saliency: torch.Tensor | None = None
    fisher: torch.Tensor | None = None
    task = progress.add_task("score", total=len(forget)) if progress else None
    for batch in batches(tokenizer, forget, batch_size):
        with capture_mlp_inputs(model, keep_grad=True) as acts:
            logits = model(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
            ).logits
            objective = answer_logprob(logits, batch["labels"].to(device)).sum()
            objective.backward()
        pos = batch["answer_pos"].to(device).unsqueeze(-1)
        layers = sorted(acts)
        sal = torch.stack([(acts[i].detach() * acts[i].grad * pos).abs().sum(dim=(0, 1)) for i in layers])
        fis = torch.stack([(acts[i].grad.square() * pos).sum(dim=(0, 1)) for i in layers])
        saliency = sal if saliency is None else saliency + sal
        fisher = fis if fisher is None else fisher + fis
        model.zero_grad(set_to_none=True)
        if progress:
            progress.advance(task, batch["input_ids"].shape[0])
    n = max(len(forget), 1)
    return {"saliency": (saliency / n).float().cpu(), "fisher": (fisher / n).float().cpu()}


def contrast_scores(
    stats: dict, eps: float = 1e-6, against: tuple[str, ...] = ("retain",), positions: str = "answer"
) -> torch.Tensor:
    """|mean_forget - mean_other| / pooled std at the answer positions (or, with `positions`
    "subject", at the tokens of the film each prompt names); with several `against` sets, the
    smallest of them (a neuron must tell the concept apart from each set)."""
    at = "neuron" if positions == "answer" else "neuron_subject"
    parts = []
    for other in against:
        diff = stats[f"forget.{at}_mean"] - stats[f"{other}.{at}_mean"]
        pooled = ((stats[f"forget.{at}_var"] + stats[f"{other}.{at}_var"]) / 2).sqrt()
        parts.append(diff.abs() / (pooled + eps))
    return torch.stack(parts).amin(dim=0).float().cpu()


def plot_heatmaps(
    scores: dict[str, torch.Tensor], out_dir: str | Path, chosen: dict[int, torch.Tensor] | None = None
) -> list[Path]:
    """One PNG per signal: layers x neurons, each normalised to its maximum; chosen neurons marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SIGNALS:
        s = scores[name]
        fig, ax = plt.subplots(figsize=(10, 0.5 * s.shape[0] + 1.5))
        im = ax.imshow(
            (s / s.max().clamp_min(1e-12)).numpy(),
            aspect="auto",
            cmap="magma",
            interpolation="nearest",
            norm=matplotlib.colors.PowerNorm(gamma=0.4, vmin=0.0, vmax=1.0),
        )
        if chosen:
            for layer, idx in chosen.items():
                ax.scatter(idx.numpy(), [layer] * len(idx), s=4, c="cyan", marker="|", label=None)
        ax.set_xlabel("MLP neuron (input of mlp.down_proj)")
        ax.set_ylabel("layer")
        ax.set_yticks(range(s.shape[0]))
        ax.set_title(f"{name} per neuron (normalised){' - chosen neurons in cyan' if chosen else ''}")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
