"""A real HTTP server on localhost speaking OpenAI's chat-completions protocol, whose answers a
test scripts: for the failure modes a real model server will not produce on demand.

It also speaks the Batch API's files and batches endpoints (upload, create, retrieve, download):
a batch runs its JSONL file through `run_batch` (by default the server's own chat handler, line
by line; a test may run it through `vllm run-batch` instead) in a thread, and stays in_progress
while `hold` is set."""
from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional


@dataclass
class Reply:
    content: str = ""
    status: int = 200
    delay_s: float = 0.0
    prompt_tokens: int = 11
    completion_tokens: int = 1


def completion(body: dict, r: Reply) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": r.content}}],
            "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                      "total_tokens": r.prompt_tokens + r.completion_tokens}}


class FakeChatServer:
    def __init__(self, respond: Callable[[dict], Reply], run_batch: Optional[Callable[[str], str]] = None):
        self.respond = respond
        self.calls = 0
        self.polls = 0  # GETs of a batch
        self.run_batch = run_batch or self._run_lines
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.hold = threading.Event()  # set: batches stay in_progress
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status: int, data: bytes, ctype: str = "application/json"):
                try:
                    self.send_response(status)
                    self.send_header("content-type", ctype)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def do_GET(self):
                parts = self.path.rstrip("/").split("/")  # /v1/batches/ID, /v1/files/ID/content
                if parts[-2:-1] == ["batches"] and parts[-1] in server.batches:
                    server.polls += 1
                    return self._send(200, json.dumps(server.batches[parts[-1]]).encode())
                if parts[-1] == "content" and parts[-2] in server.files:
                    return self._send(200, server.files[parts[-2]], "application/octet-stream")
                self._send(404, b'{"error": {"message": "no such object", "type": "invalid_request_error"}}')

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path.endswith("/files"):
                    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                        b"content-type: " + self.headers["content-type"].encode() + b"\r\n\r\n" + raw)
                    data = next(p.get_payload(decode=True) for p in msg.iter_parts() if p.get_filename())
                    fid = server.add_file(data)
                    return self._send(200, json.dumps({"id": fid, "object": "file", "bytes": len(data), "created_at": 0,
                                                       "filename": "input.jsonl", "purpose": "batch",
                                                       "status": "processed"}).encode())
                body = json.loads(raw or b"{}")
                if self.path.endswith("/batches"):
                    return self._send(200, json.dumps(server.create_batch(body)).encode())
                server.calls += 1
                r = server.respond(body)
                if r.delay_s:
                    time.sleep(r.delay_s)
                data = b'{"error": {"message": "boom"}}' if r.status != 200 else json.dumps(completion(body, r)).encode()
                self._send(r.status, data)

        self._srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._srv.server_address[1]}/v1"

    # -- the Batch API ------------------------------------------------------------------------
    def add_file(self, data: bytes) -> str:
        fid = f"file-{uuid.uuid4().hex[:12]}"
        self.files[fid] = data
        return fid

    def create_batch(self, body: dict) -> dict:
        bid = f"batch_{uuid.uuid4().hex[:12]}"
        b = {"id": bid, "object": "batch", "endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
             "completion_window": body["completion_window"], "status": "in_progress", "created_at": int(time.time()),
             "metadata": body.get("metadata"), "output_file_id": None, "error_file_id": None,
             "request_counts": {"total": 0, "completed": 0, "failed": 0}}
        self.batches[bid] = b
        threading.Thread(target=self._execute, args=(b,), daemon=True).start()
        return dict(b)

    def _execute(self, b: dict) -> None:
        lines = self.files[b["input_file_id"]].decode().splitlines()
        b["request_counts"]["total"] = len(lines)
        try:
            out = self.run_batch(self.files[b["input_file_id"]].decode())
        except BaseException as e:  # the runner broke: the batch failed, as OpenAI reports it
            b["errors"] = {"object": "list", "data": [{"code": "runner_failed", "message": str(e)[-2000:]}]}
            b["status"] = "failed"
            return
        while self.hold.is_set():
            time.sleep(0.05)
        rows = [json.loads(x) for x in out.splitlines() if x.strip()]
        ok = [x for x in rows if (x.get("response") or {}).get("status_code") == 200]
        bad = [x for x in rows if x not in ok]
        b["output_file_id"] = self.add_file("".join(json.dumps(x) + "\n" for x in ok).encode()) if ok else None
        b["error_file_id"] = self.add_file("".join(json.dumps(x) + "\n" for x in bad).encode()) if bad else None
        b["request_counts"] = {"total": len(lines), "completed": len(ok), "failed": len(bad)}
        b["status"] = "completed"

    def _run_lines(self, text: str) -> str:
        """The batch's lines through the server's own chat handler, as OpenAI's batch runner does."""
        out = []
        for line in text.splitlines():
            req = json.loads(line)
            self.calls += 1
            r = self.respond(req["body"])
            resp = ({"status_code": 200, "request_id": uuid.uuid4().hex, "body": completion(req["body"], r)}
                    if r.status == 200 else {"status_code": r.status, "request_id": uuid.uuid4().hex,
                                             "body": {"error": {"message": "boom", "type": "server_error"}}})
            out.append(json.dumps({"id": f"batch_req_{uuid.uuid4().hex[:8]}", "custom_id": req["custom_id"],
                                   "response": resp, "error": None}))
        return "\n".join(out) + "\n"

    def close(self) -> None:
        self._srv.shutdown()
