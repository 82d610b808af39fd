"""Null-space protection (AlphaEdit, ICLR'25): an update to `mlp.down_proj` that leaves the MLP
outputs of other prompts exactly as they were.

`down_proj` maps the MLP's neuron activations k (its input, the "keys", size d_ff) to the residual
stream. A LoRA adds ΔW = B·A, so a prompt's output moves by B·(A·k). Collect the keys K0 of the
prompts that must not move (neighbour and retain chats, every token), and keep A's rows in the
null space of K0: then A·k0 = 0 for every protected key, those prompts' residual streams are
unchanged at this layer, and so is everything after it. The null space is approximate, as
AlphaEdit's: the eigenvectors of K0·K0ᵀ with the smallest eigenvalues, together holding at most
`threshold` of the protected keys' energy; the projector P = U·Uᵀ onto them is applied to A
after every optimiser step (A ← A·P), so the constraint holds exactly whatever Adam does, and the
update still merges into down_proj (export is unchanged).

With a neuron mask, A reads only the masked neurons, so the keys and the projector are the
masked neurons' (k × k). How much room is left shows in `concept_share`: the share of the
concept's own keys (at its subject tokens) that falls in the null space; an edit can only act
through that share.

    keys = collect_keys(model, tokenizer, protected, layers)          # {layer: K0·K0ᵀ}
    projectors = projectors_for(keys, mask, threshold=1e-2)           # {layer: Projector}
    project(model, projectors)                                        # A ← A·P, in place
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from orin_unlearn.train.unlearn import masked_lora, probe
from orin_unlearn.train.unlearn.model_access import down_proj


@dataclass(frozen=True)
class Projector:
    """The null-space projector of one layer: over which neurons (`neurons`, indices into d_ff),
    the matrix (`matrix`, len(neurons) square), its rank and the number of neurons."""

    neurons: torch.Tensor
    matrix: torch.Tensor

    @property
    def rank(self) -> int:
        return int(round(float(self.matrix.trace())))


def collect_keys(
    model,
    tokenizer,
    examples: Sequence[probe.Example],
    layers: Sequence[int],
    batch_size: int = 16,
    positions: str = "all",
) -> dict[int, torch.Tensor]:
    """Per layer, Σ k·kᵀ over the `down_proj` inputs k at every real token of `examples` (or only
    at their subject tokens: `positions="subject"` with `examples` as (messages, reply, names))."""
    sums: dict[int, torch.Tensor] = {}
    subjects = [e[2] for e in examples] if positions == "subject" else None
    pairs = [(e[0], e[1]) for e in examples]
    with torch.no_grad(), probe.capture_mlp_inputs(model) as captured, _stop_after(model, max(layers)):
        for batch in probe.batches(tokenizer, pairs, batch_size, subjects):
            try:  # the layers above the last one read are never run
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            except _Enough:
                pass
            where = batch["subject_pos"] if subjects is not None else batch["attention_mask"].bool()
            for layer in layers:
                keys = captured[layer].float()[where]  # [tokens, d_ff]
                sums[layer] = sums.get(layer, 0) + keys.T @ keys
    return sums


class _Enough(Exception):
    """Raised once the last `down_proj` a pass reads has its input: the rest of the pass is skipped."""


@contextmanager
def _stop_after(model, layer: int):
    def stop(_module, _args):
        raise _Enough

    handle = down_proj(model, layer).register_forward_pre_hook(stop)
    try:
        yield
    finally:
        handle.remove()


def null_projector(second_moment: torch.Tensor, threshold: float) -> torch.Tensor:
    """The projector onto the least-used eigen-directions of a key second-moment matrix: as many
    of the smallest as together hold at most `threshold` of the protected keys' energy (its
    trace). An update confined there moves the protected outputs by at most that share of their
    energy, whatever the scale of the few huge activation directions a real model has (a cut
    relative to the largest eigenvalue, AlphaEdit's, keeps almost everything on SmolLM2)."""
    values, vectors = torch.linalg.eigh(second_moment.double())  # ascending
    budget = threshold * values.clamp_min(0).sum()
    keep = torch.cumsum(values.clamp_min(0), 0) <= budget
    basis = vectors[:, keep]
    return (basis @ basis.T).float()


def projectors_for(
    keys: dict[int, torch.Tensor], mask: dict[int, torch.Tensor] | None, threshold: float
) -> dict[int, Projector]:
    """One projector per layer of `keys`, over the layer's masked neurons (all of them without a mask)."""
    out = {}
    for layer, moment in keys.items():
        neurons = mask[layer] if mask is not None else torch.arange(moment.shape[0])
        sub = moment[neurons][:, neurons]
        out[layer] = Projector(neurons, null_projector(sub, threshold))
    return out


@torch.no_grad()
def project(model, projectors: dict[int, Projector]) -> None:
    """A ← A·P on each layer's `lora_A` columns of the projector's neurons (the rest stay as
    they are: zero under a mask)."""
    for layer, proj in projectors.items():
        weight = down_proj(model, layer).lora_A[masked_lora.ADAPTER].weight
        idx = proj.neurons.to(weight.device)
        weight[:, idx] = weight[:, idx] @ proj.matrix.to(weight.device, weight.dtype)


def concept_share(
    concept_keys: dict[int, torch.Tensor], projectors: dict[int, Projector]
) -> dict[int, float]:
    """Per layer, the share of the concept keys' energy (trace of Σ k·kᵀ over its neurons) that
    lies in the null space: how much of the concept an update confined there can reach."""
    out = {}
    for layer, proj in projectors.items():
        moment = concept_keys[layer][proj.neurons][:, proj.neurons]
        total = float(moment.trace())
        out[layer] = float((proj.matrix @ moment).trace()) / total if total > 0 else 0.0
    return out
