"""The evaluation report: Markdown for the repository, one self-contained HTML page to send around,
and the plots as PNG.

Both documents are rendered from one list of blocks so they can never disagree. Plots use
matplotlib's object API (Figure + Agg canvas), not pyplot, so no global figure state is touched.
"""
from __future__ import annotations

import base64
import html
import json
import math
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional

import numpy as np
import pyarrow as pa

from . import metrics as evaluate

# Assumed list prices in USD; override any of them with `prices`. Token prices are for API models
# and can be set per model under "models": {"gpt-x": {"input_per_1m_tokens": ..., ...}}.
DEFAULT_PRICES = MappingProxyType({
    "gpu_hour": 2.50,
    "cpu_hour": 0.05,
    "input_per_1m_tokens": 0.0,
    "output_per_1m_tokens": 0.0,
})

_HEADLINE = [("coverage", "coverage"), ("n_labeled", "labeled"), ("n_failed", "failed"), ("n_missing", "missing"),
             ("accuracy", "accuracy"), ("mae", "MAE"),
             ("cohen_kappa", "kappa"), ("weighted_kappa", "kappa (quadratic)"),
             ("krippendorff_alpha", "alpha (ordinal)"), ("pairwise_accuracy", "pairwise acc."),
             ("spearman", "Spearman"), ("kendall", "Kendall")]


# --------------------------------------------------------------------------- costs

def _prices(prices: Optional[Mapping]) -> dict:
    merged = {**DEFAULT_PRICES, **(prices or {})}
    merged["models"] = dict((prices or {}).get("models") or {})
    unknown = set(merged) - set(DEFAULT_PRICES) - {"models"}
    if unknown:
        raise ValueError(f"unknown price keys {sorted(unknown)}; known: {sorted(DEFAULT_PRICES)} and models")
    return merged


def _num(row: Mapping, key: str) -> float:
    value = row.get(key)
    return 0.0 if value is None else float(value)


def cost_rows(stage_costs: list[dict], prices: Optional[Mapping] = None) -> list[dict]:
    """Per stage: throughput, hours, dollars, and dollars per million labels (the number that
    decides whether a student replaces the teacher)."""
    p = _prices(prices)
    rows = []
    for s in stage_costs:
        token_prices = {**p, **p["models"].get(s.get("model") or "", {})}
        cost = (_num(s, "gpu_hours") * token_prices["gpu_hour"] + _num(s, "cpu_hours") * token_prices["cpu_hour"]
                + _num(s, "tokens_in") / 1e6 * token_prices["input_per_1m_tokens"]
                + _num(s, "tokens_out") / 1e6 * token_prices["output_per_1m_tokens"])
        n, wall = _num(s, "rows"), _num(s, "wall_s")
        rows.append({
            "stage": s.get("stage"), "model": s.get("model"), "rows": int(n), "wall_s": wall,
            "rows_per_s": n / wall if wall > 0 else None,
            "gpu_hours": _num(s, "gpu_hours"), "cpu_hours": _num(s, "cpu_hours"),
            "tokens_in": int(_num(s, "tokens_in")), "tokens_out": int(_num(s, "tokens_out")),
            "cost_usd": cost, "usd_per_million": cost / n * 1e6 if n > 0 else None,
        })
    return rows


def stage_costs_from_run(run_dir: str | Path) -> list[dict]:
    """Cost rows from the `_manifest.json` of each finished stage in a run folder; a manifest
    without gpu_hours/cpu_hours/tokens counts them as zero."""
    rows = []
    for m in sorted(Path(run_dir).glob("*/_manifest.json")):
        man = json.loads(m.read_text())
        rows.append({"stage": man.get("stage", m.parent.name), "rows": man.get("rows_out", 0),
                     "wall_s": man.get("wall_s", 0.0), "model": man.get("model"),
                     **{k: man.get(k, 0) for k in ("gpu_hours", "cpu_hours", "tokens_in", "tokens_out")}})
    return rows


# --------------------------------------------------------------------------- plots

def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_confusion(aligned: Mapping[str, evaluate.Aligned], path: Path) -> Path:
    """One count matrix per source, human grade rows x model grade columns, shaded by row share
    so a rare grade's errors are as visible as a common one's."""
    fig = _figure(3.4 * len(aligned) + 0.6, 3.4)
    axes = fig.subplots(1, len(aligned), squeeze=False)[0]
    for ax, (name, a) in zip(axes, aligned.items()):
        counts = np.array(evaluate.confusion(a))
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(4):
            for j in range(4):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center",
                        color="white" if share[i, j] > 0.6 else "black")
        ax.set(xticks=range(4), yticks=range(4), xlabel="model grade", ylabel="human grade", title=name)
    fig.savefig(path)
    return path


def plot_calibration(aligned: Mapping[str, evaluate.Aligned], path: Path) -> Path:
    """Mean expected grade per human grade (bars: one standard deviation) against the diagonal
    a perfectly calibrated labeler would follow."""
    fig = _figure(5.5, 4.2)
    ax = fig.subplots()
    ax.plot([0, 3], [0, 3], ls="--", color="grey", label="ideal")
    offsets = np.linspace(-0.12, 0.12, len(aligned)) if len(aligned) > 1 else [0.0]
    for off, (name, a) in zip(offsets, aligned.items()):
        rows = [r for r in evaluate.calibration(a) if r["n"]]
        ax.errorbar([r["human_grade"] + off for r in rows], [r["mean"] for r in rows],
                    yerr=[r["std"] for r in rows], marker="o", capsize=3, label=name)
    ax.set(xticks=range(4), xlim=(-0.4, 3.4), ylim=(-0.2, 3.2), xlabel="human grade",
           ylabel="model expected grade", title="Calibration")
    ax.legend(loc="upper left", fontsize="small")
    fig.savefig(path)
    return path


# --------------------------------------------------------------------------- blocks

def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _reference_block(reference: pa.Table) -> list:
    grades = reference["grade"].to_pylist()
    dist = ", ".join(f"grade {g}: {grades.count(g)}" for g in evaluate.GRADES)
    n_q = len(set(reference["query_id"].to_pylist()))
    return [("p", f"Reference: {reference.num_rows:,} judged pairs over {n_q:,} queries ({dist}).")]


def _agreement_blocks(metrics: Mapping[str, dict]) -> list:
    k_key = next((key for m in metrics.values() for key in m if key.startswith("ndcg@")), "ndcg@10")
    cols = _HEADLINE + [(k_key, "NDCG" + k_key[4:])]
    rows = [[name] + [_fmt(m.get(c)) for c, _ in cols] for name, m in metrics.items()]
    blocks: list = [("h2", "Agreement with human judgments"), ("table", ["source"] + [h for _, h in cols], rows)]
    bin_rows = []
    for name, m in metrics.items():
        for t in ("binary_ge2", "binary_ge1"):
            b = m.get(t)
            if b:
                bin_rows.append([name, "≥ " + t[-1]] + [_fmt(b.get(c)) for c in
                                ("accuracy", "cohen_kappa", "precision", "recall", "f1")])
    if bin_rows:
        blocks += [("h3", "Binarized (relevant = grade ≥ t)"),
                   ("table", ["source", "t", "accuracy", "kappa", "precision", "recall", "F1"], bin_rows)]
    notes = [f"{name}: {w}" for name, m in metrics.items() for w in m.get("warnings", [])]
    notes += [f"{name}: not compared: {m['error']}" for name, m in metrics.items() if m.get("error")]
    if notes:
        blocks += [("h3", "Warnings"), ("ul", notes)]
    return blocks


def _confusion_blocks(aligned: Mapping[str, evaluate.Aligned], image: Optional[Path]) -> list:
    blocks: list = [("h2", "Confusion matrices"),
                    ("p", "Rows are human grades, columns model grades; cells count pairs.")]
    if image:
        blocks.append(("img", image, "confusion matrices"))
    for name, a in aligned.items():
        counts = evaluate.confusion(a)
        blocks += [("h3", name), ("table", ["human \\ model", "0", "1", "2", "3"],
                                  [[str(g)] + [_fmt(c) for c in counts[g]] for g in evaluate.GRADES])]
    return blocks


def _calibration_blocks(aligned: Mapping[str, evaluate.Aligned], image: Optional[Path]) -> list:
    blocks: list = [("h2", "Calibration"),
                    ("p", "Mean model expected grade (the grade itself where the source gives no "
                          "probabilities) for each human grade; a calibrated labeler lies on the diagonal.")]
    if image:
        blocks.append(("img", image, "calibration plot"))
    rows = [[name, str(r["human_grade"]), _fmt(r["n"]), _fmt(r["mean"]), _fmt(r["std"])]
            for name, a in aligned.items() for r in evaluate.calibration(a)]
    return blocks + [("table", ["source", "human grade", "pairs", "mean expected", "std"], rows)]


def _ranking_blocks(system_ranking: Mapping[str, dict]) -> list:
    blocks: list = [("h2", "System ranking agreement")]
    for name, r in system_ranking.items():
        blocks += [("p", f"{name}: Kendall's tau between system orders by {r['metric']} under human and "
                         f"model qrels = {_fmt(r['kendall_tau'])} ({r['n_systems']} systems, "
                         f"{r['n_queries']} queries)."),
                   ("table", ["system", "human", "model", "rank (human)", "rank (model)"],
                    [[s["system"], _fmt(s["human"]), _fmt(s["model"]), str(s["rank_human"]),
                      str(s["rank_model"])] for s in r["systems"]])]
        if r.get("warnings"):
            blocks.append(("ul", r["warnings"]))
    return blocks


def _cost_blocks(costs: list[dict], prices: dict) -> list:
    rows = [[c["stage"] or "", c["model"] or "", _fmt(c["rows"]), _fmt(c["wall_s"]), _fmt(c["rows_per_s"]),
             _fmt(c["gpu_hours"]), _fmt(c["cpu_hours"]), _fmt(c["tokens_in"]), _fmt(c["tokens_out"]),
             f"{c['cost_usd']:.2f}", "–" if c["usd_per_million"] is None else f"{c['usd_per_million']:.2f}"]
            for c in costs]
    rows.append(["total", "", "", _fmt(sum(c["wall_s"] for c in costs)), "",
                 _fmt(sum(c["gpu_hours"] for c in costs)), _fmt(sum(c["cpu_hours"] for c in costs)),
                 "", "", f"{sum(c['cost_usd'] for c in costs):.2f}", ""])
    assumed = ", ".join(f"{k} = {v}" for k, v in prices.items() if k != "models")
    models = "; ".join(f"{m}: {v}" for m, v in prices["models"].items())
    return [("h2", "Throughput and cost per stage"),
            ("table", ["stage", "model", "rows", "wall s", "rows/s", "GPU-h", "CPU-h", "tokens in",
                       "tokens out", "$", "$ per 1M labels"], rows),
            ("p", f"Prices assumed (USD): {assumed}" + (f"; per model: {models}" if models else "") + ".")]


# --------------------------------------------------------------------------- rendering

def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, blocks: list, base: Path) -> str:
    out = [f"# {title}", ""]
    for b in blocks:
        kind = b[0]
        if kind in ("h2", "h3"):
            out += ["#" * int(kind[1]) + " " + b[1], ""]
        elif kind == "p":
            out += [b[1], ""]
        elif kind == "ul":
            out += [f"- {_md_cell(x)}" for x in b[1]] + [""]
        elif kind == "img":
            out += [f"![{b[2]}]({Path(b[1]).relative_to(base).as_posix()})", ""]
        elif kind == "table":
            out += ["| " + " | ".join(map(_md_cell, b[1])) + " |", "|" + "---|" * len(b[1])]
            out += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in b[2]] + [""]
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}th,td{border:1px solid #ccc;padding:0.25rem 0.6rem;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%}
li{margin:0.2rem 0}.meta{color:#666}"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(title: str, blocks: list) -> str:
    """One page with CSS inline and images as data URIs: it opens anywhere, with nothing beside it."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    for b in blocks:
        kind = b[0]
        if kind in ("h2", "h3", "p"):
            out.append(f"<{kind}>{e(b[1])}</{kind}>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(str(x))}</li>" for x in b[1]) + "</ul>")
        elif kind == "img":
            out.append(f'<img src="{_data_uri(b[1])}" alt="{e(b[2])}">')
        elif kind == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(out_dir, metrics_by_source: dict[str, dict], reference: pa.Table,
                 predicted_by_source: dict[str, pa.Table], stage_costs: Optional[list[dict]] = None,
                 prices: Optional[dict] = None, *, system_ranking: Optional[dict[str, dict]] = None,
                 title: str = "Relevance label evaluation") -> dict[str, Path]:
    """Write report.md, report.html, metrics.json, confusion.png and calibration.png into out_dir.

    Plots cover the sources that give grades; a score-only source (BM25) appears in the tables.
    Returns the paths by kind: markdown, html, metrics, confusion, calibration (the last two only
    when some source gives grades).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    usable = {name for name, m in metrics_by_source.items() if not m.get("error")}
    aligned = {name: evaluate.align(reference, t) for name, t in predicted_by_source.items() if name in usable}
    graded = {name: a for name, a in aligned.items() if a.grade is not None}
    paths: dict[str, Path] = {}
    if graded:
        paths["confusion"] = plot_confusion(graded, out / "confusion.png")
        paths["calibration"] = plot_calibration(graded, out / "calibration.png")
    merged_prices = _prices(prices)
    costs = cost_rows(stage_costs, merged_prices) if stage_costs else []
    blocks = (_reference_block(reference) + _agreement_blocks(metrics_by_source)
              + (_confusion_blocks(graded, paths.get("confusion")) if graded else [])
              + (_calibration_blocks(graded, paths.get("calibration")) if graded else [])
              + (_ranking_blocks(system_ranking) if system_ranking else [])
              + (_cost_blocks(costs, merged_prices) if costs else []))
    blocks.insert(0, ("p", f"Generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}."))
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text(render_markdown(title, blocks, out), encoding="utf-8")
    paths["html"] = out / "report.html"
    paths["html"].write_text(render_html(title, blocks), encoding="utf-8")
    paths["metrics"] = out / "metrics.json"
    payload = {"sources": metrics_by_source, "system_ranking": system_ranking,
               "costs": costs or None, "prices": merged_prices}
    paths["metrics"].write_text(json.dumps(evaluate.json_safe(payload), indent=2, allow_nan=False),
                                encoding="utf-8")
    return paths
