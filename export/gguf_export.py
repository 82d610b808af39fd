"""Write a (merged) Hugging Face causal LM as a GGUF file, so llama.cpp can serve the unlearned model.

The file is what llama.cpp's own `convert_hf_to_gguf.py` would write, built with the `gguf`
package's `GGUFWriter` (never by hand): llama.cpp's tensor names (`gguf.get_tensor_name_map`), its
architecture metadata, a byte-level BPE ("gpt2") vocabulary with merges, special token ids and the
chat template. Three details decide whether a round trip is exact:

- arch `llama`: q_proj and k_proj (weights and biases) are permuted into llama.cpp's rotary layout,
  as its converter does and transformers' GGUF loader undoes; `qwen2` / `qwen3` are not permuted.
- tied embeddings: no `output.weight` (llama.cpp then reuses `token_embd.weight`).
- `tokenizer.ggml.pre` names llama.cpp's pre-tokenizer regex, read from tokenizer.json's
  pre_tokenizer so llama.cpp splits text as our tokenizer does: plain ByteLevel is "gpt-2" (what
  transformers' GGUF import writes for SmolLM2), Digits + ByteLevel is "smollm" (SmolLM2's own
  repository), Qwen2's Split regex "qwen2", Llama 3's "llama-bpe". An unknown one falls back to
  "gpt-2" (llama) or "qwen2" (qwen2 / qwen3) with a warning; `pre=` overrides.

Norms and biases (1-D) stay float32 in every outtype, as llama.cpp keeps them. `q8_0` and `q4_1`
quantise 2-D weights with `gguf.quants`; in `q4_1` the output matrix (`output.weight`, or
`token_embd.weight` when tied) is Q8_0, as llama-quantize leaves it in SmolLM2's Q4_1 release. A
row length that is not a multiple of the 32-value block falls back to F16, recorded in the facts.

    from orin_unlearn.export.gguf_export import write_gguf
    facts = write_gguf(model, "runs/demo/export/merged", "runs/demo/export/model.q4_1.gguf", "q4_1")
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from orin_unlearn.edge.formats import sha256_file

log = logging.getLogger(__name__)

# transformers model_type -> llama.cpp architecture name
ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
PERMUTED = ("llama",)  # llama.cpp's converter permutes q/k of these architectures
OUTTYPES = ("f32", "f16", "q8_0", "q4_1")
BLOCK = 32  # values per Q8_0 / Q4_1 block
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_REGEX = QWEN2_REGEX.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
KNOWN_PRE: dict[tuple[tuple[Any, ...], ...], str] = {
    (("ByteLevel", True),): "gpt-2",
    (("Digits", True), ("ByteLevel", True)): "smollm",
    (("Split", QWEN2_REGEX), ("ByteLevel", False)): "qwen2",
    (("Split", LLAMA3_REGEX), ("ByteLevel", False)): "llama-bpe",
}
DEFAULT_PRE = {"llama": "gpt-2", "qwen2": "qwen2", "qwen3": "qwen2"}


def gguf_architecture(config: Any) -> str:
    """llama.cpp's architecture name for a transformers config; ValueError if unsupported."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"cannot write a GGUF of model_type {model_type!r}: supported are {', '.join(ARCHITECTURES)}"
        )
    scaling = getattr(config, "rope_scaling", None) or {}
    if scaling.get("rope_type", scaling.get("type", "default")) != "default":
        raise ValueError(f"cannot write a GGUF of a model with rope scaling {scaling!r}: not supported")
    return ARCHITECTURES[model_type]


def permute_qk(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute`: each head's rotary halves interleaved (rows of a weight, or a bias)."""
    if n_head_kv is not None and n_head_kv != n_head:
        n_head = n_head_kv
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _pre_steps(tokenizer_json: dict) -> tuple[tuple[Any, ...], ...]:
    """tokenizer.json's pre_tokenizer as (type, the setting that decides the split) steps."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    items = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    steps: list[tuple[Any, ...]] = []
    for item in items:
        kind = item.get("type")
        if kind == "ByteLevel":
            steps.append((kind, bool(item.get("use_regex", True))))
        elif kind == "Digits":
            steps.append((kind, bool(item.get("individual_digits", False))))
        elif kind == "Split":
            steps.append((kind, (item.get("pattern") or {}).get("Regex")))
        else:
            steps.append((kind,))
    return tuple(steps)


def tokenizer_pre(tokenizer_json: dict, arch: str) -> tuple[str, bool]:
    """(llama.cpp pre-tokenizer name, whether tokenizer.json's pre_tokenizer was recognised)."""
    name = KNOWN_PRE.get(_pre_steps(tokenizer_json))
    return (name, True) if name else (DEFAULT_PRE[arch], False)


def _looks_special(text: str) -> bool:
    return (text.startswith("<|") and text.endswith("|>")) or text in ("<pad>", "<mask>", "<s>", "</s>")


def vocabulary(tokenizer_json: dict, n_vocab: int) -> tuple[list[str], list[int]]:
    """Token texts and llama.cpp token types of a byte-level BPE tokenizer.json, padded to the
    embedding's `n_vocab` rows with unused `[PAD<id>]` tokens (as llama.cpp's converter does)."""
    import gguf

    model = tokenizer_json.get("model") or {}
    byte_level = any(step[0] == "ByteLevel" for step in _pre_steps(tokenizer_json))
    if model.get("type") != "BPE" or not byte_level or "<0x00>" in model.get("vocab", {}):
        raise ValueError(
            f"only byte-level BPE tokenizers can be written (model {model.get('type')!r}, "
            f"pre-tokenizer steps {[step[0] for step in _pre_steps(tokenizer_json)]})"
        )
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [int(gguf.TokenType.UNUSED)] * n_vocab
    entries = [(text, i, int(gguf.TokenType.NORMAL)) for text, i in model["vocab"].items()]
    for added in tokenizer_json.get("added_tokens", []):
        text = added["content"]
        special = added.get("special") or _looks_special(text)
        entries.append(
            (text, added["id"], int(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED))
        )
    for text, i, kind in entries:
        if i >= n_vocab:
            raise ValueError(f"token {text!r} has id {i}, beyond the model's {n_vocab} embedding rows")
        tokens[i], types[i] = text, kind
    return tokens, types


def _hparams(writer: Any, config: Any, arch: str) -> None:
    heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope_theta = getattr(config, "rope_theta", None) or (getattr(config, "rope_parameters", None) or {}).get(
        "rope_theta", 10000.0
    )
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or heads))
    writer.add_rope_freq_base(float(rope_theta))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_key_length(int(head_dim))
    writer.add_value_length(int(head_dim))
    writer.add_vocab_size(int(config.vocab_size))
    if arch == "llama":
        writer.add_rope_dimension_count(int(head_dim))


def _tokenizer(writer: Any, tokenizer_dir: Path, n_vocab: int, arch: str, pre: str | None) -> dict[str, Any]:
    """Add the vocabulary, merges, special ids and chat template; returns facts about them."""
    import gguf

    path = tokenizer_dir / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the GGUF needs the model's tokenizer.json")
    tokenizer_json = json.loads(path.read_text(encoding="utf-8"))
    tokens, types = vocabulary(tokenizer_json, n_vocab)
    detected, known = tokenizer_pre(tokenizer_json, arch)
    if pre is None and not known:
        log.warning("%s: unknown pre_tokenizer; writing llama.cpp's %r for arch %s", path, detected, arch)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre or detected)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(tokenizer_dir, load_merges=True, n_vocab=n_vocab)
    if not special.merges:
        raise ValueError(f"{path} has no BPE merges: llama.cpp cannot tokenize without them")
    for kind in ("bos", "eos"):  # a fast tokenizer adds neither unless its post-processor says so
        special.add_special_token.setdefault(kind, False)
    special.add_to_gguf(writer, quiet=True)
    return {
        "tokenizer_pre": pre or detected,
        "tokenizer_pre_from": "argument" if pre else "tokenizer.json" if known else "architecture default",
        "special_token_ids": dict(special.special_token_ids),
        "chat_template": special.chat_template is not None,
    }


def _tensor_type(name: str, array: np.ndarray, outtype: str, output_matrix: str) -> Any:
    """The GGMLQuantizationType a tensor is written as (see the module docstring)."""
    from gguf import GGMLQuantizationType as Q

    if array.ndim <= 1 or outtype == "f32":
        return Q.F32
    if outtype == "f16":
        return Q.F16
    if array.shape[-1] % BLOCK:
        return Q.F16
    return Q.Q4_1 if outtype == "q4_1" and name != output_matrix else Q.Q8_0


def _encode(array: np.ndarray, qtype: Any) -> np.ndarray:
    import gguf

    if qtype == gguf.GGMLQuantizationType.F32:
        return array.astype(np.float32)
    if qtype == gguf.GGMLQuantizationType.F16:
        return array.astype(np.float16)
    return gguf.quants.quantize(array, qtype)


def _tensors(model: Any, arch: str) -> dict[str, np.ndarray]:
    """llama.cpp name -> float32 array (q/k permuted for arch llama), in the state dict's order."""
    import gguf

    config = model.config
    arch_id = next(key for key, value in gguf.MODEL_ARCH_NAMES.items() if value == arch)
    names = gguf.get_tensor_name_map(arch_id, int(config.num_hidden_layers))
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    out: dict[str, np.ndarray] = {}
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp reuses token_embd.weight
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"tensor {hf_name!r} has no llama.cpp name in arch {arch}")
        array = tensor.detach().to("cpu", torch.float32).numpy()
        if arch in PERMUTED and ".self_attn.q_proj." in hf_name:
            array = permute_qk(array, heads, heads)
        elif arch in PERMUTED and ".self_attn.k_proj." in hf_name:
            array = permute_qk(array, heads, kv_heads)
        out[name] = array
    return out


def write_gguf(
    model: Any,
    tokenizer_dir: str | Path,
    path: str | Path,
    outtype: str = "f16",
    pre: str | None = None,
) -> dict[str, Any]:
    """Write `model` (a Llama, Qwen2 or Qwen3 causal LM) and its tokenizer as a GGUF file, atomically.

    Args:
        model: a transformers PreTrainedModel (e.g. the fp32 merge of `export.merge.merge_fp32`).
        tokenizer_dir: the folder with its tokenizer.json and tokenizer_config.json (and
            chat_template.jinja); a byte-level BPE tokenizer.
        path: the .gguf file to write (replaced if it exists).
        outtype: "f32", "f16", "q8_0" or "q4_1".
        pre: llama.cpp's pre-tokenizer name; None reads it from tokenizer.json.

    Returns:
        Facts: path, outtype, architecture, tensors, bytes, sha256, tensor_types (GGML type ->
        count), fallbacks (tensor -> type, where a quantised outtype could not be used),
        tokenizer_pre, tokenizer_pre_from, special_token_ids, chat_template, vocab_size.

    Raises:
        ValueError: unknown outtype or architecture, rope scaling, a tensor llama.cpp does not know,
            or a tokenizer that is not byte-level BPE.
        FileNotFoundError: no tokenizer.json in `tokenizer_dir`.
    """
    import gguf

    if outtype not in OUTTYPES:
        raise ValueError(f"unknown GGUF outtype {outtype!r}: choose one of {', '.join(OUTTYPES)}")
    config = model.config
    arch = gguf_architecture(config)
    path, tokenizer_dir = Path(path), Path(tokenizer_dir)
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
    }[outtype]
    tensors = _tensors(model, arch)
    output_matrix = "token_embd.weight" if "output.weight" not in tensors else "output.weight"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    try:
        writer.add_type("model")
        writer.add_name(path.stem)
        _hparams(writer, config, arch)
        writer.add_file_type(int(file_type))
        if outtype in ("q8_0", "q4_1"):
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        token_facts = _tokenizer(writer, tokenizer_dir, int(config.vocab_size), arch, pre)
        types: Counter[str] = Counter()
        fallbacks: dict[str, str] = {}
        for name in list(tensors):
            array = tensors.pop(name)  # release each float32 copy once it is encoded
            qtype = _tensor_type(name, array, outtype, output_matrix)
            if outtype in ("q8_0", "q4_1") and array.ndim > 1 and qtype == gguf.GGMLQuantizationType.F16:
                fallbacks[name] = qtype.name
            writer.add_tensor(name, _encode(array, qtype), raw_dtype=qtype)
            types[qtype.name] += 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    if fallbacks:
        log.warning(
            "%d tensor(s) kept in F16: rows not a multiple of %d: %s", len(fallbacks), BLOCK, fallbacks
        )
    facts = {
        "path": str(path),
        "outtype": outtype,
        "architecture": arch,
        "tensors": sum(types.values()),
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "tensor_types": dict(types),
        "fallbacks": fallbacks,
        "vocab_size": int(config.vocab_size),
        **token_facts,
    }
    log.info(
        "wrote %s (%s, %s, %d tensors, %.1f MB)", path, arch, outtype, facts["tensors"], facts["bytes"] / 1e6
    )
    return facts
