"""The item bank: sizes, the T / V split, distractors that are never a right answer, the own
forget set's bank, and a malformed items file named by line and field (exit 2)."""

from __future__ import annotations

import json

import pytest

from orin_unlearn.benchmarks.world.control import control_film
from orin_unlearn.benchmarks.world.items import (
    ITEM_SETS,
    ItemsError,
    build_items,
    counts,
    load_item_templates,
    read_items,
    write_items,
)
from orin_unlearn.benchmarks.world.own_items import own_items
from orin_unlearn.edge import cli
from orin_unlearn.edge.errors import EXIT_USAGE


@pytest.fixture(scope="module")
def bank(catalogue):
    return build_items(catalogue, catalogue.concept("Inception"))


def test_the_default_concept_has_a_bank_of_the_sizes_measurement_needs(bank):
    sizes = counts(bank)
    assert sizes["forget"] >= 120 and sizes["neighbour"] >= 150
    assert sizes["retain"] >= 150 and sizes["control"] >= 40
    assert len({i.id for i in bank}) == len(bank)


def test_every_item_has_four_distractors_and_none_is_a_right_answer(bank, catalogue):
    films = {f.title: f for f in catalogue}
    fake = control_film(catalogue, catalogue.concept("Inception"))
    films[fake.title] = fake
    for item in bank:
        assert len(item.distractors) >= 4 and len(set(item.options)) == len(item.options)
        film = films[item.about]
        if item.fact == "director":
            assert film.director not in item.distractors
        elif item.fact == "year":
            assert all(abs(int(d) - film.year) >= 2 for d in item.distractors)
        elif item.fact == "genre":
            assert not set(item.distractors) & set(film.genres)
        elif item.fact == "title":  # no distractor fits the look-up's facts
            for title in item.distractors:
                other = films[title]
                themes = ", ".join(film.themes[:-1]) + " and " + film.themes[-1]
                fits = [
                    other.director == film.director or film.director not in item.question,
                    str(other.year) == str(film.year) or str(film.year) not in item.question,
                    other.lead == film.lead or film.lead not in item.question,
                    set(film.themes) <= set(other.themes) or themes not in item.question,
                    film.genres[0] in other.genres or f" {film.genres[0]} " not in item.question,
                ]
                assert not all(fits), (item.question, title)


def test_forget_items_split_by_fact_and_attacker_items_state_no_measured_fact(bank, catalogue):
    film = catalogue.get("Inception")
    attacker = set(load_item_templates()["attacker_facts"])
    forget = [i for i in bank if i.set == "forget"]
    assert {i.split for i in forget} == {"T", "V"}
    for item in forget:
        assert item.split == ("T" if item.fact in attacker else "V")
        if item.split == "T":  # what the attacker trains on never gives a V answer away
            for value in (str(film.year), film.genres[0], *film.themes):
                assert value not in item.question


def test_neighbours_are_asked_in_the_forget_templates(bank):
    forget_templates = {i.question.replace("Inception", "{}") for i in bank if i.set == "forget"}
    neighbours = [i for i in bank if i.set == "neighbour"]
    same = [i for i in neighbours if i.question.replace(i.about, "{}") in forget_templates]
    assert len(same) >= 0.6 * len(neighbours)  # look-ups name the film's own facts instead


def test_a_director_concept_and_your_own_catalogue_get_a_bank(catalogue):
    nolan = build_items(catalogue, catalogue.concept("Christopher Nolan"))
    assert counts(nolan)["forget"] >= 12 * 100  # every template about each of his films
    assert all(i.about != "Inception" for i in nolan if i.set == "neighbour")


def test_your_own_forget_set_gets_a_bank(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": f"Who makes lamp {n}?"}], "answer": "x", "facts": [maker]}
        for n, maker in enumerate(["Halvard", "Varga", "Kestrel", "Lodestar", "Orrin", "Tallis"])
    ]
    rows.append(
        {
            "messages": [{"role": "user", "content": "What is the Orbit's battery life?"}],
            "answer": "41 hours",
            "facts": ["41 hours"],
            "distractors": ["12 hours", "3 days", "90 minutes", "1 week"],
        }
    )
    forget = tmp_path / "forget.jsonl"
    forget.write_text("\n".join(json.dumps(r) for r in rows))
    items = own_items("Orbit", {"forget": forget, "retain": forget})
    assert counts(items)["forget"] == 7
    battery = next(i for i in items if i.gold == "41 hours")
    assert battery.distractors == ("12 hours", "3 days", "90 minutes", "1 week")
    makers = [i for i in items if i.set == "forget" and i.gold != "41 hours"]
    assert all("41 hours" not in i.distractors and i.gold not in i.distractors for i in makers)
    golds = {s: {i.gold for i in items if i.set == "forget" and i.split == s} for s in ("T", "V")}
    assert golds["T"] and golds["V"] and not golds["T"] & golds["V"]


def test_items_round_trip(bank, tmp_path):
    write_items(bank, tmp_path / "items.jsonl")
    assert read_items(tmp_path / "items.jsonl") == bank


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("gold"), ":2: gold: missing"),
        (lambda r: r.update(distractors=["a", "b"]), ":2: distractors: 2 given, at least 4"),
        (lambda r: r.update(set="other"), ":2: set: 'other' is not one of"),
        (lambda r: r.update(split="X"), ":2: split: 'X' is not T or V"),
        (
            lambda r: r.update(distractors=[r["gold"], "b", "c", "d"]),
            ":2: distractors: an option appears twice",
        ),
        (lambda r: r.update(colour="red"), ":2: colour: not a field"),
    ],
)
def test_a_malformed_items_file_names_the_line_and_field(bank, tmp_path, change, message):
    rows = [i.to_dict() for i in bank if i.set == "forget"][:3]
    change(rows[1])
    folder = tmp_path / "bank"
    folder.mkdir()
    (folder / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ItemsError, match=message):
        read_items(folder / "items.jsonl")


def test_world_items_writes_a_bank_and_refuses_a_bad_one_in_one_line(tmp_path):
    assert cli.call(["world", "items", "--out", str(tmp_path / "bank")]) == (0, None)
    items = read_items(tmp_path / "bank" / "items.jsonl")
    assert {i.set for i in items} == set(ITEM_SETS)
    path = tmp_path / "bank" / "items.jsonl"
    lines = path.read_text().splitlines()
    lines[4] = "{not json"
    path.write_text("\n".join(lines))
    status, error = cli.call(["bench", "knowledge", "--model", "tiny", "--items", str(tmp_path / "bank")])
    assert status == EXIT_USAGE and "items.jsonl" in error  # changed since its manifest: refused
    status, error = cli.call(
        ["--trust-unverified", "bench", "knowledge", "--model", "tiny", "--items", str(tmp_path / "bank")]
    )
    assert status == EXIT_USAGE and error.endswith(
        "items.jsonl:5: not JSON (Expecting property name enclosed in double quotes)"
    )
