"""The `labeler` command: one end-to-end run on a handful of documents (slow), and its errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

LABELER = [sys.executable, "-m", "labeler.cli"]


def _run(args, **kw):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(LABELER + args, capture_output=True, text=True, env=env, cwd=ROOT, **kw)


def test_bad_config_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text((ROOT / "configs" / "demo.yaml").read_text().replace("negatives_per_query:", "negatives_per_qeury:"))
    r = _run(["run", str(p), "--out", str(tmp_path / "o")], timeout=120)
    assert r.returncode == 2
    assert "mine.negatives_per_qeury: unknown key" in r.stderr and str(p) in r.stderr


def test_validate_prints_defaults():
    r = _run(["validate", "configs/demo.yaml"], timeout=120)
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["judge"]["grading"]["prompt"] == "grade_plain" and cfg["mine"]["backend"] == "bm25s"


@pytest.mark.slow
def test_labeler_run_end_to_end(tiny_config, tmp_path):
    """The whole pipeline from a corpus given as a Hugging Face dataset (save_to_disk), ending with
    the student's labels of the held-out pairs written as a dataset with its card."""
    import datasets

    _, cfg_path = tiny_config
    docs = [json.loads(line) for line in (ROOT / "data/demo/docs.jsonl").read_text().splitlines()]
    datasets.Dataset.from_list(docs).save_to_disk(str(tmp_path / "docs-dataset"))
    cfg_path.write_text(cfg_path.read_text().replace(str(ROOT / "data/demo/docs.jsonl"), str(tmp_path / "docs-dataset")))
    out = tmp_path / "run"
    r = _run(["run", str(cfg_path), "--out", str(out)], timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["stages"]) == ["corpus", "synthesize", "mine", "judge", "distill", "label", "evaluate"]
    for stage in ["corpus", "synthesize", "judge", "distill", "label"]:
        m = json.loads((out / stage / "_manifest.json").read_text())
        assert m["rows_in"] == m["rows_out"] + m["rows_rejected"], stage
    mine = json.loads((out / "mine" / "_manifest.json").read_text())
    assert mine["rows_in"] == json.loads((out / "synthesize" / "_manifest.json").read_text())["rows_out"]
    judge = json.loads((out / "judge" / "_manifest.json").read_text())
    assert judge["rows_in"] == mine["pairs"]
    assert (out / "distill" / "artifacts" / "model" / "config.json").is_file()
    import pyarrow.parquet as pq
    trained_on = set(pq.read_table(out / "distill" / "data", columns=["query_id"]).column("query_id").to_pylist())
    mined = pq.read_table(out / "mine" / "data", columns=["query_id", "split"]).to_pylist()
    heldout = {r["query_id"] for r in mined if r["split"] == "heldout"}
    assert trained_on and heldout and not trained_on & heldout  # what evaluate measures, the student never saw
    qrels = (out / "label" / "artifacts" / "labels.qrels").read_text().splitlines()
    label = json.loads((out / "label" / "_manifest.json").read_text())
    assert len(qrels) == label["rows_out"] and all(len(l.split()) == 4 for l in qrels)
    assert summary["agreement"]["n_labeled"] == label["rows_out"]
    # The student beside the free baselines on the same held-out pairs, which it never trained on.
    assert summary["baselines"]["minilm_cosine"]["n_labeled"] == label["rows_out"]
    assert "held-out pairs (the student never saw them)" in r.stdout and "minilm_cosine" in r.stdout
    # A rerun finds every stage up to date and redoes nothing.
    t = time.time()
    r2 = _run(["run", str(cfg_path), "--out", str(out)], timeout=300)
    assert r2.returncode == 0 and r2.stderr.count("up to date") == 7
    assert time.time() - t < 60
    _label_a_dataset_into_a_dataset(cfg_path, out, tmp_path)


def _label_a_dataset_into_a_dataset(cfg_path, out, tmp_path):
    """`labeler label --pairs DATASET --export hf:DIR` with the run's student: the same grades the
    label stage gave the same pairs, and a card naming the student, its teacher and the run's
    agreement figures."""
    import datasets
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    mined = pq.read_table(out / "mine" / "data")
    heldout = mined.filter(pc.equal(mined.column("split"), "heldout"))
    datasets.Dataset(heldout).save_to_disk(str(tmp_path / "heldout"))
    student = out / "distill" / "artifacts" / "model"
    r = _run(["label", str(cfg_path), "--model", str(student), "--pairs", str(tmp_path / "heldout"),
              "--out", str(tmp_path / "labeled"), "--export", f"hf:{tmp_path / 'labels-dataset'}"], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ds = datasets.load_from_disk(str(tmp_path / "labels-dataset"))
    assert ds.num_rows == heldout.num_rows
    stage = {(x["query_id"], x["doc_id"]): x for x in pq.read_table(out / "label" / "data").to_pylist()}
    same = [stage[(x["query_id"], x["doc_id"])]["grade"] == x["grade"] for x in ds]
    assert sum(same) >= 0.95 * len(same), f"{sum(same)} of {len(same)} grades as the label stage gave"
    card = (tmp_path / "labels-dataset" / "README.md").read_text()
    judge = json.loads((out / "judge" / "_manifest.json").read_text())
    metrics = json.loads((out / "evaluate" / "_manifest.json").read_text())["metrics"]
    assert f"- model: `{student.resolve()}`" in card and f"- teacher: `{judge['model']}`" in card
    assert f"| n_labeled | {metrics['n_labeled']} |" in card
    label = json.loads((tmp_path / "labeled" / "_manifest.json").read_text())
    for g, n in label["grade_counts"].items():
        assert f"| {g} | {n:,} |" in card


@pytest.mark.slow
def test_judge_pairs_file_one_row_per_pair(tiny_config, tmp_path):
    """The measurement contract: `labeler judge CONFIG --pairs PAIRS --out DIR`."""
    import pyarrow.dataset as ds

    _, cfg_path = tiny_config
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"query_id": f"q{i % 2}", "query": "vpn access", "doc_id": f"d{i}", "title": "VPN",
             "text": "Install the client, then sign in with SSO. " * (1 if i != 3 else 400)} for i in range(5)]
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "judged"
    r = _run(["judge", str(cfg_path), "--pairs", str(pairs), "--out", str(out),
              "--set", "judge.grading.max_doc_tokens=3000"], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["rows_in"] == 5 and last["rows_out"] + last["rows_rejected"] == 5
    assert len(Path(last["qrels"]).read_text().splitlines()) == last["rows_out"]
    t = ds.dataset(str(out), format="parquet").to_table()  # what a harness reading DIR sees
    assert t.num_rows == 5 and sorted(t.column("doc_id").to_pylist()) == [f"d{i}" for i in range(5)]
    failed = [x for x in t.to_pylist() if x["status"] != "ok"]
    assert [(x["doc_id"], x["error"], x["grade"]) for x in failed] == [("d3", "prompt_too_long", None)]
