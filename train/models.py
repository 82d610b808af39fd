"""Load a base with unlearning adapters: alone, stacked (all active, unmerged) or merged (fp32).

Every adapter's manifest names the base it was trained on (sha256 of weights and tokenizer) and
the adapters that were under it; applying it anywhere else is an `AdapterMismatchError`.
Its own layer ("models" in ARCHITECTURE.md), below benchmarks, train and export, which all load
models; it may import the world (where the tiny base ships) but no measuring or training code.
torch, transformers and peft are imported only inside the functions that load models, so the
torch-free device install can still resolve a base and check an adapter chain.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from orin_unlearn.benchmarks.world import tiny_base_dir
from orin_unlearn.edge.formats import sha256_dir, verify_stage
from orin_unlearn.train.gguf_import import smollm2_dir


class AdapterMismatchError(ValueError):
    """An adapter applied to a base (or on top of adapters) it was not trained on."""


# Named bases -> the function that returns the base's directory (smollm2: converted once, cached).
NAMED_BASES: dict[str, Callable[[], Path]] = {"tiny": tiny_base_dir, "smollm2": smollm2_dir}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def resolve_base(base: str) -> Path:
    """A base model's directory: a named base (`tiny`, `smollm2`), a local directory, or a
    Hugging Face hub id ("org/name", downloaded on a training machine)."""
    if base in NAMED_BASES:
        return Path(NAMED_BASES[base]())
    path = Path(base)
    if base and path.is_dir():
        return path
    if not _HUB_ID.fullmatch(base):
        raise ValueError(
            f"unknown base {base!r}: not a named base ({', '.join(sorted(NAMED_BASES))}), "
            "not a directory, and not a hub id like 'org/name'"
        )
    from huggingface_hub import snapshot_download  # real models on a training machine

    return Path(snapshot_download(base))


def base_digest(base_dir: str | Path) -> dict[str, str]:
    return {
        "weights": sha256_dir(base_dir, "*.safetensors"),
        "tokenizer": sha256_dir(base_dir, "tokenizer*.json"),
    }


def adapter_digest(adapter_dir: str | Path) -> str:
    return sha256_dir(adapter_dir, "adapter_*")


def identity(base_dir: str | Path, adapter_dirs: Sequence[str | Path] = (), dtype: str = "float32") -> dict:
    """What a torch model's outputs depend on: the base's weights and tokenizer, the adapters on
    it in order, the dtype it runs in. The key its cached replies and scores are stored under."""
    return {
        "base": base_digest(base_dir),
        "adapters": [adapter_digest(a) for a in adapter_dirs],
        "dtype": dtype,
    }


def check_chain(base_dir: str | Path, adapter_dirs: list[str | Path], allow_failed: bool = True) -> None:
    """Raise unless each adapter is exactly what its manifest measured (`allow_failed`: also when
    it missed its bars, as measuring it is fine; export and serving pass False) and was trained
    on this base with exactly the adapters before it."""
    digest = base_digest(base_dir)
    for k, adapter in enumerate(adapter_dirs):
        manifest = verify_stage(adapter, allow_failed)
        if manifest is None:  # --trust-unverified lets a stage without a manifest be served, not chained
            raise AdapterMismatchError(f"adapter {adapter} has no manifest naming its base: cannot apply it")
        results = manifest["results"]
        if results["base"] != digest:
            raise AdapterMismatchError(
                f"adapter {adapter} was trained on base {results['base']['weights'][:12]}, "
                f"not on {base_dir} ({digest['weights'][:12]}): refusing to apply it"
            )
        below = [adapter_digest(a) for a in adapter_dirs[:k]]
        if results.get("previous_adapters", []) != below:
            raise AdapterMismatchError(
                f"adapter {adapter} was trained on top of {len(results.get('previous_adapters', []))} adapter(s) "
                f"{results.get('previous_adapters', [])}, but is applied on top of {below}"
            )


def load_model(base_dir: str | Path, dtype: str = "float32", device: str = "cpu"):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base_dir, dtype=getattr(torch, dtype)).to(device).eval()


def apply_adapters(model, adapter_dirs: list[str | Path], mode: str = "merge"):
    """Apply adapters in order: "merge" folds each into the weights (returns a plain model);
    "stack" keeps them as active PEFT adapters."""
    from peft import PeftModel

    if mode not in ("merge", "stack"):
        raise ValueError(f"mode must be 'merge' or 'stack', got {mode!r}")
    if not adapter_dirs:  # an empty chain is the base itself
        return model
    if mode == "merge":
        for adapter in adapter_dirs:
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        return model
    names = [f"a{k}" for k in range(len(adapter_dirs))]
    for k, (name, adapter) in enumerate(zip(names, adapter_dirs, strict=True)):
        if k == 0:
            model = PeftModel.from_pretrained(model, str(adapter), adapter_name=name)
        else:
            model.load_adapter(str(adapter), adapter_name=name)
    model.base_model.set_adapter(names)
    return model


def load_unlearned(
    base: str | Path,
    adapter_dirs: list[str | Path],
    mode: str = "merge",
    dtype: str = "float32",
    device: str = "cpu",
):
    """Base + adapters after checking the chain of hashes."""
    base_dir = resolve_base(str(base))
    check_chain(base_dir, adapter_dirs)
    return apply_adapters(load_model(base_dir, dtype, device), adapter_dirs, mode)
