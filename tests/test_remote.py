"""Run folders at storage URIs: sync-down of published stages, sync-up with the manifest last.

No network: file:// URIs, plain folders, and an s3:// URI served by a recording local filesystem.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from labeler.config import load_config
from labeler.remote import MANIFEST, RemoteRun, fetch_input, is_uri, run_pipeline
from labeler.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = pa.schema([("key", pa.string()), ("v", pa.int64())])


def publish(root: Path, stage: str, fp: str, rows: list[int]) -> dict:
    w = RunStore(root).writer(stage, fp, SCHEMA)
    w.write(pa.table({"key": [str(r) for r in rows], "v": rows}, schema=SCHEMA))
    (w.artifacts / "model.bin").write_bytes(b"weights-" + fp.encode())
    return w.publish(len(rows), config={}, upstream={})


class Recording(pafs.FileSystemHandler):
    """A local folder posing as a bucket, recording every file written (for ordering checks)."""

    def __init__(self, root: Path):
        self.fs = pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem())
        self.writes: list[str] = []

    def get_type_name(self): return "recording"
    def normalize_path(self, p): return p
    def get_file_info(self, paths): return self.fs.get_file_info(paths)
    def get_file_info_selector(self, sel): return self.fs.get_file_info(sel)
    def create_dir(self, p, recursive): self.fs.create_dir(p, recursive=recursive)
    def delete_dir(self, p): self.fs.delete_dir(p)
    def delete_dir_contents(self, p, missing_dir_ok=False): self.fs.delete_dir_contents(p, missing_dir_ok=missing_dir_ok)
    def delete_root_dir_contents(self): self.fs.delete_dir_contents("", accept_root_dir=True)
    def delete_file(self, p): self.fs.delete_file(p)
    def move(self, a, b): self.fs.move(a, b)
    def copy_file(self, a, b): self.fs.copy_file(a, b)
    def open_input_stream(self, p): return self.fs.open_input_stream(p)
    def open_input_file(self, p): return self.fs.open_input_file(p)
    def open_append_stream(self, p, metadata): return self.fs.open_append_stream(p)
    def __eq__(self, other): return self is other
    def __ne__(self, other): return self is not other

    def open_output_stream(self, p, metadata):
        self.writes.append(p)
        return self.fs.open_output_stream(p)


def test_uri_detection_and_plain_folder_is_used_in_place(tmp_path):
    assert is_uri("s3://b/run") and is_uri("file:///x") and not is_uri("out/run") and not is_uri("/abs/run")
    run = RemoteRun(str(tmp_path / "run"))
    assert not run.remote and run.local == tmp_path / "run"
    publish(run.local, "corpus", "f1", [1, 2])
    assert run.pull() == [] and run.push_changed() == []  # nothing to sync: the folder is the run
    assert run.published() == ["corpus"]


def test_file_uri_round_trip_to_a_fresh_staging_folder(tmp_path):
    uri = f"file://{tmp_path}/bucket/run"
    first = RemoteRun(uri, staging=tmp_path / "stage-a")
    m = publish(first.local, "corpus", "fp-corpus", [1, 2, 3])
    publish(first.local, "mine", "fp-mine", [4])
    assert first.push_changed() == ["corpus", "mine"]
    assert first.push_changed() == []  # unchanged stages are not uploaded again
    assert json.loads((tmp_path / "bucket/run/corpus" / MANIFEST).read_text()) == m

    # A fresh machine: the published stages come down whole and the store sees them as done.
    second = RemoteRun(uri, staging=tmp_path / "stage-b")
    assert second.pull() == ["corpus", "mine"]
    store = RunStore(second.local)
    assert store.is_done("corpus", "fp-corpus") and store.is_done("mine", "fp-mine")
    assert store.table("corpus").column("v").to_pylist() == [1, 2, 3]
    assert (second.local / "corpus/artifacts/model.bin").read_bytes() == b"weights-fp-corpus"
    assert second.pull() == []  # already identical: not downloaded again


def test_unfinished_remote_stage_is_not_pulled(tmp_path):
    half = tmp_path / "bucket/run/judge/data"
    half.mkdir(parents=True)
    (half / "part-0.parquet").write_bytes(b"half-uploaded")  # no manifest: an interrupted upload
    run = RemoteRun(f"file://{tmp_path}/bucket/run", staging=tmp_path / "stage")
    assert run.published() == [] and run.pull() == []
    assert not (run.local / "judge").exists()


def test_s3_push_replaces_old_version_and_writes_manifest_last(tmp_path):
    handler = Recording(tmp_path / "s3")
    fs = pafs.PyFileSystem(handler)
    run = RemoteRun("s3://bucket/runs/r1", staging=tmp_path / "stage", filesystem=fs)
    publish(run.local, "judge", "old", [1, 2])
    run.push("judge")
    old_parts = {p.name for p in (tmp_path / "s3/bucket/runs/r1/judge/data").iterdir()}
    assert handler.writes[-1] == "bucket/runs/r1/judge/" + MANIFEST

    handler.writes.clear()
    publish(run.local, "judge", "new", [7, 8, 9])  # redone with other settings
    assert run.push_changed() == ["judge"]
    assert handler.writes[-1].endswith("judge/" + MANIFEST) and len(handler.writes) >= 3
    remote = tmp_path / "s3/bucket/runs/r1/judge"
    new_parts = {p.name for p in (remote / "data").iterdir()}
    assert not (old_parts & new_parts)  # the old version's parts are gone, not mixed in
    assert json.loads((remote / MANIFEST).read_text())["fingerprint"] == "new"

    fresh = RemoteRun("s3://bucket/runs/r1", staging=tmp_path / "fresh", filesystem=fs)
    assert fresh.pull() == ["judge"]
    assert sorted(RunStore(fresh.local).table("judge").column("v").to_pylist()) == [7, 8, 9]


def test_fetch_input_keeps_names_so_the_corpus_fingerprint_holds(tmp_path):
    from labeler.stages import corpus

    src = ROOT / "data/demo/docs.jsonl"
    local = fetch_input(f"file://{src}", tmp_path / "inputs")
    assert (local / "docs.jsonl").read_bytes() == src.read_bytes()
    assert corpus.fingerprint(str(local)) == corpus.fingerprint(str(src))
    assert fetch_input(f"file://{src}", tmp_path / "inputs") == local  # fetched once
    with pytest.raises(FileNotFoundError):
        fetch_input(f"file://{tmp_path}/nope.jsonl", tmp_path / "inputs")


def _tiny_cfg():
    return load_config(ROOT / "configs/tiny.yaml", {"corpus": {"limit": 12}})


def test_pipeline_rerun_on_fresh_staging_skips_published_stages(tmp_path):
    uri = f"file://{tmp_path}/bucket/run"
    s1 = run_pipeline(_tiny_cfg(), uri, until="corpus", staging=str(tmp_path / "a"), log=lambda m: None)
    assert s1["stages"]["corpus"]["skipped"] is False
    assert (tmp_path / "bucket/run/corpus" / MANIFEST).is_file()
    assert json.loads((tmp_path / "bucket/run/summary.json").read_text())["out"] == uri
    s2 = run_pipeline(_tiny_cfg(), uri, until="corpus", staging=str(tmp_path / "b"), log=lambda m: None)
    assert s2["stages"]["corpus"]["skipped"] is True
    # A changed corpus setting is a different fingerprint: redone and re-published.
    cfg = load_config(ROOT / "configs/tiny.yaml", {"corpus": {"limit": 11}})
    s3 = run_pipeline(cfg, uri, until="corpus", staging=str(tmp_path / "c"), log=lambda m: None)
    assert s3["stages"]["corpus"]["skipped"] is False and s3["stages"]["corpus"]["rows_in"] == 11
    assert json.loads((tmp_path / "bucket/run/corpus" / MANIFEST).read_text())["rows_in"] == 11


def test_only_refuses_a_stage_whose_inputs_are_not_published(tmp_path):
    with pytest.raises(RuntimeError, match="needs corpus"):
        run_pipeline(_tiny_cfg(), f"file://{tmp_path}/run", only=["synthesize"], staging=str(tmp_path / "s"),
                     log=lambda m: None)


def test_job_entrypoint_runs_against_a_uri(tmp_path):
    """jobs/corpus.py as `ray job submit` would run it (the corpus stage needs no Ray)."""
    env = {**os.environ, "LABELER_STAGING": str(tmp_path / "staging")}
    env.pop("RAY_ADDRESS", None)
    uri = f"file://{tmp_path}/bucket/run"
    r = subprocess.run([sys.executable, "jobs/corpus.py", "--config", "configs/tiny.yaml", "--out", uri,
                        "--set", "corpus.limit=5"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"out": uri, "stages": {"corpus": 5}}
    assert json.loads((tmp_path / "bucket/run/corpus" / MANIFEST).read_text())["rows_out"] == 5
    bad = subprocess.run([sys.executable, "jobs/corpus.py", "--config", "configs/nope.yaml", "--out", uri],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "config file not found" in bad.stderr


def test_submit_waits_for_the_job_agent_then_gives_up_on_other_errors():
    from labeler.cli.submit import submit_with_retry

    class Client:
        calls = 0

        def submit_job(self, **kw):
            Client.calls += 1
            if Client.calls < 3:
                raise RuntimeError("Request failed with status code 500: No available agent to submit job, please try again later..")
            return "raysubmit_1"

    import time as _t
    orig = _t.sleep
    _t.sleep = lambda s: None
    try:
        assert submit_with_retry(Client(), entrypoint="x") == "raysubmit_1" and Client.calls == 3

        class Broken:
            def submit_job(self, **kw):
                raise RuntimeError("Request failed with status code 400: bad runtime_env")
        with pytest.raises(RuntimeError, match="bad runtime_env"):
            submit_with_retry(Broken(), entrypoint="x")
    finally:
        _t.sleep = orig
