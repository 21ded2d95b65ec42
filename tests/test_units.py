"""Pure pieces of the stages: query cleaning and filters, grade extraction, splits, prompts."""
import math

import pyarrow as pa
import pytest

from labeler.config import SynthesizeConfig
from labeler.engines.base import grade_from_text, grade_from_top_logprobs
from labeler.mine import near_duplicate, split_of
from labeler.prompts import doc_fields, load_query_kinds, load_template
from labeler.synthesize import Deduper, check_query, clean_query, copied_span, plan_requests


def test_clean_query_strips_chatter():
    assert clean_query('Query: "VPN setup for contractors"\nExplanation: ...') == "VPN setup for contractors"
    assert clean_query("\n\n1. reset  2FA token\n2. other") == "reset 2FA token"
    assert clean_query("   ") == ""


def test_query_filters():
    cfg = SynthesizeConfig(engine={"model": "m"}, max_query_chars=40, max_copied_words=4)
    doc = "To rotate the database credentials run the rotate script in Strongbox every quarter."
    assert check_query("", doc, cfg)[0] == "empty_output"
    assert check_query("x" * 41, doc, cfg)[0] == "too_long"
    assert check_query("run the rotate script in Strongbox", doc, cfg)[0] == "copies_document"
    assert check_query("how often rotate db creds", doc, cfg) is None
    assert copied_span("a b c", doc, 4) is None


def test_deduper_keeps_first_of_normalised_duplicates():
    d = Deduper({("VPN setup", "q0")})
    t = pa.table({"query_id": ["q1", "q2", "q3"], "query": ["vpn  SETUP?", "badge access", "Badge access"]})
    kept, rejected = d(t)
    assert kept.column("query_id").to_pylist() == ["q2"]
    assert [(r["key"], r["reason"]) for r in rejected] == [("q1", "duplicate"), ("q3", "duplicate")]
    assert "q0" in rejected[0]["detail"]


def test_plan_requests_is_stratified_and_stable():
    docs = pa.table({"doc_id": [f"d{i}" for i in range(30)], "title": ["t"] * 30, "text": ["x"] * 30,
                     "author": [None] * 30, "space": [None] * 30,
                     "doc_type": ["ticket"] * 27 + ["policy"] * 3, "last_modified": [None] * 30})
    cfg = SynthesizeConfig(engine={"model": "m"}, seed_docs=6, kinds={"keyword": 2, "question": 1})
    a = plan_requests(docs, cfg, seed=1)
    assert a.num_rows == 18 and len(set(a.column("query_id").to_pylist())) == 18
    seeds = set(a.column("seed_doc_id").to_pylist())
    assert len({d for d in seeds if int(d[1:]) >= 27}) == 3  # the rare type is not crowded out
    assert a.equals(plan_requests(docs, cfg, seed=1))


def test_grade_from_logprobs_sums_token_variants_and_never_invents():
    probs, mass = grade_from_top_logprobs({" 2": math.log(0.3), "2": math.log(0.1), "1": math.log(0.2),
                                           "The": math.log(0.4)})
    assert mass == pytest.approx(0.6)
    assert probs == pytest.approx([0, 1 / 3, 2 / 3, 0])
    assert grade_from_top_logprobs({"The": -0.1, "A": -2.0}) == (None, 0.0)


def test_grade_from_text_is_strict():
    assert grade_from_text(" 3") == 3 and grade_from_text("**2**") == 2
    assert grade_from_text("12") is None and grade_from_text("Relevant") is None and grade_from_text("") is None


def test_split_is_deterministic_and_near_fraction():
    splits = [split_of(f"q{i}", 0.3, 13) for i in range(2000)]
    assert splits == [split_of(f"q{i}", 0.3, 13) for i in range(2000)]
    assert 0.25 < splits.count("heldout") / 2000 < 0.35


def test_near_duplicate():
    a = "The travel policy allows economy class for flights under six hours and business class above."
    assert near_duplicate(a, a)
    assert near_duplicate(a + " " + a, a + " " + a.replace("business", "premium"))
    assert not near_duplicate(a, "Completely different text about badge access in the Lisbon office.")


def test_templates_render_and_mark_missing_metadata():
    t = load_template("grade_plain")
    msgs = t.messages(**doc_fields({"title": "T", "text": "body", "query": "q", "doc_meta": '{"author": "Ann"}'}))
    user = msgs[-1]["content"]
    assert "Author: Ann" in user and "Space: unknown" in user and "Search query: q" in user
    assert t.assistant_prefix == "Grade:"
    assert set(load_query_kinds()) >= {"keyword", "question", "navigational", "partial_recall"}
    with pytest.raises(FileNotFoundError, match="grade_plain.txt"):
        load_template("no_such_template")


def test_grade_prompt_ends_where_the_digit_token_starts(tiny_model):
    """Teacher prompt, student target and labeling prompt meet at the same token boundary."""
    from transformers import AutoTokenizer

    from labeler.grading import assistant_prefix, build_prompt, grade_target_ids

    tok = AutoTokenizer.from_pretrained(tiny_model)  # SmolLM2's tokenizer: " 3" is two tokens
    assert assistant_prefix(tok, "Grade:") == "Grade: "
    assert assistant_prefix(tok, "") == "" and assistant_prefix(None, "Grade:") == "Grade:"
    ids = grade_target_ids(tok, "Grade:")
    assert [tok.decode([i]) for i in ids] == ["0", "1", "2", "3"]
    p = build_prompt(tok, load_template("grade_plain"), {"query": "vpn", "title": "VPN", "text": "x " * 500}, 32)
    assert p.truncated and p.prompt.endswith("Grade: ")
    whole = tok.encode(p.prompt.rstrip(" ") + " 3", add_special_tokens=False)
    assert tok.encode(p.prompt, add_special_tokens=False) + [ids[3]] == whole


def test_freeze_below_leaves_only_the_top_layers_trainable(tiny_model):
    from transformers import AutoModelForCausalLM

    from labeler.distill import freeze_below

    m = AutoModelForCausalLM.from_pretrained(tiny_model)
    freeze_below(m, 1)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("model.layers.1.", "model.norm.")) for n in trainable)
    with pytest.raises(ValueError, match="has 2 layers"):
        freeze_below(m, 3)
