"""`labeler judge|label CONFIG --pairs PAIRS --out DIR`: grade a given pairs file or folder, streamed,
into one export row per input row, resumable, with exit codes a script can use."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..config import EngineConfig, identity

log = logging.getLogger("labeler")


def standalone(args, cfg, out) -> int:
    """Grade a given pairs file into OUT/judgments.parquet (judge) or OUT/labels.parquet (label).

    The pairs are streamed (labeler.stages.grade_stream), never read whole. The export has exactly one row per
    input row (failed ones with status "failed", their reason and `input_row`, the file:line they
    came from); the resumable work and the rejected rows with raw outputs stay in OUT/.labeler/,
    which Parquet dataset readers skip. The export and the qrels are written part by part.

    A rerun is up to date only for the same settings and the same file contents. When the files
    changed, rows of files that did not (and of JSONL files that only grew) are kept and only the
    rest is graded; `--retry-failed` regrades the rows that failed for a transient reason.

    OUT may be a storage URI (s3://...): the command works in a local staging folder whose parts
    are uploaded as they are written and downloaded by a rerun anywhere (labeler.remote), and
    the export goes up at the end, its manifest last.
    """
    import hashlib

    import pyarrow.compute as pc

    from ..pairs_input import DatasetPairs, input_file, open_pairs
    from ..raycluster import init_ray
    from ..reasons import DUPLICATE_PAIR, TRANSIENT
    from ..remote import RemoteRun, is_uri
    from ..schema import JUDGMENTS, LABELS
    from ..stages.base import grading_section, model_files
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
    export = _export_dir(args)
    pairs = open_pairs(args.pairs, cfg.pairs)
    pairs.check_columns(bool(args.corpus))
    remote = RemoteRun(str(out)) if is_uri(out) else None
    if remote is not None:
        got = remote.pull_tree(".labeler")
        if got:
            log.info("[%s] downloaded %d files of earlier work from %s", args.cmd, got, out)
        uri, out = str(out).rstrip("/"), remote.local
    store = RunStore(out / ".labeler", on_write=remote.push_file if remote else None)
    if args.restart:
        _restart(store, args.cmd, remote)
    where = lambda p: p if "://" in p else str(Path(p).resolve())  # noqa: E731
    digest = lambda x: hashlib.sha256(json.dumps(x, sort_keys=True).encode()).hexdigest()[:16]  # noqa: E731
    # The pipeline's own fingerprint parts: the template's contents and the model folder's files,
    # so an edited prompt or a student retrained in place is new work, not "up to date".
    base = digest([args.cmd, identity(engine), cfg.judge.grading.model_dump(mode="json"), where(args.pairs),
                   args.corpus and where(args.corpus), grading_section(cfg)["template"], model_files(engine.model)]
                  + ([cfg.pairs.model_dump(mode="json")] if isinstance(pairs, DatasetPairs) else []))
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
                m = pc.invert(pc.fill_null(pc.equal(t.column("error"), DUPLICATE_PAIR), False))
                m = pc.and_(m, pc.invert(pc.is_in(t.column("input_row"), value_set=dup_locs)))
                if same is not None:  # the input changed: only rows of files that still hold them
                    files = pa_array([input_file(x) for x in t.column("input_row").to_pylist()])
                    m = pc.and_(m, pc.fill_null(pc.is_in(files, value_set=pa_array(list(same))), False))
                if retry or args.retry_failed:
                    m = pc.and_(m, pc.invert(pc.fill_null(pc.is_in(t.column("error"), value_set=pa_array(sorted(TRANSIENT))), False)))
                return m

            w, kept, dropped = store.reopen(args.cmd, fp, schema, keep, row_keys)
            why = "the input files changed" if same is not None else "--retry-failed"
            log.info("[%s] %s: %d rows of the last run kept, %d to grade again%s", args.cmd, why, kept,
                     s.rows - kept, f" (files kept: {sorted(same)})" if same else "")
        from ..models import prepare_models

        prepare_models([engine.model], log.info)  # before Ray: a conversion is not an engine actor's work
        init_ray(cfg.ray)
        n = grade(w, pairs, engine, cfg.judge.grading, cfg.seed, corpus=args.corpus, scanned=s)
        extra = {**_part_stats(w.work / "data"), "model": engine.model, "pairs": str(args.pairs),
                 "corpus": args.corpus, "base": base, "inputs": inputs}
        w.publish(n, config={"engine": engine.model_dump(mode="json"), "grading": cfg.judge.grading.model_dump(mode="json")},
                  upstream={}, extra=extra)
    name = "judgments" if args.cmd == "judge" else "labels"
    m = store.manifest(args.cmd)
    fresh = remote is None or remote.remote_manifest("") != m
    if fresh or not (out / f"{name}.parquet").is_file():
        _export(store.files(args.cmd), out / f"{name}.parquet", out / f"_{name}.qrels")
        write_json_atomic(m, out / "_manifest.json")
    if remote is not None and fresh:  # the export goes up whole, its manifest last
        remote.push(f".labeler/{args.cmd}")
        remote.delete_tree(f".labeler/.work/{args.cmd}-{m['fingerprint']}")
        for f in (f"{name}.parquet", f"_{name}.qrels", "_manifest.json"):
            remote.push_file(out / f)
    if export is not None:
        from ..hfdatasets import save

        n = save(out / f"{name}.parquet", export, _card(args, engine, m))
        log.info("[%s] wrote %d rows as a Hugging Face dataset at %s (load_from_disk; README.md is its card)",
                 args.cmd, n, export)
    from . import _quiet_ray

    _quiet_ray()  # worker logs forwarded to stdout must not follow the final JSON line
    rc, line = failure_summary(args.cmd, m, args.max_failed_fraction)
    (log.error if rc else log.info)(line)
    at = uri if remote is not None else str(out)
    print(json.dumps({"output": f"{at}/{name}.parquet", "qrels": f"{at}/_{name}.qrels",
                      **({"dataset": str(export)} if export is not None else {}),
                      **{k: m[k] for k in ("rows_in", "rows_out", "rows_rejected", "rejected_by_reason", "wall_s")}}))
    return rc


def _export_dir(args):
    """--export hf:DIR -> DIR (checked before any work)."""
    spec = getattr(args, "export", None)
    if not spec:
        return None
    if not spec.startswith("hf:") or not spec[3:] or "://" in spec[3:]:
        raise ValueError(f"--export {spec!r}: give hf:DIR, a local folder for the dataset "
                         f"(push it to the hub with datasets' push_to_hub)")
    return Path(spec[3:]).expanduser().resolve()


def _card(args, engine, m: dict) -> str:
    """The dataset card of an export: the model; for a student, its teacher and the agreement
    figures of the run it was trained in (found from a run's student folder,
    RUN/distill/artifacts/model); the label counts of this export."""
    from ..hfdatasets import card

    model = str(getattr(args, "model", None) or engine.model)
    if Path(model).expanduser().exists():
        model = str(Path(model).expanduser().resolve())
    teacher = agreement = None
    run = _run_of(model) if args.cmd == "label" else None
    if run is not None:
        teacher = (_manifest(run / "judge") or {}).get("model")
        agreement = (_manifest(run / "evaluate") or {}).get("metrics")
    what = "judgments" if args.cmd == "judge" else "labels"
    return card(title=f"labeler {what} of {Path(str(args.pairs)).name}", model=model,
                teacher=teacher, is_teacher=args.cmd == "judge", agreement=agreement, counts={"grade_counts": m.get("grade_counts")}, manifest=m,
                source=str(args.pairs))


def _run_of(model) -> "Path | None":
    """The run folder whose distill stage exported `model` (RUN/distill/artifacts/model), if any."""
    p = Path(str(model)).expanduser()
    try:
        p = p.resolve()
    except OSError:
        return None
    if p.name == "model" and p.parent.name == "artifacts" and _manifest(p.parent.parent) is not None \
            and p.parent.parent.name == "distill":
        return p.parent.parent.parent
    return None


def _manifest(stage: Path):
    f = stage / "_manifest.json"
    return json.loads(f.read_text()) if f.is_file() else None


def pa_array(values):
    import pyarrow as pa
    return pa.array(values, pa.string())


def _transient(m: dict) -> int:
    from ..reasons import TRANSIENT
    return sum(v for k, v in (m.get("rejected_by_reason") or {}).items() if k in TRANSIENT)


def _restart(store, stage: str, remote=None) -> None:
    """--restart: unfinished attempts of `stage` are deleted (at the URI too), so nothing of them
    is resumed."""
    import shutil

    for d in (store.root / ".work").glob(f"{stage}-*"):
        log.info("[%s] --restart: deleting the unfinished attempt %s", stage, d.name)
        shutil.rmtree(d, ignore_errors=True)
        if remote is not None:
            remote.delete_tree(f".labeler/.work/{d.name}")


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


# The export's row groups: parts gathered to about this many bytes each. A Parquet writer holds
# every row group's metadata until it closes, so one row group per part grew the process with
# the run's size; groups of this size keep it flat (and readers like fewer groups).
ROW_GROUP_BYTES = 2 << 20


def _export(parts: list[str], dest: Path, qrels: Path) -> None:
    """Parts -> one Parquet file and TREC qrels, streamed part by part, each written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..qrels import write_qrels

    tmp, tmp_q, one = dest.with_name(f".{dest.name}.tmp"), qrels.with_name(f".{qrels.name}.tmp"), qrels.with_name(f".{qrels.name}.part")
    writer, held, size = None, [], 0

    def flush():
        nonlocal size
        if held:  # concat_tables copies nothing: the row group is written from the parts' own buffers
            writer.write_table(pa.concat_tables(held))
            held.clear()
        size = 0

    with open(tmp_q, "w", encoding="utf-8") as q:
        for p in parts:
            t = pq.read_table(p)
            if writer is None:
                writer = pq.ParquetWriter(tmp, t.schema)
            held.append(t)
            size += t.nbytes
            if size >= ROW_GROUP_BYTES:
                flush()
            write_qrels(t, one)
            q.write(one.read_text(encoding="utf-8"))
    if writer is not None:
        flush()
        writer.close()
        tmp.replace(dest)
    one.unlink(missing_ok=True)
    tmp_q.replace(qrels)
