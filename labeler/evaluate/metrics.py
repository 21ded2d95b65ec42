"""How far model labels agree with human judgments, and whether they rank systems the same way.

Metrics come from maintained libraries (scikit-learn, krippendorff, scipy, pytrec_eval) so that
numbers match what reviewers compute elsewhere. Every metric that is undefined on the given data
(a single grade present, one query, no relevant document) is reported as None together with a
line in `warnings`, so the JSON never carries NaN and a degenerate sample is never mistaken for
a perfect or a zero score.
"""
from __future__ import annotations

import math
import warnings as pywarnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import qrels as trec
from .inputs import check_label_columns

GRADES = (0, 1, 2, 3)
_Q, _D = "query_id", "doc_id"
_EXAMPLES = 5


# --------------------------------------------------------------------------- alignment

@dataclass(frozen=True)
class Aligned:
    """Reference and predicted labels on the pairs both have, sorted by (query_id, doc_id)."""

    query_id: np.ndarray
    doc_id: np.ndarray
    human: np.ndarray               # int, 0..3
    grade: Optional[np.ndarray]     # int, 0..3; None for a score-only source (e.g. BM25)
    score: np.ndarray               # what the source ranks by: expected_grade, else grade, else score
    score_name: str
    counts: dict = field(default_factory=dict)


def _ids(table: pa.Table) -> pa.Table:
    return table.set_column(table.schema.get_field_index(_Q), _Q, pc.cast(table[_Q], pa.string())) \
                .set_column(table.schema.get_field_index(_D), _D, pc.cast(table[_D], pa.string()))


def _examples(table: pa.Table, n: int = _EXAMPLES) -> str:
    rows = table.select([_Q, _D]).slice(0, n).to_pylist()
    return ", ".join(f"({r[_Q]!r}, {r[_D]!r})" for r in rows)


def _check_grades(values: pa.ChunkedArray | pa.Array, table: pa.Table, what: str) -> None:
    bad = table.filter(pc.invert(pc.is_in(values, pa.array(GRADES, values.type))))
    if bad.num_rows:
        grades = sorted(set(bad["grade" if "grade" in bad.column_names else "pred_grade"].to_pylist()))
        raise ValueError(f"{what} has {bad.num_rows} grades outside 0..3 ({grades[:5]}), "
                         f"e.g. {_examples(bad)}")


def _check_unique(table: pa.Table, what: str) -> None:
    counts = table.group_by([_Q, _D]).aggregate([([], "count_all")])
    dup = counts.filter(pc.greater(counts["count_all"], 1))
    if dup.num_rows:
        raise ValueError(f"{what} has {dup.num_rows} pairs more than once, e.g. {_examples(dup)}")


def _reference(reference: pa.Table) -> pa.Table:
    missing = {_Q, _D, "grade"} - set(reference.column_names)
    if missing:
        raise ValueError(f"reference lacks columns {sorted(missing)}; has {reference.column_names}")
    ref = _ids(reference.select([_Q, _D, "grade"]))
    nulls = ref.filter(pc.is_null(ref["grade"]))
    if nulls.num_rows:
        raise ValueError(f"reference has {nulls.num_rows} pairs without a grade, e.g. {_examples(nulls)}")
    _check_grades(ref["grade"], ref, "reference")
    _check_unique(ref, "reference")
    return ref.set_column(2, "grade", pc.cast(ref["grade"], pa.int8()))


def _predictions(predicted: pa.Table) -> tuple[pa.Table, str]:
    """All predicted rows with (pred_grade, pred_score, labeled); and the name of the ranking score.

    A row is labeled when its status is ok (or absent) and it has a grade; failed rows are kept
    only to be counted, never read as grade 0.
    """
    check_label_columns(predicted, "predicted labels")
    t = _ids(predicted)
    n = t.num_rows
    has_grade = "grade" in t.column_names
    grade = pc.cast(t["grade"], pa.int8()) if has_grade else pa.nulls(n, pa.int8())
    if has_grade:
        score_name = "expected_grade" if "expected_grade" in t.column_names else "grade"
        score = pc.cast(t["expected_grade"], pa.float64()) if score_name == "expected_grade" else None
        score = _fill(score, pc.cast(grade, pa.float64()))
    else:
        score_name, score = "score", pc.cast(t["score"], pa.float64())
    ok = pc.is_valid(grade if has_grade else score)
    if "status" in t.column_names:
        ok = pc.and_(ok, pc.fill_null(pc.equal(t["status"], "ok"), False))
    out = pa.table({_Q: t[_Q], _D: t[_D], "pred_grade": grade, "pred_score": score, "labeled": ok})
    return out, score_name


def _fill(primary, fallback):
    """expected_grade where it is a number, the grade where it is null or NaN."""
    if primary is None:
        return fallback
    primary = pc.if_else(pc.is_nan(primary), pa.scalar(None, pa.float64()), primary)
    return pc.coalesce(primary, fallback)


def align(reference: pa.Table, predicted: pa.Table, *, strict: bool = False) -> Aligned:
    """Inner-join predictions on the reference; count what is labeled, failed, missing and unknown."""
    ref = _reference(reference)
    pred, score_name = _predictions(predicted)
    keys = [_Q, _D]
    unknown = pred.join(ref.select(keys), keys=keys, join_type="left anti").group_by(keys).aggregate([])
    if strict and unknown.num_rows:
        raise ValueError(f"{unknown.num_rows} predicted pairs are not in the reference, "
                         f"e.g. {_examples(unknown)}")
    labeled = pred.filter(pred["labeled"])
    if score_name != "score":
        _check_grades(labeled["pred_grade"], labeled, "predicted labels")
    _check_unique(labeled, "predicted labels (status ok)")
    joined = ref.join(labeled, keys=keys, join_type="inner").sort_by([(_Q, "ascending"), (_D, "ascending")])
    attempted = ref.join(pred.select(keys).group_by(keys).aggregate([]), keys=keys, join_type="inner").num_rows
    if joined.num_rows == 0:
        raise ValueError(
            f"no pair is both in the reference ({ref.num_rows} pairs, e.g. {_examples(ref, 3)}) and "
            f"labeled in the predictions ({labeled.num_rows} labeled of {pred.num_rows} rows, "
            f"e.g. {_examples(labeled, 3)}); check that query and doc ids match")
    counts = {
        "n_reference": ref.num_rows,
        "n_labeled": joined.num_rows,
        "n_failed": attempted - joined.num_rows,
        "n_missing": ref.num_rows - attempted,
        "n_unknown": unknown.num_rows,
        "unknown_examples": [[r[_Q], r[_D]] for r in unknown.slice(0, _EXAMPLES).to_pylist()],
        "n_queries": len(pc.unique(joined[_Q])),
    }
    grade = None if score_name == "score" else joined["pred_grade"].to_numpy().astype(int)
    return Aligned(joined[_Q].to_numpy(zero_copy_only=False), joined[_D].to_numpy(zero_copy_only=False),
                   joined["grade"].to_numpy().astype(int), grade,
                   joined["pred_score"].to_numpy().astype(float), score_name, counts)


# --------------------------------------------------------------------------- metrics

def _defined(name: str, value, why: str, notes: list[str]):
    """The metric as a float, or None plus a warning when the data do not define it."""
    if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value)):
        notes.append(f"{name}: undefined, {why}")
        return None
    return float(value)


def _quietly(fn: Callable, *args, **kwargs):
    """Call a library metric with its undefined-value warnings silenced: we report those ourselves."""
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)
        except (ValueError, ZeroDivisionError):
            return None


def grade_metrics(a: Aligned, notes: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, cohen_kappa_score, mean_absolute_error
    import krippendorff

    single = f"only grade {a.human[0]} is present" if len(set(a.human) | set(a.grade)) == 1 \
        else "chance agreement is total"
    return {
        "accuracy": float(accuracy_score(a.human, a.grade)),
        "mae": float(mean_absolute_error(a.human, a.grade)),
        "cohen_kappa": _defined("cohen_kappa", _quietly(
            cohen_kappa_score, a.human, a.grade, labels=list(GRADES)), single, notes),
        "weighted_kappa": _defined("weighted_kappa", _quietly(
            cohen_kappa_score, a.human, a.grade, labels=list(GRADES), weights="quadratic"),
            single, notes),
        "krippendorff_alpha": _defined("krippendorff_alpha", _quietly(
            krippendorff.alpha, reliability_data=np.vstack([a.human, a.grade]).astype(float),
            level_of_measurement="ordinal", value_domain=list(GRADES)), single, notes),
    }


def binary_metrics(a: Aligned, threshold: int, notes: list[str]) -> dict:
    """Agreement on 'relevant' = grade >= threshold, the cut most downstream uses apply."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score, precision_recall_fscore_support

    name = f"binary_ge{threshold}"
    y, p = a.human >= threshold, a.grade >= threshold
    prec, rec, f1, _ = _quietly(precision_recall_fscore_support, y, p, average="binary",
                                zero_division=np.nan) or (None, None, None, None)
    single = "one class only" if len(set(y) | set(p)) == 1 else "chance agreement is total"
    return {
        "accuracy": float(accuracy_score(y, p)),
        "cohen_kappa": _defined(f"{name}.cohen_kappa", _quietly(
            cohen_kappa_score, y, p, labels=[False, True]), single, notes),
        "precision": _defined(f"{name}.precision", prec, "no pair predicted relevant", notes),
        "recall": _defined(f"{name}.recall", rec, "no pair judged relevant", notes),
        "f1": _defined(f"{name}.f1", f1, "no pair relevant in either", notes),
        "human_positive_rate": float(y.mean()),
        "model_positive_rate": float(p.mean()),
    }


def _query_groups(query_ids: np.ndarray) -> list[slice]:
    """Contiguous slices per query (Aligned rows are sorted by query_id)."""
    _, starts = np.unique(query_ids, return_index=True)
    bounds = sorted(starts.tolist()) + [len(query_ids)]
    return [slice(s, e) for s, e in zip(bounds[:-1], bounds[1:])]


def pairwise_accuracy(a: Aligned, notes: list[str]) -> tuple[Optional[float], int]:
    """Share of within-query document pairs with different human grades that the source orders the
    same way; a tie in the source's score counts half (it is a coin flip for a ranker)."""
    agree, pairs = 0.0, 0
    for sl in _query_groups(a.query_id):
        h, s = a.human[sl], a.score[sl]
        for lo in GRADES[:-1]:
            below, above = np.sort(s[h == lo]), s[h > lo]
            # sorted search keeps this O(n log n): a query may hold thousands of documents
            less = np.searchsorted(below, above, "left")
            tied = np.searchsorted(below, above, "right") - less
            agree += float(less.sum() + 0.5 * tied.sum())
            pairs += int(above.size * below.size)
    value = agree / pairs if pairs else None
    return _defined("pairwise_accuracy", value, "no query has documents with different human grades",
                    notes), pairs


def correlations(a: Aligned, notes: list[str]) -> dict:
    from scipy.stats import kendalltau, spearmanr

    why = "one of the two is constant" if len(a.human) > 1 else "a single pair"
    rho = _quietly(spearmanr, a.score, a.human)
    tau = _quietly(kendalltau, a.score, a.human)
    return {
        "spearman": _defined("spearman", None if rho is None else rho.statistic, why, notes),
        "kendall": _defined("kendall", None if tau is None else tau.statistic, why, notes),
    }


def ndcg_at_k(a: Aligned, k: int, notes: list[str]) -> tuple[Optional[float], int]:
    """Mean NDCG@k (trec_eval's linear gain) of each query's ranking by the source's score, scored
    with human grades; queries without a relevant document have no NDCG and are left out.
    Ties in score are broken as trec_eval does (doc id, descending)."""
    import pytrec_eval

    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q, d, h, s in zip(a.query_id, a.doc_id, a.human, a.score):
        qrels.setdefault(q, {})[d] = int(h)
        run.setdefault(q, {})[d] = float(s)
    judged = {q: docs for q, docs in qrels.items() if any(g > 0 for g in docs.values())}
    skipped = len(qrels) - len(judged)
    if skipped:
        notes.append(f"ndcg@{k}: {skipped} of {len(qrels)} queries have no relevant document and are left out")
    if not judged:
        return _defined(f"ndcg@{k}", None, "no query has a relevant document", notes), 0
    per_query = pytrec_eval.RelevanceEvaluator(judged, {f"ndcg_cut.{k}"}).evaluate(
        {q: run[q] for q in judged})
    return float(np.mean([v[f"ndcg_cut_{k}"] for v in per_query.values()])), len(judged)


def confusion(a: Aligned) -> list[list[int]]:
    """Counts, human grade rows x model grade columns, over all four grades."""
    from sklearn.metrics import confusion_matrix
    return confusion_matrix(a.human, a.grade, labels=list(GRADES)).tolist()


def calibration(a: Aligned) -> list[dict]:
    """Per human grade: how many pairs, and the mean and spread of the source's expected grade."""
    rows = []
    for g in GRADES:
        s = a.score[a.human == g]
        rows.append({"human_grade": g, "n": int(s.size),
                     "mean": float(s.mean()) if s.size else None,
                     "std": float(s.std()) if s.size else None,
                     "q25": float(np.quantile(s, 0.25)) if s.size else None,
                     "q75": float(np.quantile(s, 0.75)) if s.size else None})
    return rows


def agreement(reference: pa.Table, predicted: pa.Table, *, k: int = 10, strict: bool = False) -> dict:
    """All agreement metrics of `predicted` against `reference` on the pairs both have.

    Raises ValueError when nothing overlaps, when strict and a predicted pair is not in the
    reference, or on malformed input (grades outside 0..3, duplicate pairs).
    """
    a = align(reference, predicted, strict=strict)
    notes: list[str] = []
    if a.counts["n_unknown"]:
        notes.append(f"{a.counts['n_unknown']} predicted pairs are not in the reference and are ignored, "
                     f"e.g. {a.counts['unknown_examples'][:3]}")
    c = a.counts
    out: dict[str, Any] = {**c, "coverage": c["n_labeled"] / c["n_reference"], "ranked_by": a.score_name}
    if a.grade is not None:
        out.update(grade_metrics(a, notes))
        out["binary_ge2"] = binary_metrics(a, 2, notes)
        out["binary_ge1"] = binary_metrics(a, 1, notes)
        out["confusion"] = confusion(a)
    else:
        notes.append("grade metrics: the source has scores, not grades; only ranking metrics apply")
        for key in ("accuracy", "mae", "cohen_kappa", "weighted_kappa", "krippendorff_alpha",
                    "binary_ge2", "binary_ge1", "confusion"):
            out[key] = None
    out["pairwise_accuracy"], out["n_preference_pairs"] = pairwise_accuracy(a, notes)
    out.update(correlations(a, notes))
    out[f"ndcg@{k}"], out["n_ndcg_queries"] = ndcg_at_k(a, k, notes)
    out["calibration"] = calibration(a) if a.grade is not None else None
    out["warnings"] = notes
    return out


def compare(reference: pa.Table, sources: Mapping[str, pa.Table], k: int = 10, *,
            strict: bool = False) -> list[dict]:
    """One agreement row per source, all against the same reference so the rows are comparable."""
    rows, errors = [], []
    for name, table in sources.items():
        try:
            rows.append({"source": name, **agreement(reference, table, k=k, strict=strict)})
        except ValueError as e:
            # One unusable source (no pair in common with the reference) is reported as such;
            # the other sources are still compared.
            errors.append(f"source {name!r}: {e}")
            rows.append({"source": name, "error": str(e), "n_labeled": 0})
    if len(errors) == len(rows):
        raise ValueError("; ".join(errors))
    return rows


# --------------------------------------------------------------------------- system ranking

def _measure(metric: str) -> tuple[str, str]:
    """'ndcg_cut_10' -> ('ndcg_cut.10', 'ndcg_cut_10'): the name pytrec_eval takes and the key it returns."""
    import pytrec_eval

    supported = pytrec_eval.supported_measures
    if metric in supported:
        return metric, metric
    base, sep, param = metric.replace(".", "_").rpartition("_")
    if sep and base in supported and param.isdigit():
        return f"{base}.{param}", f"{base}_{param}"
    raise ValueError(f"unknown metric {metric!r}; use a trec_eval measure such as ndcg_cut_10, map, "
                     f"P_10, recall_100 (supported: {', '.join(sorted(supported))})")


def _as_qrels(q) -> dict[str, dict[str, int]]:
    if isinstance(q, pa.Table):
        return trec.qrels_dict(q)
    return {str(qid): {str(d): int(g) for d, g in docs.items()} for qid, docs in q.items()}


def _mean_metric(run: Mapping, qrels: dict, topics: list[str], measure: str, key: str,
                 relevance_level: int) -> float:
    """Mean over all topics, a topic the run misses scoring 0 (trec_eval -c), so that systems
    are averaged over the same topics."""
    import pytrec_eval

    evaluator = pytrec_eval.RelevanceEvaluator({t: qrels[t] for t in topics}, {measure},
                                               relevance_level=relevance_level)
    scores = evaluator.evaluate({t: {d: float(s) for d, s in run[t].items()} for t in topics if t in run})
    return float(sum(scores.get(t, {}).get(key, 0.0) for t in topics) / len(topics))


def _ranks(values: list[float]) -> list[int]:
    """1 = best; equal values share the best rank among them."""
    return [1 + sum(v > x for v in values) for x in values]


def system_ranking_agreement(runs: Mapping[str, Mapping[str, Mapping[str, float]]], human_qrels,
                             model_qrels, metric: str = "ndcg_cut_10", *,
                             relevance_level: int = 1) -> dict:
    """Score each run under human and under model qrels and compare the two system orders by
    Kendall's tau: the use TREC makes of LLM labels, where the order matters more than the values.

    Topics are those judged in both qrels; a pair the model failed to label is unjudged there.
    """
    from scipy.stats import kendalltau

    measure, key = _measure(metric)
    human, model = _as_qrels(human_qrels), _as_qrels(model_qrels)
    topics = sorted(set(human) & set(model))
    if not topics:
        raise ValueError(f"human and model qrels share no query ({len(human)} and {len(model)} queries)")
    if not runs:
        raise ValueError("no runs given")
    names = sorted(runs)
    under_h = [_mean_metric(runs[n], human, topics, measure, key, relevance_level) for n in names]
    under_m = [_mean_metric(runs[n], model, topics, measure, key, relevance_level) for n in names]
    notes: list[str] = []
    if len(set(human) ^ set(model)):
        notes.append(f"{len(set(human) ^ set(model))} queries judged in only one of the qrels are left out")
    tau = _quietly(kendalltau, under_h, under_m) if len(names) > 1 else None
    why = "fewer than two systems" if len(names) < 2 else "all systems score the same under one of the qrels"
    return {
        "metric": key, "relevance_level": relevance_level, "n_systems": len(names), "n_queries": len(topics),
        "kendall_tau": _defined("kendall_tau", None if tau is None else tau.statistic, why, notes),
        "kendall_p": None if tau is None or not math.isfinite(tau.pvalue) else float(tau.pvalue),
        "systems": [{"system": n, "human": h, "model": m, "rank_human": rh, "rank_model": rm}
                    for n, h, m, rh, rm in zip(names, under_h, under_m, _ranks(under_h), _ranks(under_m))],
        "warnings": notes,
    }


# --------------------------------------------------------------------------- CLI

def json_safe(obj):
    """Plain JSON types; a stray NaN becomes None (metrics above already explain theirs)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def validation_agreement(reference: pa.Table, predicted: pa.Table, k: int = 10) -> dict:
    """The headline agreement figures of a validation pass (a student's held-out teacher pairs), JSON-safe."""
    m = agreement(reference, predicted, k=k)
    keys = ["n_labeled", "accuracy", "mae", "cohen_kappa", "weighted_kappa", "spearman", "kendall",
            "pairwise_accuracy", f"ndcg@{k}"]
    return json_safe({key: m.get(key) for key in keys})
