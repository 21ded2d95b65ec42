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
