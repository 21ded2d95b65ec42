"""The distill stage: the student of `distill.kind` (labeler.students) trained on the teacher's
judgments of the train split and validated on some of its queries (`distill.validation_fraction`),
exported for the label stage. The held-out split is never shown to the student: it is what the
evaluate stage measures the student on."""
from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.compute as pc

from ..schema import TRAIN_EXAMPLES
from .base import Stage, grading_section


def student_dir(ctx):
    return ctx.store.path("distill") / "artifacts" / "model"


def _section(cfg) -> dict:
    from ..config import identity

    return {"distill": identity(cfg.distill), **grading_section(cfg)}


def _run(ctx) -> dict:
    from ..mining import split_of
    from ..students import TrainingData, make_student
    from .mine import mine_index

    ctx.ray_up()
    c = ctx.cfg
    student = make_student(c.distill, c.judge.grading, seed=c.seed, k=c.evaluate.k)
    j = ctx.store.table("judge")
    split = lambda s: j.filter(pc.equal(j.column("split"), s))  # noqa: E731
    train = split("train")
    val = pa.array([split_of(q, c.distill.validation_fraction, c.seed + 1) == "heldout"
                    for q in train.column("query_id").to_pylist()], pa.bool_())
    data = TrainingData(train=train.filter(pc.invert(val)), heldout=train.filter(val) if pc.any(val).as_py() else None)
    ctx.log(f"[distill] {data.train.num_rows} pairs to train on, "
            f"{0 if data.heldout is None else data.heldout.num_rows} to validate on "
            f"(distill.validation_fraction of the train split's queries), {split('heldout').num_rows} held out unseen")
    if student.needs_index:
        data.index_dir, _ = mine_index(ctx)
        mined = ctx.store.table("mine", columns=["doc_id", "split"])
        data.heldout_docs = frozenset(mined.filter(pc.equal(mined.column("split"), "heldout")).column("doc_id").to_pylist())
    w = ctx.writer("distill")
    trained = student.train(data, w.work / "ray_train", w.artifacts / "model")
    # The record of what the student saw; a resumed attempt rewrites it whole.
    for f in [*(w.work / "data").glob("part-*"), *(w.work / "rejected").glob("part-*")]:
        f.unlink()
    w.write(trained.record)
    w.reject(trained.rejected)
    shutil.rmtree(w.work / "ray_train", ignore_errors=True)
    return ctx.publish(w, "distill", trained.rows_in,
                       extra={"model_dir": str(student_dir(ctx)), **trained.extra})


STAGE = Stage("distill", ("judge",), TRAIN_EXAMPLES, _section, _run,
              help="train the student (distill.kind) on the teacher's grades: Ray Train (+ DeepSpeed)")
