"""`labeler judge|label CONFIG --pairs PAIRS --out DIR`: grade a given pairs file or folder, streamed,
into one export row per input row, resumable, with exit codes a script can use."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..config import EngineConfig, identity

log = logging.getLogger("labeler")


def standalone(args, cfg, out: Path) -> int:
    """Grade a given pairs file into OUT/judgments.parquet (judge) or OUT/labels.parquet (label).

    The pairs are streamed (labeler.stages.grade_stream), never read whole. The export has exactly one row per
    input row (failed ones with status "failed", their reason and `input_row`, the file:line they
    came from); the resumable work and the rejected rows with raw outputs stay in OUT/.labeler/,
    which Parquet dataset readers skip. The export and the qrels are written part by part.

    A rerun is up to date only for the same settings and the same file contents. When the files
    changed, rows of files that did not (and of JSONL files that only grew) are kept and only the
    rest is graded; `--retry-failed` regrades the rows that failed for a transient reason.
    """
    import hashlib

    import pyarrow.compute as pc

    from ..engines.base import TRANSIENT_ERRORS
    from ..raycluster import init_ray
    from ..readers import PairsInput, input_file
    from ..schema import JUDGMENTS, LABELS
    from ..stages.grade_stream import grade, row_keys, scan, with_input_row
    from ..store import RunStore, write_json_atomic

    engine = cfg.judge.engine
    if args.cmd == "label":
        if not (args.model or cfg.label.engine):
            raise ValueError("label --pairs needs --model DIR or label.engine in the config")
        engine = EngineConfig(**{**(cfg.label.engine or cfg.judge.engine).model_dump(),
                                 **({"model": args.model} if args.model else {})})
    from ..preflight import check, engine_problems, model_problem, path_problem

    model = ([model_problem(args.model, "--model")] if args.cmd == "label" and args.model
             else engine_problems(engine, f"{'label' if args.cmd == 'label' else 'judge'}.engine"))
    check([p for p in [path_problem(args.pairs, "--pairs", "pairs"),
                       args.corpus and path_problem(args.corpus, "--corpus", "corpus"), *model] if p])
    pairs = PairsInput(args.pairs)
    pairs.check_columns(bool(args.corpus))
    store = RunStore(out / ".labeler")
    if args.restart:
        _restart(store, args.cmd)
    where = lambda p: p if "://" in p else str(Path(p).resolve())  # noqa: E731
    digest = lambda x: hashlib.sha256(json.dumps(x, sort_keys=True).encode()).hexdigest()[:16]  # noqa: E731
    base = digest([args.cmd, identity(engine), cfg.judge.grading.model_dump(mode="json"), where(args.pairs),
                   args.corpus and where(args.corpus)])
    inputs = pairs.fingerprint()
    fp = digest([base, inputs])
    prev = store.manifest(args.cmd)
    retry = args.retry_failed and prev is not None and prev.get("fingerprint") == fp and _transient(prev)
    if store.is_done(args.cmd, fp) and not args.force and not retry:
        log.info("[%s] up to date in %s (same settings, same input files)", args.cmd, out)
    else:
        schema = with_input_row(JUDGMENTS if args.cmd == "judge" else LABELS)
        s = scan(pairs)
        w = store.writer(args.cmd, fp, schema)
        if w.resumed:
            log.info("[%s] resuming an unfinished attempt: %d finished parts kept (--restart starts clean)",
                     args.cmd, len(list((w.work / "data").glob("part-*"))))
        elif prev is not None and prev.get("base") == base and not args.force:
            same = pairs.unchanged_rows(prev.get("inputs") or {}) if prev.get("fingerprint") != fp else None
            dup_locs = pa_array(list(s.duplicates))

            def keep(t):
                m = pc.invert(pc.fill_null(pc.equal(t.column("error"), "duplicate_pair"), False))
                m = pc.and_(m, pc.invert(pc.is_in(t.column("input_row"), value_set=dup_locs)))
                if same is not None:  # the input changed: only rows of files that still hold them
                    files = pa_array([input_file(x) for x in t.column("input_row").to_pylist()])
                    m = pc.and_(m, pc.fill_null(pc.is_in(files, value_set=pa_array(list(same))), False))
                if retry or args.retry_failed:
                    m = pc.and_(m, pc.invert(pc.fill_null(pc.is_in(t.column("error"), value_set=pa_array(sorted(TRANSIENT_ERRORS))), False)))
                return m

            w, kept, dropped = store.reopen(args.cmd, fp, schema, keep, row_keys)
            why = "the input files changed" if same is not None else "--retry-failed"
            log.info("[%s] %s: %d rows of the last run kept, %d to grade again%s", args.cmd, why, kept,
                     s.rows - kept, f" (files kept: {sorted(same)})" if same else "")
        init_ray(cfg.ray)
        n = grade(w, pairs, engine, cfg.judge.grading, cfg.seed, corpus=args.corpus, scanned=s)
        extra = {**_part_stats(w.work / "data"), "model": engine.model, "pairs": str(args.pairs),
                 "corpus": args.corpus, "base": base, "inputs": inputs}
        w.publish(n, config={"engine": engine.model_dump(mode="json"), "grading": cfg.judge.grading.model_dump(mode="json")},
                  upstream={}, extra=extra)
    name = "judgments" if args.cmd == "judge" else "labels"
    _export(store.files(args.cmd), out / f"{name}.parquet", out / f"_{name}.qrels")
    m = store.manifest(args.cmd)
    write_json_atomic(m, out / "_manifest.json")
    from . import _quiet_ray

    _quiet_ray()  # worker logs forwarded to stdout must not follow the final JSON line
    rc, line = failure_summary(args.cmd, m, args.max_failed_fraction)
    (log.error if rc else log.info)(line)
    print(json.dumps({"output": str(out / f"{name}.parquet"), "qrels": str(out / f"_{name}.qrels"),
                      **{k: m[k] for k in ("rows_in", "rows_out", "rows_rejected", "rejected_by_reason", "wall_s")}}))
    return rc


def pa_array(values):
    import pyarrow as pa
    return pa.array(values, pa.string())


def _transient(m: dict) -> int:
    from ..engines.base import TRANSIENT_ERRORS
    return sum(v for k, v in (m.get("rejected_by_reason") or {}).items() if k in TRANSIENT_ERRORS)


def _restart(store, stage: str) -> None:
    """--restart: unfinished attempts of `stage` are deleted, so nothing of them is resumed."""
    import shutil

    for d in (store.root / ".work").glob(f"{stage}-*"):
        log.info("[%s] --restart: deleting the unfinished attempt %s", stage, d.name)
        shutil.rmtree(d, ignore_errors=True)


EXIT_FAILED_PAIRS = 3


def failure_summary(stage: str, m: dict, max_failed_fraction: float) -> tuple[int, str]:
    """The exit status a script can use and one line saying why: non-zero when every pair failed
    or more than `max_failed_fraction` of them did."""
    n, failed = m["rows_in"], m["rows_rejected"]
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted((m.get("rejected_by_reason") or {}).items(), key=lambda x: -x[1]))
    line = f"[{stage}] {m['rows_out']:,} of {n:,} pairs graded, {failed:,} failed" + (f" ({reasons})" if reasons else "")
    transient = _transient(m)
    if transient:
        line += f"; {transient:,} failed for a transient reason: rerun with --retry-failed to grade only those"
    if n and failed == n:
        return EXIT_FAILED_PAIRS, line + "; every pair failed"
    if n and failed / n > max_failed_fraction:
        return EXIT_FAILED_PAIRS, line + f"; more than --max-failed-fraction={max_failed_fraction:g} failed"
    return 0, line


def _part_stats(folder: Path) -> dict:
    """pipeline._grade_stats summed part by part (memory: one part, whatever the run's size)."""
    import pyarrow.parquet as pq

    from ..stages.judge import grade_stats as _grade_stats

    total: dict = {"grade_counts": {}, "tokens_in": 0}
    for f in sorted(folder.glob("part-*.parquet")):
        s = _grade_stats(pq.read_table(f, columns=["status", "grade", "prompt_tokens", "truncated"]))
        for k, v in s.items():
            if isinstance(v, dict):
                for g, c in v.items():
                    total[k][g] = total[k].get(g, 0) + c
            else:
                total[k] = total.get(k, 0) + v
    total["grade_counts"] = dict(sorted(total["grade_counts"].items()))
    return total


def _export(parts: list[str], dest: Path, qrels: Path) -> None:
    """Parts -> one Parquet file and TREC qrels, streamed part by part, each written atomically."""
    import pyarrow.parquet as pq

    from ..qrels import write_qrels

    tmp, tmp_q, one = dest.with_name(f".{dest.name}.tmp"), qrels.with_name(f".{qrels.name}.tmp"), qrels.with_name(f".{qrels.name}.part")
    writer = None
    with open(tmp_q, "w", encoding="utf-8") as q:
        for p in parts:
            t = pq.read_table(p)
            if writer is None:
                writer = pq.ParquetWriter(tmp, t.schema)
            writer.write_table(t)
            write_qrels(t, one)
            q.write(one.read_text(encoding="utf-8"))
    if writer is not None:
        writer.close()
        tmp.replace(dest)
    one.unlink(missing_ok=True)
    tmp_q.replace(qrels)
