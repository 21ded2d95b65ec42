"""vLLM on a CPU with a bound on one step's tokens: seeded generation and grading still work when a
batch needs several steps (vLLM 0.32 failed seeded requests that chunked prefill had split)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_seeded_generation_and_grading_across_many_small_steps(tiny_model):
    from labeler.config import EngineConfig
    from labeler.engines.vllm_engine import VLLMEngine

    eng = VLLMEngine(EngineConfig(model=tiny_model, max_model_len=512, max_num_seqs=16, max_num_batched_tokens=64))
    prompts = [" ".join(["vpn access policy"] * (40 + i)) for i in range(8)]  # ~120-160 tokens each
    assert all(eng.count_tokens(p) > 64 for p in prompts)
    a = eng.generate(prompts, max_tokens=6, temperature=0.8, seeds=list(range(8)))
    b = eng.generate(prompts, max_tokens=6, temperature=0.8, seeds=list(range(8)))
    assert all(x.error is None and x.completion_tokens > 0 for x in a)
    assert [x.text for x in a] == [x.text for x in b]  # the seeds still make sampling repeatable
    graded = eng.grade(prompts)
    assert all(r.error is None and r.probs is not None for r in graded)


ENGINE_PROCESSES = r"""
import json, sys
from labeler.config import EngineConfig
from labeler.engines.vllm_engine import VLLMEngine, _engine_processes
eng = VLLMEngine(EngineConfig(model=sys.argv[1], max_model_len=512, max_num_seqs=16, in_process=False))
graded = eng.grade(json.loads(sys.argv[2]))
print(json.dumps({"engine_processes": len(_engine_processes()),
                  "probs": [r.probs for r in graded], "errors": [r.error for r in graded]}))
"""


def test_in_process_engine_grades_like_the_engine_process(tiny_model):
    """in_process (the CPU default): no EngineCore process, and the same grades as vLLM's engine
    processes (in_process false)."""
    import json
    import subprocess
    import sys

    from labeler.config import EngineConfig
    from labeler.engines.vllm_engine import VLLMEngine, _engine_processes

    prompts = [f"is doc {i} about vpn access? grade:" for i in range(6)]
    default = EngineConfig(model=tiny_model, max_model_len=512, max_num_seqs=16)
    assert default.in_process is None and default.runs_in_process(gpu=False) and not default.runs_in_process(gpu=True)
    # Its own interpreter, so that the EngineCore process it starts is the only one it sees.
    out = subprocess.run([sys.executable, "-c", ENGINE_PROCESSES, tiny_model, json.dumps(prompts)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    # The last JSON line: the EngineCore process may log to stdout as it shuts down.
    got = next(json.loads(x) for x in reversed(out.stdout.strip().splitlines()) if x.startswith("{"))
    assert got["engine_processes"] == 1 and got["errors"] == [None] * len(prompts)
    before = len(_engine_processes())
    eng = VLLMEngine(default)
    assert eng.in_process and len(_engine_processes()) == before
    ref = eng.grade(prompts)
    for r, p in zip(ref, got["probs"]):
        assert len(r.probs) == len(p) and all(abs(a - b) < 1e-3 for a, b in zip(r.probs, p))


STALLS = r"""
import sys, time
from labeler.config import EngineConfig
from labeler.engines.base import call_engine
from labeler.engines.vllm_engine import VLLMEngine
eng = VLLMEngine(EngineConfig(model=sys.argv[1], max_model_len=512, max_num_seqs=1, in_process=True))
call_engine(eng, eng.grade, ["warm up: the first steps pay one-time costs"])
core = eng.llm.llm_engine.engine_core
get_output = core.get_output
def slow():  # each step takes 1 s: 8 prompts one at a time run well past the 5 s limit in all
    time.sleep(1)
    return get_output()
core.get_output = slow
graded = call_engine(eng, eng.grade, [f"is doc {i} about vpn access? grade:" for i in range(8)])
print("slow steps:", sum(r.error is None for r in graded), flush=True)
core.get_output = lambda: time.sleep(600)  # a step that never ends
call_engine(eng, eng.grade, ["is doc 9 about vpn access? grade:"])
print("the stuck call returned", flush=True)
"""


def test_in_process_engine_ends_its_actor_when_a_step_stalls(tiny_model):
    """In process there is no executor timeout: a step past VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS
    ends the process as a dead engine (so Ray restarts the actor), slow steps within it do not."""
    import os
    import subprocess
    import sys
    import time

    from labeler.engines.base import EXIT_ENGINE_DEAD

    t = time.time()
    out = subprocess.run([sys.executable, "-c", STALLS, tiny_model], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "5"})
    assert out.returncode == EXIT_ENGINE_DEAD, (out.returncode, out.stdout[-2000:], out.stderr[-3000:])
    assert "slow steps: 8" in out.stdout and "the stuck call returned" not in out.stdout
    assert "no engine step finished in" in out.stderr and time.time() - t < 300
