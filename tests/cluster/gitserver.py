"""A git remote that pods on the test node can reach: `git daemon` serving bare
repositories over git:// on the node's IP, anonymous push enabled.

The node IP is an address of this machine (the node's bridge, see hack/node.sh), so
every byte stays on this machine: pods sit on that bridge and reach it on-link.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}, stdin=subprocess.DEVNULL, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} in {repo} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout.strip()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class GitServer:
    """`git daemon` for the bare repositories under `root`, at git://host:port/<name>."""

    def __init__(self, root: Path, host: str):
        self.root = Path(root)
        self.host = host
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root.parent / "git-daemon.log"

    def start(self, timeout: float = 20) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # the port is free when picked; another process may take it first
            self.port = _free_port(self.host)
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    ["git", "daemon", f"--listen={self.host}", f"--port={self.port}", f"--base-path={self.root}",
                     "--export-all", "--enable=receive-pack", "--reuseaddr", "--informative-errors",
                     "--verbose", str(self.root)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, env={**os.environ, **GIT_ENV},
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _accepts(self.host, self.port):
                    return self
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"git daemon did not start on {self.host}: see {self.log}:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def url(self, name: str) -> str:
        return f"git://{self.host}:{self.port}/{name}"

    def create_repo(self, name: str, files: dict[str, str], branch: str = "main") -> Path:
        """A bare repository `name` whose `branch` holds one commit with `files`."""
        bare = self.root / name
        work = self.root.parent / f"{name}.work"
        work.mkdir(parents=True)
        git(work, "init", "--quiet", f"--initial-branch={branch}")
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        git(work, "add", "--all")
        git(work, "commit", "--quiet", "-m", "initial")
        subprocess.run(["git", "clone", "--quiet", "--bare", str(work), str(bare)], check=True,
                       env={**os.environ, **GIT_ENV}, stdin=subprocess.DEVNULL)
        return bare

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HttpGitServer:
    """git's smart HTTP protocol (`git http-backend`) on the node's IP: anyone may fetch, and
    only `username` with `password` may push, as on a real git host."""

    def __init__(self, root: Path, host: str, username: str, password: str):
        self.root = Path(root)
        self.host = host
        self.username, self.password = username, password
        self.refused_pushes = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        self._server = ThreadingHTTPServer((self.host, 0), _git_http_handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="git-http", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/{name}"

    create_repo = GitServer.create_repo

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _git_http_handler(server: HttpGitServer) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{server.username}:{server.password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def _serve(self) -> None:
            path, _, query = self.path.partition("?")
            pushing = path.endswith("/git-receive-pack") or "service=git-receive-pack" in query
            user = None
            if pushing:
                if self.headers.get("authorization") != expected:
                    server.refused_pushes += 1
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                user = server.username
            body = self._body() if self.command == "POST" else b""
            env = {**os.environ, **GIT_ENV, "GIT_PROJECT_ROOT": str(server.root), "GIT_HTTP_EXPORT_ALL": "1",
                   "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
                   "CONTENT_TYPE": self.headers.get("content-type", ""), "CONTENT_LENGTH": str(len(body)),
                   "HTTP_CONTENT_ENCODING": self.headers.get("content-encoding", ""),
                   "GIT_PROTOCOL": self.headers.get("git-protocol", ""), "REMOTE_ADDR": self.client_address[0]}
            if user:
                env["REMOTE_USER"] = user
            out = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env=env,
                                 check=False).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = out.partition(b"\n\n")
            status, headers = 200, []
            for line in head.decode(errors="replace").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

    return Handler
