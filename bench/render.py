#!/usr/bin/env python3
"""Renders bench/run's results as markdown: render.py META CRITERION_JSON RUNS_JSONL."""

import json
import sys


def load(meta_path, criterion_path, runs_path):
    meta = {}
    for line in open(meta_path):
        key, _, value = line.rstrip("\n").partition("=")
        meta[key] = value
    criterion = json.load(open(criterion_path))
    runs = [json.loads(line) for line in open(runs_path) if line.strip()]
    return meta, criterion, runs


def mb(kb):
    return f"{kb / 1024:.0f}" if kb else "—"


def num(x, digits=0):
    if x is None:
        return "—"
    return f"{x:,.{digits}f}"


def main():
    meta, criterion, runs = load(*sys.argv[1:4])
    out = []
    w = out.append
    w("# authd benchmark suite — latest run")
    w("")
    if meta.get("quick") == "1":
        w("**Quick smoke run (`--quick`): short runs, few tokens — not figures to quote.**")
        w("")
    w(f"- Command: `{meta['command'].strip()}`")
    w(f"- Date: {meta['date']}; commit {meta['commit']}")
    w(f"- Machine: {meta['machine']}")
    w(f"- Versions: {meta['rustc']}; {meta['crates']}; Node.js {meta['node']}; "
      f"{meta['npm_packages']}; h2load: {meta['h2load'] or 'none'}")
    w(f"- Load: {meta['concurrency']} requests in flight, warm-up {meta['warmup']}, then "
      f"{meta['duration']} s measured; gRPC over {meta['connections']} HTTP/2 connections, "
      f"HTTP/1.1 over one keep-alive connection per request in flight. Server pinned to cpu 0, "
      f"`loadgen` (one thread) to cpu 1, except where the server has cpus 0,1 (then `loadgen` "
      f"shares them). Tokens minted: {meta['tokens']}.")
    if meta.get("note"):
        w(f"- Note: {meta['note']}")
    w("")

    loadgen = [r for r in runs if r.get("tool") == "loadgen"]
    if loadgen:
        w("| subject | server cpus | workload | req/s | server CPU µs/req | p50 µs | p99 µs | p99.9 µs | errors | RSS idle MB | RSS after MB | peak MB |")
        w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in loadgen:
            lat = r.get("latency_us", {})
            errors = r.get("errors", 0)
            err = str(errors)
            if errors:
                err = "**" + err + "** " + ", ".join(f"{k} {v}" for k, v in r.get("errors_by_code", {}).items())
            workload = r["workload"]
            if r.get("tokens_exhausted"):
                workload += f" — tokens ran out after {r['duration_s']} s"
            w(f"| {r['subject']} | {r['server_cores']} | {workload} | {num(r.get('throughput_rps'))} | "
              f"{r.get('server_cpu_us_per_request') or '–'} | {num(lat.get('p50'))} | {num(lat.get('p99'))} | {num(lat.get('p999'))} | {err} | "
              f"{mb(r.get('rss_idle_kb'))} | {mb(r.get('rss_after_kb'))} | {mb(r.get('rss_peak_kb'))} |")
        w("")
        w("Server CPU: the server's user + system time over the measured window per request "
          "(whatever bounds the throughput, the load generator included). "
          "RSS idle: after start-up and one verified request (key set loaded). RSS after: at the "
          "end of the run (caches full). Peak: the process's VmHWM. Errors: any non-OK gRPC "
          "status or non-200 HTTP answer, by code.")
        w("")

    h2 = [r for r in runs if r.get("tool") == "h2load"]
    if h2:
        w("Second opinion, h2load (4 connections × 8 streams, one request body; h2load counts "
          "every HTTP 200 as success, so `loadgen` checked the gRPC statuses of 1,000 calls "
          "right after):")
        w("")
        w("| subject | workload | req/s | mean µs | max µs | h2load 2xx | errors (h2load + gRPC check) |")
        w("|---|---|---:|---:|---:|---:|---:|")
        for r in h2:
            lat = r.get("latency_us", {})
            w(f"| {r['subject']} | {r['workload']} | {num(r.get('throughput_rps'))} | "
              f"{num(lat.get('mean'))} | {num(lat.get('max'))} | {num(r.get('h2load_2xx'))} | "
              f"{r.get('errors')} |")
        w("")

    if criterion:
        w("Ceilings (criterion medians, one thread pinned to cpu 0), measured before "
          "and after the servers; the ratios use the faster of the two:")
        w("")
        w("| bench | before µs | after µs | kept µs | per second |")
        w("|---|---:|---:|---:|---:|")
        for name, (before, after) in sorted(criterion.items()):
            kept = min(before, after)
            w(f"| `{name}` | {before / 1000:.2f} | {after / 1000:.2f} | {kept / 1000:.2f} | "
              f"{1e9 / kept:,.0f} |")
        w("")

    # Ratios the performance issue sets targets on, where both sides ran.
    rps = {r["subject"]: r.get("throughput_rps") for r in loadgen if not r.get("errors")}
    ratios = []

    def ratio(label, a, b, target):
        if a and b:
            ratios.append(f"| {label} | {a / b:.2f} | {target} |")

    for alg in ("RS256", "ES256"):
        sig = min(criterion.get(f"{alg}/signature_only") or [0]) or None
        ratio(f"authd new {alg} / signature-only ceiling", rps.get(f"authd-new-{alg.lower()}"),
              1e9 / sig if sig else None, "≥ 0.55" if alg == "RS256" else "≥ 0.65")
    ratio("authd new RS256 / express-jwt", rps.get("authd-new-rs256"), rps.get("express-jwt-rs256"), "≥ 8")
    ratio("authd new RS256 / grpc-js + jose RS256", rps.get("authd-new-rs256"), rps.get("grpc-jose-rs256"), "≥ 3")
    ratio("authd new ES256 / grpc-js + jose ES256", rps.get("authd-new-es256"), rps.get("grpc-jose-es256"), "—")
    ratio("authd repeated RS256 / do-nothing tonic", rps.get("authd-repeat-rs256"), rps.get("noop"), "≥ 0.80")
    ratio("Check new RS256 / VerifyToken new RS256", rps.get("authd-check-new-rs256"),
          rps.get("authd-new-rs256"), "—")
    ratio("Check repeated RS256 / VerifyToken repeated RS256", rps.get("authd-check-repeat-rs256"),
          rps.get("authd-repeat-rs256"), "—")
    ratio("repeated RS256 with 100 idle watchers / without", rps.get("authd-repeat-rs256-100watchers"),
          rps.get("authd-repeat-rs256"), "—")
    if ratios:
        w("Ratios (same run; runs with errors left out):")
        w("")
        w("| ratio | value | issue's target |")
        w("|---|---:|---|")
        out.extend(ratios)
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
