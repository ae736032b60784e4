"""A local stand-in for the Anthropic Messages API, for tests without network.

A threaded HTTP server on 127.0.0.1 that serves POST /v1/messages (plain JSON or
server-sent events when the request asks for `stream: true`) and
/v1/messages/count_tokens. It plays back scripted replies in order (assistant
turns with text, tool_use and thinking blocks and usage numbers, or errors such as
429 with retry-after, 500, 401, 404), falls back to a `responder` function when
the script is empty, and records every request (headers and JSON body).

    with MessagesAPI([reply(tool_use("write_file", {...})), reply(text("done"))]) as api:
        client = anthropic.Anthropic(api_key="k", base_url=api.url)
        ...
        assert api.requests[0].body["model"] == ...
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

_ids = itertools.count(1)


# -- what the stand-in answers ------------------------------------------------------------------


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(name: str, input: dict[str, Any], id: str | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": id or f"toolu_{next(_ids):04d}", "name": name, "input": input}


def thinking(value: str, signature: str = "sig") -> dict[str, Any]:
    return {"type": "thinking", "thinking": value, "signature": signature}


@dataclass
class Reply:
    """One response: an assistant message, or an error when `status` is not 200."""

    content: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = "end_turn"
    usage: dict[str, int] = field(default_factory=dict)
    status: int = 200
    error_type: str | None = None
    error_message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering."""
    event_delay: float = 0.0
    """Seconds between streamed events (a slow response)."""


def reply(
    *blocks: dict[str, Any],
    stop_reason: str | None = None,
    input_tokens: int = 100,
    output_tokens: int = 50,
    cache_write: int = 0,
    cache_read: int = 0,
    **options: Any,
) -> Reply:
    """An assistant turn; stop_reason defaults to tool_use when a block calls a tool, else end_turn."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
    }
    return Reply(list(blocks), stop_reason, usage, **options)


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error(status: int, message: str = "scripted error", headers: dict[str, str] | None = None,
          error_type: str | None = None) -> Reply:
    return Reply(status=status, error_type=error_type or _ERROR_TYPES.get(status, "api_error"),
                 error_message=message, headers=headers or {})


def stream_error(error_type: str = "overloaded_error", message: str = "Overloaded") -> Reply:
    """A stream that starts (200, message_start) and then fails with an `error` event."""
    return Reply(status=200, error_type=error_type, error_message=message, usage={"input_tokens": 100})


# -- what it saw --------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    """Lower-case names."""
    body: Any
    raw: bytes


class MessagesAPI:
    """The server. Use as a context manager, or start() and stop()."""

    def __init__(
        self,
        replies: list[Reply] | tuple[Reply, ...] = (),
        responder: Callable[[Recorded], Reply] | None = None,
        api_key: str | None = None,
        host: str = "127.0.0.1",
    ):
        self.replies: list[Reply] = list(replies)
        self.responder = responder
        self.api_key = api_key
        self.host = host
        """When set, requests without this key (x-api-key or Bearer) get a 401."""
        self.requests: list[Recorded] = []
        self.problems: list[str] = []
        """Requests the stand-in could not answer from its script."""
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> MessagesAPI:
        api = self

        class Handler(_Handler):
            stand_in = api

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="messages-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # scripting and inspection

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    @property
    def message_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path == "/v1/messages"]

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_reply(self, request: Recorded) -> Reply:
        with self._lock:
            if self.replies:
                return self.replies.pop(0)
        if self.responder is not None:
            return self.responder(request)
        with self._lock:
            self.problems.append("no scripted reply left")
        return error(500, "the stand-in has no scripted reply left", headers={"x-should-retry": "false"})

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.api_key is None:
            return True
        bearer = headers.get("authorization", "")
        return headers.get("x-api-key") == self.api_key or bearer == f"Bearer {self.api_key}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stand_in: MessagesAPI

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        request = Recorded(self.command, path, {k.lower(): v for k, v in self.headers.items()}, body, raw)
        api = self.stand_in
        api._record(request)
        if path.startswith("/v1/") and not api._authorized(request.headers):
            return self._send_error(error(401, "invalid x-api-key"))
        if self.command == "POST" and path == "/v1/messages":
            answer = api._next_reply(request)
            if answer.delay:
                time.sleep(answer.delay)
            if answer.status != 200:
                return self._send_error(answer)
            message = _message(answer, body if isinstance(body, dict) else {})
            if isinstance(body, dict) and body.get("stream"):
                return self._send_stream(message, answer)
            if answer.error_type:
                return self._send_error(Reply(status=529, error_type=answer.error_type,
                                              error_message=answer.error_message))
            return self._send_json(200, message, answer.headers)
        if self.command == "POST" and path == "/v1/messages/count_tokens":
            return self._send_json(200, {"input_tokens": 100})
        return self._send_error(error(404, f"{self.command} {path}: not served by the stand-in"))

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_standin_{next(_ids):04d}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_error(self, answer: Reply) -> None:
        payload = {"type": "error", "error": {"type": answer.error_type, "message": answer.error_message}}
        self._send_json(answer.status, payload, answer.headers)

    def _send_stream(self, message: dict[str, Any], answer: Reply) -> None:
        events = _stream_events(message)
        if answer.error_type:
            failure = {"type": "error", "error": {"type": answer.error_type, "message": answer.error_message}}
            events = events[:1] + [_sse("error", failure)]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("request-id", f"req_standin_{next(_ids):04d}")
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.event_delay:
            # slow stream: events go out one by one and the connection ends the body
            self.send_header("connection", "close")
            self.close_connection = True
            self.end_headers()
            for event in events:
                try:
                    self.wfile.write(event)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                time.sleep(answer.event_delay)
            return
        data = b"".join(events)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _message(answer: Reply, request: dict[str, Any]) -> dict[str, Any]:
    usage = {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    usage.update(answer.usage)
    return {
        "id": f"msg_standin_{next(_ids):04d}",
        "type": "message",
        "role": "assistant",
        "model": request.get("model", "claude-standin"),
        "content": answer.content,
        "stop_reason": answer.stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def _halves(value: str) -> list[str]:
    """The value in two pieces, so clients have to put deltas back together."""
    middle = len(value) // 2
    return [part for part in (value[:middle], value[middle:]) if part]


def _stream_events(message: dict[str, Any]) -> list[bytes]:
    usage = dict(message["usage"])
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [_sse("message_start", {"type": "message_start", "message": start}), _sse("ping", {"type": "ping"})]
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "text":
            first, deltas = {"type": "text", "text": ""}, [
                {"type": "text_delta", "text": part} for part in _halves(block["text"])]
        elif kind == "tool_use":
            first = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": part}
                      for part in _halves(json.dumps(block["input"]))]
        elif kind == "thinking":
            first = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": part} for part in _halves(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            first, deltas = block, []
        events.append(_sse("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": first}))
        for delta in deltas:
            events.append(_sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": delta}))
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(_sse("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": usage["output_tokens"]},
    }))
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events
