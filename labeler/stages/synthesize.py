"""Query synthesis: an LLM writes the queries an employee would type to find each seed document.

One request per (seed document, query kind, index) so the stage is one-to-one: every request
ends as a kept query or a rejected generation with its reason, and query ids are stable across
reruns (resume skips requests already answered).

Filters, each a rejection reason counted in the stage manifest: empty_output, too_short,
too_long, copies_document, wrong_language (in the engine actors); duplicate, near_duplicate and
round_trip_miss (on the driver, as results stream in, since they need every earlier query or the
BM25 index). Every rejected generation keeps its token counts at the end of its detail, so the
stage's tokens and cost cover what was paid for, not only what was kept.
"""
from __future__ import annotations

import json
import random
import re
import unicodedata
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Optional

import pyarrow as pa
import yaml

from ..config import EngineConfig, SynthesizeConfig
from ..engines.base import EngineThread, call_engine
from ..prompts import _read, doc_fields, load_query_kinds, load_template, truncate_tokens
from ..reasons import (COPIES_DOCUMENT, DUPLICATE, EMPTY_OUTPUT, NEAR_DUPLICATE, ROUND_TRIP_MISS, TOO_LONG, TOO_SHORT,
                       WRONG_LANGUAGE)
from ..schema import QUERIES
from .base import Stage

_PREFIX = re.compile(r"^\s*(?:query\s*\d*\s*[:：-]|search\s*query\s*[:：-]|\d+[.)]\s+|[-*•]\s+)", re.I)
_QUOTES = "\"'`“”‘’«»"


REQUEST_FIELDS = ("title", "text", "author", "space", "doc_type", "last_modified", "metadata")


def plan_requests(docs: pa.Table, cfg: SynthesizeConfig, seed: int) -> pa.Table:
    """Seed documents (or passages, see labeler.chunking), stratified by `cfg.stratify_by`, x
    query kinds -> one row per generation."""
    cols = ["doc_id"] + [c for c in REQUEST_FIELDS if c in docs.column_names]
    rows = docs.select(cols).to_pylist()
    rng = random.Random(seed)
    if cfg.seed_docs is not None and cfg.seed_docs < len(rows):
        rows = _stratified(rows, cfg.seed_docs, rng, cfg.stratify_by)
    reqs = []
    for d in rows:
        for kind, count in cfg.kinds.items():
            for i in range(count):
                reqs.append({"query_id": f"{d['doc_id']}#{kind}{i}", "seed_doc_id": d["doc_id"], "kind": kind,
                             **{k: d.get(k) for k in REQUEST_FIELDS}})
    schema = pa.schema([("query_id", pa.string()), ("seed_doc_id", pa.string()), ("kind", pa.string()),
                        *[(k, pa.string()) for k in REQUEST_FIELDS]])
    return pa.Table.from_pylist(reqs, schema=schema)


def stratum(row: dict, field: str) -> str:
    """The value of a DOCS column, or else of a key in the metadata JSON (e.g. MedQuAD's `source`)."""
    v = row.get(field)
    if v is None and row.get("metadata"):
        try:
            v = json.loads(row["metadata"]).get(field)
        except (ValueError, AttributeError):
            v = None
    return "unknown" if v in (None, "") else str(v)


def _stratified(rows: list[dict], n: int, rng: random.Random, field: str = "doc_type") -> list[dict]:
    """Round-robin over strata so a corpus dominated by one type or source still seeds every one."""
    by_type: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_type[stratum(r, field)].append(r)
    for v in by_type.values():
        rng.shuffle(v)
    out: list[dict] = []
    types = sorted(by_type)
    while len(out) < n:
        for t in types:
            if by_type[t] and len(out) < n:
                out.append(by_type[t].pop())
    return sorted(out, key=lambda r: r["doc_id"])


def clean_query(text: Optional[str]) -> str:
    """The first non-empty line, without list markers, 'Query:' prefixes or wrapping quotes."""
    for line in (text or "").splitlines():
        line = _PREFIX.sub("", line.strip()).strip().strip(_QUOTES).strip()
        if line:
            return re.sub(r"\s+", " ", line)
    return ""


def normalize(q: str) -> str:
    return " ".join(re.findall(r"\w+", q.lower()))


def copied_span(query: str, text: str, n: int) -> Optional[str]:
    """A run of `n` consecutive query words that also appears in the document, if any."""
    qw = re.findall(r"\w+", query.lower())
    if len(qw) < n:
        return None
    doc = " " + " ".join(re.findall(r"\w+", text.lower())) + " "
    for i in range(len(qw) - n + 1):
        span = " ".join(qw[i:i + n])
        if f" {span} " in doc:
            return span
    return None


# Short, frequent function words per language. A query is judged by the words it shares with
# these lists, never by a model: keyword queries have no function words and always pass.
STOPWORDS = {
    "en": "the of and to in is for on with how what where when why who which do does can my our your are was from this that".split(),
    "de": "der die das und ist nicht wie wir ich mit für auf ein eine den dem des zu von im wird sind".split(),
    "fr": "le la les des est et pour avec une dans du que qui pas sur au aux nous vous comment quel".split(),
    "es": "el los las que para con una del por es como en mi nuestra cómo qué cuál está son".split(),
    "it": "il lo gli della che per con una del sono come non nel alla cosa dove quando".split(),
    "pt": "o os as que para com uma do da não em como nosso nossa onde qual são está".split(),
    "nl": "de het een en van is niet hoe wat waar voor met op zijn wij ik".split(),
}
# Scripts by the Unicode name prefix of their letters.
SCRIPTS = {"ru": "CYRILLIC", "zh": "CJK", "ja": ("CJK", "HIRAGANA", "KATAKANA"), "ko": "HANGUL",
           "ar": "ARABIC", "el": "GREEK"}


def _script_share(q: str, prefixes) -> float:
    letters = [c for c in q if c.isalpha()]
    if not letters:
        return 1.0
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return sum(1 for c in letters if unicodedata.name(c, "").startswith(prefixes)) / len(letters)


def wrong_language(q: str, lang: Optional[str]) -> Optional[str]:
    """Why `q` is not in `lang`, or None. Most letters must be in the language's script; for a
    Latin-script language, a query with more function words of another language than of its own
    (at least two) is that other language."""
    if lang is None:
        return None
    if lang in SCRIPTS:
        share = _script_share(q, SCRIPTS[lang])
        return None if share >= 0.5 else f"only {share:.0%} of its letters are in the script of {lang!r}"
    share = _script_share(q, "LATIN")
    if share < 0.8:
        return f"only {share:.0%} of its letters are Latin, expected {lang!r}"
    words = re.findall(r"\w+", q.lower())
    own = set(STOPWORDS.get(lang, ()))
    mine = sum(1 for w in words if w in own)
    for other, sw in STOPWORDS.items():
        if other == lang:
            continue
        foreign = set(sw) - own
        n = sum(1 for w in words if w in foreign)
        if n >= 2 and n > mine:
            return f"{n} function words of {other!r} ({', '.join(w for w in words if w in foreign)}), {mine} of {lang!r}"
    return None


def check_query(q: str, doc_text: str, cfg: SynthesizeConfig) -> Optional[tuple[str, str]]:
    if not q:
        return EMPTY_OUTPUT, "the model wrote no query"
    if len(q) < cfg.min_query_chars:
        return TOO_SHORT, f"{len(q)} characters, fewer than min_query_chars={cfg.min_query_chars}"
    if len(q) > cfg.max_query_chars:
        return TOO_LONG, f"{len(q)} characters, more than max_query_chars={cfg.max_query_chars}"
    span = copied_span(q, doc_text, cfg.max_copied_words)
    if span:
        return COPIES_DOCUMENT, f"copies {cfg.max_copied_words} words from the document: {span!r}"
    why = wrong_language(q, cfg.language)
    if why:
        return WRONG_LANGUAGE, why
    return None


def load_few_shot(name_or_path: str) -> dict[str, list[dict]]:
    data = yaml.safe_load(_read(name_or_path, ".yaml")[1]) or {}
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ValueError(f"few-shot file {name_or_path!r} must map each query kind to a list of {{doc, query}}")
    for kind, examples in data.items():
        for e in examples:
            if not isinstance(e, dict) or not {"doc", "query"} <= set(e):
                raise ValueError(f"few-shot file {name_or_path!r}: every {kind} example needs 'doc' and 'query'")
    return data


def render_few_shot(examples: list[dict]) -> str:
    if not examples:
        return ""
    lines = ["Examples of this kind of query, for other documents:"]
    lines += [f"- Document: {e['doc']}\n  Query: {e['query']}" for e in examples]
    return "\n".join(lines) + "\n\n"


TOKENS_TAG = re.compile(r" \[tokens in=(\d+) out=(\d+)\]$")


def _with_tokens(detail: str, tokens_in, tokens_out) -> str:
    return f"{detail} [tokens in={int(tokens_in or 0)} out={int(tokens_out or 0)}]"


class SynthWorker:
    """Ray Data actor: one engine, writes one query per request row."""

    def __init__(self, cfg: SynthesizeConfig, seed: int = 0):
        from ..engines import make_engine

        self.cfg = cfg
        self.seed = seed
        self.thread = EngineThread()  # the engine is built and called on one thread
        self.engine = self.thread.run(make_engine, cfg.engine, seed)
        self.template = load_template(cfg.prompt)
        self.kinds = load_query_kinds()
        self.few_shot = {}
        if cfg.few_shot:
            if "{few_shot}" not in (self.template.system or "") + self.template.user:
                raise ValueError(f"synthesize.few_shot is set but the prompt template {cfg.prompt!r} has no {{few_shot}} field")
            self.few_shot = {k: v[:cfg.few_shot_per_kind] for k, v in load_few_shot(cfg.few_shot).items()}

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        prompts = []
        for r in rows:
            fields = doc_fields(r)
            if self.engine.tokenizer is not None:
                fields["text"], _ = truncate_tokens(self.engine.tokenizer, fields.get("text", ""), self.cfg.max_doc_tokens)
            fields["kind_instruction"] = self.kinds[r["kind"]].format_map(_Blank(fields))
            fields["few_shot"] = render_few_shot(self.few_shot.get(r["kind"], []))
            prompts.append(self.engine.prompt(self.template.messages(**fields), self.template.assistant_prefix))
        # A per-request seed keeps a rerun's queries identical to the first run's.
        seeds = [(self.seed * 1_000_003 + zlib.crc32(r["query_id"].encode())) % (2**31) for r in rows]
        outs = self.thread.run(call_engine, self.engine, self.engine.generate, prompts,
                               max_tokens=self.cfg.max_new_tokens, temperature=self.cfg.temperature, seeds=seeds)
        cols = {k: [] for k in ("query", "model", "prompt_tokens", "completion_tokens",
                                "_key", "_status", "_reason", "_detail", "_raw")}
        for r, o in zip(rows, outs):
            q = clean_query(o.text) if o.error is None else ""
            problem = (o.error, o.detail) if o.error else check_query(q, r["text"] or "", self.cfg)
            cols["query"].append(q or None)
            cols["model"].append(self.engine.model_id)
            cols["prompt_tokens"].append(o.prompt_tokens)
            cols["completion_tokens"].append(o.completion_tokens)
            cols["_key"].append(r["query_id"])
            cols["_status"].append("ok" if problem is None else "rejected")
            cols["_reason"].append(None if problem is None else problem[0])
            cols["_detail"].append(None if problem is None else _with_tokens(problem[1], o.prompt_tokens,
                                                                              o.completion_tokens))
            cols["_raw"].append(o.text)
        out = batch.select(["query_id", "seed_doc_id", "kind"])
        for k, v in cols.items():
            out = out.append_column(k, pa.array(v, type=pa.int32() if k.endswith("_tokens") else pa.string()))
        return out


class _Blank(dict):
    def __missing__(self, key):
        return "unknown"


def _words(q: str) -> set:
    """Lower-cased words, a plural 's' dropped, so 'contractor VPN' and 'vpn contractors' match."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
            for w in re.findall(r"\w+", q.lower())}


class Deduper:
    """Drops duplicates as results stream in (first occurrence kept): the same words in any order
    anywhere in the stage, and near-duplicates (word-set Jaccard >= threshold) among the queries of
    one seed document, where several kinds often converge on one query."""

    def __init__(self, seen: Optional[set] = None, near_threshold: Optional[float] = 0.8):
        self.seen: dict[str, str] = {}
        self.near = near_threshold
        self.by_seed: dict[str, list[tuple[set, str]]] = defaultdict(list)
        for item in (seen or set()):
            q, qid, seed = (tuple(item) + (None,))[:3]
            self._add(q, qid, seed)

    @staticmethod
    def _key(q: str) -> str:
        return " ".join(sorted(_words(q)))

    def _add(self, q: str, qid: str, seed: Optional[str]) -> None:
        self.seen[self._key(q)] = qid
        self.by_seed[seed].append((_words(q), qid))

    def __call__(self, ok: pa.Table):
        keep, rejected = [], []
        seeds = ok.column("seed_doc_id").to_pylist() if "seed_doc_id" in ok.column_names else [None] * ok.num_rows
        tin = ok.column("prompt_tokens").to_pylist() if "prompt_tokens" in ok.column_names else [0] * ok.num_rows
        tout = ok.column("completion_tokens").to_pylist() if "completion_tokens" in ok.column_names else [0] * ok.num_rows
        for i, (qid, q) in enumerate(zip(ok.column("query_id").to_pylist(), ok.column("query").to_pylist())):
            key = self._key(q)
            problem = None
            if key in self.seen:
                problem = (DUPLICATE, f"same words as {self.seen[key]}")
            elif self.near is not None:
                w = _words(q)
                for other, oid in self.by_seed[seeds[i]]:
                    j = len(w & other) / max(1, len(w | other))
                    if j >= self.near:
                        problem = (NEAR_DUPLICATE, f"word overlap {j:.2f} with {oid} of the same seed document")
                        break
            if problem:
                rejected.append({"key": qid, "reason": problem[0], "detail": _with_tokens(problem[1], tin[i], tout[i]),
                                 "record": q})
            else:
                self._add(q, qid, seeds[i])
                keep.append(i)
        return ok.take(pa.array(keep, type=pa.int64())), rejected


class RoundTrip:
    """Keeps a query only when BM25 ranks its seed document (any passage of it) in the top k: a
    query that cannot find its own document is too vague or off-topic to train a judge on."""

    def __init__(self, index_dir: Path, k: int):
        import pyarrow.parquet as pq

        from ..bm25 import DOCS_FILE, open_index

        self.k = k
        self.index = open_index(index_dir)
        docs = pq.read_table(Path(index_dir) / DOCS_FILE, columns=["doc_id", "parent_id"])
        self.parents = docs.column("parent_id").to_pylist()
        self.parent_of = dict(zip(docs.column("doc_id").to_pylist(), self.parents))

    def __call__(self, ok: pa.Table):
        rows = ok.to_pylist()
        hits = self.index.search([r["query"] for r in rows], self.k)
        keep, rejected = [], []
        for i, (r, ranked) in enumerate(zip(rows, hits)):
            parent = self.parent_of.get(r["seed_doc_id"], r["seed_doc_id"])
            rank = next((n + 1 for n, (row, _) in enumerate(ranked) if self.parents[row] == parent), None)
            if rank is None:
                rejected.append({"key": r["query_id"], "reason": ROUND_TRIP_MISS,
                                 "detail": _with_tokens(f"BM25 does not rank the seed document {parent!r} in the "
                                                        f"top {self.k} for this query", r.get("prompt_tokens"),
                                                        r.get("completion_tokens")),
                                 "record": r["query"]})
            else:
                keep.append(i)
        return ok.take(pa.array(keep, type=pa.int64())), rejected


def chain(*filters):
    """Driver-side filters applied in turn; a row rejected by one is not seen by the next."""
    filters = [f for f in filters if f is not None]

    def run(ok: pa.Table):
        rejected: list = []
        for f in filters:
            ok, rej = f(ok)
            rejected += rej
        return ok, rejected
    return run


def token_totals(queries: Optional[pa.Table], rejected: Optional[pa.Table] = None) -> dict:
    """Tokens of every generation: kept queries' columns plus the tag on each rejected one's detail."""
    import pyarrow.compute as pc

    tin = tout = 0
    if queries is not None:
        tin += int(pc.sum(queries.column("prompt_tokens")).as_py() or 0)
        tout += int(pc.sum(queries.column("completion_tokens")).as_py() or 0)
    if rejected is not None:
        for d in rejected.column("detail").to_pylist():
            m = TOKENS_TAG.search(d or "")
            if m:
                tin, tout = tin + int(m.group(1)), tout + int(m.group(2))
    return {"tokens_in": tin, "tokens_out": tout}


def cost_usd(tokens: dict, engine: EngineConfig) -> float:
    return round(tokens["tokens_in"] / 1e6 * engine.usd_per_1m_input_tokens
                 + tokens["tokens_out"] / 1e6 * engine.usd_per_1m_output_tokens, 6)


__all__ = ["QUERIES", "plan_requests", "SynthWorker", "Deduper", "RoundTrip", "clean_query", "check_query",
           "wrong_language", "token_totals", "cost_usd"]


def _section(cfg) -> dict:
    from ..config import identity
    from ..prompts import template_hash

    c = cfg.synthesize
    return {"synthesize": identity(c),
            "templates": [template_hash(c.prompt), template_hash("query_kinds", ".yaml"),
                          template_hash(c.few_shot, ".yaml") if c.few_shot else None]}


def _run(ctx) -> dict:
    import os

    from ..chunking import chunk_docs
    from ..mining import ensure_index
    from ..engines.memory import declare
    from ..raycluster import pool_args
    from .runner import heartbeat, pending, run_actor_stage

    ctx.ray_up()
    c = ctx.cfg.synthesize
    corpus = ctx.store.table("corpus")
    requests = plan_requests(chunk_docs(corpus, c.chunk_tokens, c.chunk_overlap), c, ctx.cfg.seed)
    w = ctx.writer("synthesize")
    done = w.done_keys(lambda t: t.column("query_id").to_pylist())
    prev = w.data()
    dedupe = Deduper(set() if prev is None else set(zip(prev.column("query").to_pylist(),
                                                         prev.column("query_id").to_pylist(),
                                                         prev.column("seed_doc_id").to_pylist())),
                     near_threshold=c.near_duplicate_jaccard)
    round_trip = None
    if c.round_trip_k:
        with heartbeat("synthesize", "building the BM25 index for the round trip"):
            index_dir, _ = ensure_index(ctx.store.root, ctx.fingerprint("corpus"), lambda: corpus,
                                        c.round_trip_backend, c.chunk_tokens, c.chunk_overlap,
                                        threads=os.cpu_count() or 1, log=lambda m: ctx.log(f"[synthesize] {m}"))
        round_trip = RoundTrip(index_dir, c.round_trip_k)
    todo = pending(requests, requests.column("query_id"), done)
    if c.engine.backend == "vllm":  # the choice the engine actors make, said where the user reads it
        from ..hardware import resolve_dtype

        resolve_dtype(c.engine.dtype, gpu=c.engine.gpus_per_actor > 0, what="[synthesize] engine")
    run_actor_stage(w, todo, worker=SynthWorker, ctor_kwargs={"cfg": c, "seed": ctx.cfg.seed},
                    pool=pool_args(c.engine, vllm=c.engine.backend == "vllm", memory=declare(c.engine, "synthesize"),
                                   key="synthesize.engine"),
                    batch_size=c.engine.batch_size, total=requests.num_rows, on_ok=chain(round_trip, dedupe),
                    engine_key="synthesize.engine")
    tokens = token_totals(w.data(), w.rejected())
    return ctx.publish(w, "synthesize", requests.num_rows,
                       extra={**tokens, "cost_usd": cost_usd(tokens, c.engine), "model": c.engine.model,
                              "seed_docs": len(set(requests.column("seed_doc_id").to_pylist()))})


STAGE = Stage("synthesize", ("corpus",), QUERIES, _section, _run,
              help="an LLM writes the queries people would type to find sampled seed documents")
