"""`lunar`: LUNAR-style activation redirection (train/unlearn/lunar.py) of one layer's MLP output,
fitted on cached activations; its settings are the config's `lunar:` mapping (`LunarConfig`).

    orin-unlearn unlearn --config train/configs/demo_tiny_lunar.yaml --out /tmp/lunar
"""

from __future__ import annotations

import random

import torch
from rich.progress import Progress

from orin_unlearn.train.unlearn import lunar, masked_lora
from orin_unlearn.train.unlearn import mask as masks
from orin_unlearn.train.unlearn.data import sample
from orin_unlearn.train.unlearn.methods import Trained, method
from orin_unlearn.train.unlearn.model_access import down_proj
from orin_unlearn.train.unlearn.session import Session


def masked(cfg) -> bool:
    return cfg.lunar.masked


@method("lunar", label="LUNAR", masked=masked)
def train(s: Session, mask: dict[int, torch.Tensor], stats: dict, score: dict, progress: Progress) -> Trained:
    """Choose the layer, measure the direction, cache, fit. `stats` (the probe's) is not used: the
    direction is measured here, on each layer's output before any final norm, at exactly the
    chosen layer."""
    cfg, opts = s.cfg, s.cfg.lunar
    rng = random.Random(cfg.seed)
    layer = lunar.choose_layer(opts.layer, mask, score)
    layer_mask = masks.build_mask(score, 1, cfg.top_k, cfg.mass_fraction, [layer])
    reference = lunar.reference_prompts(s.data.catalogue, cfg.refusal, cfg.probe_max_prompts, rng)
    cap, bs = cfg.probe_max_prompts, cfg.probe_batch_size
    forget = s.data.forget_reference[:cap]
    direction = lunar.redirection(
        lunar.last_residuals(s.model, s.tokenizer, reference, layer, bs),
        lunar.last_residuals(s.model, s.tokenizer, forget, layer, bs),
    )
    kept = sample(s.data.retain, cap, rng) + sample(s.data.neighbour, cap, rng)
    forget_x = lunar.cache_inputs(s.model, s.tokenizer, forget, layer, opts.positions, bs)
    # two "stay put" terms: the same positions of retain / neighbour prompts (by default the last
    # prompt token, where a reply starts and forget rows differ in target), and all their tokens
    keep_last = lunar.cache_inputs(s.model, s.tokenizer, kept, layer, opts.positions, bs)
    keep_all = lunar.cache_inputs(s.model, s.tokenizer, kept, layer, "all", bs)
    if len(keep_all) > lunar.MAX_RETAIN_ROWS:
        order = torch.randperm(len(keep_all), generator=torch.Generator().manual_seed(cfg.seed))
        keep_all = keep_all[order[: lunar.MAX_RETAIN_ROWS]]
    model = masked_lora.add_lora(s.model, layer_mask, cfg.rank, cfg.alpha, [], masked=opts.masked)
    module = down_proj(model, layer)
    weight = module.lora_A[masked_lora.ADAPTER].weight
    shift = (opts.coefficient * direction).to(weight.device, weight.dtype)
    history = lunar.fit(
        module,
        forget_x.to(weight.device, weight.dtype),
        [x.to(weight.device, weight.dtype) for x in (keep_last, keep_all)],
        shift,
        opts.steps,
        opts.lr,
        opts.retain_weight,
        progress,
    )
    info = {
        "layer": layer,
        "coefficient": opts.coefficient,
        "direction_norm": float(direction.norm()),
        "reference_prompts": len(reference),
        "forget_rows": len(forget_x),
        "retain_rows": len(keep_last) + len(keep_all),
    }
    return Trained(model, history, layer_mask, {"lunar": info})
