"""`orin-unlearn bench peer`: our runtime against llama.cpp on the same token ids, threads and
token counts. The engines take turns on each prompt, every repeat (ours, llama.cpp, ours-raw, ...):

- ours: the ONNX stage through `Generator` on `OrtBackend`; prefill is its time to first token;
- llama.cpp: a GGUF through llama-cpp-python: `Llama.eval(prompt)`, then a plain Python loop of
  arg-max and `Llama.eval([token])` (how issue 19 measured it);
- ours-raw: that same loop straight on our backend (`bench decode`'s raw loop).

Each run prefills exactly N tokens (a passage in the stage's tokenizer, repeated and cut; llama.cpp
gets the same ids; whether its tokenizer agrees is recorded), then decodes `--decode-tokens` greedy
tokens. Rates are each engine's best run (load only slows a run down); ratios, from the best runs
and as the median over paired runs (same repeat and context), read > 1 when ours is better:
decode ours / llama.cpp tok/s, prefill llama.cpp / ours ms, memory llama.cpp / ours MiB. Memory:
each engine in a fresh child process, its peak resident set (VmHWM) after loading and one run at
the largest context, less its resident set (VmRSS) before importing the engine (Python, numpy);
llama.cpp maps the GGUF, so the weight pages it touched count.

    orin-unlearn bench peer --onnx runs/smollm2/export/onnx-int4
    orin-unlearn bench peer --onnx STAGE --gguf model.Q4_1.gguf --threads 4 --contexts 64,256,1024

llama.cpp is optional (`pip install -e '.[peer]'`). `--out` (default runs/peer) gets peer.json and
peer.png; the last stdout line is the whole result as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from orin_unlearn.benchmarks import plots
from orin_unlearn.edge.formats import write_json_atomic
from orin_unlearn.edge.sampling import SamplingParams

log = logging.getLogger(__name__)

OURS, LLAMA, RAW = "ours", "llama.cpp", "ours-raw"
ENGINES = (OURS, LLAMA, RAW)  # the order of the turns: the compared pairs run back to back
INSTALL = (
    "llama.cpp is not installed: pip install -e '.[peer]' (or pip install 'llama-cpp-python>=0.3.16'; "
    "it builds from source for several minutes and needs a C++ compiler)"
)
PASSAGE = (
    "A thief who steals secrets from the minds of sleeping people is offered a last job: to plant an idea "
    "instead of taking one. He builds a dream inside a dream, learns that time runs slower on every level "
    "down, and keeps meeting the memory of his late wife. Critics still argue about the spinning top."
)
BROKEN = (  # llama.cpp's native build can use instructions (AMX) a VM does not allow
    "rebuild it for this CPU: CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --force-reinstall --no-cache-dir "
    "llama-cpp-python"
)
CHILD = "from orin_unlearn.benchmarks.peer_bench import memory_child; memory_child()"
MEMORY_METHOD = "a fresh child per engine: VmHWM after load + one largest run, less VmRSS before its import"
COLUMNS = ("context", "engine", "prefill ms", "decode tok/s", "prefill x best/paired", "decode x best/paired")
PANELS = ("decode tokens/s (higher is better)", "prefill ms (lower is better)")
Clock = Callable[[], float]
Prompts = dict[int, list[int]]  # context -> its prompt's token ids


@dataclass(frozen=True)
class Timing:
    """One run of an engine: prefill seconds, then decode tokens/s."""

    prefill_s: float
    decode_tokens_per_s: float


class Engine(Protocol):
    name: str

    def run(self, ids: list[int], steps: int) -> Timing:
        """Prefill `ids` (timed), then `steps` greedy decode steps (timed)."""


@dataclass(frozen=True)
class Run:
    repeat: int
    context: int
    engine: str
    prefill_ms: float
    decode_tokens_per_s: float


@dataclass
class LoopEngine:
    """The raw loop, the same for our backend and for llama.cpp: `reset` (untimed), prefill, then `steps`
    times the arg-max of the last logits fed back; nothing else (no sampling, text or stop tokens)."""

    name: str
    prefill: Callable[[list[int]], np.ndarray]
    step: Callable[[int], np.ndarray]
    reset: Callable[[], Any] = lambda: None
    clock: Clock = time.perf_counter

    def run(self, ids: list[int], steps: int) -> Timing:
        self.reset()
        start = self.clock()
        logits = self.prefill(ids)
        prefilled = self.clock()
        for _ in range(steps):
            logits = self.step(int(np.argmax(logits)))
        return Timing(prefilled - start, steps / (self.clock() - prefilled))


def raw_engine(backend: Any, clock: Clock = time.perf_counter) -> LoopEngine:
    """Our backend's raw loop (`OrtBackend.prefill` / `decode`)."""
    return LoopEngine(RAW, backend.prefill, backend.decode, clock=clock)


def llama_engine(llm: Any, logits: Callable[[], np.ndarray], clock: Clock = time.perf_counter) -> LoopEngine:
    """llama-cpp-python's `Llama.eval` loop; `logits()` reads the last position's logits."""

    def prefill(ids: list[int]) -> np.ndarray:
        llm.eval(ids)
        return logits()

    def step(token: int) -> np.ndarray:
        llm.eval([token])
        return logits()

    return LoopEngine(LLAMA, prefill, step, reset=llm.reset, clock=clock)


@dataclass
class GeneratorEngine:
    """Ours as served: one greedy request through the `Generator`, timed by its latency record."""

    generator: Any
    name: str = OURS

    def run(self, ids: list[int], steps: int) -> Timing:
        params = SamplingParams(max_new_tokens=steps + 1, ignore_eos=True)
        done = self.generator.generate_ids(list(ids), params)
        if done.completion_tokens != steps + 1 or not done.latency.get("decode_tokens_per_s"):
            raise RuntimeError(f"the Generator made {done.completion_tokens} tokens, not {steps + 1}")
        return Timing(done.latency["ttft_s"], done.latency["decode_tokens_per_s"])


def schedule(engines: Sequence[str], contexts: Sequence[int], repeats: int) -> list[tuple[int, int, str]]:
    """(repeat, context, engine) in the order they run: every repeat, every context, the engines
    in turn (A, B, A, B ...), so the runs that are compared follow each other."""
    return [(r, c, e) for r in range(repeats) for c in contexts for e in engines]


def interleave(
    engines: Sequence[Engine], prompts: Prompts, steps: int, repeats: int, done: Callable | None = None
) -> list[Run]:
    """Every run of `schedule`, measured; `done(run)` after each (a progress bar)."""
    by_name = {e.name: e for e in engines}
    runs = []
    for repeat, context, name in schedule(list(by_name), list(prompts), repeats):
        timing = by_name[name].run(prompts[context], steps)
        runs.append(Run(repeat, context, name, timing.prefill_s * 1e3, timing.decode_tokens_per_s))
        if done is not None:
            done(runs[-1])
    return runs


def ratios(ours: Sequence[Run], theirs: Sequence[Run]) -> dict[str, float]:
    """Ours against the reference, > 1 when ours is faster: decode ours / theirs tokens/s, prefill
    theirs / ours ms; from each side's best run, and as the median over runs of the same repeat."""
    theirs_at = {r.repeat: r for r in theirs}
    pairs = [(o, theirs_at[o.repeat]) for o in ours if o.repeat in theirs_at]
    if not pairs:
        raise ValueError("no paired runs: the engines ran in different repeats")
    decode = [o.decode_tokens_per_s / t.decode_tokens_per_s for o, t in pairs]
    prefill = [t.prefill_ms / o.prefill_ms for o, t in pairs]
    best_decode = max(o.decode_tokens_per_s for o in ours) / max(t.decode_tokens_per_s for t in theirs)
    best_prefill = min(t.prefill_ms for t in theirs) / min(o.prefill_ms for o in ours)
    return {
        "decode_best": round(best_decode, 4),
        "decode_paired_median": round(statistics.median(decode), 4),
        "prefill_best": round(best_prefill, 4),
        "prefill_paired_median": round(statistics.median(prefill), 4),
    }


def summarise(runs: Sequence[Run], reference: str = LLAMA) -> list[dict[str, Any]]:
    """Per context: each engine's best and median run, and each other engine's `ratios` to
    `reference`. Contexts and engines keep the order they ran in."""
    contexts = list(dict.fromkeys(r.context for r in runs))
    engines = list(dict.fromkeys(r.engine for r in runs))
    rows = []
    for context in contexts:
        of = {e: [r for r in runs if r.context == context and r.engine == e] for e in engines}
        stats = {
            e: {
                "prefill_ms_best": round(min(r.prefill_ms for r in rs), 3),
                "prefill_ms_median": round(statistics.median(r.prefill_ms for r in rs), 3),
                "decode_tokens_per_s_best": round(max(r.decode_tokens_per_s for r in rs), 2),
                "decode_tokens_per_s_median": round(statistics.median(r.decode_tokens_per_s for r in rs), 2),
            }
            for e, rs in of.items()
        }
        vs = {e: ratios(of[e], of[reference]) for e in engines if e != reference and reference in of}
        rows.append({"context": context, "engines": stats, "ratios": vs})
    return rows


def build_result(runs: Sequence[Run], setup: dict[str, Any], memory: dict[str, Any]) -> dict[str, Any]:
    """The JSON result: `setup` (paths, versions, threads, lengths), the per-context summary,
    the memory of each engine and every run, in the order it ran."""
    return {
        "bench": "peer",
        **setup,
        "engines": list(dict.fromkeys(r.engine for r in runs)),
        "reference": LLAMA,
        "by_context": summarise(runs, LLAMA),
        "memory": memory,
        "runs": [
            asdict(r)
            | {"prefill_ms": round(r.prefill_ms, 3), "decode_tokens_per_s": round(r.decode_tokens_per_s, 2)}
            for r in runs
        ],
    }


def passage_ids(encode: Callable[[str], list[int]], n: int, passage: str = PASSAGE) -> tuple[str, list[int]]:
    """(text, its first `n` token ids): the passage repeated until it is at least `n` tokens long."""
    text = " ".join([passage] * (math.ceil(n / max(1, len(encode(passage)))) + 1))
    ids = encode(text)
    if len(ids) < n:
        raise ValueError(f"{len(ids)} tokens from the repeated passage, fewer than the {n} asked for")
    return text, ids[:n]


def status_kb(field: str, text: str | None = None) -> int | None:
    """A kB field of /proc/self/status (VmRSS, VmHWM), or None off Linux."""
    status = Path("/proc/self/status")
    if text is None and not status.is_file():
        return None
    for line in (status.read_text(encoding="utf-8") if text is None else text).splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def memory_entry(child: dict[str, Any]) -> dict[str, Any]:
    """MiB from a child's kB readings: its baseline, its peak, and the engine's share (the difference)."""
    baseline, peak = child.get("baseline_kb"), child.get("peak_kb")
    if baseline is None or peak is None:
        return {"error": "no /proc/self/status to read (Linux only)"}
    mib = {"baseline_mib": baseline, "peak_mib": peak, "engine_mib": peak - baseline}
    return {key: round(kb / 1024, 1) for key, kb in mib.items()}


def open_engine(spec: dict[str, Any]) -> Engine:
    """The engine a memory child measures. Ours opens the folder unverified: the parent verified it."""
    if spec["engine"] == LLAMA:
        llm, logits = open_llama(require_llama(), Path(spec["path"]), spec["threads"], spec["n_ctx"])
        return llama_engine(llm, logits)
    from orin_unlearn.edge.backends.ort_backend import OrtBackend
    from orin_unlearn.edge.generator import Generator
    from orin_unlearn.edge.tokenizer import ChatTokenizer

    backend = OrtBackend.unverified(spec["path"], threads=spec["threads"])
    return GeneratorEngine(Generator(backend, ChatTokenizer(spec["path"])))


def memory_child() -> None:
    """The child: spec on stdin; resident set, load, one run, peak; the readings as one JSON line."""
    spec = json.loads(sys.stdin.read())
    baseline = status_kb("VmRSS")
    open_engine(spec).run(spec["ids"], spec["steps"])
    print(json.dumps({"baseline_kb": baseline, "peak_kb": status_kb("VmHWM")}))


def measure_memory(spec: dict[str, Any], timeout_s: float = 900) -> dict[str, Any]:
    """`memory_entry` of one engine (`spec`: engine, path, threads, n_ctx, ids, steps) in a fresh child."""
    child = [sys.executable, "-c", CHILD]
    proc = subprocess.run(child, input=json.dumps(spec), capture_output=True, text=True, timeout=timeout_s)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode < 0:  # a signal: SIGILL from a llama.cpp built for another CPU, SIGKILL from OOM
        return {"error": f"killed by {signal.Signals(-proc.returncode).name}"}
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {"error": last}
    return memory_entry(json.loads(lines[-1]))


def require_llama() -> Any:
    """The `llama_cpp` module, or an ImportError whose one line says how to install it."""
    try:
        import llama_cpp
    except (ImportError, OSError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImportError(f"{INSTALL} ({reason})") from e
    return llama_cpp


def open_llama(lib: Any, gguf: Path, threads: int, n_ctx: int) -> tuple[Any, Callable[[], np.ndarray]]:
    """(the `Llama`, a reader of its last position's logits). With logits_all=False llama-cpp-python
    keeps no scores, so the logits are read from llama.cpp's own buffer (a view, no copy)."""
    settings = {"n_threads": threads, "n_threads_batch": threads, "n_ctx": n_ctx, "n_batch": 512}
    llm = lib.Llama(model_path=str(gguf), **settings, verbose=False, logits_all=False)
    vocab = llm.n_vocab()

    def logits() -> np.ndarray:
        return np.ctypeslib.as_array(lib.llama_get_logits_ith(llm.ctx, -1), shape=(vocab,))

    return llm, logits


def check_inputs(onnx: Path, gguf: Path) -> None:
    """The cheap checks, before anything loads: the stage folder and the GGUF file exist."""
    if not onnx.is_dir():
        raise FileNotFoundError(f"--onnx {onnx}: no such folder (an ONNX stage: model.onnx, config...)")
    if not gguf.is_file():
        raise FileNotFoundError(f"--gguf {gguf}: no such file")
    with gguf.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ValueError(f"--gguf {gguf}: not a GGUF file (it starts with {magic!r}, not b'GGUF')")


def describe(onnx: Path, gguf: Path, llm: Any, lib: Any) -> dict[str, Any]:
    """What was compared: the stage (its manifest's config.variant), the GGUF (its quantisation,
    from its header, else llama.cpp's metadata number) and the library versions."""
    import onnxruntime

    from orin_unlearn.train.gguf_import import gguf_info

    try:
        config = json.loads((onnx / "manifest.json").read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        config = None
    try:
        quant = gguf_info(gguf)["quant_type"]
    except (ImportError, ValueError):
        value = (getattr(llm, "metadata", None) or {}).get("general.file_type")
        quant = None if value is None else f"file_type {value}"
    info = getattr(lib, "llama_print_system_info", None)
    return {
        "onnx": str(onnx),
        "variant": config.get("variant") if isinstance(config, dict) else None,
        "onnx_bytes": (onnx / "model.onnx").stat().st_size,
        "gguf": str(gguf),
        "gguf_type": quant,
        "gguf_bytes": gguf.stat().st_size,
        "versions": {
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "llama_cpp": getattr(lib, "__version__", None),
            "llama_cpp_system": info().decode("utf-8", "replace").strip() if callable(info) else None,
        },
    }


def memory(onnx: Path, gguf: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Both engines' `measure_memory`, and llama.cpp MiB / ours MiB (> 1: ours takes less). Run before
    llama.cpp loads in this process: a build that dies here (SIGILL) is a one-line error, not a crash."""
    found = {"method": MEMORY_METHOD, OURS: measure_memory(spec | {"engine": OURS, "path": str(onnx)})}
    found[LLAMA] = measure_memory(spec | {"engine": LLAMA, "path": str(gguf)})
    if found[LLAMA].get("error") == "killed by SIGILL":
        raise ImportError(f"llama.cpp was {found[LLAMA]['error']} in a child process: {BROKEN}")
    ours, theirs = found[OURS].get("engine_mib"), found[LLAMA].get("engine_mib")
    if ours and theirs is not None:
        found["ratio"] = round(theirs / ours, 4)
    return found


def run(
    onnx: Path, gguf: Path, threads: int, contexts: list[int], steps: int, repeats: int, mem: bool
) -> dict:
    check_inputs(onnx, gguf)
    lib = require_llama()
    from orin_unlearn.benchmarks.decode_bench import open_graph
    from orin_unlearn.edge.generator import Generator
    from orin_unlearn.edge.progress import progress_bar
    from orin_unlearn.edge.tokenizer import ChatTokenizer

    backend = open_graph(onnx, threads)
    n_ctx = max(contexts) + steps + 1
    if n_ctx > backend.max_context:
        raise ValueError(f"{n_ctx - 1} tokens (context + decoded) exceed {onnx}'s {backend.max_context}")
    tokenizer = ChatTokenizer(onnx)
    text, ids = passage_ids(tokenizer.encode, max(contexts))
    spec = {"threads": threads, "n_ctx": n_ctx, "ids": ids, "steps": steps}
    found = memory(onnx, gguf, spec) if mem else {"skipped": "--no-memory"}
    llm, logits = open_llama(lib, gguf, threads, n_ctx)
    if max(ids) >= llm.n_vocab():
        raise ValueError(f"{gguf} has {llm.n_vocab()} tokens but {onnx}'s tokenizer gives id {max(ids)}")
    same = list(llm.tokenize(text.encode(), add_bos=False, special=False)) == tokenizer.encode(text)
    if not same:
        log.warning("llama.cpp's tokenizer splits the passage differently; both engines get our ids")
    engines = [GeneratorEngine(Generator(backend, tokenizer)), llama_engine(llm, logits), raw_engine(backend)]
    prompts = {c: ids[:c] for c in contexts}
    with progress_bar() as progress:
        task = progress.add_task("peer", total=len(schedule(ENGINES, contexts, repeats + 1)))
        interleave(engines, prompts, min(steps, 4), 1, lambda _: progress.advance(task))  # warm-up
        runs = interleave(engines, prompts, steps, repeats, lambda _: progress.advance(task))
    setup = describe(onnx, gguf, llm, lib)
    setup.update(threads=threads, contexts=contexts, decode_tokens=steps, repeats=repeats, same_tokens=same)
    return build_result(runs, setup, found)


def title(r: dict[str, Any]) -> str:
    pair = f"ours ({r['variant'] or 'ONNX'}) vs llama.cpp ({r['gguf_type'] or 'GGUF'})"
    return f"{pair}, {r['threads']} threads, {r['decode_tokens']} decoded tokens, best of {r['repeats']}"


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title(result))
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for row in result["by_context"]:
        for engine, stats in row["engines"].items():
            vs = row["ratios"].get(engine)
            table.add_row(
                str(row["context"]),
                engine,
                f"{stats['prefill_ms_best']:.1f}",
                f"{stats['decode_tokens_per_s_best']:.1f}",
                f"{vs['prefill_best']:.2f} / {vs['prefill_paired_median']:.2f}" if vs else "-",
                f"{vs['decode_best']:.2f} / {vs['decode_paired_median']:.2f}" if vs else "-",
            )
    notes = ["x > 1: ours is faster than llama.cpp"]
    for engine, got in ((e, result["memory"].get(e)) for e in (OURS, LLAMA) if e in result["memory"]):
        mib = f"{got['engine_mib']:.0f} MiB (peak {got['peak_mib']:.0f})" if "engine_mib" in got else None
        notes.append(f"{engine}: {mib or 'memory not measured: ' + got['error']}")
    if not result["same_tokens"]:
        notes.append("llama.cpp's tokenizer differs: both got our token ids")
    table.caption = "; ".join(notes)
    Console(width=120).print(table)


def plot(result: dict[str, Any], path: Path) -> Path:
    """Best decode tokens/s and prefill ms per context, one bar per engine."""
    plt = plots.pyplot()
    rows, engines = result["by_context"], result["engines"]
    x, width = np.arange(len(rows)), 0.8 / len(engines)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, key, label in zip(axes, ("decode_tokens_per_s_best", "prefill_ms_best"), PANELS, strict=True):
        for k, engine in enumerate(engines):
            ax.bar(x + k * width, [row["engines"][engine][key] for row in rows], width, label=engine)
        ax.set_xticks(x + width * (len(engines) - 1) / 2)
        ax.set_xticklabels([str(row["context"]) for row in rows])
        ax.set(xlabel="context (prompt tokens)", title=label)
    axes[0].legend()
    fig.suptitle(title(result))
    fig.tight_layout()
    return plots.save(fig, path)


def sizes(text: str, flag: str) -> list[int]:
    """Sorted distinct positive integers of a comma list; ValueError naming the flag otherwise."""
    parts = [x.strip() for x in text.split(",")]
    if not all(x.isdigit() and int(x) > 0 for x in parts):
        raise ValueError(f"{flag} {text!r}: give positive token counts, comma-separated")
    return sorted({int(x) for x in parts})


def main(argv: list[str]) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="orin-unlearn bench peer", description=__doc__, formatter_class=raw)
    parser.add_argument("--onnx", required=True, help="ONNX stage folder (model.onnx, config, tokenizer)")
    parser.add_argument(
        "--gguf", help="GGUF for llama.cpp (default: the packaged SmolLM2-135M-Instruct Q4_1)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contexts", default="64,256", help="prompt tokens before decoding, comma-separated")
    parser.add_argument("--decode-tokens", type=int, default=32, help="greedy decode steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per engine and context")
    parser.add_argument("--out", default="runs/peer", help="folder for peer.json and peer.png")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    args = parser.parse_args(argv)
    contexts = sizes(args.contexts, "--contexts")
    for flag in ("threads", "decode_tokens", "repeats"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    if args.gguf is None:
        from orin_unlearn.train.gguf_import import smollm2_gguf  # what `model import-gguf --named` reads

        args.gguf = smollm2_gguf()
    lengths = (contexts, args.decode_tokens, args.repeats)
    result = run(Path(args.onnx), Path(args.gguf), args.threads, *lengths, not args.no_memory)
    out = Path(args.out)
    result |= {"json": str(out / "peer.json"), "plot": str(out / "peer.png")}
    print_table(result)
    if plots.draw(plot, result, out / "peer.png") is None:
        result["plot"] = None
    write_json_atomic(out / "peer.json", result)
    print(json.dumps(result))
    return 0
