"""The judge stage: the teacher grades every mined pair (the grading stream, labeler.stages.grade_stream)."""
from __future__ import annotations

from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc

from ..schema import JUDGMENTS
from .base import Stage, model_files
from .mine import counts


def grade_stats(t: Optional[pa.Table]) -> dict:
    """Grade counts, tokens and truncations of a graded table's ok rows."""
    if t is None:
        return {"grade_counts": {}, "tokens_in": 0}
    t = t.filter(pc.equal(t.column("status"), "ok")) if "status" in t.column_names else t
    return {"grade_counts": counts(t, "grade"),
            "tokens_in": int(pc.sum(t.column("prompt_tokens")).as_py() or 0),
            "tokens_out": t.num_rows,  # one token read per graded pair
            "truncated": int(pc.sum(t.column("truncated").cast(pa.int64())).as_py() or 0)}


def usd(engine, tokens: dict) -> float:
    """Token cost at the engine's configured prices (zero for local models unless priced)."""
    return round(tokens.get("tokens_in", 0) / 1e6 * engine.usd_per_1m_input_tokens
                 + tokens.get("tokens_out", 0) / 1e6 * engine.usd_per_1m_output_tokens, 6)


def _section(cfg) -> dict:
    from ..config import identity
    from ..prompts import template_hash

    files = model_files(cfg.judge.engine.model)
    return {"judge": identity(cfg.judge), "template": template_hash(cfg.judge.grading.prompt),
            **({"model_files": files} if files else {})}


def _run(ctx) -> dict:
    from .grade_stream import grade

    ctx.ray_up()
    c = ctx.cfg.judge
    w = ctx.writer("judge")
    n = grade(w, ctx.store.table("mine"), c.engine, c.grading, ctx.cfg.seed)
    stats = grade_stats(w.data())
    return ctx.publish(w, "judge", n, extra={**stats, "usd": usd(c.engine, stats), "model": c.engine.model})


STAGE = Stage("judge", ("mine",), JUDGMENTS, _section, _run,
              help="the teacher grades every mined pair 0-3 (one forward pass, logprobs of the grade tokens)")
