"""Probe: run chat-templated forget / neighbour / retain prompts and record, per layer, MLP neuron
activations (the input of `mlp.down_proj`, size d_ff) and the residual stream, at the answer
positions, at the last prompt token, and at the subject's tokens (the film title named in the
prompt: where a model looks its facts up, so the concept is told apart from other films there
by the token itself, long before the answer).

Streamed and batched: only running sums are kept (memory is O(layers x d_ff) per set, whatever
the number of prompts), so a 3B model over 500 prompts never holds all activations at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train.chat_data import IGNORE, collate, encode_example
from orin_unlearn.train.unlearn.model_access import decoder_layers

Example = tuple[Sequence[dict], str]  # (messages, reply)


def batches(
    tokenizer: ChatTokenizer,
    examples: Sequence[Example],
    batch_size: int,
    subjects: Sequence[Sequence[str]] | None = None,
) -> Iterator[dict]:
    """Padded batches with `answer_pos`: positions whose next token is a reply token (the first of
    them is the last prompt token); with `subjects` (strings per example), also `subject_pos`:
    the prompt tokens that spell one of them."""
    encoded = [encode_example(tokenizer, m, r) for m, r in examples]
    for start in range(0, len(encoded), batch_size):
        batch = with_positions(collate(encoded[start : start + batch_size], tokenizer.pad_token_id))
        if subjects is not None:
            batch["subject_pos"] = torch.zeros_like(batch["attention_mask"], dtype=torch.bool)
            for row, k in enumerate(range(start, min(start + batch_size, len(encoded)))):
                for i in subject_positions(tokenizer, examples[k][0], subjects[k]):
                    batch["subject_pos"][row, i] = True
        yield batch


def subject_positions(tokenizer: ChatTokenizer, messages: Sequence[dict], names: Sequence[str]) -> list[int]:
    """Indices of the prompt tokens that overlap an occurrence of one of `names` in the rendered
    chat (case-insensitive), e.g. the tokens of "Inception" in "Who directed Inception?"."""
    text = tokenizer.render(list(messages))
    spans = []
    for name in names:
        spans += [(m.start(), m.end()) for m in re.finditer(re.escape(name), text, re.IGNORECASE)]
    offsets = tokenizer.tokenizer.encode(text, add_special_tokens=False).offsets
    return [i for i, (a, b) in enumerate(offsets) if any(a < e and s < b for s, e in spans)]


def with_positions(batch: dict) -> dict:
    """Add `answer_pos` (positions whose next token is a reply token) and `last_prompt` to a batch."""
    nxt = torch.full_like(batch["labels"], IGNORE)
    nxt[:, :-1] = batch["labels"][:, 1:]
    batch["answer_pos"] = nxt != IGNORE
    batch["last_prompt"] = batch["answer_pos"].int().argmax(dim=1)
    return batch


@contextmanager
def capture_mlp_inputs(model, keep_grad: bool = False):
    """Collect each layer's `mlp.down_proj` input during forward passes into a dict layer -> tensor."""
    captured: dict[int, torch.Tensor] = {}
    handles = []

    def hook(index: int):
        def pre(_module, args):
            x = args[0]
            if keep_grad:
                if x.requires_grad:
                    x.retain_grad()
                else:
                    x = x.detach().requires_grad_(True)
                captured[index] = x
                return (x, *args[1:])
            captured[index] = x.detach()
            return None

        return pre

    for i, layer in enumerate(decoder_layers(model)):
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(hook(i)))
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


class RunningStats:
    """Sums, sums of squares and counts of per-layer vectors, for means and variances."""

    def __init__(self):
        self.sum: torch.Tensor | None = None
        self.sumsq: torch.Tensor | None = None
        self.count = 0

    def add(self, rows: torch.Tensor) -> None:
        """`rows`: [layers, n, dim] float."""
        rows = rows.double()
        s, q = rows.sum(dim=1), (rows * rows).sum(dim=1)
        self.sum = s if self.sum is None else self.sum + s
        self.sumsq = q if self.sumsq is None else self.sumsq + q
        self.count += rows.shape[1]

    def mean(self) -> torch.Tensor:
        return (self.sum / max(self.count, 1)).float()

    def var(self) -> torch.Tensor:
        m = self.sum / max(self.count, 1)
        return (self.sumsq / max(self.count, 1) - m * m).clamp_min(0).float()


@torch.no_grad()
def probe(
    model,
    tokenizer: ChatTokenizer,
    sets: dict[str, Sequence[Example]],
    batch_size: int,
    progress=None,
    subjects: dict[str, Sequence[Sequence[str]]] | None = None,
) -> dict:
    """Per set: mean/var of neuron activations at answer positions, mean at the last prompt token,
    and the mean residual stream at the last prompt token (transformers' hidden states: each layer's
    output, except the last layer's, which comes after the final RMSNorm). With `subjects` (per set,
    the strings each example's prompt names), also mean/var at those strings' tokens."""
    device = next(model.parameters()).device
    out: dict[str, torch.Tensor] = {}
    for name, examples in sets.items():
        answer, last_neuron, last_resid, subject = (
            RunningStats(),
            RunningStats(),
            RunningStats(),
            RunningStats(),
        )
        names = None if subjects is None else subjects[name]
        task = progress.add_task(f"probe {name}", total=len(examples)) if progress else None
        for batch in batches(tokenizer, examples, batch_size, names):
            with capture_mlp_inputs(model) as acts:
                res = model(
                    input_ids=batch["input_ids"].to(device),
                    attention_mask=batch["attention_mask"].to(device),
                    output_hidden_states=True,
                    logits_to_keep=1,  # only the residual stream is read
                )
            pos = batch["answer_pos"].to(device)
            rows = torch.arange(pos.shape[0], device=device)
            last = batch["last_prompt"].to(device)
            layers = sorted(acts)
            answer.add(torch.stack([acts[i][pos] for i in layers]))
            last_neuron.add(torch.stack([acts[i][rows, last] for i in layers]))
            last_resid.add(torch.stack([h[rows, last] for h in res.hidden_states[1:]]))
            if names is not None and batch["subject_pos"].any():
                at = batch["subject_pos"].to(device)
                subject.add(torch.stack([acts[i][at] for i in layers]))
            if progress:
                progress.advance(task, len(rows))
        out[f"{name}.neuron_mean"], out[f"{name}.neuron_var"] = answer.mean(), answer.var()
        out[f"{name}.neuron_last_mean"] = last_neuron.mean()
        out[f"{name}.resid_last_mean"] = last_resid.mean()
        out[f"{name}.count"] = torch.tensor([answer.count, last_neuron.count])
        if names is not None:
            if subject.count == 0:
                raise ValueError(f"no {name} prompt names its subject: nothing to probe at subject tokens")
            out[f"{name}.neuron_subject_mean"], out[f"{name}.neuron_subject_var"] = (
                subject.mean(),
                subject.var(),
            )
    return out
