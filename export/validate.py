"""Check an exported graph against the torch model it came from.

Two paths are compared on fresh random token prompts and on real chat prompts, batched with left
padding: prefill (the whole prompt, empty past) and decode (prefill all but the last tokens, then
feed them one at a time through the KV cache). Both must give the torch model's last-position
logits within the dtype's tolerances. Greedy replies are compared separately, on the very prompts
the quality gate measures.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from orin_unlearn.edge.backends.ort_backend import OrtDecoder
from orin_unlearn.edge.batching import left_pad, positions_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tolerance:
    """Limits on |onnx - torch| of last-position logits, relative to max |torch logit|, and the
    share of rows whose arg-max token agrees."""

    max_abs: float
    max_rel: float
    min_top1: float


# fp32: the same arithmetic in another order. fp16: 10-bit mantissas in weights and activations
# (measured on the demo model: about 0.02 absolute on logits of magnitude ~15).
TOLERANCES = {
    "float32": Tolerance(max_abs=1e-3, max_rel=1e-4, min_top1=1.0),
    "float16": Tolerance(max_abs=0.25, max_rel=0.02, min_top1=0.95),
}


def random_prompts(
    n: int, low: int, high: int, seed: int, lengths: tuple[int, int] = (4, 48)
) -> list[list[int]]:
    """`n` prompts of uniformly random token ids in [low, high) and random lengths."""
    return sample_prompts(n, range(low, high), seed, lengths)


def sample_prompts(
    n: int, ids: Sequence[int], seed: int, lengths: tuple[int, int] = (4, 48)
) -> list[list[int]]:
    """`n` prompts of token ids drawn uniformly from `ids`, with random lengths in `lengths`.

    Raises:
        ValueError: `ids` is empty.
    """
    if not ids:
        raise ValueError("no token ids to draw random prompts from")
    rng = random.Random(seed)
    return [[rng.choice(ids) for _ in range(rng.randint(*lengths))] for _ in range(n)]


def _torch_last_logits(model: Any, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            position_ids=torch.from_numpy(positions_of(mask)),
            use_cache=False,
        )
    return out.logits[:, -1].float().numpy()


def _decode_last_logits(decoder: OrtDecoder, ids: np.ndarray, mask: np.ndarray, steps: int) -> np.ndarray:
    """Prefill all but the last `steps` columns, then feed those one by one through the cache."""
    positions = positions_of(mask)
    split = ids.shape[1] - steps
    logits, past = decoder.step(
        ids[:, :split], mask[:, :split], positions[:, :split], decoder.empty_past(len(ids))
    )
    for col in range(split, ids.shape[1]):
        logits, past = decoder.step(
            ids[:, col : col + 1], mask[:, : col + 1], positions[:, col : col + 1], past
        )
    return logits[:, -1]


def _errors(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    diff = np.abs(ref - got)
    return {
        "max_abs": float(diff.max()),
        "max_rel": float(diff.max() / max(float(np.abs(ref).max()), 1e-12)),
        "top1": float((ref.argmax(-1) == got.argmax(-1)).mean()),
        "finite": bool(np.isfinite(got).all()),
    }


def logit_parity(
    model: Any,
    decoder: OrtDecoder,
    prompts: list[list[int]],
    pad_id: int,
    batch_size: int = 8,
    decode_steps: int = 3,
) -> dict[str, dict[str, float]]:
    """Errors of the graph's prefill and decode paths against `model` (a fp32 torch LM).

    Prompts shorter than `decode_steps` + 1 tokens only take part in the prefill comparison.
    """
    refs, prefill, decode_ref, decode = [], [], [], []
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        rows = [prompts[i] for i in order[start : start + batch_size]]
        ids, mask = left_pad(rows, pad_id)
        ref = _torch_last_logits(model, ids, mask)
        logits, _ = decoder.step(ids, mask, positions_of(mask), decoder.empty_past(len(rows)))
        refs.append(ref)
        prefill.append(logits[:, -1])
        if min(len(r) for r in rows) > decode_steps:
            decode_ref.append(ref)
            decode.append(_decode_last_logits(decoder, ids, mask, decode_steps))
    out = {"n": len(prompts), "prefill": _errors(np.concatenate(refs), np.concatenate(prefill))}
    if decode:
        out["decode"] = _errors(np.concatenate(decode_ref), np.concatenate(decode))
    return out


def parity_problems(parity: dict[str, Any], tolerance: Tolerance) -> list[str]:
    """Readable lines for every limit a parity result breaks (empty: within tolerance)."""
    problems = []
    for path in ("prefill", "decode"):
        if path not in parity:
            continue
        e = parity[path]
        if not e["finite"]:
            problems.append(f"{path}: non-finite logits")
        if e["max_abs"] > tolerance.max_abs:
            problems.append(f"{path}: max |error| {e['max_abs']:.3g} > {tolerance.max_abs:g}")
        if e["max_rel"] > tolerance.max_rel:
            problems.append(f"{path}: relative error {e['max_rel']:.3g} > {tolerance.max_rel:g}")
        if e["top1"] < tolerance.min_top1:
            problems.append(f"{path}: arg-max agreement {e['top1']:.3f} < {tolerance.min_top1:g}")
    return problems


def greedy_identity(reference: list[str], replies: list[str], prompts: list[str]) -> dict[str, Any]:
    """How many greedy replies equal the reference's, and the first that does not."""
    same = [a == b for a, b in zip(reference, replies, strict=True)]
    first = next((i for i, s in enumerate(same) if not s), None)
    return {
        "n": len(same),
        "identical": sum(same),
        "fraction": sum(same) / len(same) if same else 1.0,
        "first_difference": None
        if first is None
        else {"prompt": prompts[first], "reference": reference[first], "artifact": replies[first]},
    }


def tolerance_dict(dtype: str) -> dict[str, float]:
    return asdict(TOLERANCES[dtype])
