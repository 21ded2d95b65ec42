"""The OpenAI-compatible path against real servers on localhost: `vllm serve` with the tiny model
for grading and the request cache, and a small HTTP server for the failure modes (down, slow,
5xx, replies that are not a grade). A failure is an error with a reason, never a grade."""
from __future__ import annotations

import time

import pytest
from conftest import free_port as _free_port
from fake_openai import FakeChatServer, Reply

from labeler.config import EngineConfig
from labeler.engines.openai_engine import OpenAIEngine

MSG = [{"role": "user", "content": "Grade this pair. Reply with a digit 0-3."}]


class _Behaviour:
    mode = "ok"      # ok | slow | error | chatter

    def __call__(self, body) -> Reply:
        if self.mode == "error":
            return Reply(status=500)
        content = {"ok": "2", "slow": "2", "chatter": "I think this document is quite relevant."}[self.mode]
        return Reply(content, delay_s=3 if self.mode == "slow" else 0)


@pytest.fixture
def fake():
    b = _Behaviour()
    srv = FakeChatServer(b)
    b.server = srv
    yield b, srv.url
    srv.close()


def _engine(url, tmp_path, **kw):
    cfg = EngineConfig(backend="openai", model="m", base_url=url, timeout_s=1.0, max_retries=1,
                       request_cache_path=str(tmp_path / "cache.sqlite"), **kw)
    return OpenAIEngine(cfg)


class _NoServer:
    """An OpenAI client that must not be used: any request through it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the server was asked ({name}) for an answer the cache holds")


# First in this module: it shares `vllm serve` (conftest.VLLMServe) with the last test of
# tests/test_openai_batch.py, which runs just before it.
@pytest.mark.slow
def test_grades_from_logprobs_of_a_real_vllm_server(vllm_server, tmp_path):
    cfg = EngineConfig(backend="openai", model="tiny", base_url=vllm_server.url,
                       request_cache_path=str(tmp_path / "c.sqlite"), concurrency=4)
    eng = OpenAIEngine(cfg)
    msgs = [[{"role": "user", "content": f"Document {i}: the VPN guide. Query: vpn. Grade 0-3:"}] for i in range(6)]
    results = eng.grade(msgs)
    for r in results:
        assert r.error is None, r.detail
        assert sum(r.probs) == pytest.approx(1.0) and r.mass is not None and 0 < r.mass <= 1.0001
    gens = eng.generate(msgs[:2], max_tokens=5, temperature=0.0)
    assert all(g.error is None and g.completion_tokens > 0 for g in gens)
    # With no server to ask, the same requests are answered from the cache, identically.
    again = OpenAIEngine(cfg)
    again.client = _NoServer()
    assert [r.probs for r in again.grade(msgs)] == [r.probs for r in results]


def test_parsed_grade_without_logprobs_and_cache(fake, tmp_path):
    b, url = fake
    eng = _engine(url, tmp_path)
    r = eng.grade([MSG])[0]
    assert r.error is None and r.grade == 2 and r.probs == [0, 0, 1, 0] and r.prompt_tokens == 11
    b.mode = "error"  # the cached answer is replayed; the server is not asked again
    assert eng.grade([MSG])[0].grade == 2 and b.server.calls == 1 and eng.cache.hits == 1


def test_reply_that_is_not_a_grade_is_an_error(fake, tmp_path):
    b, url = fake
    b.mode = "chatter"
    r = _engine(url, tmp_path).grade([MSG])[0]
    assert r.grade is None and r.probs is None and r.error == "unparseable_output"
    assert "quite relevant" in r.raw and "asked 2 times" in r.detail
    assert b.server.calls == 2  # asked again once before giving up


def test_server_errors_are_retried_then_reported_and_not_cached(fake, tmp_path):
    b, url = fake
    b.mode = "error"
    eng = _engine(url, tmp_path)
    r = eng.grade([MSG])[0]
    assert r.grade is None and r.error == "server_error" and "HTTP 500" in r.detail
    assert b.server.calls == 2  # one try + one retry
    b.mode = "ok"
    assert eng.grade([MSG])[0].grade == 2  # the error was not cached


def test_slow_server_times_out(fake, tmp_path):
    b, url = fake
    b.mode = "slow"
    t = time.time()
    r = _engine(url, tmp_path, request_cache=False).grade([MSG])[0]
    assert r.error == "timeout" and r.grade is None
    assert time.time() - t < 10


def test_server_down(tmp_path):
    r = _engine(f"http://127.0.0.1:{_free_port()}/v1", tmp_path).grade([MSG])[0]
    assert r.error == "connection_error" and r.grade is None
