"""`labeler evaluate`: agreement of model labels with human judgments, a summary table, an optional
report, and one JSON object as the last line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from .. import qrels as trec
from ..evaluate.inputs import load_labels, load_reference
from ..evaluate.metrics import compare, json_safe, system_ranking_agreement


def _parse_source(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if sep and name and not Path(spec).exists():
        return name, Path(path)
    return Path(spec).stem or spec, Path(spec)


def _read_structured(path: Path):
    """JSON, JSONL or YAML, for prices and stage costs."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml
        return yaml.safe_load(text)
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="labeler evaluate",
        description="Agreement of model labels with human judgments; prints a summary and, as the "
                    "last line, one JSON object.")
    p.add_argument("--qrels", required=True, type=Path, help="human judgments: qrels, Parquet or JSONL")
    p.add_argument("--labels", required=True, action="append", metavar="[NAME=]PATH",
                   help="labels to score (stage folder, Parquet, qrels, or a run file for a score-only "
                        "source such as BM25); repeat to compare sources")
    p.add_argument("--runs", nargs="+", default=[], type=Path, metavar="RUNFILE",
                   help="TREC runs whose system ranking is compared under human and model qrels")
    p.add_argument("--metric", default="ndcg_cut_10", help="trec_eval measure for --runs")
    p.add_argument("--relevance-level", type=int, default=1,
                   help="lowest grade counted relevant by binary measures for --runs (trec_eval -l)")
    p.add_argument("-k", "--k", type=int, default=10, help="cutoff of the NDCG of label-induced rankings")
    p.add_argument("--strict", action="store_true", help="fail when a labeled pair is not in --qrels")
    p.add_argument("--out", type=Path, help="write report.md, report.html, metrics.json and plots here")
    p.add_argument("--prices", type=Path, help="JSON/YAML prices (gpu_hour, cpu_hour, input_per_1m_tokens, "
                                               "output_per_1m_tokens, models: {name: {...}})")
    p.add_argument("--stage-costs", type=Path, help="JSON/JSONL list of per-stage cost rows for the report")
    p.add_argument("--run-dir", type=Path, help="a pipeline run folder: stage costs from its manifests")
    return p


def _summary_lines(rows: list[dict], k: int) -> list[str]:
    cols = [("coverage", "cov"), ("accuracy", "acc"), ("mae", "mae"), ("cohen_kappa", "kappa"),
            ("weighted_kappa", "wkappa"), ("krippendorff_alpha", "alpha"), ("pairwise_accuracy", "pairs"),
            ("spearman", "rho"), ("kendall", "tau"), (f"ndcg@{k}", f"ndcg@{k}")]
    width = max(len(r["source"]) for r in rows)
    lines = [f"{'source':<{width}}  " + " ".join(f"{h:>7}" for _, h in cols)]
    for r in rows:
        vals = ["-" if r.get(c) is None else f"{r[c]:.3f}" for c, _ in cols]
        lines.append(f"{r['source']:<{width}}  " + " ".join(f"{v:>7}" for v in vals))
        lines += [f"  ! {w}" for w in r.get("warnings", [])]
        if r.get("error"):
            lines.append(f"  ! not compared: {r['error']}")
    return lines


def _evaluate(args: argparse.Namespace) -> dict:
    reference = load_reference(args.qrels)
    sources = {}
    for spec in args.labels:
        name, path = _parse_source(spec)
        if name in sources:
            raise ValueError(f"two label sources are named {name!r}; use NAME=PATH")
        sources[name] = load_labels(path)
    rows = compare(reference, sources, k=args.k, strict=args.strict)
    print(f"reference: {args.qrels} ({reference.num_rows} judged pairs)")
    print("\n".join(_summary_lines(rows, args.k)))
    ranking = {}
    if args.runs:
        runs = {p.stem: trec.read_run(p) for p in args.runs}
        for name, table in sources.items():
            if "grade" in table.column_names and not next(r for r in rows if r["source"] == name).get("error"):
                ranking[name] = system_ranking_agreement(runs, reference, table, args.metric,
                                                         relevance_level=args.relevance_level)
                print(f"system ranking by {args.metric} ({len(runs)} runs): Kendall tau human vs "
                      f"{name} = {ranking[name]['kendall_tau']}")
    first = next((r for r in rows if not r.get("error")), rows[0])
    result = {**first, "sources": rows, "system_ranking": ranking or None}
    if args.out:
        result["report"] = _write(args, reference, sources, rows, ranking)
        print(f"report: {result['report']['html']}")
    return result


def _write(args, reference, sources, rows, ranking) -> dict:
    from ..evaluate import report

    stage_costs = _read_structured(args.stage_costs) if args.stage_costs else None
    if stage_costs is None and args.run_dir:
        stage_costs = report.stage_costs_from_run(args.run_dir)
    prices = _read_structured(args.prices) if args.prices else None
    paths = report.write_report(args.out, {r["source"]: r for r in rows}, reference, sources,
                                stage_costs=stage_costs, prices=prices, system_ranking=ranking or None)
    return {k: str(v) for k, v in paths.items()}


def main(argv: Optional[list[str]] = None) -> int:
    """`labeler evaluate ...`: exit 0 on success, 2 on bad input; the last stdout line is JSON either way."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv[1:] if argv[:1] == ["evaluate"] else argv)
    try:
        result = _evaluate(args)
    except (ValueError, FileNotFoundError, IsADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        print(json.dumps({"error": str(e)}, allow_nan=False))
        return 2
    print(json.dumps(json_safe(result), allow_nan=False))
    return 0
