"""A pipeline stage as a small object: its name, the stages it reads, its output schema, the config
it depends on (its fingerprint) and its run step. labeler.pipeline fingerprints, skips and
publishes; the stage list (labeler.stages.STAGES) serves the pipeline, the command line, job
submission and remote runs alike.

A run step gets the pipeline as its context (`ctx`): `ctx.cfg`, `ctx.store` (upstream tables),
`ctx.writer(...)`, `ctx.publish(...)`, `ctx.ray_up()`, `ctx.log(...)`, and returns the manifest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import pyarrow as pa


@dataclass(frozen=True)
class Stage:
    name: str
    upstream: tuple[str, ...]
    schema: pa.Schema
    # The config this stage's output depends on, as JSON-able data (engines without their runtime
    # knobs, template hashes): a change here redoes the stage and every stage after it.
    section: Callable[[object], dict]
    run: Callable[[object], dict]
    # Ray is started only for stages that need it (corpus ingestion and evaluation do not).
    uses_ray: bool = True
    help: str = ""
    # What the stage reads that no upstream stage fingerprints (the corpus files' content).
    inputs: Optional[Callable[[object], str]] = None


def model_files(spec: Optional[str]) -> Optional[str]:
    """A model folder's identity for fingerprints: every file's path, size and modification time,
    so that a student retrained into the same folder is new work. None for a model that is not a
    local folder (an offline model is fixed by its package's version, a hub id by the hub)."""
    import hashlib
    from pathlib import Path

    p = Path(spec).expanduser() if spec else None
    if p is None or not p.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(p)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def grading_section(cfg) -> dict:
    """What a stage that grades with the shared prompt depends on: the grading settings and the
    template's content (editing the prompt redoes the stages that used it)."""
    from ..config import identity
    from ..prompts import template_hash

    return {"grading": identity(cfg.judge.grading), "template": template_hash(cfg.judge.grading.prompt)}
