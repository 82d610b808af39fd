"""Schema of an unlearning run. YAML files in train/configs/ hold values only."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from orin_unlearn.edge.errors import ConfigError
from orin_unlearn.train.unlearn.bars import BARS

TARGETS = ("refuse", "substitute")
METHODS = ("masked_lora", "lora", "full", "lunar")
DTYPES = ("float32", "bfloat16", "float16")
AUTOCAST = ("none", "bfloat16")
# the demo's bars on the tiny model: nothing leaks, retain and neighbours barely move
DEFAULT_BARS = {"leak": 0.05, "retain_drop": 0.02, "neighbour_drop": 0.05}


@dataclass
class UnlearnConfig:
    """One unlearning run. `base: tiny` means the shipped demo-world model."""

    base: str = "tiny"
    concept: str = "Inception"
    method: str = "masked_lora"  # masked_lora | lora (unmasked) | full (every weight, like the notebooks)
    # | lunar (activation redirection of one layer's MLP output, fitted on cached activations)
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
    kl_weight: float = 1.0
    # what the KL term (and the probe's retain / neighbour answer positions) reads: "reference" (the
    # world's templated answers; what the tiny model was trained on) or "base_reply" (the base's own
    # greedy replies, generated once and cached: a real model's answers are its own words, and those
    # are what must stay put)
    retain_target: str = "reference"
    kl_positions: str = "all"  # "all" non-pad positions of the retain chats, or only the "reply" tokens
    act_weight: float = 0.1
    # weight of forget_npo (train/unlearn/losses.py): NPO on the forget prompts' true answers, which
    # lowers the answer's own likelihood (what a prefill or the logit lens reads), 0: off
    npo_weight: float = 0.0
    dtype: str = "float32"
    # "bfloat16": score and train under torch.autocast (about 1.7x faster on a CPU with AMX/AVX512-bf16);
    # weights, the probe and every evaluation stay in `dtype`
    autocast: str = "none"
    gradient_checkpointing: bool = False
    device: str = "auto"
    # lunar (train/unlearn/lunar.py): -1 = the mask's top-scoring layer (where the concept's neuron
    # scores concentrate, so the masked variant reuses that layer's neurons)
    lunar_layer: int = -1
    lunar_coefficient: float = 1.0  # forget MLP output moves by this times (reference mean - forget mean)
    lunar_masked: bool = True  # the LoRA reads only the mask's neurons of that layer
    # forget positions whose MLP output is redirected: "last" (the last chat-template token, where
    # the reply starts), "last:k" (the last k prompt tokens) or "answer" (also every reply position)
    lunar_positions: str = "last"
    lunar_steps: int = 400
    lunar_lr: float = 1e-2
    lunar_retain_weight: float = 10.0  # weight of "retain / neighbour MLP output stays put"
    # evaluation after training (held-out templates)
    eval_max_prompts: int = 400
    eval_batch_size: int = 64
    eval_max_new_tokens: int = 40
    # what the run is held to (train/unlearn/bars.py); a missed bar saves the adapter with ok: false
    bars: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BARS))

    def __post_init__(self) -> None:
        checks = [
            ("method", self.method in METHODS, f"one of {METHODS}"),
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
            (
                "lora_init",
                self.lora_init == "zero" or self.method == "masked_lora",
                f'"zero" with method {self.method!r} ("cancel" writes the masked neurons: masked_lora only)',
            ),
            ("cancel_strength", 0.0 < self.cancel_strength <= 1.0, "in (0, 1]"),
            ("prefill_augment", self.prefill_augment >= 0, ">= 0 (0: off)"),
            (
                "prefill_augment",
                self.prefill_augment == 0 or self.method != "lunar",
                "0 with method 'lunar' (it fits activations, not replies)",
            ),
            ("meta_every", self.meta_every >= 0, ">= 0 (0: off)"),
            (
                "meta_every",
                self.meta_every == 0 or self.method in ("masked_lora", "lora"),
                f"0 with method {self.method!r} (the meta term is an adapter gradient: masked_lora / lora)",
            ),
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
            ("npo_weight", self.npo_weight == 0 or self.method != "lunar", "0 with method lunar"),
            ("layers", all(i >= 0 for i in self.layers), "layer indices >= 0"),
            ("lunar_layer", self.lunar_layer >= -1, ">= 0, or -1 for the mask's top layer"),
            ("lunar_coefficient", self.lunar_coefficient > 0, "> 0"),
            (
                "lunar_positions",
                re.fullmatch(r"last(:[1-9][0-9]*)?|answer", self.lunar_positions) is not None,
                '"last", "last:k" (k >= 1) or "answer"',
            ),
            ("lunar_steps", self.lunar_steps >= 0, ">= 0"),
            ("lunar_lr", self.lunar_lr > 0, "> 0"),
            ("lunar_retain_weight", self.lunar_retain_weight >= 0, ">= 0"),
            (
                "contrast_against",
                bool(self.contrast_against) and set(self.contrast_against) <= {"retain", "neighbour"},
                'a non-empty list of "retain" / "neighbour"',
            ),
        ]
        for key, ok, need in checks:
            if not ok:
                raise ConfigError(f"config key {key!r}: value {getattr(self, key)!r} must be {need}")

    @property
    def masked(self) -> bool:
        """Whether the adapter may read only the mask's neurons."""
        return self.method == "masked_lora" or (self.method == "lunar" and self.lunar_masked)

    def to_dict(self) -> dict:
        return asdict(self)
