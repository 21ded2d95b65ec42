"""The terminal is labeler's: without -v, what Ray (its C++ core worker, Ray Data's warnings and
issue detectors) and Python's warnings write goes to a log file, and a working stage prints a line
at least every 30 seconds."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT

SCRIPT = r'''
import logging, os, sys, warnings
from labeler import logsetup
logsetup.own_terminal()  # as the `labeler` command does
logsetup.setup_logging(int(sys.argv[1]))
from labeler.config import RayConfig
from labeler.raycluster import init_ray
ray = init_ray(RayConfig(num_cpus=1, object_store_memory=100_000_000))
os.write(2, b"core_worker.cc:2465: a C++ line\n")
logging.getLogger("ray").warning("a ray warning")
logging.getLogger("ray.data").warning("a ray data warning")
warnings.warn("a python warning")
logging.getLogger("labeler.test").info("[stage] a labeler line")
ray._private.worker.print_to_stdstream({"lines": ["a raylet error"], "pid": "raylet", "is_err": False}, False)
ray.data.range(4).map_batches(lambda b: b).take_all()
print(logsetup.diverted(), ray._private.worker._global_node.get_logs_dir_path(), flush=True)
ray.shutdown()
'''


def _run(verbosity: int):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    for k in ("RAY_ADDRESS", "RAY_JOB_ID", "RAY_SUBMISSION_ID"):
        env.pop(k, None)
    return subprocess.run([sys.executable, "-c", SCRIPT, str(verbosity)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def test_other_libraries_write_to_a_log_file_not_the_terminal():
    r = _run(0)
    assert r.returncode == 0, r.stderr[-3000:]
    diverted, logs = r.stdout.split()  # nothing else on stdout: the raylet's errors are logged
    lines = r.stderr.splitlines()
    assert lines[0] == f"Ray and vLLM logs: {logs} (-v shows them here)"
    assert lines[1:] == ["[stage] a labeler line"], lines
    assert diverted == os.path.join(logs, "labeler-driver.log")
    text = open(diverted).read()
    for line in ("core_worker.cc:2465: a C++ line", "a ray warning", "a python warning", "(raylet) a raylet error"):
        assert line in text
    data = open(os.path.join(logs, "ray-data", "ray-data.log")).read()
    assert "a ray data warning" in data and "Progress bars disabled" in data


def test_verbose_keeps_everything_on_the_terminal():
    r = _run(1)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-2] == "None"  # nothing diverted
    assert "a raylet error" in r.stdout
    for line in ("core_worker.cc:2465: a C++ line", "a ray warning", "a ray data warning", "a python warning",
                 "[stage] a labeler line"):
        assert line in r.stderr


def test_a_test_process_keeps_its_stderr(labeler_logging):
    """Only the command's own process diverts: a process that merely set up labeler's logging
    (a job's entrypoint, a test calling the command's functions) keeps its stderr."""
    from labeler import logsetup

    logsetup.setup_logging(0)
    assert not logsetup.owns_terminal() and logsetup.divert_stderr("/nonexistent/x.log") is None
    logsetup.own_terminal()
    logsetup.setup_logging(1)
    assert not logsetup.owns_terminal()  # -v




# -- no long silences ---------------------------------------------------------------------------

def test_heartbeat_before_the_first_results_and_between_batches(caplog):
    from labeler.stages.runner import Progress

    caplog.set_level(logging.INFO, logger="labeler")
    p = Progress("synthesize", 40, heartbeat_s=30)
    t0 = p.t0
    assert p.beat(t0 + 20) is None
    assert p.beat(t0 + 31).startswith("waiting for the first results: the engines are starting")
    assert p.beat(t0 + 45) is None  # a line 14 s ago
    assert "31s so far" in caplog.text
    p.update(8)
    p.last_batch = p.last = t0 + 70
    line = p.beat(t0 + 101)
    assert line.startswith("8/40 rows") and line.endswith("no batch back for 31s")
    assert "[synthesize] 8/40 rows" in caplog.text


def test_heartbeat_thread_prints_while_nothing_arrives(caplog):
    from labeler.stages.runner import Progress, heartbeat

    caplog.set_level(logging.INFO, logger="labeler")
    with Progress("judge", 10, heartbeat_s=0.3):
        time.sleep(1.2)
    beats = [r for r in caplog.records if "waiting for the first results" in r.getMessage()]
    assert 2 <= len(beats) <= 5
    caplog.clear()
    with heartbeat("judge", "reading the pairs' keys", every_s=0.2):
        time.sleep(0.7)
    assert sum("[judge] reading the pairs' keys, 0s so far" in r.getMessage() for r in caplog.records) >= 2


# -- a whole stage, as a user runs it -----------------------------------------------------------

LABELER_LINE = ("[", "Ray and vLLM logs: ", "Run ", "stage ", "summary: ", "killed ")


@pytest.mark.slow
def test_synthesize_prints_only_labeler_lines(tiny_config, tmp_path):
    """`labeler synthesize` with a vLLM engine: every line on the terminal is labeler's."""
    _, cfg = tiny_config
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "labeler.cli", "synthesize", str(cfg), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [x for x in (r.stderr + r.stdout).splitlines() if x.strip()]
    foreign = [x for x in lines if not x.startswith(LABELER_LINE) and not x.startswith(("corpus ", "synthesize "))]
    assert foreign == [], foreign
    assert any("each engine asks Ray for" in x for x in lines)
