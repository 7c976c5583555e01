"""A small HTTP/1.1 load generator: ``--connections`` keep-alive connections,
one request in flight on each, ``GET PATH`` with ``Authorization: Bearer``
cycling over the tokens in ``--tokens`` (one per line); counts 200 answers
after ``--warmup`` seconds for ``--duration`` seconds and prints one JSON
line (requests/s, p50/p99 latency in µs, non-200 count)."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from pathlib import Path


async def worker(
    host: str,
    port: int,
    requests: itertools.cycle[bytes],
    start: float,
    end: float,
    latencies: list[float],
    failures: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    while True:
        sent = time.perf_counter()
        if sent >= end:
            break
        writer.write(next(requests))
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await reader.readexactly(length)
        done = time.perf_counter()
        if done >= start:
            if status == 200:
                latencies.append(done - sent)
            else:
                failures.append(status)
    writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT/path")
    parser.add_argument("--tokens", help="a file of tokens, one a line")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--duration", type=float, default=10)
    args = parser.parse_args()
    rest = args.url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    tokens = Path(args.tokens).read_text().split() if args.tokens else [""]
    requests = itertools.cycle(
        [
            (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\n"
                + (f"Authorization: Bearer {t}\r\n" if t else "")
                + "\r\n"
            ).encode()
            for t in tokens
        ]
    )
    start = time.perf_counter() + args.warmup
    end = start + args.duration
    latencies: list[float] = []
    failures: list[int] = []
    await asyncio.gather(
        *(
            worker(host, int(port), requests, start, end, latencies, failures)
            for _ in range(args.connections)
        )
    )
    latencies.sort()

    def pct(p: float) -> int:
        return int(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e6)

    print(
        json.dumps(
            {
                "rps": round(len(latencies) / args.duration),
                "p50_us": pct(0.5) if latencies else None,
                "p99_us": pct(0.99) if latencies else None,
                "non_200": len(failures),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
