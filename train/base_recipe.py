"""Recipe: train the demo world's tokenizer and tiny Qwen2 base model from scratch, on 2 CPU cores.

Deterministic for a seed. Reads top to bottom: data, tokenizer, model, train, save, measure.

    orin-unlearn world build-base --out /tmp/tiny_base        # about 12 minutes on 2 cores
    orin-unlearn world build-base --out /tmp/t steps=50       # a quick smoke run
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from orin_unlearn.benchmarks.base_quality import measure_base, model_card
from orin_unlearn.benchmarks.world import DEFAULT_CONCEPT, build_prompts, load_catalogue, load_templates
from orin_unlearn.benchmarks.world.catalogue import catalogue_sha256
from orin_unlearn.edge.answers import BackendChat
from orin_unlearn.edge.backends.torch_backend import TorchBackend
from orin_unlearn.edge.progress import progress_bar
from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train.chat_data import collate, encode_example, length_batches
from orin_unlearn.train.tokenizer_recipe import save_hf_tokenizer, train_tokenizer

log = logging.getLogger(__name__)


@dataclass
class BaseConfig:
    """Schema of the tiny base recipe (override with key=value on the command line)."""

    seed: int = 0
    # the film list to learn (.json or .csv, README "Your own catalogue"); empty = the shipped one
    catalogue: str = ""
    # the concept whose held-out prompts the base's quality bar measures (it must know it well
    # before anything can be unlearned); empty = Inception, or a user catalogue's first film
    concept: str = ""
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 768
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    max_positions: int = 512
    steps: int = 1050
    batch_size: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 60
    weight_decay: float = 0.01
    threads: int = 2
    # families seen `hard_repeat` times per epoch: reverse look-ups (director + year -> film, two
    # themes -> film) are the hardest facts for a small model to memorise
    hard_families: list[str] = field(default_factory=lambda: ["qa_which", "rec_themes"])
    hard_repeat: int = 2
    # two-turn chats are long and easy (100% held-out): train on every `chat_stride`-th of them
    chat_stride: int = 2


def training_texts(cfg: BaseConfig) -> tuple[list[tuple[list[dict], str]], list[str]]:
    """(messages, reply) pairs of every train-template prompt (hard families repeated), and a
    text corpus for the tokenizer."""
    templates = load_templates()
    train = [p for p in build_prompts(load_catalogue(cfg.catalogue or None)) if p.split == "train"]
    chats = [p for p in train if p.family.startswith("chat_")]
    train = [p for p in train if not p.family.startswith("chat_")] + chats[:: cfg.chat_stride]
    examples = [
        (list(p.messages), p.answer)
        for p in train
        for _ in range(cfg.hard_repeat if p.family in cfg.hard_families else 1)
    ]
    system = templates["system"]
    fillers = templates["augment"]["prefixes"] + templates["augment"]["suffixes"]
    corpus = [
        f"system\n{system}\n"
        + "".join(f"{m['role']}\n{m['content']}\n" for m in msgs)
        + f"assistant\n{reply}"
        for msgs, reply in examples
    ] + fillers * 50
    return examples, corpus


def augment(messages: list[dict], rng: random.Random, fillers: dict) -> list[dict]:
    """Wrap the last user turn in a random filler prefix and/or suffix, sometimes lower-cased."""
    text = messages[-1]["content"]
    if rng.random() < 0.15:
        text = text[0].lower() + text[1:]
    if rng.random() < 0.35:
        text = rng.choice(fillers["prefixes"]) + text
    if rng.random() < 0.35:
        text = text + rng.choice(fillers["suffixes"])
    return [*messages[:-1], {"role": "user", "content": text}]


def build_model(cfg: BaseConfig, tokenizer: ChatTokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=tokenizer.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        use_sliding_window=False,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.end_of_turn_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    return Qwen2ForCausalLM(config)


def lr_at(step: int, cfg: BaseConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def train(
    model, pairs: list[tuple[list[dict], str]], tokenizer: ChatTokenizer, cfg: BaseConfig
) -> list[float]:
    """Plain AdamW loop over length-grouped, augmented batches; returns the loss per step."""
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    fillers = load_templates()["augment"]
    examples = [encode_example(tokenizer, m, r) for m, r in pairs]
    log.info("%d training examples, %d tokens per epoch", len(examples), sum(len(e[0]) for e in examples))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    lengths = [len(ids) for ids, _ in examples]
    batches: list[list[int]] = []
    losses: list[float] = []
    model.train()
    columns = (
        TextColumn("train base"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with progress_bar(*columns) as progress:
        task = progress.add_task("train", total=cfg.steps, loss=float("nan"))
        for step in range(cfg.steps):
            if not batches:
                batches = length_batches(lengths, cfg.batch_size, gen)
            chosen = [pairs[i] for i in batches.pop()]
            batch = collate(
                [encode_example(tokenizer, augment(m, rng, fillers), r) for m, r in chosen],
                tokenizer.pad_token_id,
            )
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            progress.update(task, advance=1, loss=sum(losses[-20:]) / len(losses[-20:]))
    model.eval()
    return losses


def build_base(out_dir: str | Path, cfg: BaseConfig, measure: bool = True) -> dict:
    """Run the whole recipe into `out_dir`; returns the summary written to `build.json`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    start = time.time()
    catalogue = load_catalogue(cfg.catalogue or None)  # read first: a bad row fails before training
    pairs, corpus = training_texts(cfg)
    system = load_templates()["system"]
    save_hf_tokenizer(train_tokenizer(corpus, cfg.vocab_size), out_dir, system, cfg.max_positions)
    tokenizer = ChatTokenizer(out_dir)
    model = build_model(cfg, tokenizer)
    losses = train(model, pairs, tokenizer, cfg)
    wall = time.time() - start
    model.generation_config.eos_token_id = tokenizer.stop_token_ids
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False
    model.save_pretrained(out_dir, safe_serialization=True)
    params = sum(p.numel() for p in model.parameters())
    summary = {
        "config": asdict(cfg),
        "params": params,
        "train_wall_s": wall,
        "examples": len(pairs),
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "catalogue_films": len(catalogue),
        "catalogue_sha256": catalogue_sha256(cfg.catalogue or None),
    }
    if measure:
        answer = BackendChat(TorchBackend(model), tokenizer).answer_batch
        concept = cfg.concept or (catalogue.films[0].title if cfg.catalogue else DEFAULT_CONCEPT)
        quality = measure_base(answer, concept=concept, catalogue=catalogue)
        summary["quality"] = quality
        (out_dir / "README.md").write_text(model_card(quality, asdict(cfg), params, wall), encoding="utf-8")
        (out_dir / "quality.json").write_text(json.dumps(quality, indent=2), encoding="utf-8")
    (out_dir / "build.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
