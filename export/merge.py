"""Merge unlearning adapters into their base in fp32, cast, and measure how much of the update survives.

A low-rank unlearning update is often smaller than the rounding step of fp16/bf16 weights: merged
in half precision, or cast after the merge, it can silently vanish and the exported model
remembers what the adapter removed. So the merge runs in fp32, and before the cast every changed
weight entry is checked: does `merged.to(dtype)` still differ from `base.to(dtype)`? The counts go
to `survival.json` and the stage manifest, and a low surviving fraction is logged as a warning.

    orin-unlearn export merge --base runs/demo/base --adapter runs/demo/adapter \
        --out runs/demo/export/merged --dtype float16
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from transformers import PreTrainedModel

from orin_unlearn.edge.formats import (
    make_manifest,
    refuse_foreign,
    stage_dir,
    verify_checkpoint,
    write_json_atomic,
    write_manifest,
)
from orin_unlearn.train import models

log = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
SURVIVAL = "survival.json"
TABLE_ROWS = 20


def check_checkpoint(base_dir: str | Path) -> None:
    """Raise FileNotFoundError or ValueError, naming the file, unless `base_dir` is a Hugging Face
    checkpoint: a config.json that names a `model_type`, and *.safetensors weights."""
    base_dir = Path(base_dir)
    config = base_dir / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config} does not exist: {base_dir} is not a Hugging Face checkpoint")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"{config} is not a Hugging Face config (a JSON object): {e}") from e
    if not model_type:
        raise ValueError(f"{config} names no model_type: not a Hugging Face model config")
    if not any(base_dir.glob("*.safetensors")):
        raise FileNotFoundError(f"{base_dir} holds no *.safetensors weights")
    verify_checkpoint(base_dir)  # a base of ours (imported, merged) must be what it was measured as


def merge_fp32(base_dir: str | Path, adapter_dirs: list[str | Path]) -> PreTrainedModel:
    """Load the base in float32 and fold each adapter into its weights, in order.

    Raises FileNotFoundError or ValueError when `base_dir` is not a checkpoint, and
    AdapterMismatchError (or ManifestError) unless the adapters were trained on this base, each on
    top of exactly the adapters before it.
    """
    check_checkpoint(base_dir)
    models.check_chain(base_dir, adapter_dirs, allow_failed=False)  # never merge a failed adapter
    model = models.load_model(base_dir, "float32")
    return models.apply_adapters(model, adapter_dirs, mode="merge")


def survival(
    base_state: dict[str, torch.Tensor], merged_state: dict[str, torch.Tensor], dtype: torch.dtype
) -> dict[str, Any]:
    """Count the entries of the adapters' update that are still visible after casting to `dtype`.

    An entry is a delta entry where the fp32 merged value differs from the fp32 base value; it
    survives when `merged.to(dtype) != base.to(dtype)`. Tensors with no delta entry are not listed.

    Args:
        base_state: the base's weights, by name.
        merged_state: the merged weights, same names and shapes.
        dtype: the dtype the merged model will be stored in.

    Returns:
        {"dtype", "delta_entries", "surviving", "fraction", "tensors": {name: {"delta_entries",
        "surviving", "fraction", "max_abs_delta"}}}; fraction is 1.0 when there is no delta.
    """
    tensors: dict[str, dict[str, Any]] = {}
    for name, merged in merged_state.items():
        if not merged.is_floating_point():
            continue
        if name not in base_state or base_state[name].shape != merged.shape:
            raise ValueError(f"merged tensor {name!r} {tuple(merged.shape)} has no match in the base")
        base = base_state[name].float()
        merged = merged.float()
        changed = merged != base
        delta_entries = int(changed.sum())
        if delta_entries == 0:
            continue
        surviving = int((changed & (merged.to(dtype) != base.to(dtype))).sum())
        tensors[name] = {
            "delta_entries": delta_entries,
            "surviving": surviving,
            "fraction": surviving / delta_entries,
            "max_abs_delta": float((merged - base).abs().max()),
        }
    total = sum(t["delta_entries"] for t in tensors.values())
    kept = sum(t["surviving"] for t in tensors.values())
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "delta_entries": total,
        "surviving": kept,
        "fraction": kept / total if total else 1.0,
        "tensors": tensors,
    }


def merge_and_cast(
    base_dir: str | Path,
    adapter_dirs: list[str | Path],
    out_dir: str | Path,
    dtype: str = "float16",
    warn_below: float = 0.5,
) -> dict[str, Any]:
    """Merge in fp32, measure the update's survival in `dtype`, cast, and write the merged stage.

    Returns:
        The survival results (see `survival`).

    Raises:
        ValueError: an unknown `dtype` or a `warn_below` outside [0, 1].
        AdapterMismatchError: adapters trained on another base or in another order.
    """
    _check_args(dtype, warn_below)
    refuse_foreign(out_dir, "merged")  # before the merge; checked again when it is replaced
    model = merge_fp32(base_dir, adapter_dirs)
    base_state = models.load_model(base_dir, "float32").state_dict()
    return write_merged(model, base_state, base_dir, adapter_dirs, out_dir, dtype, warn_below)


def write_merged(
    model: PreTrainedModel,
    base_state: dict[str, torch.Tensor],
    base_dir: str | Path,
    adapter_dirs: list[str | Path],
    out_dir: str | Path,
    dtype: str = "float16",
    warn_below: float = 0.5,
    extra_results: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure survival of the fp32-merged `model`'s update in `dtype` and write the merged stage.

    `out_dir` is replaced atomically: a Hugging Face checkpoint in `dtype` (safetensors), the base's
    tokenizer files, `survival.json` and `manifest.json` (which also records `extra_results`). A
    surviving fraction below `warn_below` is logged as a warning. `model` itself stays in fp32.
    """
    _check_args(dtype, warn_below)
    base_dir = Path(base_dir)
    results = survival(base_state, model.state_dict(), DTYPES[dtype])
    _log_survival(results, warn_below)
    digest = models.base_digest(base_dir)
    inputs = {
        "base": digest["weights"],
        "base_tokenizer": digest["tokenizer"],
        "adapters": [models.adapter_digest(a) for a in adapter_dirs],
    }
    config = {"dtype": dtype, "merge_dtype": "float32", "warn_below": warn_below}
    summary = results | (extra_results or {})
    cast = copy.deepcopy(model).to(DTYPES[dtype])
    with stage_dir(out_dir, "merged") as tmp:
        cast.save_pretrained(tmp, safe_serialization=True)
        copy_tokenizer(base_dir, tmp)
        write_json_atomic(tmp / SURVIVAL, results)
        write_manifest(tmp, make_manifest("merged", inputs, config, summary, ok=True))
    log.info("merged model written to %s (%s)", out_dir, dtype)
    return results


def copy_tokenizer(source: Path, dest: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, dest / name)


def _check_args(dtype: str, warn_below: float) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if not 0.0 <= warn_below <= 1.0:
        raise ValueError(f"warn_below must be in [0, 1], got {warn_below}")


def _log_survival(results: dict[str, Any], warn_below: float) -> None:
    summary = (
        f"{results['fraction']:.1%} of the adapters' update survives {results['dtype']} "
        f"({results['surviving']} of {results['delta_entries']} changed entries; warn below {warn_below:.0%})"
    )
    if results["delta_entries"] == 0:
        log.warning("-[x] the adapters change no weight at all: nothing to unlearn")
    elif results["fraction"] < warn_below:
        log.warning("-[x] %s: the cast erases the unlearning; keep float32 or rescale the update", summary)
    else:
        log.info("-[✓] %s", summary)


def print_table(results: dict[str, Any], console: Console | None = None) -> None:
    """The tensors that lose most of their update first, at most TABLE_ROWS of them."""
    table = Table(title=f"adapter update surviving {results['dtype']}")
    for column in ("tensor", "delta entries", "surviving", "fraction", "max |delta|"):
        table.add_column(column, justify="left" if column == "tensor" else "right", overflow="fold")
    rows = sorted(results["tensors"].items(), key=lambda item: (item[1]["fraction"], item[0]))
    for name, t in rows[:TABLE_ROWS]:
        row = (t["delta_entries"], t["surviving"], f"{t['fraction']:.1%}", f"{t['max_abs_delta']:.2e}")
        table.add_row(name, *map(str, row))
    if len(rows) > TABLE_ROWS:
        table.caption = f"{len(rows) - TABLE_ROWS} more tensors in {SURVIVAL}"
    (console or Console()).print(table)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn export merge", description=__doc__)
    parser.add_argument("--base", required=True, help="base Hugging Face checkpoint folder")
    parser.add_argument(
        "--adapter", action="append", required=True, help="adapter folder; repeat in training order"
    )
    parser.add_argument("--out", required=True, help="merged stage folder to write (replaced atomically)")
    parser.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    parser.add_argument("--warn-below", type=float, default=0.5, help="warn under this surviving fraction")
    args = parser.parse_args(argv)
    missing = [p for p in [args.base, *args.adapter] if not Path(p).is_dir()]
    if missing:
        raise NotADirectoryError(f"not a folder: {', '.join(missing)}")
    results = merge_and_cast(args.base, args.adapter, args.out, args.dtype, args.warn_below)
    print_table(results)
    print(json.dumps(results))
    return 0
