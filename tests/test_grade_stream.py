"""The streaming label stage: reading pairs files with bad rows, duplicates and ids joined to a
corpus, prompt token ids equal to the whole prompt's, and a real `labeler label` run killed with
SIGKILL and rerun (every pair labeled exactly once)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import DEMO_DOCS, ROOT

DOCS = [json.loads(line) for line in DEMO_DOCS.read_text().splitlines()]


def _write_inputs(folder: Path) -> dict:
    """A JSONL file with every kind of bad line, and a Parquet file; returns what each row should become."""
    folder.mkdir(parents=True)
    d = DOCS
    lines = [
        json.dumps({"query_id": "q1", "query": "vpn setup", "doc_id": d[0]["doc_id"], "title": d[0]["title"], "text": d[0]["text"]}).encode(),
        b'{"query_id": "q1", "query": "vpn", "doc_id": ',                                   # 2: broken JSON
        b'{"query_id": "q1", "query": "caf\xe9", "doc_id": "x", "text": "latin-1"}',         # 3: not UTF-8
        b"",                                                                                # 4: blank, skipped
        b'["not", "an", "object"]',                                                         # 5
        json.dumps({"query_id": 7, "query": "expenses", "doc_id": d[1]["doc_id"]}).encode(),  # 6: int id, text by corpus
        json.dumps({"query_id": "q1", "query": "vpn setup", "doc_id": d[0]["doc_id"], "text": "again"}).encode(),  # 7: dup of 1
        json.dumps({"query_id": "q2", "query": "x", "doc_id": "no-such-doc"}).encode(),     # 8: unknown doc
        json.dumps({"query_id": "q3", "query": "  ", "doc_id": d[2]["doc_id"], "text": "t"}).encode(),  # 9: empty query
        json.dumps({"query_id": "q3", "query": "y", "doc_id": d[3]["doc_id"], "text": " "}).encode(),  # 10: blank text, not joined
    ]
    (folder / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    pq.write_table(pa.table({"query_id": ["q4", "q1"], "query": ["travel", "vpn setup"],
                             "doc_id": [d[4]["doc_id"], d[0]["doc_id"]], "text": [d[4]["text"], "dup again"]}),
                   folder / "b.parquet")
    (folder / "_SUCCESS").write_text("")  # marker files are not inputs
    return {"a.jsonl:1": None, "a.jsonl:2": "bad_json", "a.jsonl:3": "bad_encoding", "a.jsonl:5": "bad_json",
            "a.jsonl:6": None, "a.jsonl:7": "duplicate_pair", "a.jsonl:8": "unknown_doc",
            "a.jsonl:9": "missing_field", "a.jsonl:10": "empty_text", "b.parquet[0]": None,
            "b.parquet[1]": "duplicate_pair"}


def test_reading_prepare_and_resume_keys(tmp_path, tiny_model):
    """Without engines: every row is read with its location, bad ones get their reason, later
    duplicates are found by the keys-only scan, and finished keys are skipped."""
    from labeler.config import EngineConfig, GradeConfig
    from labeler.corpus_reader import read_corpus
    from labeler.pairs_input import PairsInput
    from labeler.stages.grade_stream import PrepareWorker, row_keys, scan

    expected = _write_inputs(tmp_path / "pairs")
    src = PairsInput(str(tmp_path / "pairs"))
    assert [Path(f).name for f in src.files] == ["a.jsonl", "b.parquet"]
    src.check_columns(have_corpus=False)
    ids_only = tmp_path / "ids.jsonl"
    ids_only.write_text(json.dumps({"query_id": "q", "query": "vpn", "doc_id": "d"}) + "\n")
    PairsInput(str(ids_only)).check_columns(have_corpus=True)
    with pytest.raises(ValueError, match=r"lack required columns \['text'\].*--corpus"):
        PairsInput(str(ids_only)).check_columns(have_corpus=False)
    with pytest.raises(FileNotFoundError):
        PairsInput(str(tmp_path / "nothing-here"))
    s = scan(src)
    assert s.rows == 11
    assert s.duplicates == {"a.jsonl:7": "a.jsonl:1", "b.parquet[1]": "a.jsonl:1"}
    uri = PairsInput(f"file://{tmp_path / 'pairs'}")  # a URI goes through pyarrow.fs, same rows
    assert scan(uri) == s and [b.num_rows for b in uri.blocks()] == [b.num_rows for b in src.blocks()]

    corpus = read_corpus(str(DEMO_DOCS))
    prep = PrepareWorker(EngineConfig(model=tiny_model, max_model_len=512), GradeConfig(max_doc_tokens=64),
                         tokenize=True, duplicates=s.duplicates, corpus=corpus)
    out = pa.concat_tables([prep(b) for b in src.blocks()])
    got = dict(zip(out.column("input_row").to_pylist(), out.column("_reason").to_pylist()))
    assert got == expected
    rows = {r["input_row"]: r for r in out.to_pylist()}
    assert "a.jsonl:3: not UTF-8" in rows["a.jsonl:3"]["_detail"] and "caf" in rows["a.jsonl:3"]["_record"]
    assert rows["a.jsonl:6"]["query_id"] == "7" and rows["a.jsonl:6"]["text"] == DOCS[1]["text"]
    assert rows["a.jsonl:7"]["_key"] == f"q1\t{DOCS[0]['doc_id']}\t@a.jsonl:7"
    assert rows["a.jsonl:2"]["_key"] == "@a.jsonl:2"
    assert all(r["prompt_token_ids"] for r in rows.values() if r["_reason"] is None)
    # The key a graded row gets back from an output table is the one the stream skips on resume.
    assert row_keys(out.drop_columns(["_key"])).to_pylist()[:1] == out.column("_key").to_pylist()[:1]
    done = pa.array([rows["a.jsonl:1"]["_key"], "@a.jsonl:2", rows["b.parquet[1]"]["_key"]])
    again = PrepareWorker(EngineConfig(model=tiny_model, max_model_len=512), GradeConfig(max_doc_tokens=64),
                          tokenize=False, duplicates=s.duplicates, corpus=corpus, done=done)
    left = pa.concat_tables([again(b) for b in src.blocks()]).column("input_row").to_pylist()
    assert sorted(left) == sorted(set(expected) - {"a.jsonl:1", "a.jsonl:2", "b.parquet[1]"})


def test_prompt_token_ids_equal_the_whole_prompt(tiny_model):
    """The piecewise encoding gives exactly build_prompt's prompt tokenized whole, truncation included."""
    from transformers import AutoTokenizer

    from labeler.grading import PromptEncoder, build_prompt
    from labeler.prompts import doc_fields, load_template

    tok = AutoTokenizer.from_pretrained(tiny_model)
    for name in ("grade_plain", "grade_umbrela"):
        template = load_template(name)
        enc = PromptEncoder(tok, template, max_doc_tokens=48, check_first=0, check_every=10**9)
        assert enc.fast
        rows = [{"query": q, "title": d["title"], "text": d["text"],
                 "doc_meta": json.dumps({"author": d.get("author"), "doc_type": d.get("doc_type")})}
                for d in DOCS[:40] for q in ("vpn setup?", "Q3 budget (draft) — 2024", "naïve café's policy")]
        rows += [{"query": "x", "title": " padded ", "text": "short\n"}, {"query": "x", "text": "1234 5678"}]
        for r in rows:
            ids, truncated = enc(doc_fields(r))
            p = build_prompt(tok, template, doc_fields(r), 48, as_text=True)
            assert ids == tok.encode(p.prompt, add_special_tokens=False) and truncated == p.truncated
        assert enc.fast  # never fell back


def test_orphan_rejected_part_is_removed(tmp_path):
    """Killed between a batch's rejected part and its data part: the rejected part goes, so the
    batch is redone and its failures are counted once."""
    from labeler.schema import LABELS
    from labeler.stages.grade_stream import resume_keys, with_input_row
    from labeler.store import RunStore

    w = RunStore(tmp_path).writer("label", "fp", with_input_row(LABELS))
    row = {"query_id": "q", "doc_id": "d", "status": "failed", "error": "no_grade_token", "input_row": "f:1"}
    w.reject([{"key": "q\td", "reason": "no_grade_token", "detail": "", "record": None}])
    w.write(pa.Table.from_pylist([{**row, "query_id": "q0", "status": "ok", "error": None}], schema=w.schema))
    w.reject([{"key": "q0\td", "reason": "x", "detail": "", "record": None}])  # has its data row
    done = resume_keys(w)
    assert done.to_pylist() == ["q0\td"]
    assert [pq.read_table(f).column("key").to_pylist()
            for f in sorted((w.work / "rejected").glob("part-*"))] == [["q0\td"]]


@pytest.mark.slow
def test_label_killed_and_rerun_labels_every_pair_once(tiny_config, tmp_path):
    """A real `labeler label` run, SIGKILLed after some parts are written, then rerun."""
    _, cfg_path = tiny_config
    folder = tmp_path / "pairs"
    folder.mkdir()
    n_good = 0
    for f in range(2):
        lines = []
        for i in range(400):
            d = DOCS[(i * 7 + f) % len(DOCS)]
            lines.append(json.dumps({"query_id": f"q{f}-{i // 5}", "query": f"{d['title'].split()[0]} policy",
                                     "doc_id": d["doc_id"], "title": d["title"], "text": d["text"]}))
            n_good += 1
        lines.insert(40, "{broken")
        (folder / f"part-{f}.jsonl").write_text("\n".join(lines) + "\n")
    total = n_good + 2
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "labeler.cli", "label", str(cfg_path), "--model", tiny_config[0].judge.engine.model,
           "--pairs", str(folder), "--out", str(out), "--set", "judge.engine.batch_size=8"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    data = out / ".labeler" / ".work"
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        deadline = time.time() + 400
        while time.time() < deadline and p.poll() is None:
            parts = list(data.glob("label-*/data/part-*.parquet"))
            if len(parts) >= 2:
                break
            time.sleep(0.05)
        assert p.poll() is None, "the run finished before it could be killed"
        os.killpg(p.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        p.wait()
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    before = {f.name for f in data.glob("label-*/data/part-*.parquet")}
    done_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in data.glob("label-*/data/part-*.parquet"))
    assert 0 < done_rows < total

    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[label] engine dtype: auto -> " in r.stderr  # the engines' dtype, said on the terminal
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert (last["rows_in"], last["rows_out"] + last["rows_rejected"]) == (total, total)
    published = out / ".labeler" / "label"
    assert before <= {f.name for f in (published / "data").glob("part-*.parquet")}  # resumed, not redone
    t = pq.read_table(out / "labels.parquet")
    assert t.num_rows == total
    locs = t.column("input_row").to_pylist()
    assert len(set(locs)) == total  # every input row exactly once
    keys = [(r["query_id"], r["doc_id"]) for r in t.to_pylist() if r["query_id"] is not None]
    assert len(keys) == len(set(keys)) == n_good
    assert sorted(x for x in t.column("error").to_pylist() if x) == ["bad_json", "bad_json"]
    m = json.loads((out / "_manifest.json").read_text())
    assert m["rows_in"] == m["rows_out"] + m["rows_rejected"] == total
    assert m["rejected_by_reason"] == {"bad_json": 2}
    # This attempt's engine counters: only the pairs the resumed run still had to grade.
    assert 0 < m["engine"]["pairs_graded"] <= n_good - done_rows + 2 and m["engine"]["engine_busy_s"] > 0
    rejected = pq.read_table(published / "rejected").num_rows if (published / "rejected").exists() else 0
    assert rejected == 2
    assert len((out / "_labels.qrels").read_text().splitlines()) == m["rows_out"]


def test_scan_never_takes_a_hash_collision_for_a_duplicate(tmp_path, monkeypatch):
    """The pre-pass keeps 64-bit hashes of the keys; rows whose hashes repeat are compared by their
    real keys. With every hash equal, only the true duplicates are reported."""
    import labeler.stages.grade_stream as label_mod

    rows = [{"query_id": f"q{i % 7}", "query": "x", "doc_id": f"d{i}", "text": "t"} for i in range(40)]
    rows[33] = dict(rows[3])  # the one duplicate: line 34 repeats line 4
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    honest = label_mod.scan(label_mod.PairsInput(str(f)))
    monkeypatch.setattr(label_mod, "hash", lambda k: 7, raising=False)
    colliding = label_mod.scan(label_mod.PairsInput(str(f)))
    assert colliding == honest and honest.duplicates == {"p.jsonl:34": "p.jsonl:4"}


def test_done_keys_confirm_hash_hits_against_the_keys(monkeypatch):
    """Resume state is hashes plus the Arrow keys: a key whose hash collides with a done key's is
    still graded (here every hash is forced into two buckets)."""
    import numpy as np
    import pyarrow as pa

    from labeler.stages import grade_stream

    done = [f"q{i}\td{i}" for i in range(0, 200, 2)]
    real = grade_stream.DoneKeys(pa.array(done))
    assert real.contains(done + ["q1\td1", "q0\td2"]) == [True] * len(done) + [False, False]
    monkeypatch.setattr(grade_stream, "stable_hash64",
                        lambda keys: np.array([len(k) % 2 for k in keys], np.uint64))
    colliding = grade_stream.DoneKeys(pa.array(done))
    probe = [f"q{i}\td{i}" for i in range(200)]
    assert colliding.contains(probe) == [i % 2 == 0 for i in range(200)]
    assert grade_stream.DoneKeys(pa.array([], pa.string())).contains(probe[:3]) == [False] * 3


def test_engine_counters_steady_rate_leaves_out_start_and_stragglers():
    """10 pairs a second for 100 batches, after a 60 s start and before a slow last batch: the
    steady rate is the engines' 10/s, where first-to-last would read about 6."""
    import pyarrow as pa

    from labeler.stages.runner import ENGINE_N, ENGINE_S, ENGINE_T, EngineCounters

    c = EngineCounters()
    times = [60.0 + i for i in range(100)] + [220.0]
    for t in times:
        c.add(pa.table({ENGINE_T: [t, t], ENGINE_N: pa.array([10, 0], pa.int32()), ENGINE_S: [1.0, 0.0]}))
    s = c.summary()
    assert s["pairs_graded"] == 1010 and s["engine_busy_s"] == 101.0
    assert abs(s["steady_pairs_per_s"] - 10.0) < 0.2
    assert EngineCounters().summary()["steady_pairs_per_s"] is None


def test_engine_counters_tell_a_starved_engine_from_a_slower_one():
    """Per tenth of the pairs: the run's rate and the engines' busy rate. In the second half the
    engine waits 1 s for each batch (starved: run rate halves, busy rate holds); in a second run
    each batch takes it 2 s (slower: both halve)."""
    import pyarrow as pa

    from labeler.stages.runner import ENGINE_N, ENGINE_S, ENGINE_T, EngineCounters

    def tenths(step_of):
        c, t = EngineCounters(), 0.0
        for i in range(200):
            step, busy = step_of(i)
            t += step
            c.add(pa.table({ENGINE_T: [t], ENGINE_N: pa.array([10], pa.int32()), ENGINE_S: [busy]}))
        return c.summary()["by_tenth"]

    starved = tenths(lambda i: (1.0, 1.0) if i < 100 else (2.0, 1.0))
    slower = tenths(lambda i: (1.0, 1.0) if i < 100 else (2.0, 2.0))
    for by in (starved, slower):
        assert len(by["pairs_per_s"]) == len(by["busy_pairs_per_s"]) == 10
        assert all(abs(r - 10) < 0.6 for r in by["pairs_per_s"][1:5])
        assert all(abs(r - 5) < 0.3 for r in by["pairs_per_s"][6:])
    assert all(abs(r - 10) < 0.6 for r in starved["busy_pairs_per_s"])
    assert all(abs(r - 5) < 0.3 for r in slower["busy_pairs_per_s"][6:])


def test_output_blocks_give_every_row_and_send_no_growing_iteration_stats(ray_local, monkeypatch):
    """The stage reads its results block by block (runner.output_blocks): every row once, as Arrow,
    and without Ray Data's batch iterator, which sends the whole DatasetStats (one entry per block
    of the run so far) to its _StatsActor every five seconds and once at the end."""
    from ray.data._internal.stats import _StatsManager

    from labeler.stages.runner import dataset_of, output_blocks

    sent = []
    monkeypatch.setattr(_StatsManager, "update_iteration_metrics", staticmethod(lambda *a, **k: sent.append(a)))
    t = pa.table({"x": pa.array(range(5000), pa.int64())})

    def double(b: pa.Table) -> pa.Table:  # defined here: the workers get it by value
        import pyarrow.compute as pc

        return b.append_column("y", pc.multiply(b.column("x"), 2))

    ds = dataset_of(t, 256).map_batches(double, batch_size=256, batch_format="pyarrow", num_cpus=0.5)
    blocks = list(output_blocks(ds))
    assert len(blocks) > 1 and all(isinstance(b, pa.Table) for b in blocks)
    out = pa.concat_tables(blocks).sort_by("x")
    assert out.column("x").to_pylist() == list(range(5000))
    assert out.column("y").to_pylist() == [2 * i for i in range(5000)]
    assert sent == []
    list(ds.iter_batches(batch_format="pyarrow"))  # the check itself can fail: iter_batches does send
    assert sent


def test_label_reads_with_at_most_one_task_per_engine_actor(tmp_path, tiny_model, ray_local, monkeypatch):
    """Reading is ~100x faster than grading; left to Ray Data, a many-file run started three read
    tasks at once, and a read worker's peak memory then exceeded any one file's alone. The stage
    asks for one read task per engine actor, and a read so limited still gives every row once."""
    from labeler.config import EngineConfig, GradeConfig
    from labeler.pairs_input import PairsInput
    from labeler.schema import LABELS
    from labeler.stages.grade_stream import grade, with_input_row
    from labeler.stages.runner import output_blocks
    from labeler.store import RunStore

    folder = tmp_path / "pairs"
    folder.mkdir()
    for f in range(3):
        pq.write_table(pa.table({"query_id": [f"q{f}"] * 500, "query": ["vpn setup"] * 500,
                                 "doc_id": [f"d{i}" for i in range(500)], "text": ["some text"] * 500}),
                       folder / f"p{f}.parquet")
    src = PairsInput(str(folder))
    rows = pa.concat_tables(output_blocks(src.dataset(rows_per_block=64, concurrency=1)))
    assert rows.num_rows == 1500 and len(set(rows.column("input_row").to_pylist())) == 1500

    asked = []

    class Asked(Exception):
        pass

    def dataset(self, rows_per_block, concurrency=None):
        asked.append(concurrency)
        raise Asked  # what the stage asked for is all this test needs; no engine starts

    monkeypatch.setattr(PairsInput, "dataset", dataset)
    writer = RunStore(tmp_path / "out").writer("label", "fp", with_input_row(LABELS))
    for actors in (1, 2):
        engine = EngineConfig(model=tiny_model, max_model_len=512, batch_size=64, num_actors=actors,
                              cpus_per_actor=0.5)
        with pytest.raises(Asked):
            grade(writer, src, engine, GradeConfig())
    assert asked == [1, 2]


def test_engine_worker_builds_and_calls_its_engine_on_one_thread(tmp_path, monkeypatch):
    """Ray Data builds an actor's UDF in one thread and calls it from another; a torch model's
    OpenMP teams belong to the thread that starts them, so the engine must be built and called
    on one thread of its own (engines.base.EngineThread), whatever thread calls the worker."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from labeler import engines
    from labeler.config import EngineConfig, GradeConfig
    from labeler.engines.base import GradeResult
    from labeler.pairs_input import PairsInput
    from labeler.stages.grade_stream import EngineWorker, PrepareWorker

    seen = {}

    class Engine:  # records the threads; stands in for vLLM, which this test is not about
        model_id, model_version, watch = "m", "v", None

        def __init__(self):
            seen["built"] = threading.get_ident()

        def is_dead(self, exc):
            return False

        def grade(self, ids, top_logprobs=20):
            seen.setdefault("graded", set()).add(threading.get_ident())
            return [GradeResult(probs=[0.1, 0.2, 0.3, 0.4], mass=1.0, prompt_tokens=3) for _ in ids]

    monkeypatch.setattr(engines, "make_engine", lambda cfg, seed=0: Engine())
    pq.write_table(pa.table({"query_id": ["q1", "q2"], "query": ["vpn", "mail"], "doc_id": ["a", "b"],
                             "text": ["one", "two"]}), tmp_path / "p.parquet")
    prep = PrepareWorker(EngineConfig(model="m", max_model_len=512), GradeConfig(), tokenize=False)
    batch = prep(next(PairsInput(str(tmp_path / "p.parquet")).blocks()))
    worker = EngineWorker(EngineConfig(model="m"), GradeConfig(), tokenized=True)
    with ThreadPoolExecutor(2) as callers:  # two other threads call it, as Ray Data's would
        outs = [callers.submit(worker, batch).result() for _ in range(2)]
    assert [o.column("grade").to_pylist() for o in outs] == [[3, 3], [3, 3]]
    assert seen["graded"] == {seen["built"]} and seen["built"] != threading.get_ident()
