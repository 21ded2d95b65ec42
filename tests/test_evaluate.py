"""Agreement metrics against numbers worked out by hand on a six-pair example, and the edge cases
(degenerate grades, failed rows, unknown ids, no overlap) that must give clear answers."""
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labeler.cli.evaluate import main
from labeler.evaluate import metrics as evaluate
from labeler.evaluate.inputs import load_labels, load_reference
from labeler.evaluate.metrics import agreement, compare, system_ranking_agreement

# Six pairs, sorted (q1: a b c, q2: d e f):
#   human  3 1 0 | 2 2 0
#   model  3 0 0 | 2 1 0
HUMAN = [3, 1, 0, 2, 2, 0]
MODEL = [3, 0, 0, 2, 1, 0]
QIDS = ["q1"] * 3 + ["q2"] * 3
DIDS = list("abcdef")


def ref_table(grades=HUMAN, qids=QIDS, dids=DIDS):
    return pa.table({"query_id": qids, "doc_id": dids, "grade": pa.array(grades, pa.int8())})


def labels(grades, qids=QIDS, dids=DIDS, status=None, expected=None):
    cols = {"query_id": qids, "doc_id": dids, "grade": pa.array(grades, pa.int8()),
            "model": ["m"] * len(qids), "status": status or ["ok"] * len(qids)}
    if expected is not None:
        cols["expected_grade"] = pa.array(expected, pa.float32())
    return pa.table(cols)


@pytest.fixture(scope="module")
def six():
    return agreement(ref_table(), labels(MODEL))


def test_counts_and_coverage(six):
    assert (six["n_reference"], six["n_labeled"], six["n_unknown"], six["coverage"]) == (6, 6, 0, 1.0)
    assert six["warnings"] == []


def test_grade_agreement_by_hand(six):
    # matches a, c, d, f -> 4/6; absolute errors 0 1 0 0 1 0 -> 2/6
    assert six["accuracy"] == pytest.approx(4 / 6)
    assert six["mae"] == pytest.approx(2 / 6)
    # confusion (human rows): [2 0 0 0] [1 0 0 0] [0 1 1 0] [0 0 0 1]
    assert six["confusion"] == [[2, 0, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]]
    # human marginals 2 1 2 1, model 3 1 1 1: p_e = (6+1+2+1)/36 = 10/36, p_o = 24/36
    # kappa = (24-10)/(36-10) = 7/13
    assert six["cohen_kappa"] == pytest.approx(7 / 13)
    # quadratic: observed mean squared distance 2/6; expected sum_ij h_i m_j (i-j)^2 / 36 = 96/36
    # kappa_w = 1 - (2/6)/(96/36) = 1 - 0.125
    assert six["weighted_kappa"] == pytest.approx(0.875)
    # ordinal alpha: pooled counts n = (5, 2, 3, 2); delta^2 for (0,1)=12.25 (1,2)=(2,3)=6.25,
    # (0,2)=36 (1,3)=25 (0,3)=72.25; D_o = 2*(12.25+6.25)/12 = 37/12;
    # D_e = 2*(5*2*12.25 + 2*3*6.25 + 3*2*6.25 + 5*3*36 + 2*2*25 + 5*2*72.25)/(12*11) = 3120/132
    assert six["krippendorff_alpha"] == pytest.approx(1 - (37 / 12) / (3120 / 132))


def test_binary_by_hand(six):
    # >= 2: human 1 0 0 1 1 0, model 1 0 0 1 0 0 -> TP 2, FN 1, FP 0
    b2 = six["binary_ge2"]
    assert (b2["accuracy"], b2["precision"], b2["recall"], b2["f1"]) == pytest.approx((5 / 6, 1, 2 / 3, 0.8))
    # p_o = 5/6, p_e = .5*2/6 + .5*4/6 = .5 -> kappa = (5/6 - 1/2) / (1/2) = 2/3
    assert b2["cohen_kappa"] == pytest.approx(2 / 3)
    # >= 1: human 1 1 0 1 1 0, model 1 0 0 1 1 0 -> TP 3, FN 1: P 1, R .75, F1 6/7
    b1 = six["binary_ge1"]
    assert (b1["precision"], b1["recall"], b1["f1"]) == pytest.approx((1, 0.75, 6 / 7))
    assert b1["cohen_kappa"] == pytest.approx(2 / 3)


def test_ranking_by_hand(six):
    # pairs with different human grades: q1 (a,b) ok, (a,c) ok, (b,c) model tie -> 1/2;
    # q2 (d,f) ok, (e,f) ok; (d,e) is a human tie and not counted -> 4.5 / 5
    assert six["pairwise_accuracy"] == pytest.approx(0.9)
    assert six["n_preference_pairs"] == 5
    # Spearman: model ranks 6 2 2 5 4 2, human ranks 6 3 1.5 4.5 4.5 1.5 -> 15 / sqrt(15.5 * 16.5)
    assert six["spearman"] == pytest.approx(15 / math.sqrt(15.5 * 16.5))
    # Kendall tau-b: 11 concordant, 0 discordant of 15; 3 pairs tied in model, 2 in human
    assert six["kendall"] == pytest.approx(11 / math.sqrt(12 * 13))
    # NDCG@10, linear gain: q1 ranks a, then the tie c, b (trec_eval: doc id descending):
    # DCG = 3 + 0 + 1/log2(4) = 3.5, IDCG = 3 + 1/log2(3); q2 ranks d e f: perfect -> 1
    q1 = 3.5 / (3 + 1 / math.log2(3))
    assert six["ndcg@10"] == pytest.approx((q1 + 1) / 2)


def test_expected_grade_ranks_and_calibrates():
    # Probabilities break the q1 tie the right way (b above c), so pairwise accuracy is 1 and
    # NDCG of q1 is perfect; grades still give the grade metrics.
    exp = [2.9, 0.4, 0.1, 2.2, 1.2, 0.3]
    m = agreement(ref_table(), labels(MODEL, expected=exp))
    assert m["ranked_by"] == "expected_grade"
    assert m["pairwise_accuracy"] == 1.0
    assert m["ndcg@10"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(4 / 6)
    cal = {r["human_grade"]: r for r in m["calibration"]}
    assert cal[2]["mean"] == pytest.approx((2.2 + 1.2) / 2) and cal[2]["n"] == 2


def test_nan_or_null_expected_grade_falls_back_to_grade():
    exp = [None, float("nan"), 0.1, 2.2, 1.2, 0.3]
    m = agreement(ref_table(), labels(MODEL, expected=exp))
    cal = {r["human_grade"]: r["mean"] for r in m["calibration"]}
    assert cal[3] == pytest.approx(3.0) and cal[1] == pytest.approx(0.0)


def test_failed_rows_reduce_coverage_and_are_never_grade_0():
    # f (human 0) failed with a stale grade 0, e has a null grade: neither is a label.
    grades = [3, 0, 0, 2, None, 0]
    m = agreement(ref_table(), labels(grades, status=["ok"] * 5 + ["failed"]))
    assert (m["n_labeled"], m["n_failed"], m["n_missing"]) == (4, 2, 0)
    assert m["coverage"] == pytest.approx(4 / 6)
    # on a b c d: matches a c d -> 3/4 (counting f as a correct 0 would give 4/5)
    assert m["accuracy"] == pytest.approx(3 / 4)


def test_missing_pairs_are_counted():
    m = agreement(ref_table(), labels([3, 0, 0], QIDS[:3], DIDS[:3]))
    assert (m["n_labeled"], m["n_missing"], m["coverage"]) == (3, 3, 0.5)


def test_unknown_ids_counted_or_strict_error():
    pred = labels(MODEL + [1], QIDS + ["q9"], DIDS + ["zz"])
    m = agreement(ref_table(), pred)
    assert m["n_unknown"] == 1 and m["unknown_examples"] == [["q9", "zz"]]
    assert any("not in the reference" in w for w in m["warnings"])
    with pytest.raises(ValueError, match=r"1 predicted pairs are not in the reference.*'q9', 'zz'"):
        agreement(ref_table(), pred, strict=True)


def test_single_grade_gives_none_with_reasons_never_nan():
    m = agreement(ref_table([2] * 4, ["q1", "q1", "q2", "q2"], list("abcd")),
                  labels([2] * 4, ["q1", "q1", "q2", "q2"], list("abcd")))
    assert m["accuracy"] == 1.0 and m["mae"] == 0.0
    for key in ("cohen_kappa", "weighted_kappa", "krippendorff_alpha", "spearman", "kendall", "pairwise_accuracy"):
        assert m[key] is None, key
        assert any(w.startswith(key) for w in m["warnings"]), key
    assert "only grade 2 is present" in " ".join(m["warnings"])
    assert m["binary_ge2"]["precision"] == 1.0 and m["binary_ge2"]["cohen_kappa"] is None
    json.dumps(evaluate.json_safe(m), allow_nan=False)


def test_query_without_relevant_document_is_left_out_of_ndcg():
    ref = ref_table([3, 1, 0, 0, 0, 0])
    m = agreement(ref, labels(MODEL))
    assert m["n_ndcg_queries"] == 1
    assert m["ndcg@10"] == pytest.approx(3.5 / (3 + 1 / math.log2(3)))
    assert any("no relevant document" in w for w in m["warnings"])
    assert "ndcg@3" in agreement(ref, labels(MODEL), k=3)


def test_no_overlap_is_a_clear_error():
    with pytest.raises(ValueError, match="no pair is both in the reference.*check that query and doc ids match"):
        agreement(ref_table(), labels([1, 2], ["x", "y"], ["a", "b"]))
    with pytest.raises(ValueError, match="no pair"):  # everything failed
        agreement(ref_table(), labels(MODEL, status=["failed"] * 6))


@pytest.mark.parametrize("ref, pred, msg", [
    (ref_table([3, 1, 0, 2, 2, 4]), labels(MODEL), r"reference has 1 grades outside 0..3"),
    (ref_table(), labels([3, 0, 0, 2, 1, 7]), r"predicted labels has 1 grades outside 0..3 \(\[7\]\)"),
    (ref_table(), labels(MODEL + [1], QIDS + ["q1"], DIDS + ["a"]), r"more than once.*'q1', 'a'"),
    (ref_table(HUMAN + [1], QIDS + ["q1"], DIDS + ["a"]), labels(MODEL), r"reference has 1 pairs more than once"),
    (pa.table({"query_id": ["q1"], "doc": ["a"]}), labels(MODEL), r"reference lacks columns \['doc_id', 'grade'\]"),
])
def test_malformed_inputs(ref, pred, msg):
    with pytest.raises(ValueError, match=msg):
        agreement(ref, pred)


def test_duplicate_of_failed_row_is_fine():
    # a retried pair: one failed attempt, then an ok one
    pred = labels(MODEL + [None], QIDS + ["q1"], DIDS + ["a"], status=["ok"] * 6 + ["failed"])
    assert agreement(ref_table(), pred)["n_labeled"] == 6


def test_score_only_source_gets_ranking_metrics_only():
    bm25 = pa.table({"query_id": QIDS, "doc_id": DIDS, "score": [9.0, 1.0, 5.0, 3.0, 4.0, 1.0]})
    m = agreement(ref_table(), bm25)
    assert m["ranked_by"] == "score" and m["accuracy"] is None and m["confusion"] is None
    # q1: a>b ok, a>c ok, b<c wrong; q2: d<e (human tie, skipped), d>f ok, e>f ok -> 4/5
    assert m["pairwise_accuracy"] == pytest.approx(0.8)


def test_compare_one_row_per_source_and_names_failing_source():
    rows = compare(ref_table(), {"teacher": labels(MODEL), "copy": labels(HUMAN)})
    assert [r["source"] for r in rows] == ["teacher", "copy"]
    assert rows[1]["accuracy"] == 1.0 and rows[1]["cohen_kappa"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="source 'bad': no pair"):
        compare(ref_table(), {"bad": labels([1], ["x"], ["y"])})


# --------------------------------------------------------------------------- system ranking

HUMAN_QRELS = {"q1": {"a": 1, "b": 0}, "q2": {"c": 1, "d": 0}}
MODEL_QRELS = {"q1": {"a": 0, "b": 1}, "q2": {"c": 1, "d": 0}}
RUNS = {"X": {"q1": {"a": 2, "b": 1}, "q2": {"c": 2, "d": 1}},
        "Y": {"q1": {"b": 2, "a": 1}, "q2": {"d": 2, "c": 1}},
        "Z": {"q1": {"a": 2, "b": 1}, "q2": {"d": 2, "c": 1}}}


def test_system_ranking_by_hand():
    # P@1 under human: X 1, Y 0, Z .5; under model: X .5, Y .5, Z 0.
    # pairs: X-Y tied under model, X-Z concordant, Y-Z discordant -> tau_b = 0
    r = system_ranking_agreement(RUNS, HUMAN_QRELS, MODEL_QRELS, metric="P_1")
    by = {s["system"]: s for s in r["systems"]}
    assert [by[s]["human"] for s in "XYZ"] == [1.0, 0.0, 0.5]
    assert [by[s]["model"] for s in "XYZ"] == [0.5, 0.5, 0.0]
    assert [by[s]["rank_model"] for s in "XYZ"] == [1, 1, 3]
    assert r["kendall_tau"] == pytest.approx(0.0)
    assert (r["metric"], r["n_systems"], r["n_queries"]) == ("P_1", 3, 2)


def test_system_ranking_identical_qrels_and_tables():
    table = pa.table({"query_id": ["q1", "q1", "q2", "q2"], "doc_id": list("abcd"),
                      "grade": pa.array([1, 0, 1, 0], pa.int8())})
    r = system_ranking_agreement(RUNS, table, HUMAN_QRELS)
    assert r["kendall_tau"] == pytest.approx(1.0) and r["metric"] == "ndcg_cut_10"


def test_system_ranking_missing_topic_scores_zero():
    # W has no q2: its P@1 is (1 + 0) / 2, not 1
    r = system_ranking_agreement({"W": {"q1": {"a": 1}}}, HUMAN_QRELS, HUMAN_QRELS, metric="P.1")
    assert r["systems"][0]["human"] == 0.5
    assert r["kendall_tau"] is None and "fewer than two systems" in r["warnings"][0]


def test_system_ranking_errors():
    with pytest.raises(ValueError, match="unknown metric 'ndcg@10'"):
        system_ranking_agreement(RUNS, HUMAN_QRELS, MODEL_QRELS, metric="ndcg@10")
    with pytest.raises(ValueError, match="share no query"):
        system_ranking_agreement(RUNS, HUMAN_QRELS, {"q7": {"a": 1}})


# --------------------------------------------------------------------------- loading and CLI

def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_load_labels_stage_folder_marks_rejected_as_failed(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "rejected").mkdir()
    pq.write_table(pa.table({"query_id": QIDS[:5], "doc_id": DIDS[:5], "grade": pa.array(MODEL[:5], pa.int8()),
                             "expected_grade": pa.array([3.0, 0.2, 0.1, 2.0, 1.0], pa.float32())}),
                   tmp_path / "data" / "part-1.parquet")
    pq.write_table(pa.table({"key": ["q2\tf"], "reason": ["unparseable_output"], "detail": ["x"], "record": ["y"]}),
                   tmp_path / "rejected" / "part-2.parquet")
    (tmp_path / "_manifest.json").write_text("{}")
    t = load_labels(tmp_path)
    assert t.num_rows == 6
    m = agreement(ref_table(), t)
    assert (m["n_labeled"], m["n_failed"]) == (5, 1)


def test_load_labels_and_reference_formats(tmp_path):
    q = write_lines(tmp_path / "m.qrels", ["q1 0 a 3", "q1 0 b 0"])
    t = load_labels(q)
    assert t["grade"].to_pylist() == [3, 0] and t["model"].to_pylist() == ["m", "m"]
    run = write_lines(tmp_path / "bm25.run", ["q1 Q0 a 1 2.5 bm25"])
    assert load_labels(run).column_names == ["query_id", "doc_id", "score", "model"]
    j = write_lines(tmp_path / "ref.jsonl", ['{"query_id": "q1", "doc_id": "a", "grade": 2}'])
    assert load_reference(j).to_pylist() == [{"query_id": "q1", "doc_id": "a", "grade": 2}]
    pq.write_table(ref_table(), tmp_path / "ref.parquet")
    assert load_reference(tmp_path / "ref.parquet").num_rows == 6
    with pytest.raises(ValueError, match="is a TREC run"):
        load_reference(run)
    bad = write_lines(tmp_path / "bad.jsonl", ['{"query_id": "q1"}', "{oops"])
    with pytest.raises(ValueError, match=r"bad.jsonl:2: invalid JSON"):
        load_reference(bad)


def run_cli(capsys, argv):
    code = main(argv)
    out = capsys.readouterr().out.strip().splitlines()
    return code, out, json.loads(out[-1])


def test_cli_prints_summary_then_json(tmp_path, capsys):
    ref = write_lines(tmp_path / "ref.qrels", [f"{q} 0 {d} {g}" for q, d, g in zip(QIDS, DIDS, HUMAN)])
    model = write_lines(tmp_path / "teacher.qrels", [f"{q} 0 {d} {g}" for q, d, g in zip(QIDS, DIDS, MODEL)])
    run = write_lines(tmp_path / "sys.run", ["q1 Q0 a 1 2 s", "q2 Q0 d 1 2 s"])
    code, out, last = run_cli(capsys, ["evaluate", "--qrels", str(ref), "--labels", str(model),
                                       "--labels", f"same={ref}", "--runs", str(run)])
    assert code == 0
    assert out[0].startswith("reference:") and "teacher" in "\n".join(out[:-1])
    assert last["source"] == "teacher" and last["cohen_kappa"] == pytest.approx(7 / 13)
    assert [s["source"] for s in last["sources"]] == ["teacher", "same"]
    assert last["system_ranking"]["teacher"]["n_systems"] == 1


def test_cli_bad_input_exits_2_with_json_error(tmp_path, capsys):
    ref = write_lines(tmp_path / "ref.qrels", ["q1 0 a 1"])
    other = write_lines(tmp_path / "o.qrels", ["q2 0 b 1"])
    code, _, last = run_cli(capsys, ["--qrels", str(ref), "--labels", str(other)])
    assert code == 2 and "no pair" in last["error"]


def test_pairwise_accuracy_matches_brute_force_on_random_data():
    import numpy as np
    rng = np.random.default_rng(0)
    qids = [f"q{i}" for i in rng.integers(0, 5, 60)]
    human = rng.integers(0, 4, 60).tolist()
    score = rng.integers(0, 4, 60).tolist()  # small range, so ties are common
    got = agreement(ref_table(human, qids, [f"d{i}" for i in range(60)]),
                    labels(score, qids, [f"d{i}" for i in range(60)]))["pairwise_accuracy"]
    agree = pairs = 0
    for i in range(60):
        for j in range(60):
            if qids[i] == qids[j] and human[i] > human[j]:
                pairs += 1
                agree += 1 if score[i] > score[j] else 0.5 if score[i] == score[j] else 0
    assert got == pytest.approx(agree / pairs)
