"""Grades read from a model's answer: summed over token variants, never invented."""
import math

import pytest

from labeler.engines.base import grade_from_text, grade_from_top_logprobs


def test_grade_from_logprobs_sums_token_variants_and_never_invents():
    probs, mass = grade_from_top_logprobs({" 2": math.log(0.3), "2": math.log(0.1), "1": math.log(0.2),
                                           "The": math.log(0.4)})
    assert mass == pytest.approx(0.6)
    assert probs == pytest.approx([0, 1 / 3, 2 / 3, 0])
    assert grade_from_top_logprobs({"The": -0.1, "A": -2.0}) == (None, 0.0)


def test_grade_from_text_is_strict():
    assert grade_from_text(" 3") == 3 and grade_from_text("**2**") == 2
    assert grade_from_text("12") is None and grade_from_text("Relevant") is None and grade_from_text("") is None
