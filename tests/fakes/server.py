"""A scripted HTTP server on 127.0.0.1 that records requests (base of the API fakes)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class ScriptedReply:
    """One reply to serve: HTTP status, body bytes, headers, and a delay before it (seconds)."""

    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    content_type: str = "application/json"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received: path, headers (lower-case names), body."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw.decode("utf-8"))


def json_reply(payload: Any, status: int = 200, **headers: str) -> ScriptedReply:
    """A JSON body with the given status and headers (``retry_after="1"`` -> ``retry-after: 1``)."""
    return ScriptedReply(status=status, body=json.dumps(payload).encode(),
                         headers={k.replace("_", "-"): v for k, v in headers.items()})


Responder = Callable[[RecordedRequest], "ScriptedReply | None"]
"""Chooses the reply to a request from its content; None = no reply for it."""


class FakeServer:
    """A ThreadingHTTPServer on an ephemeral loopback port serving scripted replies.

    A request is answered by the next queued reply; when the queue is empty,
    by the responder (:meth:`respond_with`), if any; else with a 400 error.

    Args:
        path: the one POST path served (others get 404); subclasses may serve more
            paths and methods by overriding :meth:`matches`.
    """

    def __init__(self, path: str):
        self.path = path
        self.requests: list[RecordedRequest] = []
        self.served: list[tuple[RecordedRequest, ScriptedReply]] = []
        """Every request with the reply it got, in the order the replies were sent."""
        self._queue: list[ScriptedReply] = []
        self._responder: Responder | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = RecordedRequest(self.command, self.path, headers, raw)
                served = server.matches(request)
                with server._lock:
                    server.requests.append(request)
                    reply = server._queue.pop(0) if server._queue else None
                    responder = server._responder
                if reply is None and responder is not None and served:
                    reply = responder(request)
                if not served:
                    reply = json_reply({"error": {"message": f"no route {self.path}"}}, 404)
                elif reply is None:
                    reply = json_reply({"type": "error", "error": {
                        "type": "invalid_request_error",
                        "message": "fake server: no scripted reply left"}}, 400)
                else:
                    reply = server.finalize(request, reply)
                with server._lock:
                    server.served.append((request, reply))
                time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", reply.content_type)
                    self.send_header("content-length", str(len(reply.body)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_PATCH = do_PUT = do_DELETE = do_POST

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def matches(self, request: RecordedRequest) -> bool:
        """Is this request one the server answers (default: a POST to ``path``)?"""
        return request.method == "POST" and request.path == self.path

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *replies: ScriptedReply) -> None:
        """Add replies to serve, in order, one per request."""
        with self._lock:
            self._queue.extend(replies)

    def respond_with(self, responder: Responder | None) -> None:
        """Answer requests the queue does not cover with ``responder(request)``."""
        with self._lock:
            self._responder = responder

    def finalize(self, request: RecordedRequest, reply: ScriptedReply) -> ScriptedReply:
        """Adjust a reply to its request before it is sent (subclasses; default: unchanged)."""
        return reply

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:  # noqa: PYI034 (subclasses keep their type via start)
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
