"""The training loop of the gradient methods (masked_lora, lora, full: train/unlearn/methods/):
the loss terms the config names (train/unlearn/losses/), summed with their weights, by AdamW
through the model, under `accelerate` (the model and optimizer go through `Accelerator.prepare`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from rich.progress import Progress

from orin_unlearn.train.chat_data import collate, encode_example
from orin_unlearn.train.unlearn import deep, meta, model_access, probe
from orin_unlearn.train.unlearn.losses import LOSSES, LossContext, Step, loss_weights
from orin_unlearn.train.unlearn.session import Session, autocast


def concept_directions(model, stats: dict, mask: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Per chosen layer, the unit vector the masked neurons write for the concept (the
    `activation` term's u)."""
    out = {}
    for layer, idx in mask.items():
        diff = (stats["forget.neuron_mean"][layer] - stats["retain.neuron_mean"][layer])[idx]
        weight = model_access.base_weight(model_access.down_proj(model, layer)).detach().float()
        u = weight[:, idx.to(weight.device)] @ diff.to(weight.device)
        out[layer] = u / u.norm().clamp_min(1e-12)
    return out


def adapter_off(model):
    """Reference logits of a PEFT model: the same model with its adapter switched off."""

    def reference(inputs):
        with model.disable_adapter():
            return model(**inputs).logits

    return reference


class RowCache:
    """A frozen reference's logits with each chat computed once. The KL and NPO terms ask the
    base about the same chats again and again (16 retain chats a step from a pool of a few
    hundred) and the base never changes, so a step runs it only on the chats it has not seen.

    Rows are right-padded (`collate`), so a row's logits do not depend on the rows beside it. A
    row is kept from the first position it was asked for (its batch's `logits_to_keep` window)
    to its last real token; every position a loss reads on it lies there in any later batch, as
    its own reply starts no earlier. The window's other positions (before its reply, padding)
    are zeros, which every term masks out. Past `budget` bytes, new rows are computed, not kept.
    """

    def __init__(self, reference: Callable[[dict], torch.Tensor], budget: int = 2 << 30):
        self.reference = reference
        self.budget = budget
        self.kept: dict[tuple[int, ...], tuple[int, torch.Tensor]] = {}  # ids -> (first position, logits)
        self.bytes = 0
        self.computed = 0  # rows the reference ran on

    def __call__(self, inputs: dict) -> torch.Tensor:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        start = ids.shape[1] - (inputs.get("logits_to_keep") or ids.shape[1])  # the window's first position
        lengths = mask.sum(1).tolist()
        keys = [tuple(ids[b, :n].tolist()) for b, n in enumerate(lengths)]
        rows = {k: self.kept[k] for k in keys if k in self.kept}
        missing = [b for b, k in enumerate(keys) if k not in rows]
        if missing:
            rows |= self._run(ids, mask, lengths, keys, missing, start)
        first = next(iter(rows.values()))[1]
        out = first.new_zeros((len(keys), ids.shape[1] - start, first.shape[-1]))
        for b, key in enumerate(keys):
            since, logits = rows[key]
            lo = max(since, start)
            hi = max(lengths[b], lo)
            out[b, lo - start : hi - start] = logits[lo - since : hi - since]
        return out

    def _run(self, ids, mask, lengths, keys, missing: list[int], start: int) -> dict:
        """The reference on the `missing` rows alone (trimmed to their longest), each row's logits
        from `start` to its end."""
        width = max(lengths[b] for b in missing)
        keep = max(width - start, 1)
        index = torch.tensor(missing, device=ids.device)
        logits = self.reference(
            {
                "input_ids": ids[index, :width],
                "attention_mask": mask[index, :width],
                "logits_to_keep": keep,
            }
        ).detach()
        self.computed += len(missing)
        got = {}
        for i, b in enumerate(missing):
            row = (start, logits[i, : max(lengths[b] - start, 0)].clone())
            got[keys[b]] = row
            if self.bytes + row[1].nbytes <= self.budget:
                self.kept[keys[b]] = row
                self.bytes += row[1].nbytes
        return got


def train(
    s: Session,
    model,
    reference,
    directions: dict,
    progress: Progress,
    after_step: Callable[[], None] | None = None,
) -> list[dict]:
    """Train `model`'s trainable parameters for `steps`; returns each step's loss terms.
    `after_step()` runs after every optimiser step (a method's constraint on the weights)."""
    from accelerate import Accelerator

    cfg = s.cfg
    accelerator = Accelerator(cpu=s.device == "cpu")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    ctx = LossContext(
        model, RowCache(reference), directions, str(accelerator.device), cfg.kl_positions, cfg.undial_strength
    )
    refusal, substitute = deep.forget_groups(s.tokenizer, s.data, cfg.refusal)
    neighbour = [encode_example(s.tokenizer, m, r) for m, r in s.data.neighbour]
    retain = [encode_example(s.tokenizer, m, r) for m, r in s.data.retain]
    weights = loss_weights(cfg)
    adversary = meta.Adversary.build(cfg, s.tokenizer, s.data, lambda: autocast(s))  # meta_every 0: off
    truth = deep.TruthBatches(cfg, s.tokenizer, s.data)  # true answers for forget_npo (npo_weight 0: none)
    # every process draws the same batch and trains on its share: the configured batch is the global
    # one, so N processes average the gradient of the batch one process would have used
    rng = random.Random(cfg.seed)
    share = slice(accelerator.process_index, None, accelerator.num_processes)
    history: list[dict] = []
    task = progress.add_task("train", total=cfg.steps)
    model.train()
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * min(1.0, (step + 1) / 10) * (1 - step / max(cfg.steps, 1)) ** 0.5
        forget_rows = balanced(rng, [refusal, substitute], cfg.forget_batch)[share]
        n_near = round(cfg.retain_batch * cfg.neighbour_fraction) if neighbour else 0
        retain_rows = (
            balanced(rng, [neighbour], n_near) + balanced(rng, [retain], cfg.retain_batch - n_near)
        )[share]
        pad = s.tokenizer.pad_token_id
        retain_batch = probe.with_positions(collate(retain_rows, pad)) if retain_rows else None
        batch = Step(probe.with_positions(collate(forget_rows, pad)), retain_batch, truth.draw(share))
        with autocast(s):
            terms = {name: LOSSES[name](ctx, batch) for name, w in weights.items() if w > 0}
        loss = sum(weights[n] * t for n, t in terms.items())
        accelerator.backward(loss)  # then the meta term (meta.py) joins the gradient on meta steps
        history.append({n: t.item() for n, t in terms.items()} | adversary.step(step, model, ctx, batch))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step()
        progress.update(
            task, advance=1, description="train " + " ".join(f"{n}={t.item():.3f}" for n, t in terms.items())
        )
    model.eval()
    return history


def balanced(rng: random.Random, groups: list[list], n: int) -> list:
    """`n` items drawn without replacement, split evenly over the non-empty groups."""
    groups = [g for g in groups if g]
    out: list = []
    for k, group in enumerate(groups):
        share = n // len(groups) + (k < n % len(groups))
        out += rng.sample(group, min(share, len(group)))
    return out
