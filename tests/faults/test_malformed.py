"""A corpus of malformed LaMP files: each gives its one-line error and exit code 2 through the real
``lamp data validate`` (and the same first error when loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamp_harness.base.errors import LampError
from lamp_harness.cli import main
from lamp_harness.inputs.data import load_split, validate_split
from lamp_harness.plugin.registry import host

CORPUS = Path(__file__).resolve().parents[1] / "support" / "data" / "malformed"

# file or folder -> (task, text its first error must contain)
CASES = {
    "q_truncated.json": ("lamp-3", "malformed JSON at line 4, column 12"),
    "q_trailing_comma.json": ("lamp-3", "malformed JSON at line 2, column 44"),
    "q_html_page.json": ("lamp-3", "looks like an HTML page"),
    "q_empty_file.json": ("lamp-3", "is empty"),
    "q_not_utf8.json": ("lamp-3", "is not UTF-8 text"),
    "q_top_object.json": ("lamp-3", "expected a JSON list of questions at the top level, found an object"),
    "q_empty_list.json": ("lamp-3", "holds no questions"),
    "q_record_not_object.json": ("lamp-3", "record 1: a question must be an object, found a list"),
    "q_missing_id.json": ("lamp-3", "record 0, field 'id': missing"),
    "q_id_number.json": ("lamp-3", "field 'id': must be a string, found a number"),
    "q_duplicate_id.json": ("lamp-3", "record 2 (id '300'), field 'id': duplicate question id (also record 0)"),
    "q_missing_input.json": ("lamp-3", "field 'input': missing"),
    "q_input_not_string.json": ("lamp-3", "field 'input': must be a string, found a list"),
    "q_empty_input.json": ("lamp-3", "field 'input': is empty"),
    "q_missing_profile.json": ("lamp-3", "field 'profile': missing"),
    "q_profile_not_list.json": ("lamp-3", "field 'profile': must be a list of items, found an object"),
    "q_empty_profile.json": ("lamp-3", "record 1 (id '301'), field 'profile': is empty"),
    "q_item_not_object.json": ("lamp-3", "field 'profile[1]': a profile item must be an object"),
    "q_item_missing_field.json": ("lamp-3", "field 'profile[1].score': missing"),
    "q_item_field_null.json": ("lamp-3", "field 'profile[0].text': must be a string, found null"),
    "q_item_id_number.json": ("lamp-3", "field 'profile[0].id': must be a string, found a number"),
    "q_item_date_list.json": ("lamp-3", "field 'profile[0].date': must be a string, found a list"),
    "q_other_task_items.json": ("lamp-4", "field 'profile[*].title': missing in 2 of 2 items"),
    "o_missing_task.json": ("lamp-3", "field 'task': missing"),
    "o_task_not_string.json": ("lamp-3", "field 'task': must be a string, found a number"),
    "o_other_task.json": ("lamp-5", "the file is for LaMP_3 but the task is lamp-5 (LaMP_5)"),
    "o_golds_not_list.json": ("lamp-3", "field 'golds': must be a list, found an object"),
    "o_empty_golds.json": ("lamp-3", "field 'golds': is an empty list"),
    "o_gold_not_object.json": ("lamp-3", "field 'golds[1]': an entry must be an object, found a string"),
    "o_missing_output.json": ("lamp-3", "record 1 (id '301'), field 'golds[1].output': missing"),
    "o_output_number.json": ("lamp-3", "field 'golds[0].output': must be a string, found a number"),
    "o_gold_id_number.json": ("lamp-3", "field 'golds[0].id': must be a string, found a number"),
    "o_duplicate_id.json": ("lamp-3", "field 'golds[1].id': duplicate id (also golds[0])"),
    "o_rating_out_of_range.json": ("lamp-3", "field 'golds[0].output': rating '6' is not a number from 1 to 5"),
    "o_unknown_tag.json": ("lamp-2", "label 'horror' is not one of the task's labels"),
    "pair_missing_golds": ("lamp-3", "1 question id(s) of dev_questions.json have no gold (e.g. '301')"),
    "pair_orphan_golds": ("lamp-3", "1 gold id(s) match no question in dev_questions.json (e.g. '399')"),
    "pair_outputs_as_questions": ("lamp-3", "This is an outputs file"),
}


def test_corpus_has_at_least_25_files_and_every_one_has_a_case():
    entries = sorted(p.name for p in CORPUS.iterdir())
    assert len(entries) >= 25
    assert set(entries) == set(CASES), "every corpus entry needs an expected error, and vice versa"


@pytest.mark.parametrize("name", sorted(CASES))
def test_validate_reports_one_line_error_and_exits_2(name, capsys):
    task, expected = CASES[name]
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "validate", str(CORPUS / name), "--task", task])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    # a single problem is exactly one line, starting with Error:
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ")
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert str(CORPUS / name) in lines[0]  # the line names the file


@pytest.mark.parametrize("name", sorted(n for n in CASES if n.startswith(("q_", "pair_"))))
def test_loading_raises_the_same_first_error(name):
    task = host().registry.create("task", CASES[name][0])
    path = CORPUS / name
    questions = path / "dev_questions.json" if path.is_dir() else path
    outputs = path / "dev_outputs.json" if path.is_dir() else None
    with pytest.raises(LampError) as info:
        load_split(task, questions, outputs, split="dev", source="test")
    message = str(info.value)
    assert "\n" not in message
    assert CASES[name][1] in message


def test_validation_collects_every_problem_of_a_file(tmp_path):
    """`validate` lists all problems; loading raises the first and counts the rest."""
    bad = tmp_path / "dev_questions.json"
    bad.write_text(
        '[{"id": 1, "input": "review: a", "profile": [{"text": "a", "score": "4"}]},'
        ' {"id": "2", "input": "", "profile": []}]'
    )
    task = host().registry.create("task", "lamp-3")
    report = validate_split(task, bad, None)
    assert report.problem_count == 3
    assert [("'id'" in p, "'input'" in p, "'profile'" in p) for p in report.problems] == [
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ]
    with pytest.raises(LampError, match=r"\(2 more problems in these files; list them with: lamp data validate"):
        load_split(task, bad, None, split="dev", source="test")
