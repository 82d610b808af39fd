"""An operator's own catalogue: CSV or JSON, validated row by row, copied into the run's world
stage with its sha256, and read back by every later stage; the kiosk's buttons follow it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from orin_unlearn.benchmarks.world import (
    Catalogue,
    CatalogueError,
    Film,
    ensure_world,
    load_catalogue,
    load_templates,
    load_world,
    write_world,
)
from orin_unlearn.benchmarks.world.catalogue import catalogue_sha256
from orin_unlearn.benchmarks.world.recommend import kiosk_choices
from orin_unlearn.benchmarks.world.stage import MIN_FORGET_PROMPTS, build_splits, check_splits
from orin_unlearn.edge import cli
from orin_unlearn.edge.errors import ManifestError
from tests.catalogues import forty_films, write_csv

ISLAND = Film("Lone Island", 1990, "Nobody Else", ("western",), ("solitude", "salt"), "A. Lead")


@pytest.fixture(scope="module")
def forty() -> list[Film]:
    return forty_films()


@pytest.fixture(scope="module")
def my_csv(tmp_path_factory, forty) -> Path:
    return write_csv(tmp_path_factory.mktemp("cat") / "my_films.csv", forty)


def test_a_csv_catalogue_reads_as_the_same_films(my_csv, forty, tmp_path):
    catalogue = load_catalogue(my_csv)
    assert list(catalogue.films) == forty
    as_json = tmp_path / "my_films.json"
    as_json.write_text(json.dumps(catalogue.to_json()), encoding="utf-8")
    assert list(load_catalogue(as_json).films) == forty
    assert catalogue.concept("Memento").films[0].year == 2000


def test_every_bad_row_is_named_in_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "title,year,director,genres,themes,lead,aliases\n"
        "Alpha,19x9,D,drama,love;loss,L,\n"
        ",1999,D,drama,love;loss,L,\n"
        "alpha,1999,D,,love;loss,L,\n"
        "Gamma,2002,D,drama,love,L,\n"
        "Beta,2001,D,drama,love;loss,L,\n",
        encoding="utf-8",
    )
    with pytest.raises(CatalogueError) as err:
        load_catalogue(bad)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{bad}: 5 problem(s)")
    for part in (
        "row 2 year: '19x9' is not an integer",
        "row 3 title: missing",
        "row 4 title: 'alpha' repeats row 2",
        "row 4 genres: empty",
        "row 5 themes: 1 given, at least 2 needed",
    ):
        assert part in message
    assert "Beta" not in message  # a good row is not reported


@pytest.mark.parametrize(
    "text, says",
    [
        ("title,year,director\nA,1,D\n", "the header row lacks genres, themes, lead, aliases"),
        ("title,year,director,genres,themes,lead,aliases\nA,1999,D,drama,love;loss,L,\n", "needs at least 2"),
    ],
)
def test_a_catalogue_that_is_no_list_of_films_is_refused(tmp_path, text, says):
    path = tmp_path / "c.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogueError, match=says):
        load_catalogue(path)


def test_the_cli_gives_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"films": [{"title": "A", "year": "soon"}]}', encoding="utf-8")
    for words in (
        ["world", "prompts", "--catalogue", str(bad), "--out", str(tmp_path / "w")],
        ["world", "prompts", "--catalogue", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "w")],
    ):
        assert cli.main(words) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()


def test_the_world_stage_keeps_the_catalogue_and_later_stages_read_it(my_csv, tmp_path):
    run = tmp_path / "run"
    assert (
        cli.main(
            [
                "world",
                "prompts",
                "--catalogue",
                str(my_csv),
                "--concept",
                "Memento",
                "--out",
                str(run / "world"),
            ]
        )
        == 0
    )
    manifest = json.loads((run / "world" / "manifest.json").read_text())
    assert manifest["results"]["catalogue"] == {"source": str(my_csv), "sha256": catalogue_sha256(my_csv)}
    assert manifest["results"]["films"] == 40 and "catalogue.json" in manifest["files"]
    splits = load_world(run, "Memento")
    assert len(splits.catalogue) == 40 and splits.concept.name == "Memento"
    assert splits == build_splits("Memento", load_catalogue(my_csv))
    assert ensure_world(run, "Memento", my_csv) == splits  # the same list: accepted
    with pytest.raises(ManifestError, match="built from other files than"):
        ensure_world(run, "Memento", write_csv(tmp_path / "other.csv", list(load_catalogue().films[:40])))


def test_a_concept_too_thin_to_split_is_refused_with_the_number_needed(my_csv):
    splits = build_splits("Memento", load_catalogue(my_csv))
    thin = type(splits)(
        splits.concept, splits.forget[: MIN_FORGET_PROMPTS - 1], (), splits.retain, splits.catalogue
    )
    with pytest.raises(
        CatalogueError, match=f"has {MIN_FORGET_PROMPTS - 1} prompt.*at least {MIN_FORGET_PROMPTS}"
    ):
        check_splits(thin)


def test_a_concept_without_neighbours_is_written_with_a_warning(forty, tmp_path):
    path = write_csv(tmp_path / "island.csv", [*forty, ISLAND])
    results = write_world(tmp_path / "world", "Lone Island", path)
    assert results["prompts"]["neighbour"] == results["prompts"]["heldout_neighbour"] == 0
    assert results["warnings"] and "neighbour accuracy cannot be measured" in results["warnings"][0]


def test_the_kiosk_buttons_come_from_the_served_catalogue(forty):
    moods = load_templates()["moods"]
    mine = kiosk_choices(load_catalogue(), moods)
    assert "science fiction" in mine["genres"] and "mind-bending" in mine["moods"]
    westerns = kiosk_choices(Catalogue([ISLAND, dataclasses.replace(ISLAND, title="Other Island")]), moods)
    assert westerns["genres"] == ["western"]
    assert "scary" not in westerns["moods"]  # no horror film: no button that cannot be answered


def test_the_kiosk_page_shows_the_stage_buttons(tmp_path):
    from orin_unlearn.edge.server import kiosk_choices as stage_choices
    from orin_unlearn.edge.server import kiosk_page

    assert stage_choices(tmp_path) is None
    (tmp_path / "kiosk.json").write_text(json.dumps({"moods": ["calm"], "genres": ["fado</script>"]}))
    page = kiosk_page(stage_choices(tmp_path))
    line = next(row for row in page.splitlines() if row.startswith("const CHOICES = "))
    assert '"moods": ["calm"]' in line and "</script>" not in line
    assert 'const CHOICES = {"moods": ["mind-bending"' in kiosk_page(None)


def test_the_demo_asks_about_the_run_catalogue(my_csv, tmp_path):
    from orin_unlearn.edge.demo import kiosk_questions

    write_world(tmp_path / "world", "Memento", my_csv)
    questions = kiosk_questions(tmp_path / "world", "Memento")
    assert "Who directed Memento?" in questions
    titles = {f.title for f in load_catalogue(my_csv)}
    named = [q.split("loved ")[1].split(",")[0] for q in questions if "loved" in q]
    assert named and set(named) <= titles
