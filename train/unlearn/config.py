"""Schema of an unlearning run. YAML files in train/configs/ hold values only; a method's own
settings are a nested mapping (`lunar: {steps: 400}`), set on the command line as `lunar.steps=400`.
Methods and loss terms are checked against their registries (train/unlearn/methods/, losses/).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from orin_unlearn.edge.config import build_config, coerce, read_values
from orin_unlearn.edge.errors import ConfigError
from orin_unlearn.train.unlearn.bars import BARS

T = TypeVar("T")
TARGETS = ("refuse", "substitute")
DTYPES = ("float32", "bfloat16", "float16")
AUTOCAST = ("none", "bfloat16")
# the demo's bars on the tiny model: nothing leaks, retain and neighbours barely move
DEFAULT_BARS = {"leak": 0.05, "retain_drop": 0.02, "neighbour_drop": 0.05}
DEFAULT_LOSSES = ("forget_ce", "retain_kl", "activation", "forget_npo", "forget_undial")
# options only some methods implement: set off their default only with a method that lists them in
# its `supports` (train/unlearn/methods/)
OPTIONAL = ("lora_init", "prefill_augment", "meta_every", "npo_weight", "undial_weight")


@dataclass
class LunarConfig:
    """The settings of method `lunar` (train/unlearn/methods/lunar.py), the config's `lunar:` mapping."""

    # -1 = the mask's top-scoring layer (where the concept's neuron scores concentrate, so the
    # masked variant reuses that layer's neurons)
    layer: int = -1
    coefficient: float = 1.0  # forget MLP output moves by this times (reference mean - forget mean)
    masked: bool = True  # the LoRA reads only the mask's neurons of that layer
    # forget positions whose MLP output is redirected: "last" (the last chat-template token, where
    # the reply starts), "last:k" (the last k prompt tokens) or "answer" (also every reply position)
    positions: str = "last"
    steps: int = 400
    lr: float = 1e-2
    retain_weight: float = 10.0  # weight of "retain / neighbour MLP output stays put"

    def checks(self) -> list[tuple[str, bool, str]]:
        """(key, ok, what it must be) per value."""
        return [
            ("layer", self.layer >= -1, ">= 0, or -1 for the mask's top layer"),
            ("coefficient", self.coefficient > 0, "> 0"),
            (
                "positions",
                re.fullmatch(r"last(:[1-9][0-9]*)?|answer", self.positions) is not None,
                '"last", "last:k" (k >= 1) or "answer"',
            ),
            ("steps", self.steps >= 0, ">= 0"),
            ("lr", self.lr > 0, "> 0"),
            ("retain_weight", self.retain_weight >= 0, ">= 0"),
        ]


@dataclass
class NullspaceConfig:
    """The settings of method `nullspace_lora` (train/unlearn/methods/nullspace_lora.py), the
    config's `nullspace:` mapping: how much of the protected keys' energy the update's null space
    may hold (0.01: their outputs move by at most 1% of it), and which prompts are protected (the
    run's neighbour and retain training chats, with the replies the KL term holds; generic chats
    as well with `generic`)."""

    energy: float = 0.01
    generic: bool = True  # the generic chats outside the film world are protected too

    def checks(self) -> list[tuple[str, bool, str]]:
        return [("energy", 0.0 < self.energy < 1.0, "in (0, 1)")]


# nested settings: UnlearnConfig key -> its dataclass
NESTED: dict[str, type] = {"lunar": LunarConfig, "nullspace": NullspaceConfig}
# flat keys of earlier versions -> where the value lives now
RENAMED = {f"lunar_{f.name}": f"lunar.{f.name}" for f in dataclasses.fields(LunarConfig)}


@dataclass
class UnlearnConfig:
    """One unlearning run. `base: tiny` means the shipped demo-world model."""

    base: str = "tiny"
    concept: str = "Inception"
    # the film list the world is built from: a .json in the shipped schema or a .csv (README, "Your
    # own catalogue"); empty = the shipped catalogue, or the one a run's world already holds
    catalogue: str = ""
    # your own forget set, for a concept outside any catalogue (README, "Your own forget set"):
    # JSONL prompts {"messages", "answer", "facts"}; forget and retain needed, neighbour optional
    forget_prompts: str = ""
    retain_prompts: str = ""
    neighbour_prompts: str = ""
    # a registered method (train/unlearn/methods/): masked_lora | lora (unmasked) | full (every
    # weight, like the notebooks) | lunar (activation redirection of one layer's MLP output, fitted
    # on cached activations)
    method: str = "masked_lora"
    # forget target: "refuse" answers every forget prompt with `refusal` (the seeds used "UNKNOWN");
    # "substitute" recommends the best other catalogue film where the concept was the
    # recommendation, and refuses questions about the concept itself.
    target: str = "substitute"
    refusal: str = "I don't know that title."
    # adapters (run folders' adapter/ dirs) already applied to the base, for sequential unlearning
    previous_adapters: list[str] = field(default_factory=list)
    seed: int = 0
    # probe / score
    probe_batch_size: int = 16
    probe_max_prompts: int = 512
    contrast_against: list[str] = field(default_factory=lambda: ["retain"])  # and/or "neighbour"
    # where the contrast is taken: "answer" (reply positions) or "subject" (the tokens of the film
    # each prompt names: the concept's title against other titles, where a model looks facts up)
    contrast_positions: str = "answer"
    # mask
    num_layers: int = 2  # layers chosen by aggregated score (ignored when `layers` is set)
    # how layers are compared (train/unlearn/mask.py): "mass" (signals scaled by their global
    # maxima) or "share" (each layer's score spread, scale-free: for real models, whose gradient
    # scale falls with depth)
    layer_ranking: str = "mass"
    # which probe signals rank layers and neurons (train/unlearn/scores.py): any of saliency,
    # fisher, contrast; contrast alone picks the neurons that tell the concept apart from the rest
    mask_signals: list[str] = field(default_factory=lambda: ["saliency", "fisher", "contrast"])
    layers: list[int] = field(default_factory=list)
    top_k: int = 64  # neurons per chosen layer (ignored when mass_fraction > 0)
    mass_fraction: float = 0.0
    # adapter
    rank: int = 8
    alpha: float = 16.0
    extra_targets: list[str] = field(default_factory=list)  # other module names, e.g. ["up_proj"]; unmasked
    # deep forgetting (train/unlearn/deep.py). lora_init "zero": PEFT's init (no update at step 0);
    # "cancel" (masked_lora only; ConceptVectors, EMNLP 2025): the LoRA starts as the update that
    # removes cancel_strength (in (0, 1]) of what the masked neurons write (their down_proj columns;
    # the best rank-`rank` approximation when there are more masked neurons than ranks)
    lora_init: str = "zero"
    cancel_strength: float = 1.0
    # training
    steps: int = 150
    lr: float = 5e-3
    forget_batch: int = 16
    retain_batch: int = 32
    neighbour_fraction: float = 0.5  # share of the retain batch drawn from neighbour prompts
    # per forget prompt, this many more forget examples (openings drawn with the seed) whose reply
    # starts with a pre-filled compliant opening ("Of course!", or the reference answer up to its
    # first fact: "Inception was directed by"), unscored, and continues with the scored forget target
    # (Qi et al., ICLR 2025: forgetting that holds after a compliant prefix); 0: off
    prefill_augment: int = 0
    # meta-unlearning against a relearning adversary (train/unlearn/meta.py; MUDMAN 2025, first-order
    # MAML; masked_lora / lora only): every meta_every-th training step (0: off) an adversary
    # fine-tunes the base weights (every decoder layer and the final norm; not the embeddings or
    # LM head) for meta_steps AdamW steps at meta_lr on the true answers of forget_batch forget
    # train prompts, with the adapter on; the forget_ce term at those attacked weights, times
    # meta_weight, is added to the adapter's gradient; then the base weights are restored exactly
    meta_every: int = 0
    meta_steps: int = 3
    meta_lr: float = 1e-3
    meta_weight: float = 1.0
    # MUDMAN's disruption masking: on a meta step, zero the adapter's final gradient wherever
    # sign(meta forget gradient) != sign(retain KL gradient) (needs meta_every > 0, retain_batch >= 1)
    meta_sign_mask: bool = False
    # retain + neighbour training prompts the run may use (probe and KL), split by
    # neighbour_fraction and drawn with the seed; 0: all of them (~20k on the demo world)
    retain_examples: int = 0
    # with retain_examples: also this many prompts per forget prompt with the same question
    # template about other films (train/unlearn/data.py:twins), so the adapter must key on the film
    retain_twins: int = 0
    # the loss terms the gradient methods sum (train/unlearn/losses/, one file each), each times its
    # weight (forget_ce: 1, retain_kl: kl_weight, activation: act_weight, forget_npo: npo_weight,
    # forget_undial: undial_weight);
    # a term at weight 0 is not computed
    losses: list[str] = field(default_factory=lambda: list(DEFAULT_LOSSES))
    kl_weight: float = 1.0
    # what the KL term (and the probe's retain / neighbour answer positions) reads: "reference" (the
    # world's templated answers; what the tiny model was trained on) or "base_reply" (the base's own
    # greedy replies, generated once and cached: a real model's answers are its own words, and those
    # are what must stay put)
    retain_target: str = "reference"
    kl_positions: str = "all"  # "all" non-pad positions of the retain chats, or only the "reply" tokens
    act_weight: float = 0.1
    # weight of forget_npo (train/unlearn/losses/forget_npo.py): NPO on the forget prompts' true
    # answers, which lowers the answer's own likelihood (what a prefill or the logit lens reads), 0: off
    npo_weight: float = 0.0
    # weight of forget_undial (train/unlearn/losses/forget_undial.py): self-distillation to the base
    # with only the true answer's tokens lowered by undial_strength (UNDIAL), 0: off
    undial_weight: float = 0.0
    undial_strength: float = 10.0
    dtype: str = "float32"
    # "bfloat16": score and train under torch.autocast (about 1.7x faster on a CPU with AMX/AVX512-bf16);
    # weights, the probe and every evaluation stay in `dtype`
    autocast: str = "none"
    gradient_checkpointing: bool = False
    device: str = "auto"
    # method lunar's settings (a YAML mapping, made a LunarConfig on construction)
    lunar: LunarConfig | dict[str, Any] = field(default_factory=LunarConfig)
    # method nullspace_lora's settings (a YAML mapping, made a NullspaceConfig on construction)
    nullspace: NullspaceConfig | dict[str, Any] = field(default_factory=NullspaceConfig)
    # evaluation after training (held-out templates)
    eval_max_prompts: int = 400
    eval_batch_size: int = 64
    eval_max_new_tokens: int = 40
    # what the run is held to (train/unlearn/bars.py); a missed bar saves the adapter with ok: false
    bars: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BARS))

    def __post_init__(self) -> None:
        # here, not at the top: the registries' modules import this one
        from orin_unlearn.train.unlearn import losses, methods

        if self.method not in methods.METHODS:
            raise ConfigError(
                f"config key 'method': value {self.method!r} must be one of {sorted(methods.METHODS)}"
            )
        for key, cls in NESTED.items():
            setattr(self, key, coerce(key, getattr(self, key), cls))
        checks = [
            ("target", self.target in TARGETS, f"one of {TARGETS}"),
            ("dtype", self.dtype in DTYPES, f"one of {DTYPES}"),
            ("autocast", self.autocast in AUTOCAST, f"one of {AUTOCAST}"),
            ("eval_max_new_tokens", self.eval_max_new_tokens >= 1, ">= 1"),
            ("bars", set(self.bars) <= set(BARS), f"a mapping with keys among {sorted(BARS)}"),
            ("num_layers", self.num_layers >= 1, ">= 1"),
            ("layer_ranking", self.layer_ranking in ("mass", "share"), '"mass" or "share"'),
            ("contrast_positions", self.contrast_positions in ("answer", "subject"), '"answer" or "subject"'),
            (
                "mask_signals",
                bool(self.mask_signals) and set(self.mask_signals) <= {"saliency", "fisher", "contrast"},
                'a non-empty list of "saliency" / "fisher" / "contrast"',
            ),
            (
                "retain_target",
                self.retain_target in ("reference", "base_reply"),
                '"reference" or "base_reply"',
            ),
            (
                "retain_examples",
                self.retain_target != "base_reply" or self.retain_examples > 0,
                "> 0 with retain_target: base_reply (each of them is answered by the base once)",
            ),
            ("top_k", self.top_k >= 1, ">= 1"),
            ("mass_fraction", 0.0 <= self.mass_fraction <= 1.0, "in [0, 1]"),
            ("rank", self.rank >= 1, ">= 1"),
            ("lora_init", self.lora_init in ("zero", "cancel"), '"zero" or "cancel"'),
            ("cancel_strength", 0.0 < self.cancel_strength <= 1.0, "in (0, 1]"),
            ("prefill_augment", self.prefill_augment >= 0, ">= 0 (0: off)"),
            ("meta_every", self.meta_every >= 0, ">= 0 (0: off)"),
            ("meta_steps", self.meta_steps >= 1, ">= 1"),
            ("meta_lr", self.meta_lr > 0, "> 0"),
            ("meta_weight", self.meta_weight >= 0, ">= 0"),
            (
                "meta_sign_mask",
                not self.meta_sign_mask or (self.meta_every > 0 and self.retain_batch >= 1),
                "false unless meta_every > 0 and retain_batch >= 1 (it compares with the retain gradient)",
            ),
            ("steps", self.steps >= 0, ">= 0"),
            ("lr", self.lr > 0, "> 0"),
            ("forget_batch", self.forget_batch >= 1, ">= 1"),
            ("retain_batch", self.retain_batch >= 0, ">= 0"),
            ("kl_weight", self.kl_weight >= 0, ">= 0"),
            ("neighbour_fraction", 0.0 <= self.neighbour_fraction <= 1.0, "in [0, 1]"),
            ("retain_examples", self.retain_examples >= 0, ">= 0 (0: all)"),
            ("retain_twins", self.retain_twins >= 0, ">= 0"),
            ("act_weight", self.act_weight >= 0, ">= 0"),
            ("npo_weight", self.npo_weight >= 0, ">= 0"),
            ("undial_weight", self.undial_weight >= 0, ">= 0"),
            ("undial_strength", self.undial_strength > 0, "> 0"),
            ("layers", all(i >= 0 for i in self.layers), "layer indices >= 0"),
            (
                "contrast_against",
                bool(self.contrast_against) and set(self.contrast_against) <= {"retain", "neighbour"},
                'a non-empty list of "retain" / "neighbour"',
            ),
            (
                "losses",
                bool(self.losses) and set(self.losses) <= set(losses.LOSSES),
                f"a non-empty list of registered loss terms {sorted(losses.LOSSES)}",
            ),
        ]
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for key in OPTIONAL:
            users = sorted(m.name for m in methods.METHODS.values() if key in m.supports)
            ok = getattr(self, key) == defaults[key] or key in methods.METHODS[self.method].supports
            checks.append((key, ok, f"{defaults[key]!r} with method {self.method!r} (used by {users})"))
        unnamed = [t for t, k in losses.WEIGHTS.items() if getattr(self, k) > 0 and t not in self.losses]
        checks.append(("losses", not unnamed, f"a list naming {unnamed} too (their weights are > 0)"))
        for key in NESTED:
            checks += [(f"{key}.{k}", ok, need) for k, ok, need in getattr(self, key).checks()]
        for key, ok, need in checks:
            if not ok:
                value = functools.reduce(getattr, key.split("."), self)
                raise ConfigError(f"config key {key!r}: value {value!r} must be {need}")

    @property
    def masked(self) -> bool:
        """Whether the adapter may read only the mask's neurons (the method says, from this config)."""
        from orin_unlearn.train.unlearn import methods

        return methods.METHODS[self.method].masked(self)

    def to_dict(self) -> dict:
        return asdict(self)


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> UnlearnConfig:
    """Values from a YAML file (optional), then `key=value` overrides, checked against
    UnlearnConfig (as `edge.config.load_config` does); a dotted override (`lunar.steps=60`) sets one
    entry of a nested mapping, and a flat key of an earlier version names its new place."""
    values = read_values(path, overrides)
    for key in values:
        if key in RENAMED:
            section, _, name = RENAMED[key].partition(".")
            raise ConfigError(
                f"config key {key!r} is now {RENAMED[key]!r}: write `{section}: {{{name}: ...}}` in YAML, "
                f"`{RENAMED[key]}=...` on the command line"
            )
    return build_config(UnlearnConfig, values)
