"""The FastAPI benchmark (issue 20, item 4, Python half): one core for the
apps (uvicorn, one worker each, on cpu 0); the load generator and authd on
cpu 1. Rows: the same route (``GET /orders``, one app per row: `bench.app`)
unprotected, without and with the tokens in the requests; protected by
authd's dependency and by its ASGI middleware with a warm cache; protected
by PyJWT with PyJWKClient — with repeated tokens (100, cycled) and with new
tokens (each used once). Every app is started once and the rows are measured
in turns, BENCH_ROUNDS rounds (3), so that a machine whose speed drifts over
minutes moves every row alike: a row is the median of its rounds, its ratio
to the unprotected route the median of the same-round ratios. Besides
requests/s, each sample has the app's CPU time per answered request (from
/proc), which other load on the machine moves much less than it moves
requests/s. Then the revocation-to-refusal delay of the cache (p50/p99): a
subject revoked while its token is cached, timed until the cache stops
answering for it. Prints a markdown table and one JSON line. Run through
bench/run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from statistics import median

from authd import AuthClient

from .issuer import BenchIssuer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests.harness import free_port, port_open, wait_until  # noqa: E402

#: New tokens for one sample (1 s of warmup and 3 s measured, each token once).
NEW_TOKENS = int(os.environ.get("BENCH_NEW_TOKENS", "12000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
# How often the revocation-delay trial asks the cache again (seconds).
POLL = float(os.environ.get("BENCH_POLL", "0"))


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


def uvicorn(port: int, *options: str) -> list[str]:
    """The command that serves `bench.app`'s app (BENCH_ROUTE names it) on
    ``port``, run from this package's parent directory."""
    return [
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
        *options,
    ]


def wait_ready(port: int, timeout: float) -> None:
    """Until the app on ``port`` listens and its cache has caught up."""
    wait_until("the app listens", lambda: port_open(port), timeout)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=timeout) as ready:
        assert json.load(ready) == {"cache": True}, "the app's cache did not catch up"


@contextmanager
def serve(kind: str, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """uvicorn (one worker, on cpu 0) serving the app of ``kind``
    (`bench.app`), once its cache caught up: the URL of its ``/orders`` and
    its pid."""
    port = free_port()
    app = subprocess.Popen(
        ["taskset", "-c", "0", *uvicorn(port)],
        cwd=HERE.parent,
        env={**env, "BENCH_ROUTE": kind},
    )
    try:
        wait_ready(port, 30)
        yield f"http://127.0.0.1:{port}/orders", app.pid
    finally:
        app.terminate()
        app.wait(10)


@contextmanager
def authd_serving(
    work: Path, issuer: BenchIssuer, watch: str, prefix: Sequence[str] = ()
) -> Iterator[tuple[str, dict[str, str]]]:
    """authd (after ``prefix``, e.g. a ``taskset``) on a free port, trusting
    ``issuer``: its target, and the environment `bench.app.from_env` reads."""
    port = free_port()
    config = work / "authd.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[store]\npath = "{work}/data"\n' + issuer.config()
    )
    authd = subprocess.Popen(
        [*prefix, os.environ["AUTHD_BIN"], "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        wait_until("authd listens", lambda: port_open(port), 30)
        target = f"127.0.0.1:{port}"
        yield (
            target,
            {
                **os.environ,
                "AUTHD_TARGET": target,
                "WATCH_TOKEN": watch,
                "ISSUER_URL": issuer.url,
            },
        )
    finally:
        authd.terminate()
        authd.wait(10)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="authd-py-bench-"))
    issuer = BenchIssuer()
    repeated = work / "repeated.tokens"
    repeated.write_text("\n".join(issuer.token(sub=f"auth0|r{i}") for i in range(100)))
    fresh = []
    for turn in range(ROUNDS):
        tokens = work / f"new-{turn}.tokens"
        tokens.write_text(
            "\n".join(issuer.token(sub=f"auth0|new-{turn}-{i}") for i in range(NEW_TOKENS))
        )
        fresh.append(tokens)
    watch = issuer.token(sub="bench@clients", permissions=["revocations:watch", "sessions:revoke"])

    print(f"minted {ROUNDS} sets of {NEW_TOKENS} new tokens", file=sys.stderr)
    with authd_serving(work, issuer, watch, ["taskset", "-c", "1"]) as (target, env):
        # (row, app, tokens: None, a file, or one file per round, duration)
        plan: list[tuple[str, str, Path | list[Path] | None, float]] = [
            ("unprotected", "unprotected", None, 5),
            ("unprotected, the same tokens sent (not read)", "unprotected", repeated, 5),
            ("authd, repeated tokens (warm cache)", "authd", repeated, 5),
            ("authd ASGI middleware, repeated tokens (warm cache)", "mw", repeated, 5),
            ("PyJWT + PyJWKClient, repeated tokens", "pyjwt", repeated, 5),
            ("authd, new tokens", "authd", fresh, 3),
            ("PyJWT + PyJWKClient, new tokens", "pyjwt", fresh, 3),
        ]
        samples: dict[str, list[dict[str, object]]] = {row: [] for row, *_ in plan}
        with ExitStack() as apps:
            served = {
                kind: apps.enter_context(serve(kind, env))
                for kind in ("unprotected", "authd", "mw", "pyjwt")
            }
            for turn in range(ROUNDS):
                for row, kind, tokens, duration in plan:
                    url, pid = served[kind]
                    sent = tokens[turn] if isinstance(tokens, list) else tokens
                    samples[row].append(run(url, sent, 1, duration, pid))
        delays = revocation_delay(target, issuer, watch)

    base = samples["unprotected"]

    def ratios(row: str, key: str, invert: bool = False) -> str:
        values = []
        for mine, theirs in zip(samples[row], base, strict=True):
            a, b = mine.get(key), theirs.get(key)
            if a and b:
                values.append(float(b) / float(a) if invert else float(a) / float(b))  # type: ignore[arg-type]
        return f"{median(values):.2f}" if values else "-"

    print(
        f"{ROUNDS} rounds, the rows in turns; repeated: 5 s a sample, new: 3 s "
        "(each after 1 s of warmup)\n"
    )
    print(
        "| route (FastAPI, uvicorn, 1 core) | requests/s | of unprotected "
        "| p99 µs | non-200 | app CPU µs/request (rounds) | of unprotected, by CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows: dict[str, dict[str, object]] = {}
    for name, taken in samples.items():
        rps = median(float(t["rps"]) for t in taken)  # type: ignore[arg-type]
        cpus = [float(t["app_cpu_us"]) for t in taken if "app_cpu_us" in t]  # type: ignore[arg-type]
        cpu = f"{median(cpus):.1f} ({', '.join(f'{c:.1f}' for c in cpus)})" if cpus else "-"
        p99 = median(float(t["p99_us"]) for t in taken)  # type: ignore[arg-type]
        bad = sum(int(t["non_200"]) for t in taken)  # type: ignore[call-overload]
        new = "new tokens" in name
        by_rps = "-" if new else ratios(name, "rps")
        by_cpu = "-" if new else ratios(name, "app_cpu_us", invert=True)
        print(f"| {name} | {rps:.0f} | {by_rps} | {p99:.0f} | {bad} | {cpu} | {by_cpu} |")
        rows[name] = {"rps": rps, "app_cpu_us": median(cpus) if cpus else None, "samples": taken}
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
            # Poll as a serving app would run: the GIL released between
            # requests, so the watcher thread applies the revocation when it
            # arrives. A loop that never sleeps holds the GIL, and the
            # watcher waits out the interpreter's switch interval (5 ms).
            time.sleep(POLL)
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
