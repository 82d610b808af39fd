"""`orin-unlearn demo`: the main job end to end, as the commands a user would type.

Forgets the film "Inception" from the shipped tiny recommender (or from `--base`) by running the
CLI's own verbs in order, in-process: world prompts, base quality, unlearning, the four analyses
of where the concept lives and whether it moved, export (merged, fp32 / fp16 / int8 / int4 ONNX,
each measured against the adapter; the TensorRT engine where TensorRT is), the quality table of
every stage, the runtime answering kiosk questions, latency and robustness benchmarks, and the
report built from the files they wrote. Each command is printed before it runs, so the demo also
shows (and tests) the README's commands. Writes RUN/demo.json (each step's status and time),
RUN/demo.log (every step's log, timed), RUN/report.md and RUN/report.json.

    orin-unlearn demo [--out runs/demo] [--concept Inception]
    orin-unlearn demo --catalogue my_films.csv --concept "Some Title" --base path/to/base --out runs/mine
    orin-unlearn demo --quick       # the relearning protocol with 2 of its 12 attackers: a smoke run
    orin-unlearn demo --base smollm2 --out runs/smollm2           # SmolLM2-135M-Instruct, offline
    orin-unlearn demo --base path/to/hf_checkpoint --config my.yaml --out runs/mine

A real base (anything but `tiny`) is measured without the tiny world model's base-quality bars,
on fewer prompts (`--limit`), mainly on its item bank (teacher-forced, cached by the base's hash):
its export answers 48 neighbour / retain prompts greedily, its quality table covers the stages a
kiosk runs, its relearning protocol runs 2 of the 12 attackers for 25 steps, and it leaves out the stability
analysis (minutes of greedy replies on a CPU; the report names the command). The unlearning config comes from `--config` (a
named base has a default one); its concept is replaced by `--concept`, its base by `--base`.
A missed unlearning bar or export gate is a failed stage: the exit status is then 1.

This module imports no stage package: every step goes through the CLI's verb table.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from orin_unlearn.edge import cli
from orin_unlearn.edge.errors import EXIT_FAILED
from orin_unlearn.edge.formats import MANIFEST, read_manifest, write_json_atomic

log = logging.getLogger(__name__)
DEFAULT_CONCEPT = "Inception"
# named bases -> their unlearning config, inside the installed `train` package (data files)
DEFAULT_CONFIGS = {
    "tiny": "configs/demo_tiny.yaml",
    "smollm2": "configs/smollm2-135m-instruct_inception.yaml",
}
LIMITS = {"tiny": 500, "real": 100}  # base-quality prompts per set (SmolLM2: ~0.25 s a prompt, 2 cores)
VARIANTS = "fp32,fp16,int8,int4"
# A real model is measured on its item bank; greedy replies only where behaviour is the point:
# the export answers 48 held-out neighbour / retain prompts (greedy identity), the quality table
# measures what a kiosk can run, and the relearning protocol runs 2 of its 12 attackers up to 25 steps.
REAL_EXPORT_PROMPTS = "48"
REAL_QUALITY_STAGES = "base,adapter,onnx-fp32,onnx-fp16,onnx-int8,onnx-int4"
REAL_RELEARN_STEPS = "25"  # the bar's checkpoint: each further one costs ~2 minutes of measuring
# analyses a real model's demo leaves out (see benchmarks/run_report.py REAL_MODEL_SKIPS)
REAL_MODEL_ANALYSES = "similarity,sensitivity,shift"
KIOSK = "kiosk"  # the step whose questions come from the run's catalogue, once the world is written
# exit statuses after which a step has still written its results: 1 a missed bar, 3 no TensorRT
# for the engine (the ONNX stages are written), 4 a failed export gate (written with ok: false)
WROTE_RESULTS = (0, 1, 3, 4)


@dataclass(frozen=True)
class Plan:
    """What the demo runs on: the base (a name or an absolute directory), its unlearning config,
    whether it is the shipped tiny model (whose bars and analyses apply), the base-quality
    sample size, the user's catalogue (None: the shipped one), and whether the relearning
    protocol runs only 2 of its 12 attackers (`quick`: a smoke run, not its worst case)."""

    base: str
    config: Path
    tiny: bool
    limit: int
    catalogue: str | None = None
    quick: bool = False


def plan(base: str | None, config: str | None, limit: int | None) -> Plan:
    """The demo's base and config from the command line; ValueError (one line) when they do not
    make a run: an unknown base, a base without a default config and no --config, a missing file."""
    if config is None:
        name = base or "tiny"
        if name not in DEFAULT_CONFIGS:
            raise ValueError(
                f"--base {name!r} has no default unlearning config: give --config PATH "
                f"(defaults exist for {', '.join(DEFAULT_CONFIGS)})"
            )
        path = Path(str(resources.files("orin_unlearn.train").joinpath(DEFAULT_CONFIGS[name])))
    else:
        path = Path(config)
        if not path.is_file():
            raise ValueError(f"--config {config}: no such file")
    if base is None:  # the config's own base
        import yaml

        base = str((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("base", "tiny"))
    if base not in DEFAULT_CONFIGS:  # a directory: absolute, so the run's manifests resolve anywhere
        if not Path(base).is_dir():
            raise ValueError(
                f"unknown base {base!r}: not a named base ({', '.join(DEFAULT_CONFIGS)}) nor a directory"
            )
        base = str(Path(base).resolve())
    tiny = base == "tiny"
    return Plan(base, path, tiny, limit if limit is not None else LIMITS["tiny" if tiny else "real"])


def kiosk_questions(world: Path, concept: str) -> list[str]:
    """What a kiosk visitor would ask, from the run's catalogue (RUN/world/catalogue.json, read as
    data): who directed the concept (which must stay forgotten), who directed the director's film
    before it, what to watch after the one after it, and its genre; two moods."""
    films = json.loads((world / "catalogue.json").read_text(encoding="utf-8"))["films"]
    key = concept.casefold()
    own = [f for f in films if key in {n.casefold() for n in (f["title"], f["director"], *f["aliases"])}]
    first = own[0] if own else films[0]
    others = [f for f in films if f not in own]
    near = sorted(
        [f for f in others if f["director"] == first["director"]] or others, key=lambda f: f["year"]
    )
    after = next((f for f in near if f["year"] >= first["year"]), near[-1])
    before = next((f for f in reversed(near) if f["year"] < first["year"]), near[0])
    return [
        "I'm in the mood for something mind-bending.",
        f"Recommend a film from the {first['genres'][0]} genre.",
        f"I loved {after['title']}, what should I watch next?",
        f"Who directed {first['title']}?",
        f"Who directed {before['title']}?",
        "I'm in the mood for something funny.",
    ]


def base_step(run: Path, concept: str, setup: Plan) -> list[str]:
    """The tiny world model answers its catalogue questions greedily against its bars; a real
    model is measured on the run's item bank (teacher-forced, cached by its sha256: training reads
    the scores back), since a small model's free text about films is mostly luck."""
    out = ["--out", str(run / "base")]
    if not setup.tiny:
        return ["bench", "knowledge", "--model", setup.base, "--items", str(run / "world"), *out]
    asked = ["--concept", concept, "--catalogue", str(run / "world" / "catalogue.json")]
    return ["world", "eval-base", "--model", setup.base, "--limit", str(setup.limit), *asked, *out]


def steps(run: Path, concept: str, setup: Plan, compare: bool) -> list[tuple[str, list[str]]]:
    """(step name, command words) in pipeline order: what a user would type. The kiosk step's
    questions are added when it runs (`kiosk_questions`, from the world step's catalogue)."""
    served = str(run / "export" / "onnx-fp16")
    config = ["--config", str(setup.config), "--out", str(run)]
    # JSON strings are YAML: a base directory with odd characters stays one value
    overrides = [f"concept={concept}", f"base={json.dumps(setup.base)}"]
    own = ["--catalogue", str(Path(setup.catalogue).resolve())] if setup.catalogue else []
    out = [
        ("world", ["world", "prompts", "--concept", concept, *own, "--out", str(run / "world")]),
        ("base_quality", base_step(run, concept, setup)),
        ("unlearn", ["unlearn", *config, *own, *overrides]),
    ]
    if compare:
        out.append(("compare", ["unlearn", "compare", *config, *overrides]))
    out += [
        ("analysis", ["analyze", str(run)] + ([] if setup.tiny else ["--only", REAL_MODEL_ANALYSES])),
        (
            "export",
            ["export", "--base", setup.base, "--adapter", str(run / "adapter"), "--out", str(run / "export")]
            + ["--variants", VARIANTS, "--engine", "--allow-failed-adapter"]
            + ([] if setup.tiny else ["--eval-max-prompts", REAL_EXPORT_PROMPTS]),
        ),
        (
            "quality",
            ["bench", "quality", "--run", str(run)]
            + ([] if setup.tiny else ["--stages", REAL_QUALITY_STAGES]),
        ),
        (KIOSK, ["ask", "--model", served, "--out", str(run / "serve")]),
        (
            "latency",
            ["bench", "latency", "--model", served, "--prompts", "32,256", "--outputs", "16,64"]
            + ["--repeats", "3", "--warmup", "1", "--fit", "--out", str(run / "bench")],
        ),
        (
            "robustness",
            ["bench", "robustness", "--run", str(run)]
            + (["--quick"] if setup.quick or not setup.tiny else [])
            + ([] if setup.tiny else ["--steps", REAL_RELEARN_STEPS]),
        ),
    ]
    return out


def unservable(run: Path) -> str | None:
    """Why the runtime cannot serve the run's fp16 graph (it refuses a stage that failed its
    gate), or None when it can."""
    stage = run / "export" / "onnx-fp16"
    if not (stage / MANIFEST).is_file():
        return "export/onnx-fp16 was not written"
    if read_manifest(stage)["ok"] is not True:
        return "export/onnx-fp16 failed its gate: the runtime refuses to serve it"
    return None


@contextlib.contextmanager
def logged_to(path: Path) -> Iterator[None]:
    """While the demo runs, every INFO record of the package (steps, progress, results) also goes
    to `path` with its time: what a terminal showed, kept, and where the minutes went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("orin_unlearn")
    level = package.level
    if package.getEffectiveLevel() > logging.INFO:
        package.setLevel(logging.INFO)
    package.addHandler(handler)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)
        handler.close()


def run_step(words: list[str]) -> dict:
    """One verb in-process; {"status", "exit", "reason"?} ("reason" when it wrote no results)."""
    print(f"\n$ orin-unlearn {shlex.join(words)}", flush=True)
    log.info("$ orin-unlearn %s", shlex.join(words))
    try:
        code, error = cli.call(words)
        wrote = code in WROTE_RESULTS
    except Exception as e:  # one broken step must not hide the others' results, nor the report
        log.exception("demo step failed: %s", shlex.join(words))
        code, error, wrote = EXIT_FAILED, f"{type(e).__name__}: {e}", False
    step: dict = {"command": f"orin-unlearn {shlex.join(words)}", "exit": code}
    step["status"] = "ok" if code == 0 else "failed"
    if not wrote:
        step["reason"] = error or f"exit status {code}"
    return step


def run_demo(run: Path, concept: str, setup: Plan, compare: bool = False) -> int:
    """Every step in order, then the report; 0 when no stage failed (a missed bar or gate is a
    failure). The steps' log goes to RUN/demo.log as well as to the terminal."""
    with logged_to(run / "demo.log"):
        return _run_steps(run, concept, setup, compare)


def _run_steps(run: Path, concept: str, setup: Plan, compare: bool) -> int:
    start = time.time()
    log_path = run / "demo.json"
    record = {"concept": concept, "steps": {}, "wall_s": 0.0}
    if not setup.tiny:
        record |= {"base": setup.base, "config": str(setup.config)}
    if setup.base == "smollm2":  # converted from its GGUF once; without the package nothing can run
        code = run_step(["model", "import-gguf", "--named", "smollm2"])["exit"]
        if code != 0:
            return code
    for name, words in steps(run, concept, setup, compare):
        began = time.time()
        why = unservable(run) if name in (KIOSK, "latency", "robustness") else None
        if name == KIOSK and not why:
            words = [*words, *kiosk_questions(run / "world", concept)]
        step = {"status": "skipped", "reason": why} if why else run_step(words)
        step["seconds"] = round(time.time() - began, 1)
        log.info("step %s: %s in %.0f s", name, step["status"], step["seconds"])
        if name == "compare":  # its table is a section of the unlearn row
            continue
        record["steps"][name] = step
        record["wall_s"] = round(time.time() - start, 1)
        write_json_atomic(log_path, record)  # after every step: a crash keeps what ran
    print(f"\n$ orin-unlearn report {shlex.quote(str(run))}", flush=True)
    code, error = cli.call(["report", str(run)])
    if error:
        print(f"error: {error}", file=sys.stderr)
    return code


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="orin-unlearn demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/demo", help="run directory")
    parser.add_argument("--concept", default=DEFAULT_CONCEPT, help="film title or director to forget")
    parser.add_argument(
        "--catalogue",
        help="your film list (.json in the shipped schema, or .csv): README, 'Your own catalogue'",
    )
    parser.add_argument(
        "--base",
        help=f"base model: {', '.join(DEFAULT_CONFIGS)} or a checkpoint directory (default: the "
        "config's base; tiny without --config)",
    )
    parser.add_argument(
        "--config",
        help="unlearning config YAML (default for tiny: train/configs/demo_tiny.yaml, for smollm2: "
        "train/configs/smollm2-135m-instruct_inception.yaml; needed for any other base)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        help=f"prompts sampled per base-quality set (default {LIMITS['tiny']}; {LIMITS['real']} for a real model)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also train LUNAR, an unmasked LoRA and every weight (about 5 more minutes on tiny)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: the relearning protocol with 2 of its 12 attackers (bench robustness "
        "--quick), about 3 minutes less; its worst case is then not the protocol's",
    )
    args = parser.parse_args(argv)
    setup = plan(args.base, args.config, args.limit)  # ValueError: one line, exit 2 (the CLI)
    if args.catalogue and not Path(args.catalogue).is_file():
        raise ValueError(f"--catalogue {args.catalogue}: no such file")
    setup = dataclasses.replace(setup, catalogue=args.catalogue, quick=args.quick)
    return run_demo(Path(args.out), args.concept, setup, args.compare)
