"""The run directory is the source of truth for prompts: every stage after `world` reads RUN/world,
so a held-out prompt edited there (and its manifest written again) is what training, the export
gate, the quality and robustness benchmarks, relearning and the analyses measure; a run without
world/ is refused with the command that writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orin_unlearn.benchmarks import quality_bench, relearning, robustness
from orin_unlearn.benchmarks.analysis.context import RunContext
from orin_unlearn.benchmarks.world import (
    MissingWorldError,
    Prompt,
    build_splits,
    heldout_sets,
    load_world,
    read_jsonl,
    split_prompts,
    tiny_base_dir,
    write_jsonl,
    write_world,
)
from orin_unlearn.edge.errors import ManifestError
from orin_unlearn.edge.formats import make_manifest, read_manifest, verify_stage, write_manifest

SEED, MAX = 0, 16
CONFIG = {
    "concept": "Inception",
    "seed": SEED,
    "eval_max_prompts": MAX,
    "refusal": "I don't know that title.",
}


def questions(prompts: list[Prompt]) -> set[str]:
    return {p.messages[-1]["content"] for p in prompts}


def edit_question(path: Path, prompt: Prompt, text: str) -> None:
    """Replace the last user message of `prompt` in the JSONL file `path` by `text`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    (at,) = [n for n, row in enumerate(rows) if Prompt.from_dict(row) == prompt]
    rows[at]["messages"][-1]["content"] = text
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def adapter_manifest(run: Path) -> None:
    """A stand-in adapter folder: what the later stages read of it is its config."""
    (run / "adapter").mkdir()
    write_manifest(run / "adapter", make_manifest("adapter", {}, {"base": "tiny", **CONFIG}, {}, True))


@pytest.fixture(scope="module")
def edited(tmp_path_factory) -> dict:
    """A run whose world has one drawn held-out forget and one drawn held-out retain prompt edited."""
    run = tmp_path_factory.mktemp("run")
    world = run / "world"
    write_world(world, "Inception")
    sets = heldout_sets(load_world(run), SEED, MAX)
    forget = next(p for p in sets["forget"] if p.family == "qa_year" and p.subjects == ("Inception",))
    retain = sets["retain"][0]
    texts = {
        "forget": "Which year gave us the dream-heist film Inception? (edited in the run)",
        "retain": retain.messages[-1]["content"] + " (edited in the run)",
    }
    edit_question(world / "heldout_forget.jsonl", forget, texts["forget"])
    edit_question(world / "heldout_retain.jsonl", retain, texts["retain"])
    write_manifest(world, read_manifest(world))  # seal the edit: the files list is measured again
    adapter_manifest(run)
    return {"run": run, "texts": texts, "was": {"forget": forget, "retain": retain}}


# the loader


def test_a_prompt_round_trips_through_jsonl_with_every_field(tmp_path, prompts):
    picked = [
        next(p for p in prompts if p.request is not None and p.answer_film and not p.expected),
        next(p for p in prompts if p.request is not None and p.expected),
        next(p for p in prompts if p.family.startswith("chat_")),  # two turns
        next(p for p in prompts if p.family.startswith("unknown_") and p.split == "heldout"),
        next(p for p in prompts if p.family == "qa_which"),
    ]
    write_jsonl(picked, tmp_path / "p.jsonl")
    back = read_jsonl(tmp_path / "p.jsonl")
    assert back == picked
    assert [p.to_dict() for p in back] == [p.to_dict() for p in picked]
    assert all(isinstance(p.messages, tuple) and isinstance(p.expected, tuple) for p in back)


@pytest.mark.parametrize("concept", ["Inception", "Christopher Nolan"])
def test_the_world_reads_back_in_the_order_it_was_generated(tmp_path, catalogue, prompts, concept):
    write_world(tmp_path / "world", concept)
    loaded, generated = load_world(tmp_path, concept), split_prompts(prompts, catalogue, concept)
    assert loaded.concept == generated.concept
    for name in ("forget", "neighbour", "retain"):
        assert getattr(loaded, name) == getattr(generated, name), name  # every template, in order
    for seed, n in ((0, 64), (3, 400)):  # the demo's draws do not move
        assert heldout_sets(loaded, seed, n) == heldout_sets(generated, seed, n)


def test_a_run_without_world_is_refused_with_the_command_that_writes_it(tmp_path):
    adapter_manifest(tmp_path)
    command = "orin-unlearn world prompts --concept C --out"
    with pytest.raises(MissingWorldError, match=command) as refused:
        load_world(tmp_path)
    assert isinstance(refused.value, ManifestError) and str(tmp_path / "world") in str(refused.value)
    with pytest.raises(MissingWorldError, match=command):
        quality_bench.evaluation_of(tmp_path, None)
    with pytest.raises(MissingWorldError, match=command):
        RunContext(tmp_path).sample("forget", 1)
    from orin_unlearn.export import pipeline

    with pytest.raises(MissingWorldError, match=command):  # refused before the model is touched
        pipeline.reference_evaluation(None, tiny_base_dir(), [tmp_path / "adapter"], None)


def test_an_edit_without_a_new_manifest_is_refused(tmp_path):
    write_world(tmp_path / "world", "Inception")
    prompt = load_world(tmp_path).get("retain", "heldout")[0]
    edit_question(tmp_path / "world" / "heldout_retain.jsonl", prompt, "Who directed nothing at all?")
    with pytest.raises(ManifestError, match="heldout_retain.jsonl has changed"):
        load_world(tmp_path)


def test_a_train_prompt_in_a_held_out_file_is_refused(tmp_path):
    world = tmp_path / "world"
    write_world(world, "Inception")
    train = read_jsonl(world / "retain.jsonl")[:1]
    write_jsonl(train + read_jsonl(world / "heldout_retain.jsonl"), world / "heldout_retain.jsonl")
    write_manifest(world, read_manifest(world))
    with pytest.raises(ManifestError, match="heldout_retain.jsonl:1 is a 'train' prompt"):
        load_world(tmp_path)


def test_a_world_of_another_concept_is_refused(tmp_path):
    from orin_unlearn.train.unlearn.config import UnlearnConfig
    from orin_unlearn.train.unlearn.data import build_data

    write_world(tmp_path / "world", "Inception")
    with pytest.raises(ManifestError, match="'Inception', not of 'Interstellar'"):
        load_world(tmp_path, "Interstellar")
    with pytest.raises(ManifestError, match="'Inception', not of 'Interstellar'"):
        build_data(UnlearnConfig(concept="Interstellar"), tmp_path)
    assert load_world(tmp_path, "inception").concept.name == "Inception"  # the catalogue's lookup


def test_the_recipe_writes_the_world_of_a_fresh_run_first(tmp_path):
    from orin_unlearn.train.unlearn.config import UnlearnConfig
    from orin_unlearn.train.unlearn.data import build_data

    cfg = UnlearnConfig()
    data = build_data(cfg, tmp_path)
    manifest = verify_stage(tmp_path / "world")
    assert manifest["stage"] == "world" and manifest["results"]["concept"] == "Inception"
    assert data.eval_sets == heldout_sets(build_splits("Inception"), cfg.seed, cfg.eval_max_prompts)
    assert not [p.name for p in tmp_path.iterdir() if p.name != "world"]  # no staging folder left


# every later stage measures the edited prompts


def test_the_edit_is_read_in_place(edited):
    splits = load_world(edited["run"], "Inception")
    sets = heldout_sets(splits, SEED, MAX)
    for name in ("forget", "retain"):
        assert edited["texts"][name] in questions(sets[name])
        assert edited["was"][name].messages[-1]["content"] not in questions(sets[name])


def test_training_data_evaluates_the_edited_prompts(edited):
    from orin_unlearn.train.unlearn.config import UnlearnConfig
    from orin_unlearn.train.unlearn.data import build_data

    data = build_data(UnlearnConfig(seed=SEED, eval_max_prompts=MAX), edited["run"])
    for name in ("forget", "retain"):
        assert edited["texts"][name] in questions(data.eval_sets[name])


def test_the_quality_bench_measures_the_edited_prompts(edited):
    ev = quality_bench.evaluation_of(edited["run"], None, free_text=True)
    for name in ("forget", "retain"):
        assert edited["texts"][name] in questions(ev["sets"][name])


def test_the_export_gate_measures_the_edited_prompts(edited, monkeypatch):
    from orin_unlearn.export import pipeline
    from orin_unlearn.train.models import load_model

    monkeypatch.setattr(pipeline.Evaluation, "measure", lambda self, chat, label, *more: ({}, []))
    run = edited["run"]
    evaluation = pipeline.reference_evaluation(
        load_model(tiny_base_dir()), tiny_base_dir(), [run / "adapter"], None
    )
    for name in ("forget", "retain"):
        assert edited["texts"][name] in questions(evaluation.sets[name])


def test_robustness_attacks_the_edited_prompts(edited):
    class Asked:
        def __init__(self):
            self.seen: list = []

        def answer_batch(self, conversations, prefixes=None):
            self.seen += conversations
            return ["I don't know that title."] * len(conversations)

    model = Asked()
    splits = load_world(edited["run"])
    robustness.run({"m": model}, "Inception", ["heldout"], splits=splits)
    assert edited["texts"]["forget"] in {c[-1]["content"] for c in model.seen}
    with pytest.raises(ValueError, match="not of 'Interstellar'"):
        robustness.run({"m": model}, "Interstellar", ["heldout"], splits=splits)


def test_relearning_recalls_on_the_edited_prompts(edited, catalogue):
    side = relearning.world(catalogue, catalogue.concept("Inception"), splits=load_world(edited["run"]))
    assert edited["texts"]["forget"] in questions(list(side.split.heldout))


def test_the_analyses_read_the_edited_prompts(edited):
    ctx = RunContext(edited["run"])
    assert edited["texts"]["forget"] in questions(ctx.splits.get("forget", "heldout"))
    assert edited["texts"]["retain"] in questions(ctx.splits.get("retain", "heldout"))
