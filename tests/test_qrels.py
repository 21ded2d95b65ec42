import pyarrow as pa
import pytest

from labeler.qrels import (
    qrels_dict,
    read_qrels,
    read_run,
    sniff_format,
    write_qrels,
    write_run,
)


def write(path, text):
    path.write_text(text)
    return path


def test_read_qrels_skips_blanks_and_comments_and_collapses_identical_duplicates(tmp_path):
    p = write(tmp_path / "q.txt", "# judged by hand\nq1 0 d1 3\n\nq1\t0\td2 0\nq2 0 d1 1\nq1 0 d1 3\n")
    t = read_qrels(p)
    assert t.schema.field("grade").type == pa.int8()
    assert t.to_pylist() == [{"query_id": "q1", "doc_id": "d1", "grade": 3},
                             {"query_id": "q1", "doc_id": "d2", "grade": 0},
                             {"query_id": "q2", "doc_id": "d1", "grade": 1}]


@pytest.mark.parametrize("text, msg", [
    ("q1 0 d1 3\nq1 0 d2\n", r"q.txt:2: expected 4 fields 'qid iter docid grade', got 3"),
    ("q1 0 d1 3\n\nq1 0 d2 high\n", r"q.txt:3: grade must be an integer, got 'high'"),
    ("q1 0 d1 300\n", r"q.txt:1: grade 300 is out of range"),
])
def test_read_qrels_errors_name_the_line(tmp_path, text, msg):
    with pytest.raises(ValueError, match=msg):
        read_qrels(write(tmp_path / "q.txt", text))


def test_contradictory_judgments_follow_the_policy(tmp_path):
    p = write(tmp_path / "q.txt", "q1 0 d1 1\nq1 0 d2 0\nq1 0 d1 3\nq1 0 d1 2\n")
    with pytest.raises(ValueError, match=r"q.txt:3: query 'q1' doc 'd1' judged 3 here but 1 on line 1"):
        read_qrels(p, on_conflict="error")
    with pytest.warns(UserWarning, match="2 judgments contradict an earlier grade"):
        t = read_qrels(p)
    assert t.to_pylist()[0] == {"query_id": "q1", "doc_id": "d1", "grade": 3} and t.num_rows == 2
    assert t.schema.metadata[b"conflicts"] == b"2"
    with pytest.warns(UserWarning):
        assert read_qrels(p, on_conflict="min").column("grade").to_pylist() == [1, 0]
    with pytest.warns(UserWarning):
        assert read_qrels(p, on_conflict="first").column("grade").to_pylist() == [1, 0]


def test_write_qrels_skips_unlabeled_rows_and_round_trips(tmp_path):
    labels = pa.table({"query_id": ["q1", "q1", "q1", "q2"], "doc_id": ["a", "b", "c", "d"],
                       "grade": pa.array([2, 0, None, 3], pa.int8()),
                       "status": ["ok", "failed", "ok", "ok"]})
    p = tmp_path / "out.qrels"
    assert write_qrels(labels, p) == 2
    assert p.read_text() == "q1 0 a 2\nq2 0 d 3\n"
    assert read_qrels(p).to_pylist() == [{"query_id": "q1", "doc_id": "a", "grade": 2},
                                         {"query_id": "q2", "doc_id": "d", "grade": 3}]
    assert qrels_dict(labels) == {"q1": {"a": 2}, "q2": {"d": 3}}


def test_write_qrels_rejects_ids_that_would_break_the_format(tmp_path):
    t = pa.table({"query_id": ["q 1"], "doc_id": ["a"], "grade": [1]})
    with pytest.raises(ValueError, match="row 0: query_id 'q 1' cannot be written"):
        write_qrels(t, tmp_path / "x")
    with pytest.raises(ValueError, match=r"lacks columns \['grade'\]"):
        write_qrels(pa.table({"query_id": ["q"], "doc_id": ["a"]}), tmp_path / "x")


def test_run_round_trip_ranks_by_score_then_doc_id(tmp_path):
    p = tmp_path / "r.run"
    assert write_run({"q2": {"x": 1.0}, "q1": {"b": 0.5, "a": 0.5, "c": 2.0}}, p, tag="bm25") == 4
    assert p.read_text().splitlines() == ["q1 Q0 c 1 2 bm25", "q1 Q0 a 2 0.5 bm25",
                                          "q1 Q0 b 3 0.5 bm25", "q2 Q0 x 1 1 bm25"]
    assert read_run(p) == {"q1": {"c": 2.0, "a": 0.5, "b": 0.5}, "q2": {"x": 1.0}}


@pytest.mark.parametrize("text, msg", [
    ("q1 Q0 a 1 2.0\n", r"r.run:1: expected 6 fields 'qid Q0 docid rank score tag', got 5"),
    ("q1 Q0 a 1 2.0 t\nq1 Q0 b x 1.0 t\n", r"r.run:2: rank must be an integer, got 'x'"),
    ("q1 Q0 a 1 high t\n", r"r.run:1: score must be a number, got 'high'"),
    ("q1 Q0 a 1 nan t\n", r"r.run:1: score is NaN"),
    ("q1 Q0 a 1 2 t\nq1 Q0 a 2 1 t\n", r"r.run:2: doc 'a' appears twice for query 'q1'"),
])
def test_read_run_errors_name_the_line(tmp_path, text, msg):
    with pytest.raises(ValueError, match=msg):
        read_run(write(tmp_path / "r.run", text))


def test_sniff_format(tmp_path):
    assert sniff_format(write(tmp_path / "a", "# c\nq 0 d 1\n")) == "qrels"
    assert sniff_format(write(tmp_path / "b", "q Q0 d 1 2.0 t\n")) == "run"
    assert sniff_format(write(tmp_path / "c", '{"query_id": "q"}\n')) == "jsonl"
    assert sniff_format(tmp_path) == "parquet"
    with pytest.raises(ValueError, match=r"d:1: not a qrels \(4 fields\), run \(6 fields\)"):
        sniff_format(write(tmp_path / "d", "just two\n"))
    with pytest.raises(ValueError, match="is empty"):
        sniff_format(write(tmp_path / "e", "\n"))
