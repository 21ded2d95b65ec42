"""bench/fixture.py restores committed teacher grades into a judge work folder: each grade row
joined back to its mined pair's text, list columns (grade_probs) included."""
from __future__ import annotations

import sys

import pyarrow as pa
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))


def test_committed_grades_join_back_to_the_mined_pairs():
    import fixture

    from labeler.schema import JUDGMENTS, PAIRS

    pairs = pa.Table.from_pylist([{"query_id": f"q{i}", "query": f"query {i}", "doc_id": f"d{i}", "title": "t",
                                   "text": f"text {i}"} for i in range(4)])
    for f in PAIRS:
        if f.name not in pairs.column_names:
            pairs = pairs.append_column(f.name, pa.nulls(pairs.num_rows, f.type))
    grades = pa.Table.from_pylist([
        {"query_id": "q2", "doc_id": "d2", "model": "m", "model_version": "v", "status": "ok", "error": None,
         "grade": 3, "expected_grade": 2.7, "grade_probs": [0.0, 0.1, 0.1, 0.8], "grade_mass": 0.9},
        {"query_id": "q0", "doc_id": "d0", "model": "m", "model_version": "v", "status": "failed",
         "error": "no_grade_token", "grade": None, "expected_grade": None, "grade_probs": None, "grade_mass": None},
        {"query_id": "q9", "doc_id": "d9", "model": "m", "model_version": "v", "status": "ok", "error": None,
         "grade": 0, "expected_grade": 0.1, "grade_probs": [0.9, 0.1, 0.0, 0.0], "grade_mass": 0.95},
    ])
    grades = (grades.append_column("truncated", pa.array([False] * 3))
              .append_column("prompt_tokens", pa.array([200, 180, 190], pa.int32())))
    data, rej = fixture._with_text(grades, pairs)
    rows = {r["query_id"]: r for r in data.to_pylist()}
    assert set(rows) == {"q0", "q2"}  # q9 was not mined in this run: left out
    assert rows["q2"]["text"] == "text 2" and rows["q2"]["grade_probs"] == pytest.approx([0.0, 0.1, 0.1, 0.8])
    assert rej.column("key").to_pylist() == ["q0\td0"] and rej.column("reason").to_pylist() == ["no_grade_token"]
