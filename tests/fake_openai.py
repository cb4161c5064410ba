"""A local OpenAI-compatible chat server for tests: the fake is the server, never the client.

Behaviours are chosen per request by a substring of the last user message, so one test can
make a single slot fail (HTTP 500, timeout, empty, junk) while the others succeed.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self):
        self.rules: list[tuple[str, str]] = []       # (substring of the user message, behaviour)
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.caption_extra = ""                       # appended to every caption (e.g. HTML to escape)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address
        return f"http://{host}:{port}/v1"

    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def behaviour_for(self, user: str) -> str:
        for needle, behaviour in self.rules:
            if needle in user:
                return behaviour
        return "ok"

    def answer(self, body: dict) -> str:
        system = body["messages"][0]["content"]
        user = body["messages"][-1]["content"]
        if "image generator" in system:
            return "A crusty sourdough loaf on a floured wooden table at dawn, steam rising."
        french = "français" in system
        brief = user.split(":", 1)[-1].strip().splitlines()[0][:80]
        caption = (f"Tout juste sorti du four : {brief}" if french else f"Fresh from the oven: {brief}")
        return json.dumps({"caption": caption + self.caption_extra,
                           "hashtags": ["#pain", "#lyon"] if french else ["#bread", "#lyon"],
                           "call_to_action": "Passez nous voir !" if french else "Come by!",
                           "alt_text": "Une miche de pain" if french else "A sourdough loaf"},
                          ensure_ascii=False)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):   # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                behaviour = fake.behaviour_for(body["messages"][-1]["content"])
                if behaviour == "http500":
                    return self._send(500, {"error": {"message": "upstream exploded", "type": "server_error"}})
                if behaviour == "http429":
                    return self._send(429, {"error": {"message": "slow down", "type": "rate_limit"}})
                if behaviour == "timeout":
                    time.sleep(3)
                content = {"empty": "", "junk": "%%% ]]] not json, no words ###"}.get(behaviour)
                if content is None:
                    content = fake.answer(body)
                self._send(200, {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 42, "completion_tokens": 17, "total_tokens": 59},
                })

            def _send(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
