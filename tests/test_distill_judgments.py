"""Training from judgments a user already has (`labeler distill CONFIG --judgments PATH`): a judge
export, TREC qrels with their queries and corpus, or an evaluation-set folder, each read into the
same graded pairs; bad input is an error naming the file and row; `--calibrate-on` refits an
encoder student's score -> grade map on human judgments and records where it was fitted."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import DEMO_DOCS, ROOT

sys.path.insert(0, str(ROOT / "bench"))
from fixture import read_judgments  # noqa: E402  (labeler's formats, and bench/fixture.py's own)

DOCS = [json.loads(line) for line in DEMO_DOCS.read_text().splitlines()]


def _eval_folder(folder, n_queries=6, per_query=4):
    """queries.jsonl, docs.jsonl, qrels.txt: query i is document i's title (grade 3), then 1, 0, 0."""
    folder.mkdir(parents=True, exist_ok=True)
    qrels, used = [], {}
    with open(folder / "queries.jsonl", "w") as f:
        for q in range(n_queries):
            f.write(json.dumps({"qid": f"q{q}", "query": DOCS[q]["title"]}) + "\n")
            for r in range(per_query):
                d = DOCS[(q + r) % len(DOCS)]
                used[d["doc_id"]] = d
                qrels.append(f"q{q} 0 {d['doc_id']} {3 if r == 0 else 1 if r == 1 else 0}")
    (folder / "qrels.txt").write_text("\n".join(qrels) + "\n")
    with open(folder / "docs.jsonl", "w") as f:
        for d in used.values():
            f.write(json.dumps({"doc_id": d["doc_id"], "title": d["title"], "text": d["text"]}) + "\n")
    return folder


def test_every_judgments_format_reads_to_the_same_pairs(tmp_path):
    ev = _eval_folder(tmp_path / "ev")
    a = read_judgments(str(ev))
    b = read_judgments(str(ev / "qrels.txt"), queries=str(ev / "queries.jsonl"), corpus=str(ev / "docs.jsonl"))
    export = tmp_path / "judgments.parquet"  # a judge export carries query and text itself
    probs = pa.array([[0.25] * 4] * a.num_rows, pa.list_(pa.float32()))
    pq.write_table(a.select(["query_id", "query", "doc_id", "title", "text", "grade", "expected_grade", "status"])
                   .append_column("grade_probs", probs), export)
    c = read_judgments(str(export))
    fx = tmp_path / "fixture"  # bench/fixture.py's layout: no text, grade_probs a list column
    fx.mkdir()
    pq.write_table(a.select(["query_id", "doc_id", "grade", "expected_grade", "status"]).append_column(
        "grade_probs", pa.array([[0.25] * 4] * a.num_rows, pa.list_(pa.float32()))), fx / "judgments.parquet")
    pq.write_table(a.select(["query_id", "query"]).group_by(["query_id", "query"]).aggregate([]), fx / "queries.parquet")
    (fx / "manifest.json").write_text(json.dumps({"corpus": str(ev / "docs.jsonl")}))
    d = read_judgments(str(fx))
    for t in (a, b, c, d):
        assert t.num_rows == 24 and set(t.column("status").to_pylist()) == {"ok"}
        assert sorted(t.column("grade").to_pylist()) == sorted([3, 1, 0, 0] * 6)
        assert all(isinstance(x, str) and x for x in t.column("text").to_pylist())
    key = lambda t: sorted(zip(t.column("query_id").to_pylist(), t.column("doc_id").to_pylist(),  # noqa: E731
                              t.column("grade").to_pylist()))
    assert key(a) == key(b) == key(c) == key(d)
    # The teacher's grade distribution comes through where the source has one (soft labels for the
    # generative student); qrels carry none, and none is made up.
    assert c.column("grade_probs").to_pylist() == d.column("grade_probs").to_pylist() == [[0.25] * 4] * 24
    assert "grade_probs" not in a.column_names and "grade_probs" not in b.column_names


def test_bad_judgments_name_the_file_and_row(tmp_path):
    ev = _eval_folder(tmp_path / "ev")
    bad = tmp_path / "bad.qrels"
    bad.write_text("q0 0 doc-that-is-not-there 2\n")
    with pytest.raises(ValueError, match=r"bad.qrels\[0\]: doc_id 'doc-that-is-not-there' is not in the corpus"):
        read_judgments(str(bad), queries=str(ev / "queries.jsonl"), corpus=str(ev / "docs.jsonl"))
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"query_id": "q", "query": "x", "doc_id": "d", "text": "t", "grade": 7}) + "\n")
    with pytest.raises(ValueError, match=r"rows.jsonl:1: grade 7 is not one of 0, 1, 2, 3"):
        read_judgments(str(rows))
    with pytest.raises(ValueError, match="give --corpus"):
        read_judgments(str(ev / "qrels.txt"), queries=str(ev / "queries.jsonl"))


@pytest.mark.slow
def test_distill_from_qrels_and_calibrate_on_human_judgments(tiny_config, tmp_path):
    from labeler.models import cache_dir, make_random_encoder

    enc = make_random_encoder(cache_dir() / "test-models" / "tiny-bert-h128")
    train, human = _eval_folder(tmp_path / "train", n_queries=10), _eval_folder(tmp_path / "human", n_queries=4)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    text = tiny_config[1].read_text()
    cfg = tiny_config[1].with_name("bi.yaml")
    cfg.write_text(text[:text.index("distill:")] + "distill:\n  kind: bi_encoder\n  num_workers: 2\n"
                   f"  bi_encoder: {{base_model: {enc}, epochs: 1, max_seq_len: 64, batch_size: 8}}\n"
                   + text[text.index("evaluate:"):])
    cmd = [sys.executable, "-m", "labeler.cli", "distill", str(cfg), "--judgments", str(train),
           "--calibrate-on", str(human), "--out", str(tmp_path / "out"), "--set", "mine.heldout_fraction=0.3"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["kind"] == "bi_encoder" and last["rows_in"] == last["rows_out"] == 40 - _heldout(train)
    meta = json.loads((tmp_path / "out" / "model" / "labeler_bi_encoder.json").read_text())
    assert meta["calibration"]["fitted_on"] == str(human) and meta["calibration"]["n_pairs"] == 16
    assert pq.read_table(tmp_path / "out" / "train_examples.parquet").num_rows == last["rows_out"]
    bad = subprocess.run(cmd[:6] + [str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--judgments: judgments" in bad.stderr and "does not exist" in bad.stderr


def _heldout(folder) -> int:
    """Pairs of the queries the mine stage's hash holds out at 0.3 (seed 7, configs/tiny.yaml)."""
    from labeler.mining import split_of

    qs = [json.loads(line)["qid"] for line in (folder / "queries.jsonl").read_text().splitlines()]
    return 4 * sum(split_of(q, 0.3, 7) == "heldout" for q in qs)

