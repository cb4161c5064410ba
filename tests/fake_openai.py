"""A local OpenAI-compatible chat server for tests: the fake is the server, never the client.

Behaviours are chosen per request by a substring of the last user message, so one test can
make a single slot fail (HTTP 500, timeout, empty, junk) while the others succeed.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The endpoint's host:port is part of every draft key (a different server is a different model),
# so the fake listens on the first free port of a fixed range: the same tests draw the same keys,
# seeds and pixels from one run to the next. A random port only if the whole range is taken.
STABLE_PORTS = range(47810, 47830)


def _bind(port: int | None, handler) -> ThreadingHTTPServer:
    for candidate in [port] if port is not None else [*STABLE_PORTS, 0]:
        try:
            return ThreadingHTTPServer(("127.0.0.1", candidate), handler)
        except OSError:
            if port is not None:
                raise
    raise OSError("no free port for the fake OpenAI server")


class FakeOpenAI:
    def __init__(self, port: int | None = None):
        self.rules: list[tuple[str, str]] = []  # (substring of the user message, behaviour)
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.caption_extra = ""  # appended to every caption (e.g. HTML to escape)
        self.schema_support = True  # False: answer HTTP 400 to response_format
        self.seen: dict[str, int] = {}  # requests per user message (for "*-once" behaviours)
        self.kill_after: int | None = None  # die (stop listening) after this many requests
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = _bind(port, self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def _die(self) -> None:
        """Like a killed endpoint: stop listening, so further calls get 'connection refused'."""
        self._server.shutdown()
        self._server.server_close()

    def behaviour_for(self, user: str) -> str:
        count = self.seen[user] = self.seen.get(user, 0) + 1
        for needle, behaviour in self.rules:
            if needle in user:
                if behaviour.endswith("-once"):
                    return behaviour[:-5] if count == 1 else "ok"
                return behaviour
        return "ok"

    OPENERS = {
        "fr": [
            "Tout juste sorti du four",
            "Ce matin à la Croix-Rousse",
            "Nos boulangers vous le disent",
            "Une histoire de levain et de patience",
        ],
        "en": [
            "Fresh from the oven",
            "This morning in Croix-Rousse",
            "Our bakers will tell you",
            "A story of starter and patience",
        ],
    }

    def answer(self, body: dict, behaviour: str) -> str:
        system = body["messages"][0]["content"]
        user = body["messages"][-1]["content"]
        if "image generator" in system:
            return "A crusty sourdough loaf on a floured wooden table at dawn, steam rising."
        language = "fr" if "français" in system else "en"
        lines = [line for line in user.splitlines() if ":" in line]
        brief = next((line for line in lines if "sujet" in line or "about" in line), lines[-1] if lines else user)
        brief = brief.split(":", 1)[-1].strip()
        brief = brief if len(brief) <= 90 else brief[:90].rsplit(" ", 1)[0]
        opener = self.OPENERS[language][0 if behaviour == "same" else body.get("seed", 0) % 4]
        caption = f"{opener} : {brief}" if language == "fr" else f"{opener}: {brief}"
        caption = caption.rstrip(" .,;:") + "."
        if behaviour == "lowquality":  # what a weak model writes
            caption = f"{opener}, le pain au levian est un événement, le déjà, le délai, le décadre, le déché, le défil"
        if behaviour == "invent":
            caption += (
                " Profitez de -30% sur tout, ouvert dimanche ! Réservez sur https://promo-levain.example/deal"
                if language == "fr"
                else " Enjoy -30% on everything, open on Sunday! Book at www.levain-deals.com"
            )
        if behaviour == "prose":  # a server that takes response_format and ignores it
            return f"{caption} #pain #lyon"
        fields = {
            "caption": caption + self.caption_extra,
            "hashtags": ["#pain", "#lyon"] if language == "fr" else ["#bread", "#lyon"],
            "call_to_action": "Passez nous voir !" if language == "fr" else "Come by!",
            "alt_text": "Une miche de pain" if language == "fr" else "A sourdough loaf",
            "language": language,
        }
        if behaviour == "wrongschema":
            fields["caption"] = 42
        text = json.dumps(fields, ensure_ascii=False)
        return text[: len(text) // 2] if behaviour == "malformed" else text

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if fake.kill_after is not None and len(fake.requests) >= fake.kill_after:
                    threading.Thread(target=fake._die, daemon=True).start()
                    self.close_connection = True
                    return
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                behaviour = fake.behaviour_for(body["messages"][-1]["content"])
                if "response_format" in body and not fake.schema_support:
                    return self._send(
                        400, {"error": {"message": "response_format is not supported", "type": "invalid_request_error"}}
                    )
                if behaviour == "http500":
                    return self._send(500, {"error": {"message": "upstream exploded", "type": "server_error"}})
                if behaviour == "http429":
                    return self._send(429, {"error": {"message": "slow down", "type": "rate_limit"}})
                if behaviour == "timeout":
                    time.sleep(3)
                content = {
                    "empty": "",
                    "junk": "%%% ]]] not json, no words ###",
                    "refusal-text": "I'm sorry, but I can't help with that request.",
                }.get(behaviour)
                if content is None:
                    content = fake.answer(body, behaviour)
                message = {"role": "assistant", "content": content}
                if behaviour == "refusal":
                    message = {"role": "assistant", "content": None, "refusal": "This request breaks the policy."}
                self._send(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                        "usage": {"prompt_tokens": 42, "completion_tokens": 17, "total_tokens": 59},
                    },
                )

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
