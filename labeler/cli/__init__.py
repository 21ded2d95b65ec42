"""`labeler run CONFIG`, `labeler <stage> CONFIG`, `labeler judge|label ... --pairs`, `labeler evaluate`,
`labeler rerank`, `labeler submit`, `labeler validate`, `labeler models prepare|list`.

Loading this module loads no Arrow: the command sets Arrow's allocator before pyarrow reads it
(labeler.allocator.use_malloc_for_arrow); the stages are imported when a command needs them."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from ..config import ConfigError, dotted_override, load_config
from ..logsetup import own_terminal, setup_logging

log = logging.getLogger("labeler")

DESCRIPTION = ("Graded relevance labels from a document corpus: synthetic queries, BM25 hard negatives, "
               "a teacher LLM's grades, and a small student distilled from them that labels pairs at scale. "
               "`labeler run CONFIG` runs the whole pipeline; `labeler judge|label CONFIG --pairs PAIRS` "
               "grades your own pairs.")


def _common(p: argparse.ArgumentParser, out_required: bool = False):
    p.add_argument("config", help="YAML config (see configs/demo.yaml)")
    p.add_argument("--out", required=out_required, help="run folder, or a storage URI such as s3://BUCKET/run "
                                                        "(default: out/<config name>)")
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
    p.add_argument("--export", metavar="hf:DIR", help="also write the rows as a Hugging Face dataset "
                                                      "(save_to_disk) with a dataset card, at DIR")


def build_parser() -> argparse.ArgumentParser:
    from ..stages import BY_NAME, NAMES as STAGE_CMDS

    ap = argparse.ArgumentParser(prog="labeler", description=DESCRIPTION,
                                 epilog="Quick start: `make demo`. Every command: `labeler CMD -h`.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run every stage (finished stages are skipped)")
    _common(p)
    p.add_argument("--until", choices=STAGE_CMDS, help="stop after this stage")
    for stage in STAGE_CMDS:
        if stage in ("judge", "label", "evaluate", "distill"):
            continue
        p = sub.add_parser(stage, help=f"run the pipeline up to and including {stage}: {BY_NAME[stage].help}")
        _common(p)
    p = sub.add_parser("distill", help="train the student: the pipeline's stage, or --judgments PATH standalone")
    _common(p)
    p.add_argument("--judgments", help="train from these judgments instead of a run's: a judge export, the "
                                       "teacher fixture folder, TREC qrels (with --queries and --corpus), or a "
                                       "folder with queries.jsonl, docs.jsonl and qrels.txt")
    p.add_argument("--queries", help="with qrels: the queries (JSONL/Parquet with query_id or qid, and query)")
    p.add_argument("--corpus", help="documents (JSONL/Parquet, or a run folder) to join the text by doc_id")
    p.add_argument("--calibrate-on", metavar="JUDGMENTS",
                   help="fit an encoder student's score -> grade map on these (human) judgments, same formats")
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
    sub.add_parser("submit", help="run a stage or the pipeline as a Ray Job on a cluster (see `labeler submit -h`)",
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
    import os

    from ..allocator import use_malloc_for_arrow
    from ..reaper import OwnedProcesses

    use_malloc_for_arrow()  # before pyarrow loads: the command's process, as its Ray workers
    own_terminal()  # what Ray writes to this terminal goes to a log file (logsetup.divert_stderr)
    try:
        with OwnedProcesses():
            rc = _main(sys.argv[1:])
    except KeyboardInterrupt:
        print("interrupted; finished parts are kept, rerun the same command to continue", file=sys.stderr)
        rc = 130
    # The status is the command's: Ray's exit hooks (a core worker that sees its raylet gone exits
    # with 0) must not replace it, and everything they would clean up is already shut down.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc if isinstance(rc, int) else 1)


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
        try:
            return _dispatch(args)
        except Exception as e:
            return _killed_for_memory(e, verbosity)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        from ..storage import StorageError

        if not isinstance(e, StorageError):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


# The exit status of a run Ray stopped by killing one of its processes for memory.
EXIT_OUT_OF_MEMORY = 4


def _killed_for_memory(e: Exception, verbosity: int) -> int:
    """A memory kill by Ray (raycluster.KilledForMemory from a stage, or Ray's own error from
    anywhere) said in one line, the traceback only with -v; any other error is raised again."""
    from ..raycluster import KilledForMemory, memory_kill, memory_kill_line

    if isinstance(e, KilledForMemory):
        line = str(e)
    else:
        kill = memory_kill(e)
        if kill is None:
            raise e
        line = memory_kill_line(kill)
    if verbosity > 0:
        import traceback

        traceback.print_exception(e, file=sys.stderr)
    print(f"error: {line}", file=sys.stderr)
    return EXIT_OUT_OF_MEMORY


def _load(args):
    from ..config import merge_dicts

    overrides: dict = {}
    for s in args.set:
        overrides = merge_dicts(overrides, dotted_override(s))
    return load_config(args.config, overrides or None)


def _dispatch(args) -> int:
    if args.cmd == "models":
        from .. import models
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
        from ..preflight import config_problems
        from ..stages import NAMES as STAGE_CMDS

        cfg = load_config(args.config)
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
        problems = config_problems(cfg, STAGE_CMDS)
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 2 if problems else 0
    cfg = _load(args)
    from ..remote import is_uri
    from ..storage import configure

    configure(cfg.storage)
    out = args.out if args.out and is_uri(args.out) else Path(args.out or Path("out") / cfg.name)
    if args.cmd in ("judge", "label") and args.pairs:
        from .grade import standalone

        return standalone(args, cfg, out)
    if getattr(args, "export", None):
        raise ValueError("--export goes with --pairs (judge|label --pairs ... --export hf:DIR)")
    if args.cmd == "distill" and (args.judgments or args.calibrate_on):
        if not args.judgments:
            raise ValueError("--calibrate-on goes with --judgments (a pipeline run calibrates on its held-out pairs)")
        from .distill import standalone_distill

        if is_uri(out):
            raise ValueError("distill --judgments writes a local folder: give --out a path (copy it up after)")
        return standalone_distill(args, cfg, out)
    until = getattr(args, "until", None) if args.cmd == "run" else args.cmd
    if is_uri(out) or is_uri(cfg.corpus.path):  # staged, pushed after each stage (labeler.remote)
        from ..remote import run_pipeline

        summary = run_pipeline(cfg, str(out), until=until, force=args.force, log=log.info)
    else:
        from ..pipeline import Pipeline

        summary = Pipeline(cfg, out, force=args.force).run(until=until)
    _quiet_ray()
    print_summary(summary)
    return 0


def _rerank(args) -> int:
    """Candidates are reranked whole or not at all: a row that cannot be scored is an error, since a
    run silently missing a candidate would look like a ranking decision."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..engines import export_backend
    from ..pairs_input import PairsInput
    from ..rerank import rerank

    if export_backend(args.model) != "cross_encoder":
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


def print_summary(summary: dict) -> None:
    from ..pipeline import format_summary

    print(format_summary(summary))
