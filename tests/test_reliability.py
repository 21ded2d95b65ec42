"""What a user's script can trust from `labeler judge|label --pairs`: a changed input is new work
(and only the new part of it is graded), an outage ends with --retry-failed grading only what
failed, every-pair failures exit non-zero, empty files and wrong types are rows with reasons, and a
missing model is one clear line before Ray starts.

The teacher is the OpenAI-compatible backend against a real HTTP server on localhost
(tests/fake_openai.py), whose answers the tests script and whose calls they count."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import DEMO_DOCS, ROOT
from fake_openai import FakeChatServer, Reply

DOCS = [json.loads(line) for line in DEMO_DOCS.read_text().splitlines()]


class Teacher:
    """Answers "2"; `status` other than 200 makes every call fail that way."""

    def __init__(self):
        self.status = 200
        self.server = FakeChatServer(self)

    def __call__(self, body) -> Reply:
        return Reply("2", status=self.status)


@pytest.fixture
def teacher():
    t = Teacher()
    yield t
    t.server.close()


def _config(tmp_path: Path, url: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(f"""name: rel
ray: {{num_cpus: 2}}
corpus: {{path: {DEMO_DOCS}}}
synthesize: {{engine: {{model: unused}}}}
judge:
  engine: {{backend: openai, model: m, base_url: "{url}", max_retries: 0, timeout_s: 5, batch_size: 8,
            request_cache: false}}
""")
    return p


def _rows(n: int, start: int = 0) -> list[str]:
    out = []
    for i in range(start, start + n):
        d = DOCS[i % len(DOCS)]
        out.append(json.dumps({"query_id": f"q{i // 4}", "query": "vpn access", "doc_id": d["doc_id"],
                               "title": d["title"], "text": d["text"][:400]}))
    return out


def _judge(cfg: Path, pairs: Path, out: Path, *extra, timeout=300):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "labeler.cli", "judge", str(cfg), "--pairs", str(pairs),
                        "--out", str(out), *extra], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    last = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None
    return r, last


def _export(out: Path) -> pa.Table:
    return pq.read_table(out / "judgments.parquet")


def test_appended_rows_are_new_work_and_only_they_are_graded(tmp_path, teacher):
    cfg, pairs, out = _config(tmp_path, teacher.server.url), tmp_path / "grow.jsonl", tmp_path / "o"
    pairs.write_text("\n".join(_rows(12)) + "\n")
    r, last = _judge(cfg, pairs, out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert last["rows_in"] == 12 and teacher.server.calls == 12
    with open(pairs, "a") as f:
        f.write("\n".join(_rows(12, start=12)) + "\n")
    r, last = _judge(cfg, pairs, out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "up to date" not in r.stderr
    assert last["rows_in"] == last["rows_out"] == 24
    t = _export(out)
    assert t.num_rows == 24 and len(set(t.column("input_row").to_pylist())) == 24
    assert teacher.server.calls == 24  # the first 12 were kept, not asked again (no request cache here)
    r, last = _judge(cfg, pairs, out)  # unchanged now: up to date
    assert r.returncode == 0 and "up to date" in r.stderr and teacher.server.calls == 24


def test_a_changed_file_is_regraded_and_an_unchanged_one_kept(tmp_path, teacher):
    cfg, folder, out = _config(tmp_path, teacher.server.url), tmp_path / "pairs", tmp_path / "o"
    folder.mkdir()
    (folder / "a.jsonl").write_text("\n".join(_rows(8)) + "\n")
    (folder / "b.jsonl").write_text("\n".join(_rows(8, start=8)) + "\n")
    r, _ = _judge(cfg, folder, out)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = _rows(8, start=8)
    lines[2] = lines[2].replace("vpn access", "expense policy")  # an edit in place, not an append
    (folder / "b.jsonl").write_text("\n".join(lines) + "\n")
    r, last = _judge(cfg, folder, out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert teacher.server.calls == 16 + 8 and last["rows_out"] == 16
    t = _export(out)
    assert sorted(t.column("query").to_pylist()).count("expense policy") == 1


def test_an_outage_exits_nonzero_and_retry_failed_grades_only_what_failed(tmp_path, teacher):
    cfg, pairs, out = _config(tmp_path, teacher.server.url), tmp_path / "p.jsonl", tmp_path / "o"
    pairs.write_text("\n".join(_rows(24) + ["{broken"]) + "\n")
    teacher.status = 503
    r, last = _judge(cfg, pairs, out)
    assert r.returncode == 3, r.stderr[-3000:]
    assert last["rows_rejected"] == 25 and last["rejected_by_reason"] == {"server_error": 24, "bad_json": 1}
    assert "every pair failed" in r.stderr and "--retry-failed" in r.stderr
    teacher.status = 200
    calls = teacher.server.calls
    r, _ = _judge(cfg, pairs, out)  # the same command again: still the failed run, still non-zero
    assert r.returncode == 3 and "up to date" in r.stderr and teacher.server.calls == calls
    r, last = _judge(cfg, pairs, out, "--retry-failed")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (last["rows_out"], last["rows_rejected"], last["rejected_by_reason"]) == (24, 1, {"bad_json": 1})
    assert teacher.server.calls == calls + 24  # the broken line is not a transient failure: not retried
    t = _export(out)
    assert t.num_rows == 25 and len(set(t.column("input_row").to_pylist())) == 25
    ok = t.filter(pa.compute.equal(t.column("status"), "ok"))
    keys = list(zip(ok.column("query_id").to_pylist(), ok.column("doc_id").to_pylist()))
    assert len(keys) == len(set(keys)) == 24


def test_failures_past_the_threshold_exit_nonzero(tmp_path, teacher):
    cfg, pairs, out = _config(tmp_path, teacher.server.url), tmp_path / "p.jsonl", tmp_path / "o"
    pairs.write_text("\n".join(_rows(6) + ["{broken", "{broken"]) + "\n")  # 2 of 8 failed
    r, _ = _judge(cfg, pairs, out)
    assert r.returncode == 0 and "2 failed (bad_json: 2)" in r.stderr
    r, _ = _judge(cfg, pairs, out, "--max-failed-fraction", "0.2")
    assert r.returncode == 3 and "more than --max-failed-fraction=0.2 failed" in r.stderr


def test_nothing_listening_is_one_clear_error_before_ray(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg, pairs = _config(tmp_path, f"http://127.0.0.1:{port}/v1"), tmp_path / "p.jsonl"
    pairs.write_text("\n".join(_rows(4)) + "\n")
    t = time.time()
    r, _ = _judge(cfg, pairs, tmp_path / "o")
    assert r.returncode == 2 and f"judge.engine.base_url: nothing answers at 127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr and time.time() - t < 30


def test_empty_files_are_zero_rows_not_a_crash(tmp_path, teacher):
    cfg = _config(tmp_path, teacher.server.url)
    (tmp_path / "empty.jsonl").write_text("")
    r, last = _judge(cfg, tmp_path / "empty.jsonl", tmp_path / "o1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert last["rows_in"] == 0 and "Traceback" not in r.stderr
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "part-0.jsonl").write_text("\n\n  \n")  # blank lines only
    (folder / "part-1.jsonl").write_text("\n".join(_rows(24)) + "\n")
    r, last = _judge(cfg, folder, tmp_path / "o2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert last["rows_in"] == last["rows_out"] == 24


def test_missing_model_folder_is_one_clear_error_before_ray(tiny_config, tmp_path):
    pairs = tmp_path / "p.jsonl"
    pairs.write_text("\n".join(_rows(4)) + "\n")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "labeler.cli", "label", str(tiny_config[1]), "--model", "/no/such/dir",
                        "--pairs", str(pairs), "--out", str(tmp_path / "o")], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "--model: model folder /no/such/dir does not exist" in r.stderr
    assert "Traceback" not in r.stderr and "Ray" not in r.stderr and time.time() - t < 30
    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny_config[1].read_text().replace(str(DEMO_DOCS), "/no/such/docs.jsonl"))
    r = subprocess.run([sys.executable, "-m", "labeler.cli", "validate", str(bad)], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "corpus.path: corpus /no/such/docs.jsonl does not exist" in r.stderr


def test_wrong_types_are_bad_type_rows(tmp_path):
    from labeler.pairs_input import PairsInput

    d = DOCS[0]
    good = {"query_id": "q", "query": "vpn", "doc_id": d["doc_id"], "text": "t"}
    lines = [json.dumps({**good, "text": 42}), json.dumps({**good, "text": ["a", "b"]}),
             json.dumps({**good, "query_id": 7}), json.dumps({**good, "bm25_rank": "3"}), json.dumps(good)]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    pq.write_table(pa.table({"query_id": ["q1", "q2"], "query": [["a", "list"], ["b"]], "doc_id": ["d1", "d2"],
                             "text": [1.5, 2.5]}), tmp_path / "b.parquet")
    t = pa.concat_tables(list(PairsInput(str(tmp_path)).blocks()))
    got = {r["input_row"]: (r["_reason"], r["query_id"]) for r in t.to_pylist()}
    assert got["a.jsonl:1"][0] == got["a.jsonl:2"][0] == got["a.jsonl:4"][0] == "bad_type"
    assert got["a.jsonl:3"] == (None, "7") and got["a.jsonl:5"] == (None, "q")  # integer ids are ids
    assert got["b.parquet[0]"][0] == got["b.parquet[1]"][0] == "bad_type"
    details = " ".join(r["_detail"] or "" for r in t.to_pylist())
    assert "field 'text' must be a string, got a number" in details and "'query' must be a string column" in details


def test_progress_rate_starts_when_the_engines_answer():
    from labeler.stages.runner import Progress

    p = Progress("judge", total=1000)
    p.t0 -= 120  # two minutes of engine start-up
    p.update(10)  # the first batch
    p.first -= 10
    p.done += 100  # 100 more rows in the 10 s since
    line = p.line(time.time())
    rate = float(line.split("rows/s")[0].split()[-1])
    assert rate == pytest.approx(10, rel=0.05)  # not 110 rows over 130 s
    assert "ETA 1m29s" in line or "ETA 1m30s" in line


def test_smaller_findings_of_the_reliability_review(tmp_path, capsys):
    """A bad reference grade names its file:line (not a label source); one source with nothing in
    common with the reference does not abort the others; the report shows failed and missing
    counts; a --set typo is the command line's, not the YAML file's; `submit` is in --help."""
    from labeler.cli import build_parser
    from labeler.cli.evaluate import main as evaluate
    from labeler.config import ConfigError, dotted_override, load_config

    ref = tmp_path / "ref.qrels"
    ref.write_text("q1 0 a 1\nq1 0 b 5\n")
    labels = tmp_path / "l.qrels"
    labels.write_text("q1 0 a 1\n")
    assert evaluate(["--qrels", str(ref), "--labels", str(labels)]) == 2
    err = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
    assert f"{ref}:2: grade 5 is not one of 0, 1, 2, 3" in err and "source" not in err

    ref.write_text("q1 0 a 1\nq1 0 b 0\nq2 0 c 2\n")
    other = tmp_path / "other.qrels"
    other.write_text("q9 0 z 1\n")
    rc = evaluate(["--qrels", str(ref), "--labels", f"good={labels}", "--labels", f"bad={other}",
                   "--out", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert rc == 0
    last = json.loads(out.strip().splitlines()[-1])
    assert [s["source"] for s in last["sources"]] == ["good", "bad"] and "no pair" in last["sources"][1]["error"]
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "failed" in html and "missing" in html and "not compared" in html

    with pytest.raises(ConfigError, match=r"--set mine.negatives_per_qeury: unknown key"):
        load_config(ROOT / "configs" / "demo.yaml", dotted_override("mine.negatives_per_qeury=3"))
    assert "submit" in build_parser().format_help()


def test_exit_statuses_survive_a_local_ray(ray_local):
    """The local Ray labeler starts must leave SIGCHLD alone: Ray's raylet subreaper sets it to
    SIG_IGN in the driver and every worker, after which each subprocess reads exit status 0 (a job
    supervisor then reports a failed entrypoint as SUCCEEDED, a test sees a failing CLI pass)."""
    code = [sys.executable, "-c", "import sys; sys.exit(3)"]
    assert subprocess.run(code).returncode == 3

    @ray_local.remote(num_cpus=0)
    def in_a_worker():
        return subprocess.run(code).returncode

    assert ray_local.get(in_a_worker.remote()) == 3
