"""The label stage: the distilled student grades the held-out pairs exactly as the teacher did."""
from __future__ import annotations

import pyarrow.compute as pc

from ..schema import LABELS
from .base import Stage, grading_section, model_files


def _section(cfg) -> dict:
    from ..config import identity

    files = model_files(cfg.label.engine.model) if cfg.label.engine is not None else None
    return {"label": identity(cfg.label), **grading_section(cfg), **({"model_files": files} if files else {})}


def _run(ctx) -> dict:
    from ..qrels import write_qrels
    from ..students import make_student
    from .distill import student_dir
    from .grade_stream import grade
    from .judge import grade_stats

    ctx.ray_up()
    c = ctx.cfg
    pairs = ctx.store.table("mine")
    heldout = pairs.filter(pc.equal(pairs.column("split"), "heldout"))
    # The student runs where the teacher ran: same batch and actor resources (GPUs on a cluster).
    student = make_student(c.distill, c.judge.grading, seed=c.seed, k=c.evaluate.k)
    engine = c.label.engine or student.engine_config(student_dir(ctx), like=c.judge.engine)
    w = ctx.writer("label")
    n = grade(w, heldout, engine, c.judge.grading, c.seed)
    extra = grade_stats(w.data())
    if c.label.write_qrels and w.data() is not None:
        extra["qrels"] = str(ctx.store.path("label") / "artifacts" / "labels.qrels")
        write_qrels(w.data(), w.artifacts / "labels.qrels")
    return ctx.publish(w, "label", n, extra={**extra, "model": engine.model})


STAGE = Stage("label", ("distill", "mine"), LABELS, _section, _run,
              help="the student labels the held-out pairs (vLLM actors, or the encoder students' engines)")
