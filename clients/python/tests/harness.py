"""The real parts the tests run against: the authd binary (``AUTHD_BIN``,
default ``<repo>/target/debug/authd``) and the Auth0-shaped test issuer
(``tests/issuer``). Nothing here is a mock."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
AUDIENCE = "https://api.authd.test"
CLIENT_ID = "authd-test-client"
CLIENT_SECRET = "authd-test-secret"
TEST_SEAL_KEY = "dGVzdC1rZXktMzItYnl0ZXMtZm9yLWF1dGhkLXRlc3Q="


def authd_binary() -> str:
    return os.environ.get("AUTHD_BIN") or str(REPO / "target" / "debug" / "authd")


_next = itertools.count()


def free_port() -> int:
    """A free loopback port from *below* the kernel's ephemeral range (which
    connections take their local ports from), at an offset derived from the
    pid, each candidate checked by binding it: as ``free_port`` in
    tests/src/lib.rs does."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_start = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_start = 32768
    lowest = 10_000
    if ephemeral_start <= lowest + 1_000:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    span = ephemeral_start - lowest
    # Another offset than the Rust tests' (pid * 7919), should both run at once.
    offset = (os.getpid() * 104_729 + 5_003) % span
    for _ in range(span):
        port = lowest + (offset + next(_next)) % span
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def wait_until(
    what: str, done: Callable[[], bool], within: float = 10.0, every: float = 0.02
) -> None:
    """Polls ``done`` until it holds; fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(every)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Issuer:
    """tests/issuer/issuer.js on a free port."""

    def __init__(self) -> None:
        directory = REPO / "tests" / "issuer"
        port = free_port()
        self.process = subprocess.Popen(
            ["node", str(directory / "issuer.js"), "--port", str(port), "--audience", AUDIENCE],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self._ready_line()), daemon=True)
        reader.start()
        reader.join(20)
        if not ready or not ready[0].startswith("READY "):
            self.stop()
            raise RuntimeError(f"the issuer did not print READY within 20 s: {ready}")
        self.url = ready[0].removeprefix("READY ").strip()

    def _ready_line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def post(self, path: str, form: dict[str, str] | None = None, body: Any = None) -> Any:
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers = {"content-type": "application/x-www-form-urlencoded"}
        else:
            data, headers = json.dumps(body or {}).encode(), {"content-type": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read()
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{path}: {error.code} {error.read()!r}") from None
        return json.loads(text) if text else None

    def token(self, **knobs: str) -> str:
        """An access token from the client_credentials grant, shaped by the
        issuer's test knobs (scope, sub, sid, expires_in, permissions, ...)."""
        form = {
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            **knobs,
        }
        return str(self.post("oauth/token", form=form)["access_token"])

    def password_login(self, user: str) -> dict[str, Any]:
        """A user's tokens (access, id, refresh), as an app holding them would have."""
        form = {
            "grant_type": "password",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "username": user,
            "password": f"{user}-password",
            "scope": "openid profile email offline_access",
            "audience": AUDIENCE,
        }
        answer: dict[str, Any] = self.post("oauth/token", form=form)
        return answer

    def config(self, extra: str = "") -> str:
        """authd's configuration for this issuer, with sessions."""
        return (
            f'[[issuers]]\nissuer = "{self.url}"\naudiences = ["{AUDIENCE}"]\n'
            f'algorithms = ["RS256"]\nclient_id = "{CLIENT_ID}"\n'
            f'client_secret = {{ value = "{CLIENT_SECRET}" }}\nrequest_timeout_ms = 1500\n'
            f'[[secrets.keys]]\nid = "k1"\nvalue = "{TEST_SEAL_KEY}"\n'
            f"[jwks]\nmin_refetch_interval_seconds = 0\n{extra}"
        )


class Authd:
    """The authd binary, serving ``toml`` on a free port with an embedded
    store in a temporary directory; restartable on the same port and data."""

    def __init__(self, toml: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="authd-py-")
        self.port = free_port()
        self.metrics_port = free_port()
        self.config = Path(self.dir) / "authd.toml"
        self.config.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\n'
            f'[store]\npath = "{self.dir}/data"\n'
            f'[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n{toml}'
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(Path(self.dir) / "authd.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [authd_binary(), "serve", "--config", str(self.config)],
            stdout=log,
            stderr=log,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        log.close()
        wait_until("authd accepts connections", lambda: self._alive() and port_open(self.port), 30)

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"authd exited: {self.log()}")
        return True

    def log(self) -> str:
        return (Path(self.dir) / "authd.log").read_text(errors="replace")

    def pause(self) -> None:
        """SIGSTOP, and wait until every thread is stopped: the signal is
        delivered asynchronously, and a thread scheduled before the one
        that takes the signal could still answer a call made right after
        kill()."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        wait_until("authd stopped", self._stopped, 5, every=0.002)

    def _stopped(self) -> bool:
        """Whether every thread's state in /proc is `T` (stopped)."""
        assert self.process is not None
        tasks = Path(f"/proc/{self.process.pid}/task")
        for task in tasks.iterdir():
            try:
                stat = (task / "stat").read_text()
            except FileNotFoundError:  # a thread that has just ended
                continue
            if stat.rpartition(") ")[2][:1] != "T":
                return False
        return True

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        self.resume()
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def restart(self) -> None:
        self.stop()
        wait_until("authd's port is free", lambda: not port_open(self.port), 10)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def verifications(self) -> int:
        """VerifyToken calls authd answered OK, from its /metrics, once the
        count has settled (a call's count may land just after its answer)."""
        last = self._verifications()
        for _ in range(50):
            time.sleep(0.05)
            now = self._verifications()
            if now == last:
                return now
            last = now
        return last

    def _verifications(self) -> int:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if (
                line.startswith("grpc_server_handled_total{")
                and 'grpc_method="VerifyToken"' in line
                and 'grpc_code="OK"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)


class DpopIssuer:
    """tests/issuer-dpop/issuer.js (oidc-provider): it issues RFC 8705
    certificate-bound tokens (``cnf["x5t#S256"]``) at its real token
    endpoint, minted with tests/issuer-dpop/mint.js."""

    def __init__(self) -> None:
        self.directory = REPO / "tests" / "issuer-dpop"
        self.process = subprocess.Popen(
            ["node", str(self.directory / "issuer.js"), "--port", "0", "--audience", AUDIENCE],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ready: list[str] = []

        def read() -> None:
            assert self.process.stdout is not None
            ready.append(self.process.stdout.readline())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(30)
        if not ready or not ready[0].startswith("READY "):
            self.stop()
            raise RuntimeError(f"issuer-dpop did not print READY within 30 s: {ready}")
        self.url = ready[0].removeprefix("READY ").strip()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def config(self) -> str:
        """authd's ``[[issuers]]`` entry for it."""
        return (
            f'[[issuers]]\nissuer = "{self.url}"\naudiences = ["{AUDIENCE}"]\n'
            'algorithms = ["RS256"]\n'
        )

    def mint_mtls(self, cert_file: Path) -> dict[str, str]:
        """A token bound to the certificate in ``cert_file`` (PEM): mint.js's answer,
        ``access_token`` and ``x5t#S256``."""
        out = subprocess.run(
            [
                "node",
                str(self.directory / "mint.js"),
                "--issuer",
                self.url,
                "--kind",
                "mtls",
                "--cert",
                str(cert_file),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        answer: dict[str, str] = json.loads(out.stdout)
        return answer
