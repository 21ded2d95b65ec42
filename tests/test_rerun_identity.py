"""`labeler judge|label --pairs` reruns are "up to date" only for the same work: an edited prompt
template (same name, new contents) and a student retrained into the same folder are new work, as
they are for the pipeline's stages (labeler.stages.base.model_files, prompts.template_hash)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEMO_DOCS, ROOT
from fake_openai import FakeChatServer, Reply

DOCS = [json.loads(line) for line in DEMO_DOCS.read_text().splitlines()[:6]]


def _pairs(tmp_path: Path) -> Path:
    p = tmp_path / "pairs.jsonl"
    p.write_text("".join(json.dumps({"query_id": f"q{i // 3}", "query": "vpn access", "doc_id": d["doc_id"],
                                     "title": d["title"], "text": d["text"][:300]}) + "\n"
                         for i, d in enumerate(DOCS)))
    return p


def _config(tmp_path: Path, judge: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(f"name: rerun\nray: {{num_cpus: 2}}\ncorpus: {{path: {DEMO_DOCS}}}\n"
                 f"synthesize: {{engine: {{model: unused}}}}\njudge:\n{judge}")
    return p


def _cli(*args, timeout=300):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "labeler.cli", *map(str, args)], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture
def teacher():
    server = FakeChatServer(lambda body: Reply("2"))
    yield server
    server.close()


def test_an_edited_template_is_new_work(tmp_path, teacher):
    template = tmp_path / "my_prompt.txt"
    template.write_text((ROOT / "labeler" / "templates" / "grade_plain.txt").read_text())
    cfg = _config(tmp_path, f"""  engine: {{backend: openai, model: m, base_url: "{teacher.url}", max_retries: 0,
            timeout_s: 5, batch_size: 8, request_cache: false}}
  grading: {{prompt: "{template}"}}
""")
    pairs, out = _pairs(tmp_path), tmp_path / "o"
    _cli("judge", cfg, "--pairs", pairs, "--out", out)
    assert teacher.calls == len(DOCS)
    r = _cli("judge", cfg, "--pairs", pairs, "--out", out)
    assert "up to date" in r.stderr and teacher.calls == len(DOCS)
    template.write_text(template.read_text().replace("careful search quality rater", "strict search quality rater"))
    r = _cli("judge", cfg, "--pairs", pairs, "--out", out)
    assert "up to date" not in r.stderr
    assert teacher.calls == 2 * len(DOCS)  # every pair asked again, with the new prompt


def _bi_encoder_export(base: str, out: Path, seed: int) -> None:
    """A bi-encoder export as `labeler distill` writes it (sentence-transformers folder + labeler's
    meta), with random weights drawn from `seed`: a stand-in for a retrained student."""
    import torch
    from sentence_transformers import SentenceTransformer

    from labeler.engines.bi_encoder_engine import META_FILE
    from labeler.engines.encoder_export import write_meta

    model = SentenceTransformer(base, device="cpu")
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save(str(out))
    write_meta(out, META_FILE, {"max_seq_len": 64, "calibration": {"x": [-1.0, 1.0], "y": [0.0, 3.0]}})


def test_a_student_retrained_into_the_same_folder_is_new_work(tmp_path, tiny_encoder):
    model = tmp_path / "student"
    _bi_encoder_export(tiny_encoder, model, seed=1)
    cfg = _config(tmp_path, "  engine: {model: unused}\n")
    pairs, out = _pairs(tmp_path), tmp_path / "o"
    _cli("label", cfg, "--model", model, "--pairs", pairs, "--out", out)
    r = _cli("label", cfg, "--model", model, "--pairs", pairs, "--out", out)
    assert "up to date" in r.stderr
    _bi_encoder_export(tiny_encoder, model, seed=2)  # same files, same sizes, new weights
    r = _cli("label", cfg, "--model", model, "--pairs", pairs, "--out", out)
    assert "up to date" not in r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["rows_out"] == len(DOCS)
