"""The engines on the same pairs: vLLM and transformers agree."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest
from conftest import DEMO_DOCS

from labeler.config import EngineConfig
from labeler.schema import PAIRS


def _pairs(n=6, long_query=None) -> pa.Table:
    docs = [json.loads(l) for l in DEMO_DOCS.read_text().splitlines()[:n]]
    rows = [{"query_id": f"q{i % 3}", "query": ["vpn setup", "expense policy", "login outage"][i % 3],
             "doc_id": d["doc_id"], "title": d["title"], "text": d["text"],
             "doc_meta": json.dumps({"author": d["author"]}), "source": "bm25", "bm25_rank": i + 1,
             "bm25_score": 1.0, "split": "heldout"} for i, d in enumerate(docs)]
    if long_query:
        rows.append({**rows[0], "query_id": "q-long", "query": long_query})
    return pa.Table.from_pylist(rows, schema=PAIRS)


def test_vllm_and_transformers_engines_agree(tiny_model, ray_local):
    """The logprob read through vLLM matches a plain forward pass in transformers."""
    import ray

    from labeler.engines import make_engine
    from labeler.grading import build_prompt
    from labeler.prompts import load_template

    cfg = EngineConfig(model=tiny_model, max_model_len=512, backend="transformers", dtype="bfloat16")
    hf = make_engine(cfg)
    template = load_template("grade_plain")
    prompts = [build_prompt(hf, template, r, 64).prompt for r in _pairs(4).to_pylist()]
    expected = [r.probs for r in hf.grade(prompts)]

    @ray.remote(num_cpus=1)
    def via_vllm(prompts):
        eng = make_engine(EngineConfig(model=tiny_model, max_model_len=512))
        return [r.probs for r in eng.grade(prompts)]

    got = ray.get(via_vllm.remote(prompts))
    for a, b in zip(expected, got):
        assert b == pytest.approx(a, abs=0.06)  # bf16 kernels differ slightly
