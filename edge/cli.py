"""The `orin-unlearn` command: one console script, subcommands dispatched lazily.

Each subcommand is a `main(argv)` in its own module, imported only when called, so the runtime
commands work on a Jetson without the training stack.

    orin-unlearn demo
    orin-unlearn world prompts --concept Inception --out runs/x/world
    orin-unlearn serve --model runs/demo/export/onnx-fp16 --trust-unverified   (loud; see below)

Two flags work with every command, given before the command word (after it, they are the
command's arguments): `--trust-unverified` lets stages that fail verification (no manifest, ok
not true, a file that differs from its recorded sha256) be used, with a warning per problem;
`--debug` shows the traceback behind an error. Without it a bad input ends in one
line, `error: ...`, and exit status 2.
"""

from __future__ import annotations

import importlib
import logging
import sys

from orin_unlearn.edge.errors import EXIT_USAGE, exit_status

# (command words) -> module with main(argv); the longest matching prefix wins.
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("demo",): ("orin_unlearn.edge.demo", "run the whole pipeline on the embedded demo world"),
    ("world", "prompts"): (
        "orin_unlearn.benchmarks.world_cli",
        "write a concept's forget/neighbour/retain prompts",
    ),
    ("world", "items"): (
        "orin_unlearn.benchmarks.world_items_cli",
        "write a concept's item bank (multiple-choice questions for bench knowledge)",
    ),
    ("world", "eval-base"): (
        "orin_unlearn.benchmarks.base_quality_cli",
        "measure a base model on the demo world",
    ),
    ("world", "build-base"): (
        "orin_unlearn.train.base_cli",
        "train the demo world's tokenizer and tiny base model",
    ),
    ("model", "import-gguf"): (
        "orin_unlearn.train.gguf_import",
        "import a GGUF chat model as a Hugging Face base (--named smollm2: the packaged SmolLM2)",
    ),
    ("export",): (
        "orin_unlearn.export.pipeline",
        "merge, ONNX fp32/fp16(/int8/int4), TensorRT engine; each artifact measured and gated",
    ),
    ("export", "shape"): (
        "orin_unlearn.export.shapes",
        "random-weight Qwen2.5-shaped model + ONNX variants, for speed runs",
    ),
    ("export", "merge"): (
        "orin_unlearn.export.merge",
        "merge adapters in fp32, cast, measure update survival",
    ),
    ("export", "engine"): ("orin_unlearn.export.trt_build", "build the TensorRT engine (on the device)"),
    ("bench", "quality"): (
        "orin_unlearn.benchmarks.quality_bench",
        "forget / retain / perplexity / KL to base for every stage of a run",
    ),
    ("bench", "knowledge"): (
        "orin_unlearn.benchmarks.knowledge_cli",
        "what a model knows of each set of the item bank; kept and changed against a base, with intervals",
    ),
    ("bench", "decode"): (
        "orin_unlearn.benchmarks.decode_bench",
        "decode tokens/s: runtime vs raw engine vs bandwidth limit (vs transformers)",
    ),
    ("bench", "peer"): (
        "orin_unlearn.benchmarks.peer_bench",
        "ours vs llama.cpp on the same tokens: decode tok/s, prefill ms, peak memory (needs .[peer])",
    ),
    ("bench", "profile"): (
        "orin_unlearn.benchmarks.op_profile",
        "where a decode step's time goes, per operator type (onnxruntime's profiler)",
    ),
    ("bench", "latency"): (
        "orin_unlearn.benchmarks.latency",
        "TTFT and per-token p50/p95/p99 over prompt x output lengths, vs the bandwidth limit",
    ),
    ("bench", "robustness"): (
        "orin_unlearn.benchmarks.robustness",
        "leak rate of base vs unlearned under prefill / jailbreak / multi-turn / plot attacks",
    ),
    ("analyze",): (
        "orin_unlearn.benchmarks.analysis.cli",
        "stability, semantic vs activation similarity, layer sensitivity, activation shift of a run",
    ),
    ("ask",): ("orin_unlearn.edge.ask", "put questions to a stage through the serving runtime (greedy)"),
    ("bundle",): (
        "orin_unlearn.edge.device.bundle",
        "pack a run's stages for the Jetson / unpack them verified",
    ),
    ("keys", "new"): (
        "orin_unlearn.edge.device.keys",
        "make the Ed25519 key pair that signs bundles (private key stays on the build machine)",
    ),
    ("jetson", "preflight"): (
        "orin_unlearn.edge.device.preflight",
        "is this Jetson ready (module, JetPack, CUDA, TensorRT, memory, power)? exit 5 off a Jetson",
    ),
    ("report",): ("orin_unlearn.benchmarks.report", "rebuild a run's report.md from its report.json"),
    ("serve",): ("orin_unlearn.edge.server", "offline OpenAI-compatible server with the kiosk page"),
    ("unlearn",): (
        "orin_unlearn.train.unlearn_cli",
        "masked LoRA unlearning: [probe|score|mask|train] --config X",
    ),
}


def usage() -> str:
    lines = ["usage: orin-unlearn [--trust-unverified] [--debug] COMMAND [args]", "", "commands:"]
    lines += [f"  {' '.join(words):<20} {help_}" for words, (_, help_) in COMMANDS.items()]
    lines += ["", "--trust-unverified: use stages that fail verification (loud); --debug: tracebacks"]
    return "\n".join(lines)


GLOBAL_FLAGS = ("--trust-unverified", "--debug")


def split_flags(argv: list[str]) -> tuple[set[str], list[str]]:
    """(the global flags given, the command line from the command word on).

    Global flags count only before the command word: after it every argument is the command's,
    so a question, a `--` or text a wrapper passes on can never switch verification off.
    """
    n = 0
    while n < len(argv) and argv[n] in GLOBAL_FLAGS:
        n += 1
    return set(argv[:n]), argv[n:]


def command_of(argv: list[str]) -> tuple[str, list[str]] | None:
    """(module, the command's own arguments) for the longest matching command words, or None."""
    for n in (2, 1):
        if tuple(argv[:n]) in COMMANDS:
            return COMMANDS[tuple(argv[:n])][0], argv[n:]
    return None


def run(module_name: str, argv: list[str], debug: bool) -> tuple[int, str | None]:
    """`module.main(argv)`, the one place where a command's errors become exit statuses: a typed
    error (`errors.EXIT_STATUS`) gives its status and its one-line message unless `debug`;
    anything else is a bug and keeps its traceback."""
    try:
        return int(importlib.import_module(module_name).main(argv) or 0), None
    except Exception as e:
        status = exit_status(e)
        if debug or status is None:
            raise
        return status, str(e)


def call(argv: list[str]) -> tuple[int, str | None]:
    """A command run in-process, as the console script runs it: (exit status, error line or None).
    Global flags are read as by `main`; an unknown command is a usage error."""
    from orin_unlearn.edge.formats import trust_unverified

    flags, argv = split_flags(list(argv))
    found = command_of(argv)
    if found is None:
        return EXIT_USAGE, f"unknown command: {' '.join(argv[:2])}" if argv else "no command given"
    if "--trust-unverified" in flags:
        logging.getLogger("orin_unlearn").warning(
            "--trust-unverified: stages that fail verification will be USED, not refused"
        )
    trust_unverified("--trust-unverified" in flags)
    try:
        return run(*found, "--debug" in flags)
    finally:
        trust_unverified(False)  # in-process callers (the demo, tests) get it for one command


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if command_of(split_flags(argv)[1]) is None:
        print(usage() + "\n", file=sys.stderr)
    status, error = call(argv)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
