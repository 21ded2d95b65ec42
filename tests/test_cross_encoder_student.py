"""The cross-encoder student: LCE groups from judgments, training through Ray Train (DDP on gloo),
resume, export with calibration, labeling through the engine and reranking into a TREC run.

The model is a random-weight 2-layer BertModel with MiniLM's tokenizer (labeler.models.make_random_encoder)."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from labeler.config import (
    CrossEncoderConfig,
    CrossEncoderStudentConfig,
    EngineConfig,
    GradeConfig,
)
from labeler.engines import export_backend
from labeler.engines.cross_encoder_engine import META_FILE
from labeler.engines.encoder_export import apply_calibration
from labeler.rerank import rerank
from labeler.students.calibration import fit_calibration
from labeler.students.cross_encoder.data import build_groups, graded_points, with_target
from labeler.students.cross_encoder.losses import lce_loss
from labeler.students.cross_encoder.training import train_cross_encoder
from labeler.schema import JUDGMENTS

from conftest import DEMO_DOCS


def is_cross_encoder(path) -> bool:
    return export_backend(path) == "cross_encoder"


def _judgments(n_queries=8, per_query=6, split="train", failed_every=0) -> pa.Table:
    """Query i asks for document i's title: that document is graded 3, the other BM25 results 0 or 1."""
    docs = [json.loads(line) for line in DEMO_DOCS.read_text().splitlines()[: n_queries + per_query]]
    rows = []
    for q in range(n_queries):
        for rank in range(1, per_query + 1):
            d = docs[(q + rank - 1) % len(docs)]
            grade = 3 if rank == 1 else (1 if rank == 2 else 0)
            row = {"query_id": f"{split}-q{q}", "query": docs[q]["title"], "doc_id": d["doc_id"], "title": d["title"],
                   "text": d["text"][:200], "doc_meta": None, "source": "seed" if rank == 1 else "bm25",
                   "bm25_rank": rank, "bm25_score": 10.0 - rank, "split": split, "status": "ok", "error": None,
                   "grade": grade, "expected_grade": grade * 0.9 + 0.05,
                   "grade_probs": [0.85 if g == grade else 0.05 for g in range(4)], "grade_mass": 0.9,
                   "model": "teacher", "model_version": "t", "truncated": False, "prompt_tokens": 100}
            if failed_every and rank > 1 and (q * per_query + rank) % failed_every == 0:
                row.update(status="failed", error="no_grade_token", grade=None, expected_grade=None, grade_probs=None)
            rows.append(row)
    return pa.Table.from_pylist(rows, schema=JUDGMENTS)


def _cfg(tiny_encoder, **ce) -> CrossEncoderStudentConfig:
    base = dict(base_model=tiny_encoder, group_size=4, lr=2e-3, epochs=3, batch_groups=2, max_seq_len=96,
                weight_decay=0.0)
    return CrossEncoderStudentConfig(kind="cross_encoder", num_workers=2, cross_encoder=CrossEncoderConfig(**{**base, **ce}))


def test_groups_reconcile_reject_with_reasons_and_never_use_failed_rows():
    t = _judgments(n_queries=6, per_query=6, failed_every=4)
    rows = t.to_pylist()
    # q4: nothing relevant; q5: every pair failed.
    for r in rows:
        if r["query_id"] == "train-q4" and r["grade"] == 3:
            r["grade"], r["expected_grade"] = 1, 1.0
        if r["query_id"] == "train-q5":
            r.update(status="failed", error="server_error", grade=None, expected_grade=None, grade_probs=None)
    t = pa.Table.from_pylist(rows, schema=JUDGMENTS)
    failed = {(r["query_id"], r["doc_id"]) for r in rows if r["status"] == "failed"}
    cfg = CrossEncoderConfig(group_size=4, negative_rank_window=(2, 6))
    gs = build_groups(t, cfg, seed=3)
    c = gs.counts
    assert c["queries_in"] == 6 == c["groups"] + c["queries_rejected"]
    assert c["queries_in"] == gs.groups.num_rows + len(gs.rejected)
    reasons = {r["key"]: r["reason"] for r in gs.rejected}
    assert reasons["train-q4"] == "no_positive" and reasons["train-q5"] == "no_graded_pairs"
    assert c["failed_rows_skipped"] == len(failed)
    for g in gs.groups.to_pylist():
        assert len(g["doc_ids"]) == 4 and g["grades"][0] == 3 and all(x < 3 for x in g["grades"][1:])
        assert not {(g["query_id"], d) for d in g["doc_ids"]} & failed
        ranks = {r["doc_id"]: r["bm25_rank"] for r in rows if r["query_id"] == g["query_id"]}
        assert all(2 <= ranks[d] <= 6 for d in g["doc_ids"][1:])
    # A group of 6 needs 5 negatives below the positive; queries with a failed negative fall short.
    tight = build_groups(t, CrossEncoderConfig(group_size=6), seed=3)
    short = [r for r in tight.rejected if r["reason"] == "too_few_negatives"]
    assert short and all("needs 5" in r["detail"] for r in short)
    assert tight.counts["groups"] + tight.counts["queries_rejected"] == 6
    # Deterministic for a seed.
    assert build_groups(t, cfg, seed=3).groups.equals(gs.groups)


def test_title_groups_take_the_titled_document_as_positive_and_bm25_negatives(tmp_path):
    """Weak groups from titles: the positive is the document the title names, the negatives are
    other BM25 results (never the positive's passages); excluded documents and titles shared by
    several documents are never used; every sampled title is a group or a rejection."""
    from labeler.mining import build_index
    from labeler.students.cross_encoder.data import title_groups

    docs = [json.loads(line) for line in DEMO_DOCS.read_text().splitlines()]
    # Two documents with one title: neither may be a title query's positive.
    docs[1]["title"] = docs[0]["title"]
    table = pa.Table.from_pylist([{k: d.get(k) for k in ("doc_id", "title", "text")} for d in docs])
    folder = build_index(table, tmp_path / "ix")
    excluded = docs[2]["doc_id"]
    title_of = {d["doc_id"]: d["title"] for d in docs}
    cfg = CrossEncoderConfig(group_size=4, title_groups=len(docs), title_min_words=2)
    gs = title_groups(folder, cfg, seed=3, exclude=frozenset({excluded}))
    assert gs.counts["titles_sampled"] == gs.counts["titles_eligible"] < len(docs)
    assert gs.groups.num_rows + len(gs.rejected) == gs.counts["titles_sampled"] and gs.groups.num_rows > 0
    for g in gs.groups.to_pylist():
        pos = g["doc_ids"][0]
        assert g["query_id"] == f"title:{pos}" and g["query"] == title_of[pos].strip()
        assert pos not in {docs[0]["doc_id"], docs[1]["doc_id"], excluded}
        assert len(g["doc_ids"]) == 4 and len(set(g["doc_ids"])) == 4
        assert g["grades"] == [None] * 4  # no teacher grade is made up for them
    # Deterministic under the seed.
    again = title_groups(folder, cfg, seed=3, exclude=frozenset({excluded}))
    assert again.groups.column("doc_ids").to_pylist() == gs.groups.column("doc_ids").to_pylist()
    with pytest.raises(ValueError, match="title_groups need loss: lce"):
        CrossEncoderConfig(loss="pointwise", title_groups=5)


def test_lce_loss_and_calibration_are_what_they_claim():
    import torch

    scores = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    assert float(lce_loss(scores)) == pytest.approx(float(torch.nn.functional.cross_entropy(
        scores, torch.zeros(2, dtype=torch.long))))
    assert float(lce_loss(scores[:1])) < 0.02 < float(lce_loss(scores[1:]))
    # A higher temperature flattens the softmax: the confident-and-right group's loss grows.
    assert float(lce_loss(scores[:1], temperature=5.0)) > float(lce_loss(scores[:1]))
    cal = fit_calibration([-2, -1, 0, 1, 2, 3], [0, 0.2, 1.1, 0.9, 2.5, 3.0])
    out = apply_calibration([-10, -1.5, 0.5, 10], cal)
    assert list(out) == sorted(out) and 0 <= out[0] and out[-1] <= 3  # monotone, clipped to the scale
    assert out[0] == pytest.approx(0.0) and out[-1] == pytest.approx(3.0)
    # Calibration folds split by query, never inside one; too few held-out pairs: no folds.
    from labeler.students.calibration import query_folds as _query_folds
    folds = _query_folds(["a", "a", "b", "c", "c", "b"])
    assert list(folds) == [0, 0, 1, 0, 0, 1]
    assert _query_folds(["a", "a", "a"]) is None and _query_folds(["a", "b", "b"]) is None


@pytest.mark.slow
def test_lce_trains_resumes_exports_labels_and_reranks(tiny_encoder, tmp_path, ray_local):
    from labeler.engines import make_engine
    from labeler.qrels import read_run
    from labeler.stages.grade_stream import GradeWorker

    train = _judgments(n_queries=8, per_query=6, failed_every=5)
    heldout = _judgments(n_queries=4, per_query=6, split="heldout")
    storage, export = tmp_path / "ray", tmp_path / "student"
    stats = train_cross_encoder(_cfg(tiny_encoder, epochs=2), train, heldout, storage, export, seed=1, k=5)
    hist = stats["history"]
    assert [h["epoch"] for h in hist] == [0, 1]
    assert stats["groups"]["queries_in"] == 8 == stats["groups"]["groups"] + stats["groups"]["queries_rejected"]
    assert all(h["val_loss"] is not None and h["val_agreement"]["n_labeled"] == 24 for h in hist)

    # Resume: the same storage with more epochs continues at epoch 2 from the saved weights and optimizer.
    more = train_cross_encoder(_cfg(tiny_encoder, epochs=4), train, heldout, storage, export, seed=1, k=5)
    hist2 = more["history"]
    assert [h["epoch"] for h in hist2] == [0, 1, 2, 3]
    assert hist2[:2] == hist  # the first two epochs come from the checkpoint, not a rerun
    losses = [h["train_loss"] for h in hist2]
    assert losses[-1] < losses[0], losses

    # The export: model, tokenizer and calibration; the engine labels pairs with grades 0..3.
    assert is_cross_encoder(export) and not (export / "optimizer.pt").exists()
    meta = json.loads((export / META_FILE).read_text())
    # Calibrated on the held-out teacher pairs, which the model never trained on.
    assert meta["calibration"]["fitted_on"] == "heldout" and meta["calibration"]["n_pairs"] == heldout.num_rows
    engine = make_engine(EngineConfig(backend="vllm", model=str(export)))  # auto-detected
    assert type(engine).__name__ == "CrossEncoderEngine"
    worker = GradeWorker(EngineConfig(backend="cross_encoder", model=str(export), batch_size=8), GradeConfig())
    pairs = heldout.select(["query_id", "query", "doc_id", "title", "text", "doc_meta", "source", "bm25_rank",
                            "bm25_score", "split"])
    long = pairs.slice(0, 1).to_pylist()[0]
    long.update(doc_id="long-doc", text="policy " * 2000)
    pairs = pa.concat_tables([pairs, pa.Table.from_pylist([long], schema=pairs.schema)])
    out = worker(pairs)
    grades = out.column("grade").to_pylist()
    assert out.num_rows == pairs.num_rows and set(out.column("status").to_pylist()) == {"ok"}
    assert all(g in (0, 1, 2, 3) for g in grades)
    exp = out.column("expected_grade").to_pylist()
    assert all(0 <= e <= 3 and g == int(e + 0.5) for e, g in zip(exp, grades))
    assert out.column("grade_probs").null_count == out.num_rows  # no distribution is made up
    assert out.column("truncated").to_pylist() == [False] * (pairs.num_rows - 1) + [True]
    assert max(out.column("prompt_tokens").to_pylist()) == 96
    assert stats["heldout_agreement"]["n_labeled"] == 24

    # Reranking BM25's top 4 per query into a TREC run.
    run_path = tmp_path / "rerank.run"
    run = rerank(heldout, export, run_path, depth=4)
    back = read_run(run_path)
    assert back.keys() == run.keys() and all(len(d) == 4 for d in back.values())
    first = run_path.read_text().splitlines()[0].split()
    assert first[3] == "1" and first[2] == max(run[first[0]], key=run[first[0]].get)

    # The same through `labeler rerank` from a JSONL of candidates; a candidate without text is an
    # error rather than a run silently missing it.
    from labeler.cli import main

    rows = heldout.select(["query_id", "query", "doc_id", "title", "text", "bm25_rank"]).to_pylist()
    cands = tmp_path / "candidates.jsonl"
    cands.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["rerank", "--model", str(export), "--pairs", str(cands), "--out", str(tmp_path / "cli.run"),
                 "--depth", "4"]) == 0
    cli_run = read_run(tmp_path / "cli.run")
    assert {q: sorted(d, key=d.get) for q, d in cli_run.items()} == {q: sorted(d, key=d.get) for q, d in back.items()}
    rows[2]["text"] = None
    cands.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["rerank", "--model", str(export), "--pairs", str(cands), "--out", str(tmp_path / "bad.run")]) == 2
    assert not (tmp_path / "bad.run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["pointwise", "margin_mse"])
def test_pointwise_and_margin_modes_train_and_loss_falls(tiny_encoder, tmp_path, ray_local, loss):
    from labeler.students.cross_encoder.training import margin_rows

    train = _judgments(n_queries=6, per_query=4)
    stats = train_cross_encoder(_cfg(tiny_encoder, loss=loss, epochs=3, batch_groups=1), train,
                                _judgments(n_queries=2, per_query=4, split="heldout"),
                                tmp_path / "ray", tmp_path / "student", seed=2)
    losses = [h["train_loss"] for h in stats["history"]]
    assert stats["groups"] is None and stats["train_pairs"] == 24
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert is_cross_encoder(tmp_path / "student")
    if loss == "pointwise":
        assert stats["train_rows"] == 24 and all(h["val_loss"] is not None for h in stats["history"])
    else:
        # Per query: every pair of its 4 documents with different grades (5 of 6: two are 0s),
        # each margin the difference of their expected grades; the record is of graded pairs.
        cfg = _cfg(tiny_encoder, loss=loss).cross_encoder  # target: the teacher's expected grade
        rows = margin_rows(with_target(graded_points(train), cfg, cosines_of=None), seed=2)
        assert stats["train_rows"] == rows.num_rows == 6 * 5
        assert stats["train_data"].num_rows == 24
        assert all(abs(m) > 1e-3 for m in rows.column("margin").to_pylist())


@pytest.mark.slow
def test_pipeline_distills_a_cross_encoder_and_labels_with_it(tiny_config, tiny_encoder, tmp_path, ray_local):
    """distill.kind=cross_encoder through the pipeline: a row per query (group or rejection), title
    groups from the run's BM25 index beside the teacher's, the export, then the label stage grading
    the held-out pairs with the cross-encoder engine."""
    from labeler.pipeline import Pipeline
    from labeler.schema import DOCS, PAIRS
    from labeler.store import RunStore

    cfg, _ = tiny_config
    cfg.distill = _cfg(tiny_encoder, epochs=1, title_groups=5, title_min_words=2)
    # Every train query trains (none set aside to validate on), so the counts below are per query.
    cfg.distill.validation_fraction = 0.0
    # The label stage's engine actors take the teacher's resources: one actor of half a CPU leaves room
    # on 2 cores for the pair preparation actor that feeds it.
    cfg.judge.engine.cpus_per_actor, cfg.judge.engine.num_actors = 0.5, 1
    judged = pa.concat_tables([_judgments(n_queries=6, per_query=6), _judgments(n_queries=3, per_query=6, split="heldout")])
    # A train query without a relevant document: rejected with its reason, not dropped.
    rows = [{**r, "grade": 1, "expected_grade": 1.0} if r["query_id"] == "train-q5" and r["grade"] == 3 else r
            for r in judged.to_pylist()]
    judged = pa.Table.from_pylist(rows, schema=JUDGMENTS)
    store = RunStore(tmp_path / "run")
    docs = pa.Table.from_pylist([{k: d.get(k) for k in ("doc_id", "title", "text")}
                                 for d in map(json.loads, DEMO_DOCS.read_text().splitlines())], schema=DOCS)
    for stage, table, schema in [("corpus", docs, DOCS), ("mine", judged.select(PAIRS.names), PAIRS),
                                 ("judge", judged, JUDGMENTS)]:
        w = store.writer(stage, "given", schema)
        w.write(table)
        w.publish(table.num_rows, config={}, upstream={})
    summary = Pipeline(cfg, tmp_path / "run").run(until="label", only=["distill", "label"])
    m = store.manifest("distill")
    titles = m["train"]["title_groups"]
    assert titles["titles_sampled"] == 5 and titles["groups"] + titles["rejected"] == 5 and titles["groups"] > 0
    assert summary["stages"]["distill"]["rows_in"] == 6 + 5
    assert summary["stages"]["distill"]["rows_out"] == 5 + titles["groups"]
    assert summary["stages"]["distill"]["rejected_by_reason"] == {"no_positive": 1, **(
        {"too_few_negatives": titles["rejected"]} if titles["rejected"] else {})}
    assert m["kind"] == "cross_encoder" and m["train"]["groups"]["groups"] == 5
    assert m["train"]["train_rows"] == 5 + titles["groups"]
    trained = store.table("distill")
    title_rows = trained.filter(pc.starts_with(trained.column("query_id"), "title:"))
    assert title_rows.num_rows == titles["groups"] and title_rows.column("grade").null_count == title_rows.num_rows
    # No document of a held-out query is a title query's positive.
    heldout_docs = set(judged.filter(pc.equal(judged.column("split"), "heldout")).column("doc_id").to_pylist())
    assert not heldout_docs & set(title_rows.column("doc_id").to_pylist())
    assert is_cross_encoder(m["model_dir"])
    labels = store.table("label")
    assert labels.num_rows == 18 and set(labels.column("status").to_pylist()) == {"ok"}
    assert set(labels.column("grade").to_pylist()) <= {0, 1, 2, 3}
    assert labels.column("model").to_pylist()[0] == m["model_dir"]


def test_prior_is_a_least_squares_line_and_a_zeroed_head_outputs_nothing(tiny_encoder):
    """The prior's scale is fitted, not guessed, and refuses data it cannot fit; after zero_head the
    cross-encoder adds exactly 0 to it, so training starts at the prior's ranking."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from labeler.students.cross_encoder.prior import fit_prior, zero_head

    cos = np.array([0.1, 0.2, 0.4, 0.8])
    p = fit_prior(cos, 0.5 + 2.0 * cos)
    assert p["a"] == pytest.approx(0.5) and p["b"] == pytest.approx(2.0) and p["n_pairs"] == 4
    with pytest.raises(ValueError, match="cannot be fitted on 2 training pairs"):
        fit_prior(np.array([0.3, 0.3]), np.array([0.0, 3.0]))
    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_encoder, num_labels=1).eval()
    enc = tok(["leave policy", "vpn setup"], ["how to request leave", "install the client"], return_tensors="pt",
              padding=True)
    with torch.no_grad():
        assert model(**enc).logits.abs().max() > 0
        zero_head(model)
        assert model(**enc).logits.abs().max() == 0


@pytest.mark.slow
def test_prior_starts_training_at_the_cosine_and_the_export_carries_it(tiny_encoder, tmp_path, ray_local):
    """cross_encoder.prior=cosine: with a learning rate too small to move the head, the export
    scores a + b x the base encoder's cosine, with a and b the least-squares line on the training
    pairs; its prior encoder is inside the export. Trained for real, the residual moves the score off
    the prior and the training loss falls."""
    import numpy as np

    from labeler.engines.cross_encoder_engine import CrossEncoderEngine
    from labeler.engines.encoder_export import pair_cosines, sentence_model

    train = _judgments(n_queries=8, per_query=6)
    heldout = _judgments(n_queries=4, per_query=6, split="heldout")
    pairs = [(r["query"], f"{r['title']}\n{r['text']}") for r in heldout.to_pylist()]
    base_cos = pair_cosines(sentence_model(tiny_encoder, 64), pairs, 16)
    train_cos = pair_cosines(sentence_model(tiny_encoder, 64), [(r["query"], f"{r['title']}\n{r['text']}")
                                                                 for r in train.to_pylist()], 16)
    b, a = np.polyfit(train_cos, np.array(train.column("expected_grade").to_pylist()), 1)

    frozen = tmp_path / "frozen"
    train_cross_encoder(_cfg(tiny_encoder, loss="pointwise", epochs=1, lr=1e-12, prior="cosine", prior_max_seq_len=64),
                        train, heldout, tmp_path / "ray0", frozen, seed=2)
    meta = json.loads((frozen / META_FILE).read_text())
    assert meta["prior"]["kind"] == "cosine" and (frozen / meta["prior"]["path"] / "modules.json").is_file()
    assert meta["prior"]["a"] == pytest.approx(a, abs=1e-4) and meta["prior"]["b"] == pytest.approx(b, abs=1e-4)
    engine = CrossEncoderEngine(EngineConfig(backend="cross_encoder", model=str(frozen), batch_size=8))
    scores = np.array(engine.score(pairs)[0])
    assert np.allclose(scores, a + b * base_cos, atol=1e-4)

    stats = train_cross_encoder(_cfg(tiny_encoder, loss="pointwise", epochs=3, batch_groups=1, prior="cosine",
                                     prior_max_seq_len=64),
                                train, heldout, tmp_path / "ray1", tmp_path / "trained", seed=2)
    losses = [h["train_loss"] for h in stats["history"]]
    assert losses[-1] < losses[0], losses
    moved = np.array(CrossEncoderEngine(EngineConfig(backend="cross_encoder", model=str(tmp_path / "trained"),
                                                     batch_size=8)).score(pairs)[0])
    assert np.abs(moved - (a + b * base_cos)).max() > 1e-2


def test_committee_target_weighs_teacher_bm25_and_cosine_on_the_grade_scale():
    """target: committee is the bi-encoder's committee on the 0-3 scale: teacher/3, BM25 min-max
    scaled within the query and the cosine, weighted; teacher: the expected grade itself."""
    import numpy as np

    from labeler.students.cross_encoder.data import with_target

    points = graded_points(_judgments(n_queries=2, per_query=4))
    cos = np.linspace(0.1, 0.8, points.num_rows)
    teacher = with_target(points, CrossEncoderConfig(loss="pointwise"), lambda t: 1 / 0)  # no cosine needed
    assert teacher.column("target").to_pylist() == points.column("expected").to_pylist()
    cfg = CrossEncoderConfig(loss="pointwise", target="committee", committee_weights={"teacher": 0.5, "bm25": 0.2,
                                                                                      "cosine": 0.3})
    got = np.array(with_target(points, cfg, lambda t: cos).column("target").to_pylist())
    rows = points.to_pylist()
    want = []
    for i, r in enumerate(rows):
        bm = [x["bm25"] for x in rows if x["query_id"] == r["query_id"]]
        want.append(3 * (0.5 * r["expected"] / 3 + 0.2 * (r["bm25"] - min(bm)) / (max(bm) - min(bm)) + 0.3 * cos[i]))
    assert np.allclose(got, want, atol=1e-5)
    # With a prior the committee takes its cosine from it, not from another model.
    with_prior = points.append_column("prior", pa.array(cos, pa.float32()))
    assert np.allclose(with_target(with_prior, cfg, lambda t: 1 / 0).column("target").to_pylist(), want, atol=1e-5)
    with pytest.raises(ValueError, match="committee needs loss pointwise or margin_mse"):
        CrossEncoderConfig(target="committee")
