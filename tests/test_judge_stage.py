"""The judge stage on tiny inputs with vLLM in Ray Data actors: each pair once, resumed, never invented."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import DEMO_DOCS

from labeler.config import EngineConfig, GradeConfig
from labeler.schema import JUDGMENTS, PAIRS
from labeler.store import RunStore


def _pairs(n=6, long_query=None) -> pa.Table:
    docs = [json.loads(l) for l in DEMO_DOCS.read_text().splitlines()[:n]]
    rows = [{"query_id": f"q{i % 3}", "query": ["vpn setup", "expense policy", "login outage"][i % 3],
             "doc_id": d["doc_id"], "title": d["title"], "text": d["text"],
             "doc_meta": json.dumps({"author": d["author"]}), "source": "bm25", "bm25_rank": i + 1,
             "bm25_score": 1.0, "split": "heldout"} for i, d in enumerate(docs)]
    if long_query:
        rows.append({**rows[0], "query_id": "q-long", "query": long_query})
    return pa.Table.from_pylist(rows, schema=PAIRS)


def test_judge_grades_each_pair_once_resumes_and_never_invents(tmp_path, tiny_model, ray_local):
    from labeler.stages.grade_stream import grade as grade_pairs
    from labeler.stages.grade_stream import pair_keys

    engine = EngineConfig(model=tiny_model, max_model_len=512, batch_size=3)
    # Documents are cut to max_doc_tokens, but an over-long query makes a prompt the engine
    # cannot take: it must be rejected, not given a grade.
    grading = GradeConfig(max_doc_tokens=64)
    pairs = _pairs(6, long_query="word " * 1000)
    store = RunStore(tmp_path)
    first = store.writer("judge", "fp", JUDGMENTS)
    grade_pairs(first, pairs.slice(0, 3), engine, grading)  # an attempt killed after 3 pairs
    assert first.data().num_rows == 3

    again = store.writer("judge", "fp", JUDGMENTS)
    assert again.resumed
    grade_pairs(again, pairs, engine, grading)
    m = again.publish(pairs.num_rows, config={}, upstream={})
    assert (m["rows_in"], m["rows_out"], m["rows_rejected"]) == (7, 6, 1)
    assert m["rejected_by_reason"] == {"prompt_too_long": 1}

    out = store.table("judge")
    # Exactly one row per input pair; the ungradable one is marked failed, with no grade.
    assert sorted(pair_keys(out).to_pylist()) == sorted(pair_keys(pairs).to_pylist())
    failed = out.filter(pc.equal(out.column("status"), "failed")).to_pylist()
    assert len(failed) == 1 and failed[0]["query_id"] == "q-long" and failed[0]["error"] == "prompt_too_long"
    assert failed[0]["grade"] is None and failed[0]["grade_probs"] is None and failed[0]["expected_grade"] is None
    for r in out.filter(pc.equal(out.column("status"), "ok")).to_pylist():
        assert sum(r["grade_probs"]) == pytest.approx(1.0, abs=1e-4)
        assert r["grade"] == max(range(4), key=lambda g: r["grade_probs"][g])
        assert r["expected_grade"] == pytest.approx(sum(g * p for g, p in enumerate(r["grade_probs"])), abs=1e-4)
        assert 0 < r["grade_mass"] <= 1.0001 and r["model"] == tiny_model and r["prompt_tokens"] > 0
    rej = store.table("judge", "rejected").to_pylist()[0]
    assert rej["key"] == "q-long\t" + pairs.column("doc_id")[0].as_py() and "max_model_len=512" in rej["detail"]
