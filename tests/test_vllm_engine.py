"""vLLM on a CPU: seeded generation and grading when a batch needs several steps (vLLM 0.32 failed
seeded requests that chunked prefill had split); the in-process engine (the CPU default) grades like
vLLM's engine processes; a stalled step ends an in-process engine's process as a dead engine.

Every engine here runs in one interpreter of its own (ENGINES, started once for the module): vLLM's
import and its first engine are most of the cost, a second in-process engine in the same process
takes about a second. Not the pytest process: vLLM 0.32's kernel registration walks every loaded
module and fails on llvmlite's (numba's) library wrapper, which the BM25 tests load here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

ENGINES = r"""
import json, os, sys, time
from labeler.config import EngineConfig
from labeler.engines.base import call_engine
from labeler.engines.vllm_engine import VLLMEngine, _engine_processes

model, out = sys.argv[1], {}
# 1. A bound on one step's tokens: each prompt ~120-160 tokens, so a batch takes several steps.
small = VLLMEngine(EngineConfig(model=model, max_model_len=512, max_num_seqs=16, max_num_batched_tokens=64))
long = [" ".join(["vpn access policy"] * (40 + i)) for i in range(8)]
out["long_tokens"] = [small.count_tokens(p) for p in long]
gen = lambda: [[c.text, c.error, c.completion_tokens]
               for c in small.generate(long, max_tokens=6, temperature=0.8, seeds=list(range(8)))]
out["a"], out["b"] = gen(), gen()
out["long_graded"] = [[r.error, r.probs] for r in small.grade(long)]

# 2. The default config (in process on a CPU) against vLLM's engine processes (in_process false).
short = [f"is doc {i} about vpn access? grade:" for i in range(6)]
process = VLLMEngine(EngineConfig(model=model, max_model_len=512, max_num_seqs=16, in_process=False))
out["engine_processes"] = len(_engine_processes())
out["process_graded"] = [[r.error, r.probs] for r in process.grade(short)]
process.llm.llm_engine.engine_core.shutdown()
out["engine_processes_after_shutdown"] = len(_engine_processes())
default = VLLMEngine(EngineConfig(model=model, max_model_len=512, max_num_seqs=16))
out["default_in_process"] = default.in_process
out["engine_processes_in_process"] = len(_engine_processes())
out["default_graded"] = [[r.error, r.probs] for r in default.grade(short)]
print(json.dumps(out), flush=True)

# 3. Last (it ends this process): an in-process engine whose steps slow down, then stall.
os.environ["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"] = "5"  # read as the engine is built
eng = VLLMEngine(EngineConfig(model=model, max_model_len=512, max_num_seqs=1, in_process=True))
call_engine(eng, eng.grade, ["warm up: the first steps pay one-time costs"])
core = eng.llm.llm_engine.engine_core
get_output = core.get_output
def slow():  # each step takes 1 s: 8 prompts one at a time run well past the 5 s limit in all
    time.sleep(1)
    return get_output()
core.get_output = slow
print("stall part started at", time.time(), flush=True)
graded = call_engine(eng, eng.grade, [f"is doc {i} about vpn access? grade:" for i in range(8)])
print("slow steps:", sum(r.error is None for r in graded), flush=True)
core.get_output = lambda: time.sleep(600)  # a step that never ends
call_engine(eng, eng.grade, ["is doc 9 about vpn access? grade:"])
print("the stuck call returned", flush=True)
"""


@pytest.fixture(scope="module")
def engines(tiny_model):
    """ENGINES run once: its results (the JSON line), its whole output and exit status."""
    from labeler.engines.base import EXIT_ENGINE_DEAD

    out = subprocess.run([sys.executable, "-c", ENGINES, tiny_model], capture_output=True, text=True, timeout=600,
                         env={k: v for k, v in os.environ.items() if k != "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"})
    got = next((json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")), None)
    assert got is not None, (out.returncode, out.stdout[-2000:], out.stderr[-3000:])
    return {"results": got, "run": out, "ended": time.time(), "dead_exit": EXIT_ENGINE_DEAD}


def test_seeded_generation_and_grading_across_many_small_steps(engines):
    got = engines["results"]
    assert all(n > 64 for n in got["long_tokens"])
    a, b = got["a"], got["b"]
    assert all(err is None and n > 0 for _, err, n in a)
    assert [x[0] for x in a] == [x[0] for x in b]  # the seeds still make sampling repeatable
    assert all(err is None and probs is not None for err, probs in got["long_graded"])


def test_in_process_engine_grades_like_the_engine_process(engines):
    """in_process (the CPU default): no EngineCore process, and the same grades as vLLM's engine
    processes (in_process false)."""
    from labeler.config import EngineConfig

    default = EngineConfig(model="m", max_model_len=512, max_num_seqs=16)
    assert default.in_process is None and default.runs_in_process(gpu=False) and not default.runs_in_process(gpu=True)
    got = engines["results"]
    assert got["engine_processes"] == 1 and got["engine_processes_after_shutdown"] == 0
    assert got["default_in_process"] is True and got["engine_processes_in_process"] == 0
    ref, other = got["default_graded"], got["process_graded"]
    assert len(ref) == len(other) == 6 and all(e is None for e, _ in ref + other)
    for (_, r), (_, p) in zip(ref, other):
        assert len(r) == len(p) and all(abs(x - y) < 1e-3 for x, y in zip(r, p))


def test_in_process_engine_ends_its_actor_when_a_step_stalls(engines):
    """In process there is no executor timeout: a step past VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS
    ends the process as a dead engine (so Ray restarts the actor), slow steps within it do not."""
    out = engines["run"]
    assert out.returncode == engines["dead_exit"], (out.returncode, out.stdout[-2000:], out.stderr[-3000:])
    assert "slow steps: 8" in out.stdout and "the stuck call returned" not in out.stdout
    assert "no engine step finished in" in out.stderr
    started = float(out.stdout.split("stall part started at", 1)[1].split()[0])
    assert engines["ended"] - started < 300
