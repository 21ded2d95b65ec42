"""Hugging Face datasets in and out, with datasets built here with `datasets` (no hub access; a hub
id hf://datasets/ORG/NAME takes the same path after `load_dataset`): a corpus from a saved
DatasetDict with its split and column mapping, pairs from a dataset through Ray Data's
`from_huggingface`, and judgments written back as a dataset with a dataset card."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from conftest import DEMO_DOCS, ROOT
from fake_openai import FakeChatServer, Reply

from labeler.config import ConfigError, load_config

DOCS = [json.loads(line) for line in DEMO_DOCS.read_text().splitlines()]


def _corpus_dataset(folder: Path, n: int = 20) -> Path:
    """A DatasetDict (train, test) whose columns are not labeler's names; train's last row is empty."""
    rows = [{"id": d["doc_id"], "body": d["text"], "heading": d["title"], "team": d.get("space")} for d in DOCS[:n]]
    rows.append({"id": "empty-doc", "body": "   ", "heading": "nothing", "team": None})
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                          "test": datasets.Dataset.from_list(rows[:3])}).save_to_disk(str(folder))
    return folder


def _config(tmp_path: Path, corpus: str, extra: str = "") -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(f"""name: hf
ray: {{num_cpus: 2}}
corpus: {{path: "{corpus}", id_field: id, text_field: body, title_field: heading}}
synthesize: {{engine: {{model: unused}}}}
judge:
  engine: {{backend: openai, model: teacher-m, base_url: "http://127.0.0.1:9/v1", max_retries: 0, batch_size: 4,
            request_cache: false}}
{extra}""")
    return p


def test_corpus_from_a_saved_dataset_split_and_columns(tmp_path):
    from labeler.pipeline import Pipeline
    from labeler.corpus_reader import read_corpus
    from labeler.stages.corpus import fingerprint

    folder = _corpus_dataset(tmp_path / "docs-ds")
    with pytest.raises(ValueError, match=r"several splits \(has \['test', 'train'\]\); name one with split"):
        Pipeline(load_config(_config(tmp_path, str(folder))), tmp_path / "run0").run(until="corpus")
    cfg = load_config(_config(tmp_path, str(folder)), {"corpus": {"split": "train"}})
    s = Pipeline(cfg, tmp_path / "run").run(until="corpus")
    m = json.loads((tmp_path / "run/corpus/_manifest.json").read_text())
    assert (m["rows_in"], m["rows_out"], m["rejected_by_reason"]) == (21, 20, {"empty_text": 1})
    import pyarrow.parquet as pq

    docs = pq.read_table(tmp_path / "run/corpus/data").to_pylist()
    assert {d["doc_id"]: d["text"] for d in docs} == {d["doc_id"]: d["text"] for d in DOCS[:20]}
    assert {d["doc_id"]: d["title"] for d in docs}["pol-travel-2024"] == DOCS[0]["title"]
    assert all(json.loads(d["metadata"] or "{}").keys() <= {"team"} for d in docs)  # unmapped columns kept
    rej = pq.read_table(tmp_path / "run/corpus/rejected").to_pylist()
    assert rej[0]["key"] == "empty-doc" and rej[0]["detail"].startswith("train[20]:")
    assert s["stages"]["corpus"]["rows_in"] == 21
    again = Pipeline(cfg, tmp_path / "run").run(until="corpus")
    assert again["stages"]["corpus"]["skipped"] is True  # same dataset, same fingerprint
    test_split = load_config(_config(tmp_path, str(folder)), {"corpus": {"split": "test"}})
    assert fingerprint(str(folder), test_split.corpus) != fingerprint(str(folder), cfg.corpus)
    changed = _corpus_dataset(tmp_path / "docs-ds2", n=19)
    assert fingerprint(str(changed), cfg.corpus) != fingerprint(str(folder), cfg.corpus)
    # --corpus (the text of id-only pairs) takes a single-split dataset with labeler's column names.
    datasets.Dataset.from_list([{"doc_id": d["doc_id"], "text": d["text"]} for d in DOCS[:5]]).save_to_disk(
        str(tmp_path / "plain"))
    assert read_corpus(str(tmp_path / "plain")).column("doc_id").to_pylist() == [d["doc_id"] for d in DOCS[:5]]
    with pytest.raises(ConfigError, match="pairs.columns.qid"):
        load_config(_config(tmp_path, str(folder), "pairs: {columns: {qid: x}}"))


class Teacher:
    def __init__(self):
        self.server = FakeChatServer(lambda body: Reply("3" if "zzhighzz" in json.dumps(body) else "1"))


def _judge(cfg: Path, pairs, out: Path, *extra):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "labeler.cli", "judge", str(cfg), "--pairs", str(pairs), "--out",
                        str(out), *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    return r, (json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode in (0, 3) and r.stdout.strip() else None)


def test_judge_a_dataset_into_a_dataset_with_its_card(tmp_path):
    """Pairs as a saved dataset whose columns are mapped in the config, through Ray Data's
    from_huggingface; one row per input row (bad ones failed with their reason, input_row
    "split[row]"); `--export hf:DIR` a dataset `load_from_disk` reads, with a card."""
    t = Teacher()
    try:
        rows = [{"qid": f"q{i // 3}", "question": "zzhighzz vpn" if i % 2 else "travel budget", "pid": DOCS[i]["doc_id"],
                 "passage": DOCS[i]["text"][:300], "extra": i} for i in range(14)]
        rows.append({**rows[0]})                                   # 14: a later duplicate of row 0
        rows.append({**rows[1], "pid": "other", "question": " "})  # 15: an empty query
        datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "pairs"))
        cfg = _config(tmp_path, str(DEMO_DOCS).replace("\\", "/"), "pairs: {columns: {query_id: qid, query: question, "
                      "doc_id: pid, text: passage}}")
        cfg.write_text(cfg.read_text().replace("http://127.0.0.1:9/v1", t.server.url)
                       .replace(", id_field: id, text_field: body, title_field: heading", ""))
        r, last = _judge(cfg, tmp_path / "pairs", tmp_path / "o", "--export", f"hf:{tmp_path / 'export'}")
        assert r.returncode == 0, r.stderr[-3000:]
        assert (last["rows_in"], last["rows_out"], last["rejected_by_reason"]) == (
            16, 14, {"duplicate_pair": 1, "missing_field": 1})
        assert last["dataset"] == str(tmp_path / "export")
        out = datasets.load_from_disk(str(tmp_path / "export"))
        assert out.num_rows == 16 and sorted(out["input_row"]) == sorted(f"train[{i}]" for i in range(16))
        by_row = {r["input_row"]: r for r in out}
        assert by_row["train[1]"]["grade"] == 3 and by_row["train[0]"]["grade"] == 1  # the teacher's answers
        assert (by_row["train[14]"]["status"], by_row["train[14]"]["error"]) == ("failed", "duplicate_pair")
        assert by_row["train[15]"]["error"] == "missing_field" and by_row["train[15]"]["grade"] is None
        card = (tmp_path / "export" / "README.md").read_text()
        assert card.startswith("---\n") and "relevance-labels" in card
        assert "`teacher-m`" in card and "this model is the teacher" in card and "Agreement" not in card
        assert "| 1 | 7 |" in card and "| 3 | 7 |" in card and "| duplicate_pair | 1 |" in card
        calls = t.server.calls
        r2, _ = _judge(cfg, tmp_path / "pairs", tmp_path / "o")
        assert r2.returncode == 0 and "up to date" in r2.stderr and t.server.calls == calls

        bad = tmp_path / "bad.yaml"
        bad.write_text(cfg.read_text().replace("query: question", "query: the_question"))
        r3, _ = _judge(bad, tmp_path / "pairs", tmp_path / "o3")
        assert r3.returncode == 2 and "Traceback" not in r3.stderr
        assert "columns {'query': 'the_question'} named in the config are not in it" in r3.stderr
        r4, _ = _judge(cfg, tmp_path / "pairs", tmp_path / "o4", "--export", "s3://bucket/x")
        assert r4.returncode == 2 and "give hf:DIR" in r4.stderr
    finally:
        t.server.close()


def test_a_hub_id_takes_the_same_path(tmp_path, monkeypatch):
    """hf://datasets/ORG/NAME goes to `datasets.load_dataset` with the config's split, subset and
    revision, and its columns are mapped as for a saved dataset (the hub itself is not reachable
    here: load_dataset answers with a dataset built in the test)."""
    from labeler.config import DatasetInput
    from labeler.pairs_input import DatasetPairs

    rows = [{"qid": "q1", "question": "vpn", "pid": DOCS[0]["doc_id"], "passage": DOCS[0]["text"][:100]}]
    seen = {}

    def load_dataset(repo, name=None, split=None, revision=None):
        seen.update(repo=repo, name=name, split=split, revision=revision)
        return datasets.Dataset.from_list(rows, split=datasets.NamedSplit(split))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    opts = DatasetInput(split="test", subset="en", revision="v1",
                        columns={"query_id": "qid", "query": "question", "doc_id": "pid", "text": "passage"})
    p = DatasetPairs("hf://datasets/org/pairs", opts)
    assert seen == {"repo": "org/pairs", "name": "en", "split": "test", "revision": "v1"}
    assert p.split == "test" and p.ds.to_list() == [{"query_id": "q1", "query": "vpn", "doc_id": DOCS[0]["doc_id"],
                                                     "text": DOCS[0]["text"][:100]}]
