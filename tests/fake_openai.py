"""A real HTTP server on localhost speaking OpenAI's chat-completions protocol, whose answers a
test scripts: for the failure modes a real model server will not produce on demand."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Reply:
    content: str = ""
    status: int = 200
    delay_s: float = 0.0
    prompt_tokens: int = 11
    completion_tokens: int = 1


class FakeChatServer:
    def __init__(self, respond: Callable[[dict], Reply]):
        self.respond = respond
        self.calls = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                server.calls += 1
                r = server.respond(body)
                if r.delay_s:
                    time.sleep(r.delay_s)
                if r.status != 200:
                    data = b'{"error": {"message": "boom"}}'
                else:
                    data = json.dumps({
                        "id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                     "message": {"role": "assistant", "content": r.content}}],
                        "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                                  "total_tokens": r.prompt_tokens + r.completion_tokens}}).encode()
                try:
                    self.send_response(r.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self._srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._srv.server_address[1]}/v1"

    def close(self) -> None:
        self._srv.shutdown()
