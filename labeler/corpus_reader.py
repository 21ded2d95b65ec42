"""Documents in: doc_id, title, text and doc_meta from a docs JSONL/Parquet file or folder, a
Hugging Face dataset, or a finished run's corpus stage."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from .pairs_input import PairsInput, file_format


def read_corpus(path: str) -> pa.Table:
    """doc_id, title, text, doc_meta of a docs JSONL/Parquet file or folder, a Hugging Face dataset
    (labeler.hfdatasets), or a finished run's corpus stage (a run folder or its corpus/ folder)."""
    t = _corpus_table(path)
    if "doc_id" not in t.column_names or "text" not in t.column_names:
        raise ValueError(f"corpus {path}: needs doc_id and text columns (has {t.column_names})")
    meta_cols = [c for c in ("author", "space", "doc_type", "last_modified") if c in t.column_names]
    meta = [doc_meta({c: (None if v is None else str(v)) for c, v in zip(meta_cols, vals)})
            for vals in zip(*(t.column(c).to_pylist() for c in meta_cols))] if meta_cols else None
    return pa.table({"doc_id": t.column("doc_id").cast(pa.string()), "text": t.column("text").cast(pa.string()),
                     "title": t.column("title").cast(pa.string()) if "title" in t.column_names else pa.nulls(t.num_rows, pa.string()),
                     "doc_meta": pa.array(meta, pa.string()) if meta is not None else pa.nulls(t.num_rows, pa.string())})


def _corpus_table(path: str) -> pa.Table:
    from . import hfdatasets
    from .store import MANIFEST, read_parts

    p = Path(path)
    if "://" not in str(path):
        for stage in (p, p / "corpus"):
            if (stage / MANIFEST).is_file() and (stage / "data").is_dir():
                return read_parts(stage / "data")
    if hfdatasets.is_dataset(path):
        return hfdatasets.load(path)[0].with_format("arrow")[:]
    src = PairsInput(path)
    parts = []
    for f in src.files:
        if file_format(f) == "parquet":
            import pyarrow.parquet as pq
            parts.append(pq.read_table(f, filesystem=src.fs))
        else:
            import pyarrow.json as pj
            with src.fs.open_input_stream(f, compression="detect") as fh:
                try:
                    parts.append(pj.read_json(fh))
                except pa.ArrowInvalid as e:
                    raise ValueError(f"corpus {f}: not readable as JSON lines ({e})") from None
    return pa.concat_tables(parts, promote_options="permissive")


KNOWN_META = ("author", "space", "doc_type", "last_modified")


def doc_meta(doc: dict) -> str:
    """The JSON of a document's known metadata fields (what grading prompts show)."""
    return json.dumps({k: doc.get(k) for k in KNOWN_META if doc.get(k)}, ensure_ascii=False)
