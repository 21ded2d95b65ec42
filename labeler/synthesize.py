"""Query synthesis: an LLM writes the queries an employee would type to find each seed document.

One request per (seed document, query kind, index) so the stage is one-to-one: every request
ends as a kept query or a rejected generation with its reason, and query ids are stable across
reruns (resume skips requests already answered).
"""
from __future__ import annotations

import random
import re
import zlib
from collections import defaultdict
from typing import Optional

import pyarrow as pa

from .config import SynthesizeConfig
from .prompts import doc_fields, load_query_kinds, load_template, truncate_tokens
from .schema import QUERIES

_PREFIX = re.compile(r"^\s*(?:query\s*\d*\s*[:：-]|search\s*query\s*[:：-]|\d+[.)]\s+|[-*•]\s+)", re.I)
_QUOTES = "\"'`“”‘’«»"


def plan_requests(docs: pa.Table, cfg: SynthesizeConfig, seed: int) -> pa.Table:
    """Seed documents (stratified by document type) x query kinds -> one row per generation."""
    rows = docs.select(["doc_id", "title", "text", "author", "space", "doc_type", "last_modified"]).to_pylist()
    rng = random.Random(seed)
    if cfg.seed_docs is not None and cfg.seed_docs < len(rows):
        rows = _stratified(rows, cfg.seed_docs, rng)
    reqs = []
    for d in rows:
        for kind, count in cfg.kinds.items():
            for i in range(count):
                reqs.append({"query_id": f"{d['doc_id']}#{kind}{i}", "seed_doc_id": d["doc_id"], "kind": kind,
                             **{k: d[k] for k in ("title", "text", "author", "space", "doc_type", "last_modified")}})
    return pa.Table.from_pylist(reqs)


def _stratified(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    """Round-robin over document types so a corpus dominated by one type still seeds every type."""
    by_type: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_type[r.get("doc_type") or "unknown"].append(r)
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


def check_query(q: str, doc_text: str, cfg: SynthesizeConfig) -> Optional[tuple[str, str]]:
    if not q:
        return "empty_output", "the model wrote no query"
    if len(q) < cfg.min_query_chars:
        return "too_short", f"{len(q)} characters, fewer than min_query_chars={cfg.min_query_chars}"
    if len(q) > cfg.max_query_chars:
        return "too_long", f"{len(q)} characters, more than max_query_chars={cfg.max_query_chars}"
    span = copied_span(q, doc_text, cfg.max_copied_words)
    if span:
        return "copies_document", f"copies {cfg.max_copied_words} words from the document: {span!r}"
    return None


class SynthWorker:
    """Ray Data actor: one engine, writes one query per request row."""

    def __init__(self, cfg: SynthesizeConfig, seed: int = 0):
        from .engines import make_engine

        self.cfg = cfg
        self.seed = seed
        self.engine = make_engine(cfg.engine, seed)
        self.template = load_template(cfg.prompt)
        self.kinds = load_query_kinds()

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        prompts = []
        for r in rows:
            fields = doc_fields(r)
            if self.engine.tokenizer is not None:
                fields["text"], _ = truncate_tokens(self.engine.tokenizer, fields.get("text", ""), self.cfg.max_doc_tokens)
            fields["kind_instruction"] = self.kinds[r["kind"]].format_map(_Blank(fields))
            prompts.append(self.engine.prompt(self.template.messages(**fields), self.template.assistant_prefix))
        # A per-request seed keeps a rerun's queries identical to the first run's.
        seeds = [(self.seed * 1_000_003 + zlib.crc32(r["query_id"].encode())) % (2**31) for r in rows]
        outs = self.engine.generate(prompts, max_tokens=self.cfg.max_new_tokens,
                                    temperature=self.cfg.temperature, seeds=seeds)
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
            cols["_detail"].append(None if problem is None else problem[1])
            cols["_raw"].append(o.text)
        out = batch.select(["query_id", "seed_doc_id", "kind"])
        for k, v in cols.items():
            out = out.append_column(k, pa.array(v, type=pa.int32() if k.endswith("_tokens") else pa.string()))
        return out


class _Blank(dict):
    def __missing__(self, key):
        return "unknown"


class Deduper:
    """Drops exact and normalised duplicates as results stream in (first occurrence kept)."""

    def __init__(self, seen: Optional[set] = None):
        self.seen: dict[str, str] = {}
        for q, qid in (seen or set()):
            self.seen[normalize(q)] = qid

    def __call__(self, ok: pa.Table):
        keep, rejected = [], []
        for i, (qid, q) in enumerate(zip(ok.column("query_id").to_pylist(), ok.column("query").to_pylist())):
            key = normalize(q)
            if key in self.seen:
                rejected.append({"key": qid, "reason": "duplicate",
                                 "detail": f"same query as {self.seen[key]} after normalisation",
                                 "record": q})
            else:
                self.seen[key] = qid
                keep.append(i)
        return ok.take(pa.array(keep, type=pa.int64())), rejected


def token_totals(queries: Optional[pa.Table]) -> dict:
    if queries is None:
        return {"tokens_in": 0, "tokens_out": 0}
    import pyarrow.compute as pc
    return {"tokens_in": int(pc.sum(queries.column("prompt_tokens")).as_py() or 0),
            "tokens_out": int(pc.sum(queries.column("completion_tokens")).as_py() or 0)}


__all__ = ["QUERIES", "plan_requests", "SynthWorker", "Deduper", "clean_query", "check_query"]
