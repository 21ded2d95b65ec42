"""The pipeline as Ray Jobs on a real local head: `labeler submit` uploads the project, runs
jobs/*.py through the Jobs API, follows the logs, and the outputs land at a storage URI.

Runs the tiny pipeline `--until mine` (corpus, synthesize with vLLM, mine): the whole tiny
pipeline takes 4-5 minutes on 2 cores, too long for one test. A second job on a fresh staging
folder (a new cluster) finds every stage published at the URI and skips it; a third fails and
`labeler submit` says so in its exit code.
"""
from __future__ import annotations

import json

import pytest
from ray_head import RayHead

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def head():
    h = RayHead(num_cpus=2, dashboard=True, object_store_memory=300_000_000)
    try:
        h.wait_ready(180)
        yield h
    finally:
        h.stop()


def submit(head, *args, capsys):
    from labeler.cli.submit import main

    rc = main(["--address", head.dashboard_url, *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_submit_pipeline_until_mine_then_rerun_on_fresh_cluster_skips(head, tiny_model, tmp_path, capsys):
    uri = f"file://{tmp_path}/bucket/run"
    models = [f"--set=synthesize.engine.model={tiny_model}", f"--set=judge.engine.model={tiny_model}",
              f"--set=distill.base_model={tiny_model}"]
    rc, logs = submit(head, "--all", "--until", "mine", "configs/tiny.yaml", "--out", uri, *models,
                      "--env", f"LABELER_STAGING={tmp_path}/staging-a", capsys=capsys)
    assert rc == 0, logs[-4000:]
    assert "SUCCEEDED" in logs and "[synthesize] done" in logs and "[mine] done" in logs
    remote = tmp_path / "bucket/run"
    m = {s: json.loads((remote / s / "_manifest.json").read_text()) for s in ("corpus", "synthesize", "mine")}
    assert not (remote / "judge").exists()  # --until mine
    assert m["corpus"]["rows_out"] == 40 and m["synthesize"]["rows_out"] > 0
    assert m["mine"]["rows_in"] == m["synthesize"]["rows_out"] and m["mine"]["rows_out"] > 0
    assert m["mine"]["upstream"]["synthesize"] == m["synthesize"]["fingerprint"]
    assert list((remote / "mine" / "data").glob("part-*.parquet"))
    summary = json.loads((remote / "summary.json").read_text())
    assert summary["out"] == uri and set(summary["stages"]) == {"corpus", "synthesize", "mine"}

    # A new cluster: nothing staged locally, everything published at the URI -> all skipped.
    rc, logs = submit(head, "--stage", "mine", "configs/tiny.yaml", "--out", uri, *models,
                      "--env", f"LABELER_STAGING={tmp_path}/staging-b", capsys=capsys)
    assert rc == 0, logs[-4000:]
    for s in ("corpus", "synthesize", "mine"):
        assert f"[{s}] up to date" in logs
        assert json.loads((remote / s / "_manifest.json").read_text())["finished_at"] == m[s]["finished_at"]
    assert "[remote] pulled mine" in logs


def test_failed_job_makes_submit_fail(head, tmp_path, capsys):
    rc, logs = submit(head, "--stage", "corpus", "configs/tiny.yaml", "--out", f"file://{tmp_path}/run",
                      "--set", "corpus.path=data/demo/missing.jsonl", capsys=capsys)
    assert rc == 1 and "FAILED" in logs and "missing.jsonl" in logs
