"""Shared fixtures: a tiny random-weight model (real tokenizer, head_dim 64), a local Ray, paths."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The AWS SDK (pyarrow's S3) must never probe the instance-metadata address from a test.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
# Ray Train's controller looks at its workers every 2 s by default, and a fit waits for several of
# those looks (start, reports, finish): a fit of a loop that does nothing took ~15 s on 2 cores, ~9 s
# at 0.2 s. Read by the controller's process, so it reaches the `labeler` commands tests start too.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

ROOT = Path(__file__).resolve().parent.parent
DEMO_DOCS = ROOT / "data" / "demo" / "docs.jsonl"
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """Built once and cached: a 2-layer Llama whose output head favours the grade digits."""
    from labeler.models import cache_dir, make_random_model

    return str(make_random_model(cache_dir() / "test-models" / "tiny-llama-h128"))


@pytest.fixture(scope="session")
def tiny_encoder() -> str:
    """A 2-layer random BERT with a real tokenizer, for the encoder students."""
    from labeler.models import cache_dir, make_random_encoder

    return str(make_random_encoder(cache_dir() / "test-models" / "tiny-bert-h128"))


@pytest.fixture(scope="module")
def ray_local():
    """Module-scoped: no local Ray outlives its module, so tests that start `labeler` in a
    subprocess (its own Ray) never share the machine with a second instance (Ray Train's
    placement-group cleaner cannot pick between two)."""
    import ray

    from labeler.config import RayConfig
    from labeler.raycluster import init_ray

    init_ray(RayConfig(num_cpus=2))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 (tests/s3_server.py), one per session, with IAM auth on."""
    from s3_server import S3Server

    server = S3Server(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def tiny_config(tiny_model, tmp_path):
    """configs/tiny.yaml with the tiny model filled in, as a loaded Config."""
    from labeler.config import load_config

    text = (ROOT / "configs" / "tiny.yaml").read_text().replace("TINY", tiny_model)
    p = tmp_path / "configs" / "tiny.yaml"
    p.parent.mkdir()
    p.write_text(text.replace("data/demo/docs.jsonl", str(DEMO_DOCS)))
    return load_config(p), p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc, port: int, timeout_s: float = 240) -> None:
    """Until `vllm serve` on `port` answers /health (it died or took too long: the test fails)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return
        except OSError:
            assert proc.poll() is None, "vllm serve exited"
            time.sleep(0.5)
    pytest.fail(f"vllm serve did not come up in {timeout_s:.0f} s")


class VLLMServe:
    """`vllm serve` on the tiny model for the tests that need a real OpenAI-compatible server
    (`args` are also what `vllm run-batch` takes to grade as it does). Started by the first test
    that asks for it, kept for the next one if it asks too, stopped as soon as the next does not
    (pytest_runtest_teardown): the tests that use it sit next to each other. A test waits for it
    when it first reads `url`, so it can start other work while the server loads."""

    env = {"VLLM_CPU_KVCACHE_SPACE": "1"}

    def __init__(self, model: str):
        self.args = ["--model", model, "--served-model-name", "tiny", "--max-model-len", "512", "--dtype", "bfloat16",
                     "--enforce-eager", "--max-logprobs", "20"]
        self.proc = None
        self.port = None
        self.healthy = False

    def start(self) -> "VLLMServe":
        if self.proc is None or self.proc.poll() is not None:
            self.port = free_port()
            self.proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", *self.args,
                                          "--port", str(self.port)], env={**os.environ, **self.env},
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.healthy = False
        return self

    @property
    def url(self) -> str:
        if not self.healthy:
            wait_healthy(self.proc, self.port)
            self.healthy = True
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


_SERVES: list[VLLMServe] = []


@pytest.fixture(scope="session")
def _vllm_serve(tiny_model):
    serve = VLLMServe(tiny_model)
    _SERVES.append(serve)
    yield serve
    serve.stop()


@pytest.fixture
def vllm_server(_vllm_serve) -> VLLMServe:
    return _vllm_serve.start()


def pytest_runtest_teardown(item, nextitem):
    if nextitem is None or "vllm_server" not in getattr(nextitem, "fixturenames", ()):
        for serve in _SERVES:
            serve.stop()


def shared_path(*parts) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent (../shared/data is not part of the project)")
    return p


@pytest.fixture
def labeler_logging():
    """The command's logging set up in this process, undone after the test."""
    import logging

    from labeler import logsetup

    logger = logging.getLogger("labeler")
    saved = (logger.level, list(logger.handlers), logger.propagate, dict(logsetup._state))
    yield
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    logger.propagate = saved[2]
    logsetup._state.update(saved[3])
