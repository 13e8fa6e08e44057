"""The prediction log's line format (monitoring/records.py): what the service writes parses
back to the same record and re-serialises to the same bytes; a malformed line says which
field is wrong."""

import json
import re
from pathlib import Path

import pytest

from mlops_template import PipelineError
from mlops_template.monitoring.logs import records_in
from mlops_template.monitoring.records import (
    PredictionRecord,
    RecordError,
    log_files,
    rotated_index,
)
from mlops_template.serve.logsink import PredictionLog

# Lines as the service has always written them: compact JSON, keys in this order; a
# regressor's record has no `probabilities`; a missing feature value is null.
CHAMPION = (
    '{"ts":1764000000.25,"id":"0f3c9a","role":"champion","model_version":"abc123def456",'
    '"features":{"island":"Biscoe","bill_length_mm":48.2,"body_mass_g":null},'
    '"prediction":"Gentoo","probabilities":{"Adelie":0.01,"Chinstrap":0.02,"Gentoo":0.97}}'
)
CHALLENGER = (
    '{"ts":1764000001,"id":"0f3c9a","role":"challenger","model_version":"fedcba654321",'
    '"features":{"age":0.03,"bmi":-0.01},"prediction":151.5}'
)


@pytest.mark.parametrize("line", [CHAMPION, CHALLENGER])
def test_a_logged_line_round_trips_byte_for_byte(line: str) -> None:
    record = PredictionRecord.from_json(line)
    assert record.to_json() == line
    assert record.to_dict() == json.loads(line)
    assert list(record.to_dict()) == list(json.loads(line))  # the same key order


def test_the_fields_are_typed_and_a_regressor_has_no_probabilities() -> None:
    champion = PredictionRecord.from_json(CHAMPION)
    assert champion.role == "champion"
    assert champion.prediction == "Gentoo"
    assert champion.features["body_mass_g"] is None
    assert champion.probabilities == {"Adelie": 0.01, "Chinstrap": 0.02, "Gentoo": 0.97}
    challenger = PredictionRecord.from_json(CHALLENGER)
    assert challenger.prediction == 151.5
    assert challenger.probabilities is None
    assert "probabilities" not in challenger.to_dict()


def test_the_service_log_writes_records_that_read_back_equal(tmp_path: Path) -> None:
    written = [PredictionRecord.from_json(CHAMPION), PredictionRecord.from_json(CHALLENGER)]
    sink = PredictionLog(tmp_path / "predictions.jsonl", max_bytes=10_000_000, backups=1)
    for record in written:
        sink.write(record)
    assert sink.close()
    assert (tmp_path / "predictions.jsonl").read_text() == f"{CHAMPION}\n{CHALLENGER}\n"
    read = [record for _, record in records_in(tmp_path / "predictions.jsonl", last_file=True)]
    assert read == written


def test_other_keys_are_ignored_as_readers_always_have() -> None:
    line = json.loads(CHALLENGER) | {"trace": "x"}
    assert PredictionRecord.from_json(json.dumps(line)) == PredictionRecord.from_json(CHALLENGER)


def _without(key: str) -> str:
    line = json.loads(CHAMPION)
    del line[key]
    return json.dumps(line)


def _with(**fields: object) -> str:
    return json.dumps(json.loads(CHAMPION) | fields)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not a JSON prediction record"),
        ("[1, 2]", "a prediction record must be a JSON object"),
        (_without("id"), "a prediction record needs `id`"),
        (_without("features"), "a prediction record needs `features`"),
        (_with(ts="yesterday"), "`ts` must be a number"),
        (_with(id=7), "`id` must be a string"),
        (_with(model_version=None), "`model_version` must be a string"),
        (_with(role="boss"), "`role` must be one of champion, challenger, not 'boss'"),
        (_with(features=[1, 2]), "`features` must be a JSON object"),
        (_with(prediction=None), "`prediction` must be a class name or a finite number"),
        (_with(prediction=True), "`prediction` must be a class name or a finite number"),
        (_with(probabilities={"Gentoo": "high"}), "`probabilities` must be a JSON object"),
    ],
)
def test_a_malformed_line_names_the_field(line: str, message: str) -> None:
    with pytest.raises(RecordError, match="^" + re.escape(message)):
        PredictionRecord.from_json(line)


def test_a_malformed_line_in_a_log_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_text(f"{CHAMPION}\n{_with(role='boss')}\n")
    with pytest.raises(PipelineError, match=r"predictions\.jsonl:2: `role` must be one of"):
        list(records_in(path, last_file=True))


def test_only_the_last_files_unfinished_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_text(f"{CHAMPION}\n{CHALLENGER[:30]}")  # the service is writing it now
    assert [number for number, _ in records_in(path, last_file=True)] == [1]
    with pytest.raises(PipelineError, match=r"predictions\.jsonl:2: not a JSON prediction record"):
        list(records_in(path, last_file=False))
    path.write_text(f'{CHAMPION}\n{{"ts": 1}}')  # complete JSON, not a record: not skipped
    with pytest.raises(
        PipelineError, match=r"predictions\.jsonl:2: a prediction record needs `id`"
    ):
        list(records_in(path, last_file=True))


def test_rotated_files_are_found_oldest_first(tmp_path: Path) -> None:
    for name in ("p.jsonl", "p.jsonl.1", "p.jsonl.2", "p.jsonl.bak", "p.jsonl.10", "q.jsonl.1"):
        (tmp_path / name).write_text("")
    names = [path.name for path in log_files(tmp_path / "p.jsonl")]
    assert names == ["p.jsonl.10", "p.jsonl.2", "p.jsonl.1", "p.jsonl"]
    assert rotated_index("p.jsonl.3", "p.jsonl") == 3
    assert rotated_index("p.jsonl", "p.jsonl") is None
    assert rotated_index("p.jsonl.old", "p.jsonl") is None
