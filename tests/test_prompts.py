"""Prompt templates and the grading prompt's layout."""
import pytest

from labeler.prompts import doc_fields, load_query_kinds, load_template


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
