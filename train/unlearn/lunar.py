"""LUNAR-style unlearning: redirect one layer's MLP output on forget prompts toward where the model
keeps prompts it cannot answer, and leave that output in place everywhere else.

- direction r = mean residual stream (output of layer l, at the last chat-template token) of
  reference prompts, questions about the world's fictitious titles that the base refuses, minus
  the same mean over the forget prompts;
- a LoRA on layer l's `mlp.down_proj` (reading only the mask's neurons of that layer when
  `lunar.masked`) is fitted so that, with c = `lunar.coefficient`,
      down_proj'(x) = down_proj(x) + c * r   for x at the forget prompts' `lunar.positions`
                                             (default: the last prompt token),
      down_proj'(x) = down_proj(x)           for x at every token of retain / neighbour examples,
  by mean squared error on `down_proj` inputs cached once from the frozen model (retain rows in
  two terms: their last prompt tokens, where a reply starts, and all their tokens). A step is a
  few small matrix products: no forward or backward pass through the model.

The result is the same plain PEFT LoRA + mask + manifest as the masked LoRA's, so export, the
gate, the runtime and the benchmarks take it unchanged. The method itself (the trainer and its
registration) is train/unlearn/methods/lunar.py; this module holds its parts.

    orin-unlearn unlearn --config train/configs/demo_tiny_lunar.yaml --out /tmp/lunar
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from rich.progress import Progress

from orin_unlearn.benchmarks.world import build_prompts
from orin_unlearn.edge.errors import ConfigError
from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train.unlearn import mask as masks
from orin_unlearn.train.unlearn import masked_lora
from orin_unlearn.train.unlearn.model_access import decoder_layers
from orin_unlearn.train.unlearn.probe import Example, batches

MAX_RETAIN_ROWS = 16384  # cached retain / neighbour token positions (memory: rows x d_ff floats)


def reference_prompts(catalogue, refusal: str, cap: int, rng: random.Random) -> list[Example]:
    """Train-template questions about the fictitious titles (the base answers them with `refusal`)."""
    prompts = [p for p in build_prompts(catalogue) if p.family.startswith("unknown_") and p.split == "train"]
    if not prompts:
        raise ValueError("the world has no fictitious titles: LUNAR needs reference prompts")
    chosen = prompts if len(prompts) <= cap else rng.sample(prompts, cap)
    return [(p.messages, refusal) for p in chosen]


def choose_layer(wanted: int, mask: dict[int, torch.Tensor], score: dict[str, torch.Tensor]) -> int:
    """`wanted` (the config's `lunar.layer`) when set (>= 0), else the mask layer whose chosen
    neurons hold the most combined score: the layer where the concept is most concentrated."""
    n_layers = score["saliency"].shape[0]
    if wanted >= 0:
        if wanted >= n_layers:
            raise ConfigError(f"config key 'lunar.layer': value {wanted} out of range (0..{n_layers - 1})")
        return wanted
    combined = masks.combine(score)
    mass = {layer: float(combined[layer, idx].sum()) for layer, idx in mask.items()}
    return max(sorted(mass), key=lambda layer: mass[layer])


def redirection(reference: torch.Tensor, forget: torch.Tensor) -> torch.Tensor:
    """mean(reference) - mean(forget) over rows of [n, d] activations (or of [d] means)."""
    ref = reference.float().mean(dim=0) if reference.dim() == 2 else reference.float()
    fgt = forget.float().mean(dim=0) if forget.dim() == 2 else forget.float()
    return ref - fgt


@torch.no_grad()
def capture(
    model,
    tokenizer: ChatTokenizer,
    examples: Sequence[Example],
    module: torch.nn.Module,
    positions: str,
    batch_size: int,
    output: bool = False,
) -> torch.Tensor:
    """Rows of `module`'s input (or output) during forward passes over `examples`: at the last
    prompt token of each example (`positions="last"`), at its last k prompt tokens (`"last:k"`), at
    the positions that predict a reply token (`"answer"`: the last prompt token and the reply's
    tokens but its last), or at every non-pad token (`"all"`)."""
    tail = None if positions == "answer" else _tail(positions)
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []
    seen: list[torch.Tensor] = []

    def keep(value) -> None:
        seen.append((value[0] if isinstance(value, tuple) else value).detach())

    if output:
        handle = module.register_forward_hook(lambda _m, _args, out: keep(out))
    else:
        handle = module.register_forward_pre_hook(lambda _m, args: keep(args[0]))
    try:
        for batch in batches(tokenizer, examples, batch_size):
            seen.clear()
            model(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                use_cache=False,
            )
            x = seen[-1]
            if tail:
                steps = torch.arange(tail, device=device)
                cols = (batch["last_prompt"].to(device).unsqueeze(1) - steps).clamp_min(0)
                rows = torch.arange(x.shape[0], device=device).unsqueeze(1)
                captured.append(x[rows, cols].reshape(-1, x.shape[-1]).float())
            else:
                where = batch["answer_pos"] if positions == "answer" else batch["attention_mask"].bool()
                captured.append(x[where.to(device)].float())
    finally:
        handle.remove()
    return torch.cat(captured)


def _tail(positions: str) -> int | None:
    """Rows taken per example: None for "all", k for "last:k" ("last" is k = 1)."""
    name, _, k = positions.partition(":")
    if positions == "all":
        return None
    if name == "last" and (not k or (k.isdigit() and int(k) >= 1)):
        return int(k or 1)
    raise ValueError(f"positions must be 'all', 'last' or 'last:k' with k >= 1, got {positions!r}")


def cache_inputs(model, tokenizer, examples, layer: int, positions: str, batch_size: int) -> torch.Tensor:
    """Inputs of layer `layer`'s `mlp.down_proj` ([rows, d_ff]), see `capture`."""
    module = decoder_layers(model)[layer].mlp.down_proj
    return capture(model, tokenizer, examples, module, positions, batch_size)


def last_residuals(model, tokenizer, examples, layer: int, batch_size: int) -> torch.Tensor:
    """Layer `layer`'s output (the residual stream, before any final norm) at the last prompt
    token of each example: [n, d_model]."""
    module = decoder_layers(model)[layer]
    return capture(model, tokenizer, examples, module, "last", batch_size, output=True)


def lora_delta(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What a PEFT LoRA Linear adds to its base layer's output for inputs `x` (dropout is 0)."""
    name = masked_lora.ADAPTER
    return module.lora_B[name](module.lora_A[name](x)) * module.scaling[name]


def fit(
    module: torch.nn.Module,
    forget_x: torch.Tensor,
    keep_x: Sequence[torch.Tensor],
    shift: torch.Tensor,
    steps: int,
    lr: float,
    retain_weight: float,
    progress: Progress | None = None,
) -> list[dict]:
    """Fit the LoRA of `module` (a PEFT LoRA Linear) so that its output moves by `shift` on the
    rows of `forget_x` and stays put on the rows of each `keep_x` tensor (each one a term of its
    own, averaged over its rows). Errors are relative to |shift|^2. Only the LoRA path is
    evaluated: the base layer's output cancels out of every term."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the module has no trainable parameters")
    scale = shift.square().sum().clamp_min(1e-12)
    optimizer = torch.optim.Adam(params, lr=lr)
    history: list[dict] = []
    task = progress.add_task("lunar fit", total=steps) if progress else None
    for _ in range(steps):
        forget_err = (lora_delta(module, forget_x) - shift).square().sum(dim=-1).mean() / scale
        retain_err = sum(lora_delta(module, x).square().sum(dim=-1).mean() for x in keep_x) / scale
        loss = forget_err + retain_weight * retain_err
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append({"forget_mse": forget_err.item(), "retain_mse": retain_err.item()})
        if progress:
            progress.update(
                task,
                advance=1,
                description=f"lunar forget={forget_err.item():.3f} retain={retain_err.item():.4f}",
            )
    return history
