"""`labeler distill CONFIG --judgments PATH --out DIR`: train the config's student from judgments you
already have (a judge export, the teacher fixture, or TREC qrels from humans or another LLM),
without running synthesis, mining or a teacher.

Pairs keep their `split` when they have one; otherwise queries are held out by the same hash the
mine stage uses (mine.heldout_fraction). The export goes to DIR/model (a folder `labeler label
--model` takes), the record of what was trained on to DIR/train_examples.parquet, and the counts to
DIR/_manifest.json. With --calibrate-on, an encoder student's score -> grade map is fitted on those
human judgments instead of the held-out teacher pairs.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

log = logging.getLogger("labeler")


def standalone_distill(args, cfg, out: Path) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ..judgments_reader import read_judgments
    from ..mining import split_of
    from ..preflight import check, model_problem, path_problem
    from ..raycluster import init_ray
    from ..store import write_json_atomic
    from ..students import TrainingData, make_student

    check([p for p in [path_problem(args.judgments, "--judgments", "judgments"),
                       args.corpus and path_problem(args.corpus, "--corpus", "corpus"),
                       args.queries and path_problem(args.queries, "--queries", "queries"),
                       args.calibrate_on and path_problem(args.calibrate_on, "--calibrate-on", "calibration judgments"),
                       model_problem(*reversed(cfg.distill.base_model_key()))] if p])
    t0 = time.time()
    j = read_judgments(args.judgments, queries=args.queries, corpus=args.corpus)
    if "split" not in j.column_names or j.column("split").null_count == j.num_rows:
        split = [split_of(q, cfg.mine.heldout_fraction, cfg.seed) for q in j.column("query_id").to_pylist()]
        j = (j.drop_columns(["split"]) if "split" in j.column_names else j).append_column("split", pa.array(split))
    part = lambda s: j.filter(pc.equal(j.column("split"), s))  # noqa: E731
    data = TrainingData(train=part("train"), heldout=part("heldout"))
    log.info("[distill] %d judged pairs from %s: %d train, %d held out (%d queries)", j.num_rows, args.judgments,
             data.train.num_rows, data.heldout.num_rows, len(set(j.column("query_id").to_pylist())))
    student = make_student(cfg.distill, cfg.judge.grading, seed=cfg.seed, k=cfg.evaluate.k)
    if student.needs_index:
        raise ValueError(f"distill.kind={cfg.distill.kind} with title groups needs a run's BM25 index; "
                         f"run `labeler distill CONFIG` in a pipeline run, or set title_groups: 0")
    out.mkdir(parents=True, exist_ok=True)
    from ..models import prepare_models

    prepare_models([cfg.distill.base_model_key()[1]], log.info)  # before Ray, in this process
    init_ray(cfg.ray)
    work = out / ".labeler" / "ray_train"
    trained = student.train(data, work, out / "model")
    shutil.rmtree(work, ignore_errors=True)
    pq.write_table(trained.record, out / "train_examples.parquet")
    calibration = None
    if args.calibrate_on:
        from ..students.calibration import calibrate_on_judgments

        calibration = calibrate_on_judgments(out / "model", read_judgments(args.calibrate_on), args.calibrate_on)
    manifest = {"stage": "distill", "kind": cfg.distill.kind, "judgments": args.judgments,
                "rows_in": trained.rows_in, "rows_out": trained.record.num_rows, "rows_rejected": len(trained.rejected),
                "rejected_by_reason": _reasons(trained.rejected), "model_dir": str(out / "model"),
                "calibration": calibration, "wall_s": round(time.time() - t0, 2), **trained.extra}
    write_json_atomic(manifest, out / "_manifest.json")
    from . import _quiet_ray

    _quiet_ray()
    print(json.dumps({k: manifest[k] for k in ("model_dir", "kind", "rows_in", "rows_out", "rows_rejected",
                                               "rejected_by_reason", "wall_s")}))
    return 0


def _reasons(rows) -> dict:
    out: dict = {}
    for r in rows:
        out[r["reason"]] = out.get(r["reason"], 0) + 1
    return dict(sorted(out.items()))
