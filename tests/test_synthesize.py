"""Query synthesis: the filters (each a counted reason), few-shot prompts, chunked and stratified
seeds, the round-trip check, tokens and cost, and the OpenAI path against a local fake server
whose request cache makes a rerun free."""
from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pytest
from conftest import DEMO_DOCS, shared_path
from fake_openai import FakeChatServer, Reply

from labeler.chunking import chunk_docs, split_passages
from labeler.config import EngineConfig, SynthesizeConfig
from labeler.mining import build_index
from labeler.pipeline import Pipeline
from labeler.prompts import load_template
from labeler.stages.synthesize import (
    Deduper,
    RoundTrip,
    SynthWorker,
    chain,
    check_query,
    clean_query,
    copied_span,
    cost_usd,
    load_few_shot,
    plan_requests,
    render_few_shot,
    token_totals,
    wrong_language,
)


def _demo() -> pa.Table:
    return pa.Table.from_pylist([json.loads(l) for l in DEMO_DOCS.read_text().splitlines()])


def test_wrong_language_is_light_and_spares_keywords():
    for q in ["vpn setup contractors", "how do I claim per diem for a trip to Lisbon", "CAG SLO", "Q3 board deck mei chen",
              "the postmortem about the login outage last spring", "Kubernetes ingress 502"]:
        assert wrong_language(q, "en") is None, q
    assert "de" in wrong_language("wie kann ich die Reisekosten für das Projekt abrechnen", "en")
    assert "fr" in wrong_language("comment configurer le VPN pour les prestataires", "en")
    assert "es" in wrong_language("cómo configurar la VPN para los contratistas", "en")
    assert "Latin" in wrong_language("настройка VPN для подрядчиков", "en")
    assert wrong_language("wie kann ich die Reisekosten abrechnen", "de") is None
    assert wrong_language("настройка VPN для подрядчиков", "ru") is None
    assert wrong_language("comment configurer le VPN", None) is None


def test_deduper_near_duplicates_per_seed_and_any_order_everywhere():
    d = Deduper({("VPN setup", "q0", "docA")}, near_threshold=0.6)
    t = pa.table({"query_id": ["q1", "q2", "q3", "q4", "q5"],
                  "query": ["setup VPN", "vpn setup for contractors", "VPN setups contractor", "expense policy", "policy expenses"],
                  "seed_doc_id": ["docB", "docA", "docA", "docC", "docD"],
                  "prompt_tokens": [10, 11, 12, 13, 14], "completion_tokens": [1, 2, 3, 4, 5]})
    kept, rejected = d(t)
    assert kept.column("query_id").to_pylist() == ["q2", "q4"]
    reasons = {r["key"]: r["reason"] for r in rejected}
    # q1 is q0 reordered, q5 is q4 reordered with a plural: duplicates even for other seeds;
    # q3 overlaps q0 of its own seed enough to be a near-duplicate.
    assert reasons == {"q1": "duplicate", "q3": "near_duplicate", "q5": "duplicate"}
    near, rej = Deduper(near_threshold=0.6)(pa.table({
        "query_id": ["a", "b", "c"], "query": ["login outage postmortem april", "login outage postmortem", "login outage postmortem"],
        "seed_doc_id": ["s", "s", "t"], "prompt_tokens": [1, 1, 1], "completion_tokens": [1, 1, 1]}))
    # b is near a (same seed); c has b's words but b was rejected, and a different seed: kept.
    assert near.column("query_id").to_pylist() == ["a", "c"] and rej[0]["reason"] == "near_duplicate"
    assert rej[0]["detail"].endswith("[tokens in=1 out=1]")


def test_chunking_keeps_ids_traceable():
    text = " ".join(f"w{i}" for i in range(100))
    parts = split_passages(text, 40, 10)
    assert [p.split()[0] for p in parts] == ["w0", "w30", "w60"] and parts[-1].split()[-1] == "w99"
    assert split_passages("short text", 40) == ["short text"]
    docs = pa.table({"doc_id": ["long", "short"], "title": ["L", "S"], "text": [text, "tiny doc"]})
    p = chunk_docs(docs, 40, 10)
    assert p.column("doc_id").to_pylist() == ["long#p0", "long#p1", "long#p2", "short"]
    assert p.column("parent_id").to_pylist() == ["long", "long", "long", "short"]
    with pytest.raises(ValueError):
        SynthesizeConfig(engine={"model": "m"}, chunk_tokens=32, chunk_overlap=32)


def test_plan_requests_on_passages_stratified_by_a_metadata_field():
    docs = _demo()
    meta = [json.dumps({"source": "wiki" if i % 10 else "tickets"}) for i in range(docs.num_rows)]
    docs = docs.append_column("metadata", pa.array(meta))
    cfg = SynthesizeConfig(engine={"model": "m"}, seed_docs=20, stratify_by="source", chunk_tokens=64,
                           kinds={"keyword": 1, "partial_recall": 1})
    passages = chunk_docs(docs, cfg.chunk_tokens)
    req = plan_requests(passages, cfg, seed=3)
    assert req.num_rows == 40
    seeds = set(req.column("seed_doc_id").to_pylist())
    parent = dict(zip(passages.column("doc_id").to_pylist(), passages.column("parent_id").to_pylist()))
    tickets = {d for d, m in zip(docs.column("doc_id").to_pylist(), meta) if "tickets" in m}
    assert sum(parent[s] in tickets for s in seeds) >= 10  # 10% of the documents, half of the seeds
    assert all(q.startswith(s + "#") for q, s in zip(req.column("query_id").to_pylist(), req.column("seed_doc_id").to_pylist()))


def test_few_shot_examples_reach_the_prompt():
    shots = load_few_shot("few_shot_queries")
    assert set(shots) == {"keyword", "question", "navigational", "partial_recall", "acronym", "consumer_health"}
    t = load_template("synthesize")
    with_shots = t.messages(title="T", text="body", kind_instruction="k", few_shot=render_few_shot(shots["acronym"][:1]))
    assert "Query: CAG SLO targets" in with_shots[-1]["content"]
    without = t.messages(title="T", text="body", kind_instruction="k", few_shot=render_few_shot([]))
    assert "Examples" not in without[-1]["content"] and "unknown" not in without[-1]["content"].split("body")[1]


def test_round_trip_keeps_queries_that_find_their_seed(tmp_path):
    idx = build_index(chunk_docs(_demo(), None), tmp_path / "idx")
    rt = RoundTrip(idx, k=5)
    t = pa.table({"query_id": ["good", "vague"], "query": ["fernwick connect vpn setup guide", "the thing from before"],
                  "seed_doc_id": ["rb-vpn-setup", "rb-vpn-setup"], "prompt_tokens": [100, 90], "completion_tokens": [5, 6]})
    kept, rejected = chain(rt, Deduper())(t)
    assert kept.column("query_id").to_pylist() == ["good"]
    assert rejected[0]["reason"] == "round_trip_miss" and "top 5" in rejected[0]["detail"]
    rej = pa.Table.from_pylist(rejected)
    assert token_totals(kept, rej) == {"tokens_in": 190, "tokens_out": 11}
    eng = EngineConfig(model="m", usd_per_1m_input_tokens=2.5, usd_per_1m_output_tokens=10)
    assert cost_usd({"tokens_in": 1_000_000, "tokens_out": 100_000}, eng) == pytest.approx(3.5)


class _Chat:
    """A fake OpenAI-compatible chat server: canned queries by kind, counting calls."""
    calls = 0
    replies = {"keyword": "Query: vpn contractors setup", "question": "wie richte ich das VPN für die Auftragnehmer ein",
               "navigational": "", "acronym": "Query: " + "word " * 60}


@pytest.fixture
def chat_server():
    def respond(body):
        prompt = body["messages"][-1]["content"]
        kind = next(k for k in _Chat.replies if f"[{k}]" in prompt)
        _Chat.calls += 1
        return Reply(_Chat.replies[kind], prompt_tokens=100, completion_tokens=7)

    srv = FakeChatServer(respond)
    _Chat.calls = 0
    yield srv.url
    srv.close()


def test_openai_synthesis_filters_counts_tokens_and_caches(chat_server, tmp_path):
    kinds_file = tmp_path / "kinds.yaml"
    kinds_file.write_text("\n".join(f"{k}: '[{k}]'" for k in _Chat.replies))
    cfg = SynthesizeConfig(engine=EngineConfig(backend="openai", model="fake", base_url=chat_server, max_retries=0,
                                               request_cache_path=str(tmp_path / "cache.sqlite")),
                           kinds={k: 1 for k in _Chat.replies}, few_shot="few_shot_queries", max_query_chars=120)
    req = plan_requests(_demo().slice(0, 3), cfg, seed=1)
    import labeler.stages.synthesize as syn
    orig = syn.load_query_kinds
    syn.load_query_kinds = lambda: orig(str(kinds_file))
    try:
        out = SynthWorker(cfg, seed=1)(req)
        assert _Chat.calls == 12
        again = SynthWorker(cfg, seed=1)(req)
    finally:
        syn.load_query_kinds = orig
    assert _Chat.calls == 12  # the rerun was answered from the request cache
    assert again.equals(out)
    by_kind = {k: r for k, r in zip(out.column("kind").to_pylist(), out.to_pylist())}
    assert by_kind["keyword"]["_status"] == "ok" and by_kind["keyword"]["query"] == "vpn contractors setup"
    assert by_kind["question"]["_reason"] == "wrong_language"
    assert by_kind["navigational"]["_reason"] == "empty_output"
    assert by_kind["acronym"]["_reason"] == "too_long"
    rej = out.filter(pa.compute.equal(out.column("_status"), "rejected"))
    totals = token_totals(out.filter(pa.compute.equal(out.column("_status"), "ok")),
                          pa.table({"detail": rej.column("_detail")}))
    assert totals == {"tokens_in": 1200, "tokens_out": 84}  # rejected generations were paid for too


def test_medquad_seeds_cover_every_source_and_long_answers_chunk():
    path = shared_path("medquad", "corpus.jsonl.gz")
    with gzip.open(path, "rt") as fh:
        rows = [json.loads(l) for l in fh]
    docs = pa.Table.from_pylist([{"doc_id": r["doc_id"], "title": r["title"], "text": r["text"],
                                  "metadata": json.dumps({"source": r["source"]})} for r in rows])
    sources = {r["source"] for r in rows}
    cfg = SynthesizeConfig(engine={"model": "m"}, seed_docs=len(sources) * 5, stratify_by="source", chunk_tokens=200)
    passages = chunk_docs(docs, cfg.chunk_tokens)
    assert passages.num_rows > docs.num_rows
    req = plan_requests(passages, cfg, seed=0)
    parent = dict(zip(passages.column("doc_id").to_pylist(), passages.column("parent_id").to_pylist()))
    src = {r["doc_id"]: r["source"] for r in rows}
    seen = {src[parent[s]] for s in req.column("seed_doc_id").to_pylist()}
    assert seen == sources  # 16k documents dominated by a few sources, yet every source seeds queries


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


def test_synthesize_and_mine_stages(tiny_config, tmp_path, ray_local):
    cfg, _ = tiny_config
    pipe = Pipeline(cfg, tmp_path / "run")
    pipe.run(until="mine")
    syn = pipe.store.manifest("synthesize")
    assert syn["rows_in"] == 10 * 2 == syn["rows_out"] + syn["rows_rejected"]
    queries = pipe.store.table("synthesize")
    assert set(queries.column("kind").to_pylist()) <= {"keyword", "question"}
    assert syn["tokens_in"] > 0 and syn["tokens_out"] > 0

    pairs = pipe.store.table("mine")
    lo, hi = cfg.mine.window
    by_query: dict = {}
    for r in pairs.to_pylist():
        by_query.setdefault(r["query_id"], []).append(r)
    assert set(by_query) == set(queries.column("query_id").to_pylist())  # every query accounted for
    for qid, rows in by_query.items():
        seeds = [r for r in rows if r["source"] == "seed"]
        assert len(seeds) == 1 and seeds[0]["doc_id"] == qid.split("#")[0]
        negs = [r for r in rows if r["source"] == "bm25"]
        assert len(negs) <= cfg.mine.negatives_per_query
        assert all(lo <= r["bm25_rank"] <= hi and r["doc_id"] != seeds[0]["doc_id"] for r in negs)
        assert len({r["split"] for r in rows}) == 1  # a query never straddles train and held-out
    # Rerun: nothing to do, every stage is up to date.
    again = Pipeline(cfg, tmp_path / "run").run(until="mine")
    assert all(s["skipped"] for s in again["stages"].values())
