import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import DEMO_DOCS

from labeler.config import CorpusConfig
from labeler.schema import DOCS
from labeler.stages.corpus import fingerprint, ingest
from labeler.store import RunStore


def _ingest(tmp_path, path, **kw):
    store = RunStore(tmp_path / "run")
    w = store.writer("corpus", "fp", DOCS)
    n = ingest(CorpusConfig(path=str(path), **kw), str(path), w)
    m = w.publish(n, config={}, upstream={})
    rej = store.table("corpus", "rejected") if m["rows_rejected"] else None
    return m, store.table("corpus"), rej


def test_every_bad_record_is_kept_with_its_reason(tmp_path):
    good = {"doc_id": "a", "title": "T", "text": "A perfectly ordinary document body.", "author": "Ann",
            "space": "IT", "doc_type": "runbook", "last_modified": "2025-01-02", "owner_team": "infra"}
    lines = [
        json.dumps(good).encode(),
        b'{"doc_id": "b", "text": "broken',                                  # broken JSON
        b'{"doc_id": "c", "text": "caf\xe9 latin-1 bytes in a document"}',   # not UTF-8
        json.dumps({"doc_id": "d", "text": "   "}).encode(),                 # empty
        json.dumps({"doc_id": "e", "text": "x" * 5000}).encode(),            # huge for max_chars
        json.dumps({"doc_id": "a", "text": "Same id as the first document."}).encode(),  # duplicate id
        json.dumps(["not", "an", "object"]).encode(),
        json.dumps({"text": "No id at all in this one."}).encode(),
        b"",                                                                 # blank line: layout
        json.dumps({"doc_id": 7, "text": "Integer ids are fine and become strings."}).encode(),
    ]
    p = tmp_path / "c.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    m, docs, rej = _ingest(tmp_path, p, max_chars=1000)
    assert m["rows_in"] == 9 == m["rows_out"] + m["rows_rejected"]
    assert docs.column("doc_id").to_pylist() == ["a", "7"]
    reasons: dict = {}
    for r, d in zip(rej.column("reason").to_pylist(), rej.column("detail").to_pylist()):
        reasons.setdefault(r, []).append(d)
    assert {k: len(v) for k, v in reasons.items()} == {"bad_json": 2, "bad_encoding": 1, "empty_text": 1,
                                                       "too_long": 1, "duplicate_id": 1, "missing_id": 1}
    assert "c.jsonl:2" in reasons["bad_json"][0] and "got list" in reasons["bad_json"][1]
    assert "c.jsonl:3" in reasons["bad_encoding"][0]
    assert "5,000 characters" in reasons["too_long"][0]
    first = docs.to_pylist()[0]
    assert first["author"] == "Ann" and json.loads(first["metadata"]) == {"owner_team": "infra"}


def test_gzip_and_parquet_inputs(tmp_path):
    rows = [{"doc_id": f"d{i}", "title": f"t{i}", "text": f"document number {i} with some words"} for i in range(5)]
    gz = tmp_path / "c.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    for path in (gz, tmp_path / "c.parquet"):
        m, docs, _ = _ingest(tmp_path / path.suffix, path)
        assert m["rows_out"] == 5 and docs.column("text").to_pylist()[2] == rows[2]["text"]


def test_demo_corpus_is_clean_and_varied(tmp_path):
    m, docs, _ = _ingest(tmp_path, DEMO_DOCS)
    assert m["rows_rejected"] == 0 and m["rows_out"] >= 150
    types = set(docs.column("doc_type").to_pylist())
    assert {"policy", "runbook", "design_doc", "postmortem", "meeting_notes", "onboarding",
            "product_spec", "ticket"} <= types
    assert all(docs.column(c).null_count == 0 for c in ("title", "author", "space", "last_modified"))


def test_fingerprint_follows_content(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"doc_id": "a", "text": "one two three four five six"}\n')
    a = fingerprint(str(p))
    p.write_text('{"doc_id": "a", "text": "one two three four five SIX"}\n')
    assert fingerprint(str(p)) != a
