"""A real HTTP receiver for webhook tests: a tiny http.server on 127.0.0.1 in a thread that records what it gets and
answers from a script (status codes, a redirect, a delay)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def signature_valid(self, secret: str) -> bool:
        """Check the signature as docs/webhooks.md tells a receiver to."""
        timestamp = self.headers["X-ModelDeck-Timestamp"]
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(f"sha256={expected}", self.headers["X-ModelDeck-Signature"])


@dataclass
class Receiver:
    url: str
    answers: list[int] = field(default_factory=list)  # one status per request, then 200 for every later one
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)


@contextmanager
def receiver(answers: list[int] | None = None, delay: float = 0.0) -> Iterator[Receiver]:
    state = Receiver(url="", answers=list(answers or []), delay=delay)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(Received(self.path, dict(self.headers.items()), body))
            if state.delay:
                time.sleep(state.delay)
            status = state.answers.pop(0) if state.answers else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up waiting (the timeout test)
                self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
