import json

import pyarrow as pa
import pytest

from labeler.schema import QUERIES, rejected_row
from labeler.store import ReconciliationError, RunStore


def _q(ids):
    return pa.table({"query_id": ids, "query": [f"q {i}" for i in ids], "kind": ["keyword"] * len(ids),
                     "seed_doc_id": ["d"] * len(ids), "model": ["m"] * len(ids),
                     "prompt_tokens": [1] * len(ids), "completion_tokens": [1] * len(ids)}, schema=QUERIES)


def test_publish_is_atomic_and_reconciled(tmp_path):
    store = RunStore(tmp_path)
    w = store.writer("synthesize", "fp1", QUERIES)
    w.write(_q(["a", "b"]))
    w.reject([rejected_row("c", "empty_output", "nothing")])
    assert store.manifest("synthesize") is None  # nothing visible before publishing
    m = w.publish(3, config={"x": 1}, upstream={})
    assert (m["rows_in"], m["rows_out"], m["rows_rejected"]) == (3, 2, 1)
    assert m["rejected_by_reason"] == {"empty_output": 1}
    assert store.is_done("synthesize", "fp1") and not store.is_done("synthesize", "other")
    assert store.table("synthesize").column("query_id").to_pylist() == ["a", "b"]
    assert json.loads((tmp_path / "synthesize" / "_manifest.json").read_text())["fingerprint"] == "fp1"
    assert not (tmp_path / ".work" / "synthesize-fp1").exists()


def test_lost_rows_refuse_to_publish(tmp_path):
    store = RunStore(tmp_path)
    w = store.writer("synthesize", "fp1", QUERIES)
    w.write(_q(["a"]))
    with pytest.raises(ReconciliationError, match="3 rows in but 1 out"):
        w.publish(3, config={}, upstream={})
    assert store.manifest("synthesize") is None


def test_resume_sees_finished_parts_and_drops_half_written(tmp_path):
    store = RunStore(tmp_path)
    w = store.writer("synthesize", "fp1", QUERIES)
    w.write(_q(["a", "b"]))
    w.reject([rejected_row("c", "too_long", "x")])
    (w.work / "data" / ".part-x.parquet.123.tmp").write_bytes(b"PAR1 half")  # a killed write
    w2 = store.writer("synthesize", "fp1", QUERIES)  # the rerun
    assert w2.resumed
    assert w2.done_keys(lambda t: t.column("query_id").to_pylist()) == {"a", "b", "c"}
    assert not list((w2.work / "data").glob("*.tmp"))
    w2.write(_q(["d"]))
    assert w2.publish(4, config={}, upstream={})["rows_out"] == 3


def test_republish_replaces_older_output(tmp_path):
    store = RunStore(tmp_path)
    w = store.writer("synthesize", "old", QUERIES)
    w.write(_q(["a"]))
    w.publish(1, config={}, upstream={})
    w = store.writer("synthesize", "new", QUERIES)
    w.write(_q(["x", "y"]))
    w.publish(2, config={}, upstream={})
    assert store.is_done("synthesize", "new")
    assert store.table("synthesize").column("query_id").to_pylist() == ["x", "y"]
    assert not list(tmp_path.glob(".trash-*"))


def test_export_gathers_small_parts_into_few_row_groups(tmp_path, monkeypatch):
    """`labeler label`'s export: every row of every part once, in part order, with its qrels line;
    parts gathered into row groups of about ROW_GROUP_BYTES (one per part grew the writer's
    memory with the number of parts)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from labeler.cli import grade as cli_grade

    parts = []
    for i in range(40):
        t = pa.table({"query_id": [f"q{i}"] * 50, "doc_id": [f"d{i}-{j}" for j in range(50)],
                      "grade": pa.array([j % 4 for j in range(50)], pa.int64()), "status": ["ok"] * 50})
        parts.append(str(tmp_path / f"part-{i:05d}.parquet"))
        pq.write_table(t, parts[-1])
    one = pq.read_table(parts[0]).nbytes
    monkeypatch.setattr(cli_grade, "ROW_GROUP_BYTES", one * 10)
    cli_grade._export(parts, tmp_path / "labels.parquet", tmp_path / "_labels.qrels")
    out = pq.ParquetFile(tmp_path / "labels.parquet")
    assert out.metadata.num_rows == 2000 and out.metadata.num_row_groups == 4
    assert out.read().column("doc_id").to_pylist() == [f"d{i}-{j}" for i in range(40) for j in range(50)]
    lines = (tmp_path / "_labels.qrels").read_text().splitlines()
    assert len(lines) == 2000 and lines[0] == "q0 0 d0-0 0" and lines[-1] == "q39 0 d39-49 1"
