"""Choose the neurons the adapter may read: layers by aggregated score, then the top-k neurons
of each chosen layer by combined score (or the fewest that hold a fraction of the layer's mass).

Indices are MLP-neuron indices (into d_ff, the input of `mlp.down_proj`), never residual-stream
indices (d_model), and they are ranked by score, never taken in index order.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from orin_unlearn.train.unlearn.scores import SIGNALS


def combine(scores: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean of the three signals, each divided by its global maximum: [layers, d_ff] in [0, 1]."""
    parts = [scores[s] / scores[s].max().clamp_min(1e-12) for s in SIGNALS]
    return torch.stack(parts).mean(dim=0)


def top_neurons(row: torch.Tensor, top_k: int, mass_fraction: float = 0.0) -> torch.Tensor:
    """Indices of the highest-scoring neurons of one layer, best first."""
    order = torch.argsort(row, descending=True, stable=True)
    if mass_fraction > 0:
        cumulative = torch.cumsum(row[order], 0) / row.sum().clamp_min(1e-12)
        k = (
            int(torch.searchsorted(cumulative, torch.tensor(mass_fraction, dtype=cumulative.dtype)).item())
            + 1
        )
        return order[: min(k, len(row))]
    return order[: min(top_k, len(row))]


def choose_layers(combined: torch.Tensor, num_layers: int, top_k: int) -> list[int]:
    """Layers whose top-k neurons carry the most combined score, in layer order."""
    k = min(top_k, combined.shape[1])
    mass = combined.topk(k, dim=1).values.sum(dim=1)
    return sorted(torch.argsort(mass, descending=True, stable=True)[:num_layers].tolist())


def build_mask(
    scores: dict[str, torch.Tensor],
    num_layers: int,
    top_k: int,
    mass_fraction: float = 0.0,
    layers: list[int] | None = None,
) -> dict[int, torch.Tensor]:
    """{layer: neuron indices (int64, best first)} for the chosen layers."""
    combined = combine(scores)
    n_layers = combined.shape[0]
    if layers:
        bad = [i for i in layers if not 0 <= i < n_layers]
        if bad:
            raise ValueError(f"layers {bad} out of range: the model has {n_layers} layers")
    chosen = sorted(layers) if layers else choose_layers(combined, num_layers, top_k)
    return {i: top_neurons(combined[i], top_k, mass_fraction).to(torch.int64) for i in chosen}


def save_mask(path: str | Path, mask: dict[int, torch.Tensor], d_ff: int) -> None:
    save_file(
        {f"layer.{i}": idx.contiguous() for i, idx in mask.items()},
        str(path),
        metadata={"d_ff": str(d_ff), "index_space": "mlp.down_proj input (d_ff)"},
    )


def load_mask(path: str | Path) -> dict[int, torch.Tensor]:
    tensors = load_file(str(path))
    return {
        int(k.split(".")[1]): v for k, v in sorted(tensors.items(), key=lambda kv: int(kv[0].split(".")[1]))
    }


def summary(mask: dict[int, torch.Tensor], scores: dict[str, torch.Tensor]) -> dict:
    """Readable facts about a mask: per layer, its size and the share of each signal it holds."""
    out = {}
    for layer, idx in mask.items():
        share = {
            s: float(scores[s][layer, idx].sum() / scores[s][layer].sum().clamp_min(1e-12)) for s in SIGNALS
        }
        out[str(layer)] = {"neurons": len(idx), "top10": idx[:10].tolist(), "score_share": share}
    return out
