"""Shared fixtures: a tiny random-weight model (real tokenizer, head_dim 64), a local Ray, paths."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The AWS SDK (pyarrow's S3) must never probe the instance-metadata address from a test.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

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


def shared_path(*parts) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent (../shared/data is not part of the project)")
    return p
