"""Instructions a request costs the app, counted by callgrind: the figure
that does not move with the machine's load, where requests/s and CPU time
move by tens of per cent within minutes on a shared machine.

Each row's app (`bench.app`, the same ``GET /orders`` as `bench.bench`) runs
under ``valgrind --tool=callgrind`` in uvicorn, as the benchmark serves it;
one keep-alive HTTP/1.1 connection sends it WARMUP requests, then the
counters are zeroed (``callgrind_control -z``), REQUESTS more are sent and
counted (``callgrind_control -d``). Two figures a row, each divided by the
requests counted: the main thread (uvicorn's event loop: the server, the
framework, the package) and the whole process (with grpcio's threads and
the thread reading the revocation stream, whose heartbeats fall per second,
not per request). Rows: unprotected (no token, and the token sent but not read), the
ASGI middleware and the ``Authorize`` dependency with a warm cache (one
token repeated).

    python -m bench.instructions    # from clients/python; AUTHD_BIN; valgrind

BENCH_REQUESTS (2000) and BENCH_WARMUP (300) set the counts. BENCH_SERVER:
``h11`` (the default: uvicorn's pure-Python parser and asyncio's loop, what
``pip install uvicorn`` gives) or ``standard`` (httptools and uvloop, what
``uvicorn[standard]`` and ``fastapi[standard]`` give; installed separately).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .bench import HERE, authd_serving, free_port, uvicorn, wait_ready
from .issuer import BenchIssuer

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "2000"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "300"))
SERVER = os.environ.get("BENCH_SERVER", "h11")
UVICORN = {
    "h11": ["--http", "h11", "--loop", "asyncio"],
    "standard": ["--http", "httptools", "--loop", "uvloop"],
}[SERVER]


def send(port: int, token: str | None, count: int) -> None:
    """``count`` GET /orders on one keep-alive connection; each must be 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    for _ in range(count):
        connection.request("GET", "/orders", headers=headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise SystemExit(f"GET /orders answered {answer.status}")
    connection.close()


def count(kind: str, token: str | None, env: dict[str, str], work: Path) -> tuple[float, float]:
    """Instructions per request of the app of ``kind`` under callgrind."""
    port = free_port()
    out = work / f"callgrind.{kind}.{'token' if token else 'none'}"
    app = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}.%p",
            *uvicorn(port, *UVICORN),
        ],
        cwd=HERE.parent,
        env={**env, "BENCH_ROUTE": kind},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(port, 300)
        send(port, token, WARMUP)
        subprocess.run(["callgrind_control", "-z", str(app.pid)], check=True, capture_output=True)
        send(port, token, REQUESTS)
        subprocess.run(["callgrind_control", "-d", str(app.pid)], check=True, capture_output=True)
        # The dump after zeroing: one file per thread,
        # `<out>.<pid>.<dump>-<thread>`; the main thread is 01.
        dumps = list(work.glob(f"{out.name}.{app.pid}.*-*"))
        last = max(int(p.name.rsplit(".", 1)[1].split("-")[0]) for p in dumps)
        main = every = 0
        for path in dumps:
            dump, thread = path.name.rsplit(".", 1)[1].split("-")
            if int(dump) != last:
                continue
            found = re.search(r"^(?:summary|totals): (\d+)", path.read_text(), re.M)
            assert found, f"no totals in {path}"
            every += int(found.group(1))
            if thread == "01":
                main = int(found.group(1))
        assert main, f"no main thread among {dumps}"
        return main / REQUESTS, every / REQUESTS
    finally:
        app.terminate()
        app.wait(60)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="authd-py-instructions-"))
    issuer = BenchIssuer()
    token = issuer.token(sub="auth0|counted")
    watch = issuer.token(sub="bench@clients", permissions=["revocations:watch"])
    with authd_serving(work, issuer, watch) as (_, env):
        rows = [
            ("unprotected", "unprotected", None),
            ("unprotected, the token sent (not read)", "unprotected", token),
            ("ASGI middleware, warm cache", "mw", token),
            ("`Authorize` dependency, warm cache", "authd", token),
        ]
        figures: dict[str, tuple[float, float]] = {}
        for name, kind, sent in rows:
            started = time.monotonic()
            figures[name] = count(kind, sent, env, work)
            print(
                f"{name}: {figures[name][0]:,.0f} instructions a request on the main thread, "
                f"{figures[name][1]:,.0f} in all ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
            )
    base = figures["unprotected"]
    print(
        f"\nuvicorn {' '.join(UVICORN)}; {REQUESTS} requests after {WARMUP}, "
        "one keep-alive connection, callgrind\n"
    )
    print(
        "| route (FastAPI, uvicorn) | main thread | of unprotected "
        "| whole process | of unprotected |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, (main, every) in figures.items():
        print(
            f"| {name} | {main:,.0f} | {base[0] / main:.2f} "
            f"| {every:,.0f} | {base[1] / every:.2f} |"
        )
    print(json.dumps({"server": SERVER, "requests": REQUESTS, "warmup": WARMUP, "rows": figures}))


if __name__ == "__main__":
    main()
