"""A key-injecting proxy on loopback: agents talk to the Messages API with a placeholder, never the key.

Each route is a random placeholder key that stands for one upstream base URL. A request
that carries a known placeholder is forwarded upstream with the real key in its place;
anything else is refused. Request bodies that carry the key itself (in any form braid
looks for) are refused too, so an agent that found it cannot send it to the model.
"""

from __future__ import annotations

import http.client
import json
import logging
import secrets
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

log = logging.getLogger("braid.proxy")

PROXY_ENV = "BRAID_MODEL_PROXY"
"""Set in an agent's environment to the proxy's base URL; ANTHROPIC_API_KEY then holds a placeholder."""

DEFAULT_UPSTREAM = "https://api.anthropic.com"
MAX_BODY = 32 * 1024 * 1024
UPSTREAM_TIMEOUT = 600.0
_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                  "transfer-encoding", "upgrade", "host", "content-length", "x-api-key", "authorization"})
PLACEHOLDER_PREFIX = "braid-placeholder-"


def placeholder_key() -> str:
    return PLACEHOLDER_PREFIX + secrets.token_hex(16)


class ModelProxy:
    """`with ModelProxy(key) as proxy: token = proxy.route(upstream)`; agents use proxy.url and token."""

    def __init__(self, key: str, leaks: Callable[[bytes], str | None] | None = None, host: str = "127.0.0.1",
                 port: int = 0):
        self._key = key
        self._leaks = leaks or (lambda body: "the API key" if key.encode() in body else None)
        self._routes: dict[str, str] = {}
        self._lock = threading.Lock()
        self._tls = ssl.create_default_context()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="braid-model-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, upstream: str | None, token: str | None = None) -> str:
        """A placeholder key (`token`, or a new one) whose requests go to `upstream` (the public API when None)."""
        token = token or placeholder_key()
        with self._lock:
            self._routes[token] = (upstream or DEFAULT_UPSTREAM).rstrip("/")
        return token

    def upstream_for(self, token: str | None) -> str | None:
        with self._lock:
            return self._routes.get(token or "")

    def __enter__(self) -> ModelProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def connect(self, upstream: str) -> tuple[http.client.HTTPConnection, str]:
        """A connection to `upstream` and the path prefix its base URL carries."""
        parts = urlsplit(upstream)
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=UPSTREAM_TIMEOUT, context=self._tls)
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=UPSTREAM_TIMEOUT)
        return conn, parts.path.rstrip("/")


def _handler(proxy: ModelProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "braid-model-proxy"

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def _error(self, status: int, kind: str, message: str) -> None:
            body = json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self) -> None:
            token = self.headers.get("x-api-key")
            auth = self.headers.get("authorization", "")
            if not token and auth.lower().startswith("bearer "):
                token = auth[7:].strip()
            upstream = proxy.upstream_for(token)
            if upstream is None:
                self._error(401, "authentication_error", "braid model proxy: unknown placeholder key")
                return
            try:
                length = int(self.headers.get("content-length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                self._error(413, "request_too_large", f"braid model proxy: body must be 0 to {MAX_BODY} bytes")
                return
            body = self.rfile.read(length) if length else b""
            leaked = proxy._leaks(body)
            if leaked:
                log.warning("refused a request to the model: its body holds %s", leaked)
                self._error(400, "invalid_request_error",
                            f"braid model proxy: refused: the request holds {leaked}")
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            headers["x-api-key"] = proxy._key
            conn, prefix = proxy.connect(upstream)
            try:
                conn.request(self.command, prefix + self.path, body=body, headers=headers)
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._error(502, "api_error", f"braid model proxy: cannot reach {upstream}: {type(exc).__name__}")
                return
            try:
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("connection", "close")
                self.end_headers()
                while chunk := response.read1(65536):
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (OSError, http.client.HTTPException) as exc:
                log.warning("model response cut short: %s", type(exc).__name__)
            finally:
                conn.close()
                self.close_connection = True

        do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _forward

    return Handler
