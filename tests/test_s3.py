"""s3:// for real: runs, pairs and jobs against an S3-compatible server on 127.0.0.1 (moto's server
mode with IAM authentication, tests/s3_server.py), reached through pyarrow's S3FileSystem with
`storage.endpoint_override`, as a user reaches MinIO or Ceph. Credentials come over the standard
AWS chain (environment variables, or a shared credentials file) and are grepped for in everything
the commands write and print.

The teacher is the OpenAI-compatible backend against tests/fake_openai.py (no model to load)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import DEMO_DOCS, ROOT
from fake_openai import FakeChatServer, Reply
from s3_server import BUCKET

DOCS = [json.loads(line) for line in DEMO_DOCS.read_text().splitlines()]


def _env(s3, tmp_path: Path, who: str = "admin", staging: str = "staging") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, **s3.env(who), "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1",
            "LABELER_STAGING": str(tmp_path / staging)}


def _labeler(args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "labeler.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _put(s3, key: str, data: bytes) -> None:
    with s3.fs().open_output_stream(f"{BUCKET}/{key}") as f:
        f.write(data)


def _json(s3, key: str):
    with s3.fs().open_input_stream(f"{BUCKET}/{key}") as f:
        return json.loads(f.read())


def _config(tmp_path: Path, s3, url: str = "http://127.0.0.1:9/v1") -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(f"""name: s3
seed: 7
ray: {{num_cpus: 2}}
storage: {{endpoint_override: "{s3.endpoint}"}}
corpus: {{path: "s3://{BUCKET}/inputs/docs.jsonl", limit: 30}}
synthesize: {{engine: {{model: unused}}}}
judge:
  engine: {{backend: openai, model: m, base_url: "{url}", max_retries: 0, timeout_s: 10, batch_size: 8,
            request_cache: false, concurrency: 2}}
""")
    return p


def _no_secrets(s3, texts: list[str], *folders: Path) -> None:
    """Neither key of either user in any output, object or local file (manifests, logs, parts)."""
    secrets = [x for pair in s3.keys.values() for x in pair]
    blobs = list(texts) + [b.decode("utf-8", "replace") for b in s3.objects(BUCKET).values()]
    for folder in folders:
        for f in Path(folder).rglob("*"):
            if f.is_file() and f.stat().st_size < 50 << 20:
                blobs.append(f.read_bytes().decode("utf-8", "replace"))
    assert len(blobs) > len(texts) + 2  # the grep saw files, not nothing
    for secret in secrets:
        assert not any(secret in b for b in blobs), "a credential leaked into an output"


def test_pipeline_at_s3_publishes_skips_and_says_what_is_wrong(s3, tmp_path):
    """`labeler run --out s3://...` with the corpus in the bucket: published stages with their
    manifests; a rerun from a fresh staging folder (a new machine) skips them; a missing bucket,
    a denied write and bad credentials are each one line, before any work."""
    _put(s3, "inputs/docs.jsonl", DEMO_DOCS.read_bytes())
    cfg = _config(tmp_path, s3)
    uri = f"s3://{BUCKET}/runs/a"
    r = _labeler(["corpus", str(cfg), "--out", uri], _env(s3, tmp_path, staging="s1"))
    assert r.returncode == 0, r.stderr[-3000:]
    m = _json(s3, "runs/a/corpus/_manifest.json")
    assert (m["rows_in"], m["rows_out"] + m["rows_rejected"]) == (30, 30)
    parts = [v for k, v in s3.objects(f"{BUCKET}/runs/a/corpus/data").items() if k.endswith(".parquet")]
    assert parts and sum(pq.read_table(pa.BufferReader(v)).num_rows for v in parts) == m["rows_out"]
    assert _json(s3, "runs/a/summary.json")["out"] == uri
    assert not s3.objects(f"{BUCKET}/runs/a/.work")  # the finished attempt's mirror is gone

    r2 = _labeler(["corpus", str(cfg), "--out", uri], _env(s3, tmp_path, staging="s2"))
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "[corpus] up to date" in r2.stderr and "[remote] pulled corpus" in r2.stderr
    assert _json(s3, "runs/a/corpus/_manifest.json")["finished_at"] == m["finished_at"]
    r3 = _labeler(["corpus", str(cfg), "--out", uri, "--set", "corpus.limit=20"], _env(s3, tmp_path, staging="s2"))
    assert r3.returncode == 0 and _json(s3, "runs/a/corpus/_manifest.json")["rows_in"] == 20  # redone, replaced

    for env, out, says in [(_env(s3, tmp_path), "s3://no-such-bucket/run", "bucket 'no-such-bucket' does not exist"),
                           (_env(s3, tmp_path, who="reader"), f"s3://{BUCKET}/runs/b", "access denied"),
                           ({**_env(s3, tmp_path), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}, f"s3://{BUCKET}/runs/b",
                            "")]:
        r = _labeler(["corpus", str(cfg), "--out", out], env)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
        err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(err) == 1 and says in err[0], r.stderr[-2000:]
    assert "may not write" in _labeler(["corpus", str(cfg), "--out", f"s3://{BUCKET}/runs/b"],
                                       _env(s3, tmp_path, who="reader")).stderr
    assert not s3.objects(f"{BUCKET}/runs/b")
    _no_secrets(s3, [r.stdout + r.stderr, r2.stdout + r2.stderr, r3.stdout + r3.stderr], tmp_path / "s1",
                tmp_path / "s2")


class SlowTeacher:
    """Answers "2" after `delay_s`; counts the calls per pair (query_id, doc_id from the prompt)."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.server = FakeChatServer(self)
        self.asked: list[str] = []

    def __call__(self, body) -> Reply:
        text = json.dumps(body["messages"])
        self.asked.append(re.search(r"PAIR-\w+-\d+", text).group(0))
        return Reply("2", delay_s=self.delay_s)


def _pairs_parts(s3, prefix: str, files: int, rows: int) -> int:
    """`files` Parquet parts of `rows` pairs each in the bucket (query ids PAIR-<file>-<row>), and
    a _SUCCESS marker that is not an input."""
    for f in range(files):
        qs = [f"PAIR-{f}-{i}" for i in range(rows)]
        docs = [DOCS[(f * rows + i) % len(DOCS)] for i in range(rows)]
        buf = pa.BufferOutputStream()
        pq.write_table(pa.table({"query_id": qs, "query": [f"{q} vpn access" for q in qs],
                                 "doc_id": [d["doc_id"] for d in docs], "text": [d["text"][:300] for d in docs]}), buf)
        _put(s3, f"{prefix}/part-{f:03d}.parquet", buf.getvalue().to_pybytes())
    _put(s3, f"{prefix}/_SUCCESS", b"")
    return files * rows


@pytest.mark.slow
def test_judge_streams_s3_parts_and_a_killed_run_resumes_from_the_bucket(s3, tmp_path):
    """`labeler judge --pairs s3://.../folder --out s3://...`: a folder of Parquet parts streamed
    through Ray Data from the bucket; the work folder is mirrored there, so a run SIGKILLed midway
    and rerun on a fresh staging folder (another machine) keeps the parts in the bucket, asks the
    teacher only for the rest, and ends with every pair exactly once."""
    teacher = SlowTeacher(delay_s=0.15)
    try:
        total = _pairs_parts(s3, "pairs/k", files=3, rows=40)
        cfg = _config(tmp_path, s3, teacher.server.url)
        uri = f"s3://{BUCKET}/judged/k"
        cmd = [sys.executable, "-m", "labeler.cli", "judge", str(cfg), "--pairs", f"s3://{BUCKET}/pairs/k",
               "--out", uri]
        log1 = tmp_path / "run1.log"
        p = subprocess.Popen(cmd, cwd=ROOT, env=_env(s3, tmp_path, staging="first"), stdout=open(log1, "w"),
                             stderr=subprocess.STDOUT, start_new_session=True)
        work = f"{BUCKET}/judged/k/.labeler/.work"
        try:
            deadline = time.time() + 240
            while time.time() < deadline and p.poll() is None:
                if len([k for k in s3.objects(work) if "/data/part-" in k]) >= 3:
                    break
                time.sleep(0.5)
            assert p.poll() is None, "the run ended before it was killed: " + log1.read_text()[-3000:]
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        before = {k.rsplit("/", 1)[1]: v for k, v in s3.objects(work).items() if "/data/part-" in k}
        kept = set()
        for blob in before.values():
            t = pq.read_table(pa.BufferReader(blob))
            kept |= set(t.column("query_id").to_pylist())
        assert 0 < len(kept) < total
        asked_first = list(teacher.asked)

        r = _labeler(cmd[3:], _env(s3, tmp_path, staging="second"), timeout=400)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "[judge] downloaded" in r.stderr and "resuming an unfinished attempt" in r.stderr
        last = json.loads(r.stdout.strip().splitlines()[-1])
        assert last["output"] == f"{uri}/judgments.parquet"
        assert (last["rows_in"], last["rows_out"]) == (total, total)
        asked_again = teacher.asked[len(asked_first):]
        assert not set(asked_again) & kept  # what the bucket held was not asked again
        assert set(asked_again) | kept == {f"PAIR-{f}-{i}" for f in range(3) for i in range(40)}
        objs = s3.objects(f"{BUCKET}/judged/k")
        t = pq.read_table(pa.BufferReader(objs[f"{BUCKET}/judged/k/judgments.parquet"]))
        assert t.num_rows == total and len(set(t.column("query_id").to_pylist())) == total
        assert set(t.column("input_row").to_pylist()) == {f"part-{f:03d}.parquet[{i}]" for f in range(3) for i in range(40)}
        m = json.loads(objs[f"{BUCKET}/judged/k/_manifest.json"])
        assert m["rows_in"] == m["rows_out"] + m["rows_rejected"] == total
        published = {k.rsplit("/", 1)[1] for k in objs if "/.labeler/judge/data/part-" in k}
        assert set(before) <= published  # resumed from the bucket's parts, not redone
        assert not [k for k in objs if "/.labeler/.work/" in k]
        assert len(objs[f"{BUCKET}/judged/k/_judgments.qrels"].decode().splitlines()) == total
        ray_logs = re.search(r"Ray and vLLM logs: (\S+)", r.stderr)
        _no_secrets(s3, [log1.read_text(), r.stdout + r.stderr], tmp_path / "first", tmp_path / "second",
                    *([Path(ray_logs.group(1))] if ray_logs else []))
    finally:
        teacher.server.close()


def test_job_entrypoint_with_credentials_from_a_shared_file(s3, tmp_path):
    """jobs/corpus.py as `ray job submit` runs it: the corpus read from the bucket, the run written
    there, the credentials found in ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE), not the env."""
    _put(s3, "inputs/docs.jsonl", DEMO_DOCS.read_bytes())
    key, secret = s3.keys["admin"]
    creds = tmp_path / "aws-credentials"
    creds.write_text(f"[labeler]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n")
    env = {k: v for k, v in _env(s3, tmp_path).items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_PROFILE="labeler", AWS_CONFIG_FILE=str(tmp_path / "none"))
    env.pop("RAY_ADDRESS", None)
    uri = f"s3://{BUCKET}/jobs/corpus"
    cmd = [sys.executable, "jobs/corpus.py", "--config", str(_config(tmp_path, s3)), "--out", uri,
           "--set", "corpus.limit=5"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"out": uri, "stages": {"corpus": 5}}
    assert _json(s3, "jobs/corpus/corpus/_manifest.json")["rows_out"] == 5
    creds.write_text(creds.read_text().replace(secret, "wrong-secret"))
    r2 = subprocess.run(cmd[:5] + [f"{uri}-2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert r2.returncode == 2 and "Traceback" not in r2.stderr
    assert "credentials" in r2.stderr or "access denied" in r2.stderr, r2.stderr[-2000:]
    _no_secrets(s3, [r.stdout + r.stderr, r2.stdout + r2.stderr], tmp_path / "staging")


def test_the_s3_filesystem_handed_to_ray_carries_no_credentials(s3, monkeypatch):
    """Read tasks get the filesystem pickled: it must name the endpoint, never the keys (workers
    find their own through the chain)."""
    import pickle

    from labeler.config import StorageConfig
    from labeler.pairs_input import PairsInput
    from labeler.storage import configure

    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    _pairs_parts(s3, "pairs/pickle", files=1, rows=3)
    configure(StorageConfig(endpoint_override=s3.endpoint))
    try:
        src = PairsInput(f"s3://{BUCKET}/pairs/pickle")
        assert [b.num_rows for b in src.blocks()] == [3]
        blob = pickle.dumps(src.fs)
        assert s3.endpoint.split("//")[1].encode() in blob
        assert not any(x.encode() in blob for x in s3.keys["admin"])
    finally:
        configure(None)
