"""BM25 hard-negative mining: for each query, its seed document plus negatives from a window of
BM25 ranks, excluding the seed and near-duplicates of it (a copy of the seed is a false negative).

The index is built once on the driver and saved beside the stage's output; each mining actor
loads it from there rather than rebuilding it per task.
"""
from __future__ import annotations

import json
import random
import re
import zlib
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from .config import MineConfig
from .corpus import doc_meta
from .schema import PAIRS

NEAR_DUP_JACCARD = 0.8


def index_text(title: Optional[str], text: str) -> str:
    return f"{title}\n{text}" if title else text


def build_index(docs: pa.Table, folder: Path) -> Path:
    """bm25s index over title + text, saved with the doc id of each row."""
    import bm25s

    folder.mkdir(parents=True, exist_ok=True)
    ids = docs.column("doc_id").to_pylist()
    corpus = [index_text(t, x) for t, x in zip(docs.column("title").to_pylist(), docs.column("text").to_pylist())]
    tokens = bm25s.tokenize(corpus, stopwords="en", show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    retriever.save(str(folder / "bm25s"))
    (folder / "doc_ids.json").write_text(json.dumps(ids))
    return folder


def split_of(query_id: str, heldout_fraction: float, seed: int) -> str:
    """Deterministic by query, so that no query's pairs straddle train and held-out."""
    h = zlib.crc32(f"{seed}:{query_id}".encode()) / 2**32
    return "heldout" if h < heldout_fraction else "train"


def _shingles(text: str, n: int = 5) -> set:
    w = re.findall(r"\w+", text.lower())
    return {" ".join(w[i:i + n]) for i in range(max(1, len(w) - n + 1))}


def near_duplicate(a: str, b: str) -> bool:
    sa, sb = _shingles(a), _shingles(b)
    return bool(sa and sb) and len(sa & sb) / len(sa | sb) >= NEAR_DUP_JACCARD


class MineWorker:
    """Ray Data actor: loads the index and the documents once, mines pairs for batches of queries."""

    def __init__(self, cfg: MineConfig, index_dir: str, doc_files: list[str], seed: int = 0):
        import bm25s

        self.cfg, self.seed = cfg, seed
        self.bm25s = bm25s
        self.retriever = bm25s.BM25.load(str(Path(index_dir) / "bm25s"))
        self.doc_ids = json.loads((Path(index_dir) / "doc_ids.json").read_text())
        docs = pa.concat_tables([pq.read_table(f) for f in doc_files])
        self.docs = {d["doc_id"]: d for d in docs.to_pylist()}

    def _pair(self, q: dict, doc_id: str, source: str, rank, score, split: str) -> dict:
        d = self.docs[doc_id]
        return {"query_id": q["query_id"], "query": q["query"], "doc_id": doc_id, "title": d["title"],
                "text": d["text"], "doc_meta": doc_meta(d), "source": source, "bm25_rank": rank,
                "bm25_score": score, "split": split, "_key": q["query_id"], "_status": "ok",
                "_reason": None, "_detail": None, "_raw": None}

    def __call__(self, batch: pa.Table) -> pa.Table:
        queries = batch.to_pylist()
        k = min(self.cfg.depth, len(self.doc_ids))
        tokens = self.bm25s.tokenize([q["query"] for q in queries], stopwords="en", show_progress=False)
        results, scores = self.retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        lo, hi = self.cfg.rank_window
        out = []
        for qi, q in enumerate(queries):
            ranked = [(self.doc_ids[int(j)], float(s)) for j, s in zip(results[qi], scores[qi]) if s > 0]
            split = split_of(q["query_id"], self.cfg.heldout_fraction, self.seed)
            seed_doc = q["seed_doc_id"]
            if seed_doc not in self.docs:
                out.append({"_key": q["query_id"], "_status": "rejected", "_reason": "unknown_seed",
                            "_detail": f"seed document {seed_doc!r} is not in the corpus", "_raw": None,
                            "query_id": q["query_id"], "query": q["query"]})
                continue
            seed_rank = next(((i + 1, s) for i, (d, s) in enumerate(ranked) if d == seed_doc), (None, None))
            out.append(self._pair(q, seed_doc, "seed", seed_rank[0], seed_rank[1], split))
            seed_text = self.docs[seed_doc]["text"]
            window = [(i + 1, d, s) for i, (d, s) in enumerate(ranked)
                      if lo <= i + 1 <= hi and d != seed_doc and not near_duplicate(self.docs[d]["text"], seed_text)]
            rng = random.Random(zlib.crc32(f"{self.seed}:{q['query_id']}".encode()))
            picks = sorted(rng.sample(window, min(self.cfg.negatives_per_query, len(window))))
            for rank, d, s in picks:
                out.append(self._pair(q, d, "bm25", rank, s, split))
        cols = list(PAIRS.names) + ["_key", "_status", "_reason", "_detail", "_raw"]
        types = {f.name: f.type for f in PAIRS}
        return pa.table({c: pa.array([r.get(c) for r in out], type=types.get(c, pa.string())) for c in cols})
