"""The bi-encoder student: targets (the teacher alone, or a committee with BM25 and the base model's
cosine), MarginMSE examples within a query, training through Ray Train, the export (the best epoch,
the base model when no epoch beats it), its calibration and labeling through its engine.

The model is a random-weight 2-layer BERT with MiniLM's tokenizer (labeler.models.make_random_encoder),
which sentence-transformers loads with mean pooling."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from labeler.config import BiEncoderConfig, BiEncoderStudentConfig, EngineConfig, GradeConfig
from labeler.schema import JUDGMENTS
from labeler.students.bi_encoder import graded_pairs, targets, triplets

from conftest import DEMO_DOCS


def _judgments(n_queries=8, per_query=5, split="train", failed=0) -> pa.Table:
    """Query i asks for document i's title: document i graded 3, the next 1, the rest 0."""
    docs = [json.loads(line) for line in DEMO_DOCS.read_text().splitlines()[: n_queries + per_query]]
    rows = []
    for q in range(n_queries):
        for rank in range(1, per_query + 1):
            d = docs[(q + rank - 1) % len(docs)]
            grade = 3 if rank == 1 else (1 if rank == 2 else 0)
            rows.append({"query_id": f"{split}-q{q}", "query": docs[q]["title"], "doc_id": d["doc_id"],
                         "title": d["title"], "text": d["text"][:300], "doc_meta": None,
                         "source": "seed" if rank == 1 else "bm25", "bm25_rank": rank, "bm25_score": 10.0 - rank,
                         "split": split, "status": "ok", "error": None, "grade": grade,
                         "expected_grade": grade * 0.9 + 0.05, "grade_probs": [0.25] * 4, "grade_mass": 0.9,
                         "model": "teacher", "model_version": "t", "truncated": False, "prompt_tokens": 100})
    for r in rows[:failed]:
        r.update(status="failed", error="no_grade_token", grade=None, expected_grade=None)
    return pa.Table.from_pylist(rows, schema=JUDGMENTS)


def test_targets_teacher_and_committee():
    rows, rejected = graded_pairs(_judgments(n_queries=2, per_query=3, failed=1))
    assert len(rows) == 5 and [r["reason"] for r in rejected] == ["not_graded"]
    for i, r in enumerate(rows):
        r["cosine"] = 0.1 * i
    teacher = targets(rows, "teacher", {})
    assert teacher == pytest.approx([r["expected"] / 3 for r in rows])
    only_bm25 = targets(rows, "committee", {"bm25": 1.0})
    q1 = [v for v, r in zip(only_bm25, rows) if r["query_id"] == "train-q1"]
    assert min(q1) == 0.0 and max(q1) == 1.0  # min-max within its query
    mix = targets(rows, "committee", {"teacher": 1.0, "cosine": 1.0})
    assert mix == pytest.approx((teacher + np.array([r["cosine"] for r in rows])) / 2)


def test_triplets_stay_within_a_query_and_carry_target_margins():
    rows, _ = graded_pairs(_judgments(n_queries=3, per_query=4))
    for r in rows:
        r["target"] = r["expected"] / 3
    t = triplets(rows, seed=1, per_query=3)
    assert t.num_rows == 9
    by_pair = {(r["query"], r["doc"]): r for r in rows}
    for x in t.to_pylist():
        a, b = by_pair[(x["query"], x["a"])], by_pair[(x["query"], x["b"])]  # both documents of its own query
        assert x["margin"] == pytest.approx(a["target"] - b["target"], abs=1e-6) and abs(x["margin"]) > 0


@pytest.mark.slow
def test_trains_exports_the_best_epoch_calibrates_and_labels(tiny_encoder, tmp_path, ray_local):
    from labeler.engines import export_backend, make_engine
    from labeler.students import TrainingData, make_student

    cfg = BiEncoderStudentConfig(kind="bi_encoder", num_workers=2, bi_encoder=BiEncoderConfig(
        base_model=tiny_encoder, epochs=2, lr=5e-4, batch_size=8, max_seq_len=64, loss="both", target="committee"))
    student = make_student(cfg, GradeConfig(), seed=3)
    data = TrainingData(train=_judgments(n_queries=12), heldout=_judgments(n_queries=6, split="heldout"))
    export = tmp_path / "model"
    trained = student.train(data, tmp_path / "ray_train", export)
    assert trained.rows_in == 60 and trained.record.num_rows == 60 and not trained.rejected
    train = trained.extra["train"]
    history = train["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2]  # the base model, then each epoch
    assert all(h["val_agreement"]["n_labeled"] == 30 for h in history)
    best = max(history, key=lambda h: (h["val_agreement"]["spearman"], -h["epoch"]))["epoch"]
    assert train["epoch_exported"] == best
    assert export_backend(export) == "bi_encoder"
    meta = json.loads((export / "labeler_bi_encoder.json").read_text())
    assert meta["calibration"]["fitted_on"] == "heldout" and meta["epoch"] == best
    assert meta["base_weight"] == (0.5 if best else None)  # WiSE-FT by default; nothing to blend at epoch 0
    assert train["heldout_agreement"]["n_labeled"] == 30
    engine = make_engine(EngineConfig(model=str(export), batch_size=16))  # picked by its marker
    rows = [{"query": r["query"], "title": r["title"], "text": r["text"]} for r in _judgments(n_queries=2).to_pylist()]
    results, truncated = engine.grade_pairs(rows)
    assert len(results) == 10 and all(r.error is None and r.probs is None for r in results)
    assert all(0 <= r.expected <= 3 and r.grade in (0, 1, 2, 3) for r in results)
    assert len(truncated) == 10


def test_blend_with_base_is_the_weighted_mean_of_the_two_models(tiny_encoder, tmp_path):
    """WiSE-FT: every floating-point tensor of the export becomes (1 - w) * tuned + w * base; a base
    of another architecture is refused rather than half-blended."""
    import torch
    from sentence_transformers import SentenceTransformer

    from labeler.models import make_random_encoder
    from labeler.students.bi_encoder import blend_with_base

    tuned_dir = make_random_encoder(tmp_path / "tuned", seed=1)  # the same layout, other weights
    export = tmp_path / "export"
    SentenceTransformer(str(tuned_dir), device="cpu").save(str(export))
    tuned = {k: v.clone() for k, v in SentenceTransformer(str(export), device="cpu").state_dict().items()}
    base = SentenceTransformer(tiny_encoder, device="cpu").state_dict()
    blend_with_base(export, tiny_encoder, 0.25)
    blended = SentenceTransformer(str(export), device="cpu").state_dict()
    floats = [k for k, v in tuned.items() if v.is_floating_point()]
    assert floats and any(not torch.equal(tuned[k], base[k]) for k in floats)
    for k in floats:
        torch.testing.assert_close(blended[k], 0.75 * tuned[k] + 0.25 * base[k])
    for k in set(tuned) - set(floats):
        assert torch.equal(blended[k], tuned[k])

    for name, layers in (("narrower", 2), ("shallower", 1)):  # the same names, other shapes; fewer names
        other = make_random_encoder(tmp_path / name, hidden=64, layers=layers, seed=2)
        with pytest.raises(ValueError, match="differ in architecture"):
            blend_with_base(export, str(other), 0.5)
