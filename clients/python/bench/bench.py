"""The FastAPI benchmark (issue 20, item 4, Python half): one core for the
app (uvicorn, one worker, on cpu 0); the load generator and authd on cpu 1.
Rows: the same route (``GET /orders``, one app per row: `bench.app`)
unprotected, without and with the tokens in the requests; protected by
authd's dependency and by its ASGI middleware with a warm cache; protected
by PyJWT with PyJWKClient — with repeated tokens (100, cycled) and with new
tokens (each used once). Besides requests/s, each row has the app's CPU
time per answered request (from /proc), which other load on the machine
moves much less than it moves requests/s. Then the revocation-to-refusal delay of the
cache (p50/p99): a subject revoked while its token is cached, timed until the
cache stops answering for it. Prints a markdown table and one JSON line.
Run through bench/run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from authd import AuthClient

from .issuer import BenchIssuer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests.harness import free_port, port_open, wait_until  # noqa: E402

NEW_TOKENS = int(os.environ.get("BENCH_NEW_TOKENS", "20000"))


def cpu_ticks(pid: int) -> int | None:
    """The process's user + system CPU time, in clock ticks (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def run(
    url: str, tokens: Path | None, warmup: float, duration: float, app_pid: int
) -> dict[str, object]:
    command = [
        "taskset",
        "-c",
        "1",
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        url,
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
    ]
    if tokens is not None:
        command += ["--tokens", str(tokens)]
    before = cpu_ticks(app_pid)
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=HERE.parent)
    after = cpu_ticks(app_pid)
    result: dict[str, object] = json.loads(out.stdout)
    # The app's CPU time per answered request, warmup included on both
    # sides: less at the mercy of other load on the machine than requests/s.
    answered = float(result["rps"]) * (duration + warmup)  # type: ignore[arg-type]
    if before is not None and after is not None and answered > 0:
        ticks = os.sysconf("SC_CLK_TCK")
        result["app_cpu_us"] = round((after - before) / ticks * 1e6 / answered, 1)
    print(url, result, file=sys.stderr)
    return result


@contextmanager
def serve(kind: str, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """uvicorn (one worker, on cpu 0) serving the app of ``kind``
    (`bench.app`), once its cache caught up: the URL of its ``/orders`` and
    its pid."""
    port = free_port()
    app = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench.app:from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=HERE.parent,
        env={**env, "BENCH_ROUTE": kind},
    )
    try:
        wait_until("the app listens", lambda: port_open(port), 30)
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/ready", timeout=15) as ready:
            assert json.load(ready) == {"cache": True}, "the app's cache did not catch up"
        yield base + "/orders", app.pid
    finally:
        app.terminate()
        app.wait(10)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="authd-py-bench-"))
    issuer = BenchIssuer()
    repeated = work / "repeated.tokens"
    repeated.write_text("\n".join(issuer.token(sub=f"auth0|r{i}") for i in range(100)))
    fresh = work / "new.tokens"
    fresh.write_text("\n".join(issuer.token(sub=f"auth0|new-{i}") for i in range(NEW_TOKENS)))
    watch = issuer.token(sub="bench@clients", permissions=["revocations:watch", "sessions:revoke"])

    print(f"minted {NEW_TOKENS} new tokens", file=sys.stderr)
    port = free_port()
    config = work / "authd.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[store]\npath = "{work}/data"\n' + issuer.config()
    )
    authd = subprocess.Popen(
        ["taskset", "-c", "1", os.environ["AUTHD_BIN"], "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        wait_until("authd listens", lambda: port_open(port), 30)
        env = {
            **os.environ,
            "AUTHD_TARGET": f"127.0.0.1:{port}",
            "WATCH_TOKEN": watch,
            "ISSUER_URL": issuer.url,
        }
        rows: dict[str, dict[str, object]] = {}
        with serve("unprotected", env) as (url, pid):
            rows["unprotected"] = run(url, None, 2, 10, pid)
            rows["unprotected, the same tokens sent (not read)"] = run(url, repeated, 2, 10, pid)
        with serve("authd", env) as (url, pid):
            rows["authd, repeated tokens (warm cache)"] = run(url, repeated, 2, 10, pid)
            rows["authd, new tokens"] = run(url, fresh, 1, 5, pid)
        with serve("mw", env) as (url, pid):
            rows["authd ASGI middleware, repeated tokens (warm cache)"] = run(
                url, repeated, 2, 10, pid
            )
        with serve("pyjwt", env) as (url, pid):
            rows["PyJWT + PyJWKClient, repeated tokens"] = run(url, repeated, 2, 10, pid)
            rows["PyJWT + PyJWKClient, new tokens"] = run(url, fresh, 1, 5, pid)
        delays = revocation_delay(f"127.0.0.1:{port}", issuer, watch)
    finally:
        authd.terminate()
        authd.wait(10)

    unprotected = float(rows["unprotected"]["rps"])  # type: ignore[arg-type]
    unprotected_cpu = rows["unprotected"].get("app_cpu_us")
    print(
        "| route (FastAPI, uvicorn, 1 core) | requests/s | of unprotected "
        "| p50 µs | p99 µs | non-200 | app CPU µs/request | of unprotected, by CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        ratio = float(row["rps"]) / unprotected  # type: ignore[arg-type]
        cpu = row.get("app_cpu_us")
        by_cpu = (
            f"{float(unprotected_cpu) / float(cpu):.2f}"  # type: ignore[arg-type]
            if cpu and unprotected_cpu
            else "-"
        )
        print(
            f"| {name} | {row['rps']} | {ratio:.2f} | {row['p50_us']} | {row['p99_us']} "
            f"| {row['non_200']} | {cpu if cpu is not None else '-'} | {by_cpu} |"
        )
    print(
        f"\nrevocation to refusal by the cache (n={delays['n']}): after RevokeSession answered "
        f"p50 {delays['answered_p50_us']} µs, p99 {delays['answered_p99_us']} µs; after it "
        f"was sent p50 {delays['sent_p50_us']} µs, p99 {delays['sent_p99_us']} µs"
    )
    print(json.dumps({"rows": rows, "revocation_delay": delays}))


def revocation_delay(
    target: str, issuer: BenchIssuer, watch: str, trials: int = 200
) -> dict[str, int]:
    """Each trial: a token of a new subject cached, then the subject revoked;
    timed until the cache stops answering for the token."""
    client = AuthClient(target, watch_token=watch)
    revoker = AuthClient(target, cache=None)
    assert client.wait_for_cache(10)
    after_sent: list[float] = []
    after_answered: list[float] = []
    for i in range(trials):
        sub = f"auth0|revoked-{i}-{time.time_ns()}"
        token = issuer.token(sub=sub)
        client.verify_token(token)
        assert client.cached(token) is not None
        sent = time.perf_counter()
        revoker.revoke_session(user_id=sub, service_token=watch)
        answered = time.perf_counter()
        while client.cached(token) is not None:
            if time.perf_counter() - sent > 10:
                raise AssertionError("the cache still answered 10 s after the revocation")
        refused = time.perf_counter()
        after_sent.append(refused - sent)
        after_answered.append(max(0.0, refused - answered))
    client.close()

    def pct(values: list[float], p: float) -> int:
        values = sorted(values)
        return int(values[min(len(values) - 1, int(p * len(values)))] * 1e6)

    return {
        "n": trials,
        "answered_p50_us": pct(after_answered, 0.5),
        "answered_p99_us": pct(after_answered, 0.99),
        "sent_p50_us": pct(after_sent, 0.5),
        "sent_p99_us": pct(after_sent, 0.99),
    }


if __name__ == "__main__":
    main()
