"""Recipe: activation-guided masked LoRA unlearning, top to bottom: setup, probe, score, mask,
train (the configured method, from the registry in train/unlearn/methods/), save, measure. Runs the
same code on the shipped tiny model (CPU) and on Qwen2.5-3B (GPU), and under `accelerate launch`
(the model and optimizer go through `Accelerator.prepare`).

    orin-unlearn unlearn --config train/configs/demo_tiny.yaml --out runs/demo
"""

from __future__ import annotations

import json
import logging
import random
import resource
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from rich.progress import Progress
from safetensors.torch import load_file, save_file

from orin_unlearn.benchmarks.behaviour import behaviour
from orin_unlearn.benchmarks.drift import Drift
from orin_unlearn.benchmarks.forgetting import with_kept
from orin_unlearn.benchmarks.knowledge import knowledge
from orin_unlearn.benchmarks.perplexity import Corpus
from orin_unlearn.benchmarks.world.stage import load_items
from orin_unlearn.edge.answers import BackendChat
from orin_unlearn.edge.backends.torch_backend import TorchBackend
from orin_unlearn.edge.formats import (
    make_manifest,
    refuse_foreign,
    stage_dir,
    write_json_atomic,
    write_manifest,
)
from orin_unlearn.edge.progress import progress_bar
from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train import models
from orin_unlearn.train.chat_data import collate, encode_example
from orin_unlearn.train.unlearn import bars, masked_lora, methods, model_access, probe, reference, scores
from orin_unlearn.train.unlearn import mask as masks
from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.data import build_data, sample
from orin_unlearn.train.unlearn.evaluate import measure, other_films
from orin_unlearn.train.unlearn.session import Session, autocast

log = logging.getLogger(__name__)


def distributed(s: Session):
    """accelerate's state of this process: the only one, or one of `accelerate launch`'s. There the
    main process computes and writes the probe, scores, mask, base measurement and adapter; the
    others read its caches after a barrier and return its results."""
    from accelerate import PartialState

    return PartialState(cpu=s.device == "cpu")


def setup(cfg: UnlearnConfig, run: str | Path) -> Session:
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    base_dir = models.resolve_base(cfg.base)
    models.check_chain(base_dir, cfg.previous_adapters)
    model = models.apply_adapters(
        models.load_model(base_dir, cfg.dtype, device), cfg.previous_adapters, "merge"
    )
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()  # else LoRA weights get no gradient under checkpointing
    for p in model.parameters():
        p.requires_grad_(False)
    return Session(cfg, Path(run), base_dir, ChatTokenizer(base_dir), model, build_data(cfg, run), device)


def probe_key(s: Session) -> dict:
    """What the probe and scores depend on; cached files are reused only when this matches."""
    cfg = s.cfg
    return {
        "base": models.base_digest(s.base_dir),
        "previous": [models.adapter_digest(a) for a in cfg.previous_adapters],
        "concept": cfg.concept,
        "seed": cfg.seed,
        "probe_max_prompts": cfg.probe_max_prompts,
        "retain_examples": cfg.retain_examples,
        "retain_twins": cfg.retain_twins,
        "neighbour_fraction": cfg.neighbour_fraction,
        "dtype": cfg.dtype,
        "autocast": cfg.autocast,
        "contrast_against": cfg.contrast_against,
        "retain_target": cfg.retain_target,
        "contrast_positions": cfg.contrast_positions,
    }


def _cached(path: Path, s: Session) -> dict[str, torch.Tensor] | None:
    key_path = path.with_suffix(".key.json")
    if path.is_file() and key_path.is_file() and json.loads(key_path.read_text()) == probe_key(s):
        return load_file(str(path))
    return None


def stage_probe(s: Session, progress: Progress) -> dict[str, torch.Tensor]:
    """Activation statistics of forget / neighbour / retain (cached in probe/activations.safetensors)."""
    path = s.run / "probe" / "activations.safetensors"
    if (cached := _cached(path, s)) is not None:
        return cached
    rng = random.Random(s.cfg.seed)
    cap = s.cfg.probe_max_prompts
    sets = {
        "forget": s.data.forget_reference[:cap],
        "neighbour": sample(s.data.neighbour, cap, rng),
        "retain": sample(s.data.retain, cap, rng),
    }
    sets = {
        name: examples for name, examples in sets.items() if examples
    }  # your own set may have no neighbours
    subjects = None
    if s.cfg.contrast_positions == "subject":
        subjects = {name: [named_films(s, m, name == "forget") for m, _ in ex] for name, ex in sets.items()}
    stats = probe.probe(s.model, s.tokenizer, sets, s.cfg.probe_batch_size, progress, subjects)
    _save_tensors(path, stats, probe_key(s))
    return stats


def named_films(s: Session, messages, forget: bool) -> list[str]:
    """The strings naming a film in a chat: the concept's titles and aliases for a forget prompt,
    every catalogue film it names otherwise."""
    if forget:  # a concept of your own prompts has no films: its name is what they mention
        return [n for f in s.data.concept.films for n in f.names] or [s.data.concept.name]
    text = "\n".join(m["content"] for m in messages)
    return [n for f in s.data.catalogue.find_titles(text) for n in f.names]


def _probed(stats: dict, against: list[str]) -> tuple[str, ...]:
    missing = [name for name in against if f"{name}.count" not in stats]
    if missing:
        raise ValueError(
            f"contrast_against names {missing}, but the run has no such prompts to contrast with"
        )
    return tuple(against)


def stage_score(s: Session, stats: dict, progress: Progress) -> dict[str, torch.Tensor]:
    path = s.run / "probe" / "scores.safetensors"
    if (cached := _cached(path, s)) is not None:
        return cached
    with autocast(s):
        out = scores.gradient_scores(
            s.model, s.tokenizer, s.data.forget_reference, s.cfg.probe_batch_size, progress
        )
    out["contrast"] = scores.contrast_scores(
        stats, against=_probed(stats, s.cfg.contrast_against), positions=s.cfg.contrast_positions
    )
    _save_tensors(path, out, probe_key(s))
    return out


def stage_mask(s: Session, score: dict[str, torch.Tensor]) -> dict[int, torch.Tensor]:
    cfg = s.cfg
    signals = tuple(cfg.mask_signals)
    mask = masks.build_mask(
        score, cfg.num_layers, cfg.top_k, cfg.mass_fraction, cfg.layers or None, cfg.layer_ranking, signals
    )
    if not distributed(s).is_main_process:
        return mask
    probe_dir = s.run / "probe"
    masks.save_mask(probe_dir / "mask.safetensors", mask, score["saliency"].shape[1])
    scores.plot_heatmaps(score, probe_dir / "heatmaps", mask)
    summary = masks.summary(mask, score)
    results = {
        "layers": sorted(mask),
        "mask": summary,
        "layer_ranking": cfg.layer_ranking,
        "layer_strength": masks.layer_strength(
            masks.combine(score, per_layer=cfg.layer_ranking == "share", signals=signals), cfg.top_k
        ).tolist(),
    }
    write_manifest(probe_dir, make_manifest("probe", {}, cfg.to_dict(), results, True))
    return mask


def save_adapter(s: Session, model, mask: dict, results: dict) -> Path:
    out = s.run / "adapter"
    with stage_dir(out, "adapter") as tmp:
        model.save_pretrained(str(tmp))
        masks.save_mask(
            tmp / "mask.safetensors",
            mask,
            model_access.base_weight(model_access.down_proj(model, next(iter(mask)))).shape[1],
        )
        score_path = s.run / "probe" / "scores.safetensors"
        if score_path.is_file():
            (tmp / "scores.safetensors").write_bytes(score_path.read_bytes())
        save_reference_logits(s, model, tmp / "reference_logits.safetensors")
        results["adapter_sha256"] = models.adapter_digest(tmp)
        write_manifest(
            tmp,
            make_manifest(
                "adapter", {"base": results["base"]["weights"]}, s.cfg.to_dict(), results, results["ok"]
            ),
        )
    return out


@torch.no_grad()
def save_reference_logits(s: Session, model, path: Path) -> None:
    """Logits of the training-time model on a few forget and retain prompts, so anyone can check
    that a plain `PeftModel.from_pretrained` reload computes the same function."""
    examples = s.data.forget_reference[:2] + s.data.retain[:2]
    batch = collate([encode_example(s.tokenizer, m, r) for m, r in examples], s.tokenizer.pad_token_id)
    device = next(model.parameters()).device
    logits = model(
        input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
    ).logits
    save_file(
        {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "logits": logits.float().cpu(),
        },
        str(path),
    )


def run_unlearning(
    cfg: UnlearnConfig,
    run: str | Path,
    save: bool = True,
    until: str = "train",
    after_training: Callable[[torch.nn.Module, ChatTokenizer], dict] | None = None,
) -> dict:
    """Run the stages up to `until` (probe | score | mask | train); returns the results.
    `after_training(model, tokenizer)` may add measurements of the trained model (e.g. attacks);
    its dict goes into the results under "after_training"."""
    start = time.time()
    if save:
        refuse_foreign(Path(run) / "adapter", "adapter")  # before minutes of training
    s = setup(cfg, run)
    state = distributed(s)
    (s.run / "probe").mkdir(parents=True, exist_ok=True)
    with progress_bar(disable=not state.is_main_process) as progress:
        with state.main_process_first():  # the other processes then read its cache
            reference.stage_retain_targets(s, progress)
            stats = stage_probe(s, progress)
        if until == "probe":
            return {"stage": "probe"}
        with state.main_process_first():
            score = stage_score(s, stats, progress)
        if until == "score":
            return {"stage": "score"}
        mask = stage_mask(s, score)
        if until == "mask":
            return {"stage": "mask", "layers": sorted(mask)}
        with state.main_process_first():
            items, items_sha = load_items(s.run)
            before, base_replies = reference.measure_base(s, progress)
            base_bank = reference.base_scores(s, items)
            before = replace(before, knowledge=knowledge(items, base_bank, None, cfg.seed, items_sha))
        digests = model_access.weight_digests(s.model)
        method = methods.METHODS[cfg.method]
        trained = method.train(s, mask, stats, score, progress)
    model, history, mask = trained.model, trained.history, trained.mask
    if not state.is_main_process:  # the main process measures and saves; the others return its results
        return share_results(state, None)
    results: dict = {
        "concept": s.data.concept.name,
        "method": cfg.method,
        "layers": sorted(mask),
        "base": models.base_digest(s.base_dir),
        "previous_adapters": [models.adapter_digest(a) for a in cfg.previous_adapters],
        "parameters": masked_lora.trainable_parameters(model, mask if cfg.masked else None),
        "loss_first": history[0] if history else {},
        "loss_last": history[-1] if history else {},
        **trained.results,
    }
    if method.adapter:
        changed = [k for k, v in model_access.weight_digests(model).items() if digests.get(k) != v]
        if changed:
            raise RuntimeError(f"base weights changed during adapter training: {changed[:5]}")
        results["base_untouched"] = True
    if cfg.masked:
        results["outside_mask_max"] = masked_lora.outside_mask_max(model, mask)
    results["before"] = before.to_json()
    with progress_bar() as progress:
        chat = BackendChat(TorchBackend(model), s.tokenizer)
        after, replies = measure(chat, s.data, cfg, progress, "evaluate after")
    after_bank = reference.model_scores(model, s, items)
    bank = knowledge(items, after_bank, base_bank, cfg.seed, items_sha)
    moved = behaviour(other_films(base_replies), other_films(replies), s.data.catalogue, cfg.refusal)
    drifts = measure_drift(s, model)
    after = replace(after, drift=drift_json(drifts), knowledge=bank, behaviour=moved)
    after = with_kept(before, after)
    results["after"] = after.to_json()
    results["wall_s"] = round(time.time() - start, 1)
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux: KiB
    if after_training is not None:
        results["after_training"] = after_training(model, s.tokenizer)
    results["bars"] = bars.verdict(cfg.bars, before, after)
    results["ok"] = results["bars"]["ok"]
    if state.num_processes > 1:
        results["processes"] = state.num_processes
    if save and method.adapter:
        reference.remember(s, save_adapter(s, model, mask, results), items, after_bank, replies, drifts)
    return share_results(state, results)


def share_results(state, results: dict | None) -> dict:
    """The main process's results, on every process of a distributed run."""
    if state.num_processes == 1:
        return results
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([results])[0]


def measure_drift(s: Session, model) -> list[tuple[Corpus, Drift]]:
    """KL(base || model) per token and perplexity on the generic chats outside the film world
    (benchmarks/drift.py), then on the held-out film chats; the base is the same model with its
    adapters switched off. Each with the corpus it was taken on; none for methods that rewrite
    the base in place (full)."""
    from orin_unlearn.benchmarks import drift, perplexity
    from orin_unlearn.benchmarks.world.generic import generic_prompts

    if not hasattr(model, "disable_adapter"):
        return []
    pad = s.tokenizer.pad_token_id
    score = perplexity.torch_scorer(model, pad)

    def base_score(prompts: list[list[int]], continuations: list[list[int]]):
        with model.disable_adapter():
            return score(prompts, continuations)

    out = []
    for name, prompts in (("generic", generic_prompts()), ("film", s.data.film_chats)):
        if prompts:
            got = drift.general_drift(base_score, score, s.tokenizer, prompts)
            log.info("drift on %d %s chats: KL %.4f nats/token", got.n, name, got.kl_per_token)
            out.append((drift.drift_corpus(s.tokenizer, prompts), got))
    return out


def drift_json(drifts: list[tuple[Corpus, Drift]]) -> dict | None:
    """As the results store it: the generic chats' drift, with the film chats' KL beside it."""
    if not drifts:
        return None
    out = drifts[0][1].to_json()
    if len(drifts) > 1:
        out |= {"film_kl": drifts[1][1].kl_per_token, "film_chats": drifts[1][1].n}
    return out


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], key: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)
    write_json_atomic(path.with_suffix(".key.json"), key)
