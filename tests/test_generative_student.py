"""Generative student depth: grade counts, balancing the mostly-0-and-1 grades, and per-epoch
validation (loss and agreement with held-out teacher labels) through Ray Train + DeepSpeed."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest
from conftest import DEMO_DOCS

from labeler.config import GenerativeStudentConfig as DistillConfig
from labeler.config import GradeConfig
from labeler.schema import PAIRS
from labeler.students.generative import (
    balance_examples,
    grade_counts,
    train,
    training_examples,
)


def _examples(grades: list[int]) -> pa.Table:
    n = len(grades)
    return pa.table({"query_id": [f"q{i}" for i in range(n)], "doc_id": [f"d{i}" for i in range(n)],
                     "input_ids": [[1, 2, i] for i in range(n)], "grade": pa.array(grades, pa.int8()),
                     "teacher_probs": [[0.25] * 4] * n})


def test_grade_counts_list_every_grade():
    assert grade_counts([0, 0, 1, 3]) == {"0": 2, "1": 1, "2": 0, "3": 1}


def test_balancing_changes_the_grade_mix_the_loss_sees():
    grades = [0] * 6 + [1] * 3 + [2]
    ex = _examples(grades)
    same, mix = balance_examples(ex, "none")
    assert same.num_rows == 10 and mix == {"0": 6.0, "1": 3.0, "2": 1.0, "3": 0.0}
    assert set(same.column("weight").to_pylist()) == {1.0}

    weighted, mix = balance_examples(ex, "reweight")
    w = weighted.column("weight").to_pylist()
    assert weighted.num_rows == 10 and sum(w) == pytest.approx(10.0)  # mean weight stays 1
    assert all(mix[g] == pytest.approx(10 / 3, abs=1e-3) for g in "012") and mix["3"] == 0
    assert w[-1] > w[6] > w[0]  # the rarest grade weighs most

    over, mix = balance_examples(ex, "oversample", seed=4)
    got = over.column("grade").to_pylist()
    assert [got.count(g) for g in range(4)] == [6, 6, 6, 0] and mix == {"0": 6.0, "1": 6.0, "2": 6.0, "3": 0.0}
    assert set(over.column("doc_id").to_pylist()) == set(ex.column("doc_id").to_pylist())  # nothing lost
    assert got != sorted(got)  # shuffled, not grade blocks
    assert balance_examples(ex, "oversample", seed=4)[0].equals(over)
    with pytest.raises(ValueError, match="balance"):
        balance_examples(ex, "smote")


def _judged(n: int, split: str, grade_of) -> pa.Table:
    docs = [json.loads(line) for line in DEMO_DOCS.read_text().splitlines()[:n]]
    rows = [{"query_id": f"{split}{i % 3}", "query": ["vpn setup", "expense policy", "login outage"][i % 3],
             "doc_id": d["doc_id"], "title": d["title"], "text": d["text"], "doc_meta": None, "source": "bm25",
             "bm25_rank": i + 1, "bm25_score": 1.0, "split": split} for i, d in enumerate(docs)]
    t = pa.Table.from_pylist(rows, schema=PAIRS)
    g = [grade_of(i) for i in range(n)]
    t = t.append_column("grade", pa.array(g, pa.int8()))
    return t.append_column("grade_probs", pa.array([[0.7 if x == gi else 0.1 for x in range(4)] for gi in g],
                                                   pa.list_(pa.float32())))


def test_soft_labels_without_a_teacher_distribution_are_an_error_not_a_made_up_one(tiny_model, tmp_path):
    """Judgments with grades only (human qrels) train with hard labels; asking for kl_weight on them
    is a clear error before any training starts, and a null distribution is never filled in."""
    from transformers import AutoTokenizer

    from labeler.students import TrainingData, make_student

    t = _judged(6, "train", lambda i: i % 4)
    hard = t.drop_columns(["grade_probs"]).append_column("status", pa.array(["ok"] * 6))
    examples, _ = training_examples(hard, AutoTokenizer.from_pretrained(tiny_model), GradeConfig(), 512)
    assert examples.num_rows == 6 and examples.column("teacher_probs").null_count == 6
    student = make_student(DistillConfig(base_model=tiny_model, kl_weight=1.0), GradeConfig(), seed=0, k=5)
    with pytest.raises(ValueError, match=r"kl_weight=1.0 needs the teacher's grade distribution.*6 of 6"):
        student.train(TrainingData(train=hard, heldout=None), tmp_path / "w", tmp_path / "x")


@pytest.mark.slow
def test_oversampled_training_validates_each_epoch_under_zero3(tiny_model, tmp_path, ray_local):
    from transformers import AutoTokenizer

    grading = GradeConfig(max_doc_tokens=48)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    # 6 grade-0, 3 grade-1, 1 grade-2 training pairs: oversampled to 6 + 6 + 6 = 18.
    train_ex, _ = training_examples(_judged(10, "train", lambda i: 0 if i < 6 else (1 if i < 9 else 2)), tok,
                                    grading, 400)
    # 5 held-out pairs: ranks score 3 and 2 of them, so one rank pads a pass (ZeRO-3 gathers in forward).
    heldout, _ = training_examples(_judged(5, "heldout", lambda i: i % 2), tok, grading, 400)
    cfg = DistillConfig(base_model=tiny_model, num_workers=2, epochs=2, micro_batch_size=2, lr=3e-3,
                        zero_stage=3, balance="oversample")
    stats = train(cfg, grading, train_ex, tmp_path / "ray", tmp_path / "student", seed=1, heldout=heldout, k=5)
    assert stats["grade_counts"] == {"0": 6, "1": 3, "2": 1, "3": 0} and stats["examples"] == 18
    assert stats["loss_grade_mix"] == {"0": 6.0, "1": 6.0, "2": 6.0, "3": 0.0}
    hist = stats["history"]
    assert [h["epoch"] for h in hist] == [0, 1]
    for h in hist:
        # 18 examples, 2 ranks, micro-batch 2: 4 steps each, 16 examples seen in the oversampled mix.
        assert sum(h["loss_grade_mix"].values()) == 16.0
        assert h["val_pairs"] == 5 and h["val_loss"] > 0
        assert h["val_agreement"]["n_labeled"] == 5
        assert h["val_agreement"]["accuracy"] is not None
    assert hist[0]["val_loss"] != hist[1]["val_loss"]  # the model changed between the epochs' validations


def test_freeze_below_leaves_only_the_top_layers_trainable(tiny_model):
    from transformers import AutoModelForCausalLM

    from labeler.students.generative import freeze_below

    m = AutoModelForCausalLM.from_pretrained(tiny_model)
    freeze_below(m, 1)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("model.layers.1.", "model.norm.")) for n in trainable)
    with pytest.raises(ValueError, match="has 2 layers"):
        freeze_below(m, 3)


def _pairs(n=6, long_query=None) -> pa.Table:
    docs = [json.loads(l) for l in DEMO_DOCS.read_text().splitlines()[:n]]
    rows = [{"query_id": f"q{i % 3}", "query": ["vpn setup", "expense policy", "login outage"][i % 3],
             "doc_id": d["doc_id"], "title": d["title"], "text": d["text"],
             "doc_meta": json.dumps({"author": d["author"]}), "source": "bm25", "bm25_rank": i + 1,
             "bm25_score": 1.0, "split": "heldout"} for i, d in enumerate(docs)]
    if long_query:
        rows.append({**rows[0], "query_id": "q-long", "query": long_query})
    return pa.Table.from_pylist(rows, schema=PAIRS)


def test_distill_trains_exports_and_loss_falls(tiny_model, tmp_path, ray_local):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from labeler.config import GenerativeStudentConfig as DistillConfig
    from labeler.students.generative import train, training_examples

    pairs = _pairs(8)
    n = pairs.num_rows
    judged = pairs
    for name, col in [("grade", pa.array([i % 4 for i in range(n)], pa.int8())),
                      ("grade_probs", pa.array([[0.7 if g == i % 4 else 0.1 for g in range(4)] for i in range(n)],
                                               pa.list_(pa.float32())))]:
        judged = judged.append_column(name, col)
    grading = GradeConfig(max_doc_tokens=48)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    examples, rejected = training_examples(judged, tok, grading, max_seq_len=400)
    assert examples.num_rows == 8 and not rejected
    cfg = DistillConfig(base_model=tiny_model, num_workers=2, epochs=3, micro_batch_size=2, lr=3e-3,
                        zero_stage=1, kl_weight=0.5)
    stats = train(cfg, grading, examples, tmp_path / "ray", tmp_path / "student", seed=1)
    losses = [h["train_loss"] for h in stats["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "student")
    assert model.config.num_hidden_layers == 2
    assert (tmp_path / "student" / "tokenizer_config.json").is_file()
