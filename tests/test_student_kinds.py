"""Every student kind goes through the user's own commands: `labeler validate` checks the base
model of whichever kind the config names (the bi-encoder's used to crash it with AttributeError)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from labeler.config import STUDENT_KINDS, load_config
from labeler.preflight import config_problems

DISTILL = {
    "generative": {"kind": "generative", "base_model": "offline:smollm2-135m-instruct"},
    "cross_encoder": {"kind": "cross_encoder", "cross_encoder": {"base_model": "offline:all-minilm-l6-v2"}},
    "bi_encoder": {"kind": "bi_encoder", "bi_encoder": {"base_model": "offline:all-minilm-l6-v2"}},
}


def _config(tmp_path, distill: dict):
    raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    raw["distill"] = distill
    raw["corpus"]["path"] = str(ROOT / "data" / "demo" / "docs.jsonl")
    p = tmp_path / f"{distill['kind']}.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_every_kind_is_listed():
    assert set(DISTILL) == set(STUDENT_KINDS)


@pytest.mark.parametrize("kind", sorted(DISTILL))
def test_validate_passes_with_each_student_kind(kind, tmp_path):
    p = _config(tmp_path, DISTILL[kind])
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    r = subprocess.run([sys.executable, "-m", "labeler.cli", "validate", str(p)], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["distill"]["kind"] == kind


@pytest.mark.parametrize("kind", sorted(DISTILL))
def test_a_missing_base_model_names_the_kinds_own_key(kind, tmp_path):
    distill = json.loads(json.dumps(DISTILL[kind]))
    section = distill.get(kind, distill) if kind != "generative" else distill
    section["base_model"] = str(tmp_path / "no-such-model")
    cfg = load_config(_config(tmp_path, distill))
    problems = config_problems(cfg, ["distill"])
    key = "distill.base_model" if kind == "generative" else f"distill.{kind}.base_model"
    assert problems == [f"{key}: model folder {tmp_path / 'no-such-model'} does not exist"]
