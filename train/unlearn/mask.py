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

LAYER_RANKINGS = ("mass", "share")


def combine(
    scores: dict[str, torch.Tensor], per_layer: bool = False, signals: tuple[str, ...] = SIGNALS
) -> torch.Tensor:
    """Mean of the signals (default all three), each divided by its global maximum: [layers, d_ff].

    With `per_layer`, each signal is divided by its own layer's total instead, so a layer's row
    says how the concept's score is spread over that layer's neurons whatever the layer's scale.
    Gradient-based signals are not comparable across layers: on SmolLM2-135M the Fisher mass
    falls 170x from layer 0 to layer 29 for any objective (gradients shrink toward the output),
    which would pick the first layers whatever the concept."""
    if per_layer:
        parts = [scores[s] / scores[s].sum(dim=1, keepdim=True).clamp_min(1e-12) for s in signals]
    else:
        parts = [scores[s] / scores[s].max().clamp_min(1e-12) for s in signals]
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


def layer_strength(combined: torch.Tensor, top_k: int) -> torch.Tensor:
    """Per layer, the combined score its top-k neurons hold: what layers are ranked by."""
    return combined.topk(min(top_k, combined.shape[1]), dim=1).values.sum(dim=1)


def choose_layers(combined: torch.Tensor, num_layers: int, top_k: int) -> list[int]:
    """Layers whose top-k neurons carry the most combined score, in layer order."""
    mass = layer_strength(combined, top_k)
    return sorted(torch.argsort(mass, descending=True, stable=True)[:num_layers].tolist())


def build_mask(
    scores: dict[str, torch.Tensor],
    num_layers: int,
    top_k: int,
    mass_fraction: float = 0.0,
    layers: list[int] | None = None,
    ranking: str = "mass",
    signals: tuple[str, ...] = SIGNALS,
) -> dict[int, torch.Tensor]:
    """{layer: neuron indices (int64, best first)} for the chosen layers. `ranking` "mass" ranks
    layers by the combined score their top-k neurons hold (signals scaled by global maxima);
    "share" by the share of each layer's own score its top-k neurons hold (scale-free across
    layers: where the concept is most concentrated)."""
    if ranking not in LAYER_RANKINGS:
        raise ValueError(f"ranking must be one of {LAYER_RANKINGS}, got {ranking!r}")
    unknown = [x for x in signals if x not in SIGNALS]
    if unknown or not signals:
        raise ValueError(f"signals must be a non-empty subset of {SIGNALS}, got {list(signals)}")
    combined = combine(scores, per_layer=ranking == "share", signals=tuple(signals))
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
