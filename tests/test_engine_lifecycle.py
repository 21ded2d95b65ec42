"""Engine processes and their deaths: a killed vLLM EngineCore is replaced and the run finishes with
every pair once; no Ray or vLLM process outlives `labeler`, whether it succeeds or is interrupted.

Processes are found by a marker in their environment, which every process the command starts
inherits (Ray's raylet, its workers, vLLM's EngineCore and workers)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from conftest import DEMO_DOCS, ROOT

pytestmark = pytest.mark.slow
DOCS = [json.loads(line) for line in DEMO_DOCS.read_text().splitlines()]


def _pairs(path: Path, n: int) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            d = DOCS[i % len(DOCS)]
            f.write(json.dumps({"query_id": f"q{i // 5}", "query": f"{d['title'].split()[0]} policy",
                                "doc_id": d["doc_id"], "title": d["title"], "text": d["text"]}) + "\n")
    return path


def _marked(mark: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("LABELER_TEST_MARK") == mark:
                out.append(p)
        except (psutil.Error, OSError):
            continue
    return out


def _wait_gone(mark: str, timeout: float = 20.0) -> list[str]:
    deadline = time.time() + timeout
    left = _marked(mark)
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = [p for p in _marked(mark) if p.status() != psutil.STATUS_ZOMBIE]
    names = []
    for p in left:
        try:
            names.append(f"{p.name()}[{p.pid}] {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            pass
    return names


def _engine_core(mark: str):
    for p in _marked(mark):
        try:
            if "EngineCore" in p.name() or any("EngineCore" in c for c in p.cmdline()):
                return p
        except psutil.Error:
            continue
    return None


def _cmd(tiny_config, pairs: Path, out: Path, *extra) -> list[str]:
    """vLLM's EngineCore and Worker processes (not the CPU default, in process): the processes
    whose deaths and leftovers these tests are about."""
    return [sys.executable, "-m", "labeler.cli", "label", str(tiny_config[1]), "--model",
            tiny_config[0].judge.engine.model, "--pairs", str(pairs), "--out", str(out),
            "--set", "judge.engine.in_process=false", *extra]


def _env(mark: str) -> dict:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1", "LABELER_TEST_MARK": mark}


def test_no_process_outlives_ctrl_c(tmp_path, tiny_config):
    mark = uuid.uuid4().hex
    # Enough pairs that the run is still grading when the signal comes (at the engine's start).
    cmd = _cmd(tiny_config, _pairs(tmp_path / "p.jsonl", 4000), tmp_path / "out", "--set", "judge.engine.batch_size=4")
    p = subprocess.Popen(cmd, cwd=ROOT, env=_env(mark), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None and _engine_core(mark) is None:
            time.sleep(0.2)
        assert p.poll() is None and _engine_core(mark) is not None, "the engine never came up"
        p.send_signal(signal.SIGINT)  # what Ctrl-C sends to the command
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    assert _wait_gone(mark) == [], err[-2000:]


def test_a_killed_engine_is_restarted_and_every_pair_is_labeled_once(tmp_path, tiny_config):
    """Also: no process outlives the finished run (its restarted engine's included)."""
    mark = uuid.uuid4().hex
    # The engine is killed as the first part (8 pairs) lands: 2,000 pairs leave seconds of grading
    # after it at ~900 pairs/s (2 cores, engine processes), several times the kill's poll.
    n = 2000
    out = tmp_path / "out"
    cmd = _cmd(tiny_config, _pairs(tmp_path / "p.jsonl", n), out, "--set", "judge.engine.batch_size=8")
    p = subprocess.Popen(cmd, cwd=ROOT, env=_env(mark), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    try:
        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None:
            if list((out / ".labeler" / ".work").glob("label-*/data/part-*.parquet")):
                killed = _engine_core(mark)
                if killed is not None:
                    killed.kill()
                    break
            time.sleep(0.05)
        assert killed is not None and p.poll() is None, "the run ended before its engine could be killed"
        stdout, stderr = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, stderr[-3000:]
    t = pq.read_table(out / "labels.parquet")
    keys = list(zip(t.column("query_id").to_pylist(), t.column("doc_id").to_pylist()))
    assert t.num_rows == n and len(set(t.column("input_row").to_pylist())) == n
    assert set(t.column("status").to_pylist()) == {"ok"}
    assert len(set(keys)) == len(keys)
    m = json.loads(stdout.strip().splitlines()[-1])
    assert (m["rows_in"], m["rows_out"]) == (n, n)
    assert _wait_gone(mark) == []
