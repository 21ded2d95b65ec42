"""Every reason code a failed or rejected row can carry, in one list.

A reason is the short stable string in a row's `error` (graded stages' data/) or `reason`
(every stage's rejected/, `rejected_by_reason` in manifests). Code emits the names defined here
(`reasons.NO_GRADE_TOKEN`, ...), never a literal; docs/reasons.md is rendered from this list
(`markdown()`, checked by tests/test_reasons.py), with what each reason means and what to do.

A reason is transient when it says nothing about the row (an outage, a slow or overloaded
server): only those are regraded by `judge|label --pairs --retry-failed`; the rest would fail again.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    name: str                # the code written to `error` / `reason`; never renamed
    transient: bool          # the same row may well succeed when tried again
    stages: tuple[str, ...]  # the stages (labeler.stages.NAMES) that can emit it
    meaning: str             # what happened
    action: str              # what the user does about it


REASONS: list[Reason] = []

# Stage groups (labeler.stages.NAMES); judge and label include `judge|label --pairs`.
GRADED = ("judge", "label")
ENGINE = ("synthesize", "judge", "label")


def _reason(name: str, stages: tuple[str, ...], meaning: str, action: str, *, transient: bool = False) -> str:
    REASONS.append(Reason(name, transient, tuple(stages), meaning, action))
    return name


# -- input records: files that cannot be read as rows ------------------------------------------
BAD_ENCODING = _reason(
    "bad_encoding", ("corpus", *GRADED),
    "A line of an input file, or a string field in it, is not valid UTF-8 (or holds a lone "
    "surrogate escape such as `\\ud800`).",
    "Re-encode the file as UTF-8; the detail names the file and line, `record` keeps the raw line.")
BAD_JSON = _reason(
    "bad_json", ("corpus", *GRADED),
    "A line of a JSONL file is not valid JSON, or is JSON but not an object.",
    "Fix or drop the line the detail names (`file:line`); `record` keeps the raw line.")
BAD_TYPE = _reason(
    "bad_type", GRADED,
    "A field of a pairs row has the wrong type (a number or a list where text belongs, text where "
    "a number belongs). Values are never coerced.",
    "Write the field in its type: ids as strings or integers, `query`, `title`, `text` as strings, "
    "`bm25_rank` as an integer.")
MISSING_FIELD = _reason(
    "missing_field", (*GRADED, "evaluate"),
    "A pair has no `query_id`, `doc_id` or `query` (absent, null or blank); in evaluate, a judged "
    "pair without query or document text.",
    "Fill the field in the pairs file; for evaluate, give queries and a corpus that cover every pair.")
EMPTY_TEXT = _reason(
    "empty_text", ("corpus", *GRADED),
    "The document text is empty or only whitespace (for pairs, also after joining `--corpus`).",
    "Give the document its text, or drop it; a pair may carry `text` itself or name a document of "
    "`--corpus`.")
UNKNOWN_DOC = _reason(
    "unknown_doc", GRADED,
    "A pair without `text` names a `doc_id` that `--corpus` does not hold, so there is nothing to grade.",
    "Give the corpus the pairs were built from, or put the text in the pair.")

# -- corpus --------------------------------------------------------------------------------------
MISSING_ID = _reason(
    "missing_id", ("corpus",),
    "A record has no id field (`corpus.id_field`), or it is blank.",
    "Point `corpus.id_field` at the field that holds the document id, or add ids.")
BAD_ID = _reason(
    "bad_id", ("corpus",),
    "The id field is neither a string nor an integer.",
    "Store ids as strings or integers, or point `corpus.id_field` at another field.")
MISSING_TEXT = _reason(
    "missing_text", ("corpus",),
    "A record has no text field (`corpus.text_field`).",
    "Point `corpus.text_field` at the field that holds the text.")
BAD_TEXT = _reason(
    "bad_text", ("corpus",),
    "The text field is not a string (a list, an object, a number).",
    "Flatten the text into one string before ingesting, or pick another `corpus.text_field`.")
TOO_SHORT = _reason(
    "too_short", ("corpus", "synthesize"),
    "corpus: the text has fewer than `corpus.min_chars` characters. synthesize: the query has fewer "
    "than `synthesize.min_query_chars` characters.",
    "Usually right (stubs, one-word queries); lower the limit the detail names to keep them.")
TOO_LONG = _reason(
    "too_long", ("corpus", "synthesize", "distill"),
    "corpus: the text has more than `corpus.max_chars` characters. synthesize: the query has more "
    "than `synthesize.max_query_chars` characters. distill (generative student): the prompt has "
    "more tokens than `distill.max_seq_len`.",
    "Raise the limit the detail names, or shorten the input (split a huge document; lower "
    "`judge.grading.max_doc_tokens` for the student's prompts).")
DUPLICATE_ID = _reason(
    "duplicate_id", ("corpus",),
    "A `doc_id` that appeared earlier in the corpus; the first record is kept.",
    "Nothing if the records are copies; otherwise give them distinct ids.")

# -- synthesize: queries the model wrote -----------------------------------------------------------
EMPTY_OUTPUT = _reason(
    "empty_output", ("synthesize",),
    "The model wrote no query (nothing left after cleaning its answer).",
    "A few are normal; many mean the model does not follow the synthesize template: check it, "
    "`synthesize.max_new_tokens` and the raw output in `record`.")
COPIES_DOCUMENT = _reason(
    "copies_document", ("synthesize",),
    "The query copies `synthesize.max_copied_words` consecutive words from its seed document.",
    "A few are normal; raise `synthesize.max_copied_words` to allow longer copied phrases.")
WRONG_LANGUAGE = _reason(
    "wrong_language", ("synthesize",),
    "The query is not in `synthesize.language` (a script and function-word check).",
    "Set `synthesize.language` to the corpus's language (null: any), or use a model that writes it.")
DUPLICATE = _reason(
    "duplicate", ("synthesize",),
    "The same words (in any order) as a query kept earlier in the stage; the first is kept.",
    "Nothing; more query kinds or a higher `synthesize.temperature` give more varied queries.")
NEAR_DUPLICATE = _reason(
    "near_duplicate", ("synthesize",),
    "Word overlap (Jaccard) of at least `synthesize.near_duplicate_jaccard` with an earlier query "
    "of the same seed document.",
    "Nothing; raise `synthesize.near_duplicate_jaccard` to keep closer variants.")
ROUND_TRIP_MISS = _reason(
    "round_trip_miss", ("synthesize",),
    "BM25 does not rank the query's seed document in its top `synthesize.round_trip_k`: the query "
    "is too vague or off-topic to find its own document.",
    "Expected for some; raise `synthesize.round_trip_k`, or set it to null to skip the check.")

# -- mine ------------------------------------------------------------------------------------------
UNKNOWN_SEED = _reason(
    "unknown_seed", ("mine",),
    "A query's seed document is not in the BM25 index.",
    "The queries and the index come from different corpora: rerun synthesize and mine on the same "
    "corpus (`--force`).")

# -- grading: rows the engine is not asked about -------------------------------------------------
DUPLICATE_PAIR = _reason(
    "duplicate_pair", GRADED,
    "A later row with the `(query_id, doc_id)` of an earlier one; the pair is graded once, at the "
    "row the detail names.",
    "Nothing; deduplicate the pairs to avoid it.")
PROMPT_TOO_LONG = _reason(
    "prompt_too_long", ENGINE,
    "The rendered prompt has `max_model_len` tokens or more, so the engine cannot take it.",
    "Raise the engine's `max_model_len`, or lower `max_doc_tokens` (grading or synthesize) so "
    "documents are cut shorter.")

# -- engines: the request failed -----------------------------------------------------------------
CONNECTION_ERROR = _reason(
    "connection_error", ENGINE,
    "The server could not be reached (after the engine's `max_retries`).",
    "Check `engine.base_url` and that the server is up, then `judge|label --pairs --retry-failed` "
    "regrades only these rows (in the pipeline: rerun the stage with `--force`).", transient=True)
TIMEOUT = _reason(
    "timeout", ENGINE,
    "No answer within `engine.timeout_s` (after `max_retries`), or a Batch API job expired.",
    "Raise `engine.timeout_s` or lower `engine.concurrency`, then `--retry-failed` as for "
    "connection_error.", transient=True)
SERVER_ERROR = _reason(
    "server_error", ENGINE,
    "The server answered HTTP 5xx, 408 or 409, or with no usable completion (no choices, a line "
    "missing from a batch's output, a cancelled batch).",
    "Usually passes: `--retry-failed` as for connection_error; the detail has the server's message.",
    transient=True)
RATE_LIMITED = _reason(
    "rate_limited", ENGINE,
    "The server answered HTTP 429 (too many requests) after `max_retries`.",
    "Lower `engine.concurrency` (or raise the quota), then `--retry-failed` as for connection_error.",
    transient=True)
REQUEST_ERROR = _reason(
    "request_error", ENGINE,
    "The server refused the request (HTTP 4xx other than 408, 409, 429: a wrong model name, a "
    "missing key, a request too large), or a Batch API job failed or is unknown to the server. The "
    "same request would be refused again.",
    "Read the server's message in the detail; fix `engine.model`, the API key or the request, then "
    "rerun with `--force`.")

# -- engines: an answer that is not a grade ------------------------------------------------------
NO_GRADE_TOKEN = _reason(
    "no_grade_token", GRADED,
    "None of the model's top `grading.top_logprobs` next tokens is a grade 0-3. A grade is never "
    "invented.",
    "A few are normal for small models; many mean the model does not follow the grading template "
    "(`grading.prompt`): read the raw output in `record`, try another template or model.")
UNPARSEABLE_OUTPUT = _reason(
    "unparseable_output", GRADED,
    "An OpenAI-compatible server's reply is not a grade 0-3, also after `engine.parse_retries` "
    "more asks.",
    "As for no_grade_token; raising `engine.parse_retries` asks more often.")

# -- distill: training examples the student does without -----------------------------------------
NOT_GRADED = _reason(
    "not_graded", ("distill",),
    "bi-encoder student: a judged pair has no teacher grade (it failed in judge; the detail has "
    "that reason).",
    "Look at judge's failures (their own reasons); a few cost nothing.")
NO_GRADED_PAIRS = _reason(
    "no_graded_pairs", ("distill",),
    "cross-encoder student: every pair of the query failed in judge, so it forms no training group.",
    "Look at judge's failures for the query (their own reasons).")
NO_POSITIVE = _reason(
    "no_positive", ("distill",),
    "cross-encoder student: no graded pair of the query reaches "
    "`distill.cross_encoder.positive_min_grade`, so the group has no positive.",
    "Normal for queries without a relevant candidate; lower `positive_min_grade` to keep more.")
TOO_FEW_NEGATIVES = _reason(
    "too_few_negatives", ("distill",),
    "cross-encoder student: fewer than `group_size - 1` BM25 pairs in `negative_rank_window` graded "
    "below the positive (for title groups: usable BM25 negatives for the title).",
    "Lower `distill.cross_encoder.group_size`, widen `negative_rank_window`, or mine more "
    "negatives (`mine.negatives_per_query`).")

BY_NAME: dict[str, Reason] = {r.name: r for r in REASONS}
NAMES: frozenset[str] = frozenset(BY_NAME)
# Only these are regraded by `--retry-failed` (was labeler.engines.base.TRANSIENT_ERRORS).
TRANSIENT: frozenset[str] = frozenset(r.name for r in REASONS if r.transient)


def get(name: str) -> Reason:
    """The listed reason `name`; a KeyError naming the list for any other string."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a reason listed in labeler/reasons.py") from None


def check(name: str) -> str:
    """`name` itself when it is a listed reason (for codes that travel as data, e.g. a corpus
    reader's "reason<TAB>detail" strings); a KeyError otherwise."""
    return get(name).name


def markdown() -> str:
    """docs/reasons.md: every reason with its stages, whether it is transient, what it means and
    what to do about it."""
    lines = [
        "# Reasons of failed and rejected rows",
        "",
        "<!-- Generated from labeler/reasons.py by `labeler.reasons.markdown()`; "
        "tests/test_reasons.py checks that this file matches. Edit the list, not this file:",
        "     .venv/bin/python -c 'from labeler import reasons; print(reasons.markdown(), end=\"\")' "
        "> docs/reasons.md -->",
        "",
        "A failed or rejected row carries one of these codes: in `error` (graded stages' `data/`, "
        "with `status` failed), in `reason` (every stage's `rejected/`, next to `detail` and the raw "
        "`record`), and counted in `rejected_by_reason` of the stage's `_manifest.json`.",
        "",
        "Transient reasons say nothing about the row (an outage, a slow or overloaded server): only "
        "those are regraded by `labeler judge|label --pairs ... --retry-failed`. Every other reason "
        "fails again on a rerun until its cause is fixed.",
        "",
        f"{len(REASONS)} reasons, {len(TRANSIENT)} of them transient.",
        "",
        "| reason | stages | transient | what it means | what to do |",
        "|---|---|---|---|---|",
    ]
    for r in REASONS:
        cells = [f"`{r.name}`", ", ".join(r.stages), "yes" if r.transient else "no", r.meaning, r.action]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
