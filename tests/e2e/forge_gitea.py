"""A real Gitea server on 127.0.0.1 for the tests of spec.delivery.pullRequest.

The binary is built from the Go module proxy by hack/gitea.sh (once per machine, cached);
each server gets its own directory with a sqlite database, an admin user and an API token.
When Gitea cannot be built, the fixture fails: these tests are never skipped.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
USER = "braid"
PASSWORD = "gitea-test-password-1"


def gitea_binary() -> Path:
    """hack/gitea.sh's binary, built now if this machine has none; a failed build fails the test."""
    proc = subprocess.run([str(ROOT / "hack" / "gitea.sh")], capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        pytest.fail(f"hack/gitea.sh could not build Gitea (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_ini(work: Path, static: Path, port: int) -> str:
    sections: dict[str, dict[str, str]] = {
        "": {"APP_NAME": "braid-test", "RUN_MODE": "prod", "RUN_USER": _user(), "WORK_PATH": str(work),
             # the tests may run as root (CI does); Gitea refuses that unless told
             "I_AM_BEING_UNSAFE_RUNNING_AS_ROOT": "true"},
        "server": {"HTTP_ADDR": "127.0.0.1", "HTTP_PORT": str(port), "ROOT_URL": f"http://127.0.0.1:{port}/",
                   "DISABLE_SSH": "true", "OFFLINE_MODE": "true", "STATIC_ROOT_PATH": str(static),
                   "APP_DATA_PATH": str(work / "data"), "LFS_START_SERVER": "false"},
        "database": {"DB_TYPE": "sqlite3", "PATH": str(work / "gitea.db")},
        "repository": {"ROOT": str(work / "repos")},
        "security": {"INSTALL_LOCK": "true", "SECRET_KEY": "braid-test-secret-key",
                     "INTERNAL_TOKEN": "braid-test-internal-token-0123456789abcdef"},
        "service": {"DISABLE_REGISTRATION": "true"},
        "indexer": {"REPO_INDEXER_ENABLED": "false"},
        "cron": {"ENABLED": "false"},
        "log": {"MODE": "file", "LEVEL": "Warn", "ROOT_PATH": str(work / "log")},
        "mailer": {"ENABLED": "false"},
    }
    lines = []
    for name, values in sections.items():
        if name:
            lines.append(f"[{name}]")
        lines += [f"{key} = {value}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


class Gitea:
    def __init__(self, binary: Path, work: Path):
        self.binary = binary
        self.work = work
        self.port = _free_port()
        self.config = work / "custom" / "conf" / "app.ini"
        self.config.parent.mkdir(parents=True)
        self.config.write_text(app_ini(work, binary.parent.parent / "static", self.port))
        self.env = {**os.environ, "GITEA_WORK_DIR": str(work), "GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT": "true",
                    "HOME": str(work)}
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _cli(self, *args: str) -> str:
        proc = subprocess.run([str(self.binary), "--config", str(self.config), *args], cwd=self.work, env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"gitea {args[0]} {args[1] if len(args) > 1 else ''} failed: {proc.stderr[-2000:]}")
        return proc.stdout.strip()

    def start(self) -> Gitea:
        self._cli("migrate")
        self._cli("admin", "user", "create", "--username", USER, "--password", PASSWORD, "--email", "braid@example.com",
                  "--admin", "--must-change-password=false")
        self.token = self._cli("admin", "user", "generate-access-token", "--username", USER, "--token-name", "tests",
                               "--scopes", "all", "--raw").splitlines()[-1].strip()
        log = (self.work / "web.log").open("wb")
        self.proc = subprocess.Popen([str(self.binary), "--config", str(self.config), "web"], cwd=self.work,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gitea web exited {self.proc.returncode}: {(self.work / 'web.log').read_text()[-3000:]}")
            try:
                self.api("GET", "/version")
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise AssertionError("gitea web did not answer within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/api/v1{path}", data=data, method=method,
                                         headers={"content-type": "application/json",
                                                  **({"authorization": f"token {self.token}"} if self.token else {})})
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else None

    def create_repo(self, name: str) -> str:
        """A new empty repository of the admin user; its clone URL (no credentials in it)."""
        self.api("POST", "/user/repos", {"name": name, "auto_init": False, "default_branch": "main"})
        return f"{self.url}/{USER}/{name}.git"

    def push_url(self, name: str) -> str:
        return f"http://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{USER}/{name}.git"

    def pulls(self, name: str, state: str = "all") -> list[dict[str, Any]]:
        # just after the first push Gitea may still take the repository for empty, and answer 404
        deadline = time.monotonic() + 15
        while True:
            try:
                return self.api("GET", f"/repos/{USER}/{name}/pulls?state={state}&limit=50")
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(0.3)

    def credentials_dir(self, where: Path) -> Path:
        """A git credentials directory (username + password files) for braid's --credentials-dir."""
        where.mkdir(parents=True)
        (where / "username").write_text(USER)
        (where / "password").write_text(PASSWORD)
        return where
