"""The OpenAI Batch API behind the openai engine's batch mode: requests written as a batch JSONL
file (one line per request, `custom_id` the pair key), uploaded, submitted, polled, and the
output and error files read back into the same answers the request path gets.

A submitted batch is paid for once: the request key -> batch id ledger (SQLite, next to the
request cache) outlives the process, so a run stopped while a batch is in flight (Ctrl-C, a
kill, a lost machine with the same cache folder) polls that batch after a restart instead of
submitting it again. A request is forgotten by the ledger once its answer is in the request
cache, or when it failed (so that --retry-failed submits it anew).

The file format is the one `vllm run-batch` reads and writes as well, so the same files can be
run through a local vLLM.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from ..reasons import CONNECTION_ERROR, RATE_LIMITED, REQUEST_ERROR, SERVER_ERROR, TIMEOUT
from .cache import thread_connection

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
# A batch in one of these states will not change any more.
DONE = ("completed", "failed", "expired", "cancelled")
# Per-request reasons of a batch that ended without the request's line, as the request path names them.
BATCH_FAILED = {"expired": TIMEOUT, "cancelled": SERVER_ERROR, "failed": REQUEST_ERROR}


def status_reason(code: int) -> str:
    """The failure reason of an HTTP status, the same for a request and a batch line."""
    return RATE_LIMITED if code == 429 else SERVER_ERROR if code >= 500 or code in (408, 409) else REQUEST_ERROR


class Ledger:
    """Request key -> (batch id, custom_id) of the batch it was submitted in."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().execute("CREATE TABLE IF NOT EXISTS submitted (key TEXT PRIMARY KEY, batch TEXT NOT NULL, "
                           "custom_id TEXT NOT NULL, at REAL NOT NULL)")

    def _db(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path)

    def lookup(self, keys: list[str]) -> dict[str, tuple[str, str]]:
        out = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = self._db().execute(f"SELECT key, batch, custom_id FROM submitted WHERE key IN "
                                      f"({','.join('?' * len(chunk))})", chunk).fetchall()
            out.update({k: (b, c) for k, b, c in rows})
        return out

    def add(self, batch: str, entries: list[tuple[str, str]]) -> None:
        now = time.time()
        self._db().executemany("INSERT OR REPLACE INTO submitted (key, batch, custom_id, at) VALUES (?, ?, ?, ?)",
                               [(k, batch, c, now) for k, c in entries])

    def forget(self, keys: list[str]) -> None:
        self._db().executemany("DELETE FROM submitted WHERE key = ?", [(k,) for k in keys])


class BatchRunner:
    """Answers of chat-completion request bodies through the Batch API.

    `run([(key, custom_id, body)])` returns {key: (answer dict, None) or (None, (reason, detail))},
    answers in the form `answer(completion_dict)` makes (the request path's form)."""

    def __init__(self, client, openai_module, ledger: Ledger, *, poll_s: float, window: str,
                 answer: Callable[[dict], tuple[Optional[dict], Optional[tuple[str, str]]]],
                 keep: Callable[[str, dict], bool], base_url: Optional[str]):
        self.client, self.openai, self.ledger = client, openai_module, ledger
        self.poll_s, self.window, self.answer, self.keep, self.base_url = poll_s, window, answer, keep, base_url

    def run(self, requests: list[tuple[str, str, dict]]) -> dict:
        results: dict = {}
        known = self.ledger.lookup([k for k, _, _ in requests])
        waiting: dict[str, dict[str, str]] = {}  # batch id -> custom_id -> key
        new = []
        for key, cid, body in requests:
            if key in known:
                batch, old_cid = known[key]
                waiting.setdefault(batch, {})[old_cid] = key
            else:
                new.append((key, cid, body))
        for batch in waiting:
            log.info("batch %s: submitted by an earlier attempt, polled again (%d of its requests needed)",
                     batch, len(waiting[batch]))
        if new:
            batch, err = self._submit(new)
            if err is not None:
                results.update({k: (None, err) for k, _, _ in new})
            else:
                waiting[batch] = {cid: k for k, cid, _ in new}
        for batch, by_cid in waiting.items():
            results.update(self._collect(batch, by_cid))
        return results

    # -- calls --------------------------------------------------------------------------------
    def _api_error(self, e: Exception, what: str) -> tuple[str, str]:
        o = self.openai
        if isinstance(e, o.APITimeoutError):
            return TIMEOUT, f"{what}: no answer in time: {e}"
        if isinstance(e, o.APIConnectionError):
            return CONNECTION_ERROR, f"{what}: cannot reach {self.base_url or 'the OpenAI API'}: {e}"
        if isinstance(e, o.APIStatusError):
            return status_reason(e.status_code), f"{what}: HTTP {e.status_code}: {str(e)[:300]}"
        raise e

    def _submit(self, new: list[tuple[str, str, dict]]):
        """Write, upload and submit one batch file; the ledger knows the batch before it is polled."""
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8", delete=False) as f:
            for _, cid, body in new:
                f.write(json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body},
                                   ensure_ascii=False) + "\n")
            path = Path(f.name)
        try:
            with open(path, "rb") as fh:
                up = self.client.files.create(file=("labeler-batch.jsonl", fh), purpose="batch")
            b = self.client.batches.create(input_file_id=up.id, endpoint=ENDPOINT, completion_window=self.window,
                                           metadata={"source": "labeler", "requests": str(len(new))})
        except (self.openai.APIError,) as e:
            return None, self._api_error(e, "submitting a batch")
        finally:
            path.unlink(missing_ok=True)
        self.ledger.add(b.id, [(k, cid) for k, cid, _ in new])
        log.info("batch %s submitted: %d requests (input file %s)", b.id, len(new), up.id)
        return b.id, None

    def _collect(self, batch_id: str, by_cid: dict[str, str]) -> dict:
        """Poll until the batch is done, then read its output and error files."""
        last = None
        while True:
            try:
                b = self.client.batches.retrieve(batch_id)
            except self.openai.NotFoundError as e:
                self.ledger.forget(list(by_cid.values()))
                return {k: (None, (REQUEST_ERROR, f"batch {batch_id} is unknown to the server: {e}"))
                        for k in by_cid.values()}
            except self.openai.APIError as e:  # the ledger keeps the id: a rerun polls it again
                return {k: (None, self._api_error(e, f"polling batch {batch_id}")) for k in by_cid.values()}
            if b.status in DONE:
                break
            counts = getattr(b, "request_counts", None)
            state = (b.status, counts and counts.completed, counts and counts.total)
            if state != last:
                log.info("batch %s: %s (%s of %s requests done)", batch_id, *state)
                last = state
            time.sleep(self.poll_s)
        lines: dict[str, dict] = {}
        for fid in (b.output_file_id, b.error_file_id):
            if not fid:
                continue
            try:
                text = self.client.files.content(fid).text
            except self.openai.APIError as e:
                return {k: (None, self._api_error(e, f"downloading file {fid} of batch {batch_id}"))
                        for k in by_cid.values()}
            for line in text.splitlines():
                if line.strip():
                    row = json.loads(line)
                    lines[row.get("custom_id")] = row
        out, settled = {}, []
        for cid, key in by_cid.items():
            row = lines.get(cid)
            if row is None:
                why = (BATCH_FAILED.get(b.status, SERVER_ERROR),
                       f"batch {batch_id} ended {b.status}" + (f": {_errors(b)}" if b.status != "completed" else
                                                                ": the request is missing from its output"))
                out[key] = (None, why)
                settled.append(key)
                continue
            resp, err = row.get("response") or {}, row.get("error")
            code = int(resp.get("status_code") or (500 if err else 200))
            if code != 200 or not resp.get("body"):
                body = resp.get("body") or {}
                msg = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
                out[key] = (None, (status_reason(code), f"HTTP {code} in batch {batch_id}: {str(msg or err)[:300]}"))
                settled.append(key)
                continue
            ans, failure = self.answer(resp["body"])
            out[key] = (ans, failure)
            if failure is not None or self.keep(key, ans):
                settled.append(key)
        self.ledger.forget(settled)
        log.info("batch %s %s: %d answers read", batch_id, b.status, len(out))
        return out


def _errors(b) -> str:
    errs = getattr(getattr(b, "errors", None), "data", None) or []
    return "; ".join(f"{getattr(e, 'code', '')}: {getattr(e, 'message', '')}" for e in errs[:3]) or "no details"
