"""authd through the official Connect client for Python (connectrpc).

VerifyToken for each token given, then optionally WatchRevocations until its
first heartbeat. One JSON line per call on stdout, read by
tests/tests/connect_clients.rs; the lines have the fields of
tests/connect-clients/node/verify.mjs's.

Usage: python verify.py --base-url URL [--protocol connect|connect-proto|grpcweb|grpc]
         [--http 1.1|2] [--ca FILE] [--cert FILE --key FILE]
         [--authorization TOKEN] [--gzip] [--watch] TOKEN...

Requests are sent uncompressed unless --gzip (connectrpc's default is gzip;
authd reads gzip too; the test of it asks for it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent / "gen"))

from auth.v1.auth_connect import AuthServiceClientSync  # noqa: E402
from auth.v1.auth_pb import VerifyTokenRequest, WatchRevocationsRequest  # noqa: E402
from connectrpc.codec import proto_binary_codec, proto_json_codec  # noqa: E402
from connectrpc.errors import ConnectError  # noqa: E402
from connectrpc.protocol import ProtocolType  # noqa: E402
from google.rpc.error_details_pb import ErrorInfo  # noqa: E402
from pyqwest import HTTPVersion, SyncClient, SyncHTTPTransport  # noqa: E402


def failure(error: ConnectError) -> dict[str, Any]:
    """What an error says: its code, and authd's reason from its ErrorInfo."""
    info = next(
        (
            d.value(ErrorInfo)
            for d in error.details
            if d.type_name == "google.rpc.ErrorInfo"
        ),
        None,
    )
    return {
        "ok": False,
        "code": error.code.value,
        "message": error.message,
        "reason": info.reason if info else None,
        "domain": info.domain if info else None,
        "metadata": dict(info.metadata) if info else {},
        "raw_details": [{"type": d.type_name} for d in error.details],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument(
        "--protocol",
        default="connect",
        choices=["connect", "connect-proto", "grpcweb", "grpc"],
    )
    parser.add_argument("--http", default="1.1", choices=["1.1", "2"])
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--authorization")
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--watch", action="store_true")
    parser.add_argument("--timeout-ms", type=int, default=10_000)
    parser.add_argument("tokens", nargs="*")
    args = parser.parse_args()

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    transport = SyncHTTPTransport(
        tls_ca_cert=read(args.ca),
        tls_cert=read(args.cert),
        tls_key=read(args.key),
        http_version=HTTPVersion.HTTP2 if args.http == "2" else HTTPVersion.HTTP1,
    )
    protocol = {
        "connect": ProtocolType.CONNECT,
        "connect-proto": ProtocolType.CONNECT,
        "grpcweb": ProtocolType.GRPC_WEB,
        "grpc": ProtocolType.GRPC,
    }[args.protocol]
    codec = proto_json_codec() if args.protocol == "connect" else proto_binary_codec()
    headers = (
        {"authorization": f"Bearer {args.authorization}"} if args.authorization else {}
    )
    extra: dict[str, Any] = {} if args.gzip else {"send_compression": None}

    def emit(line: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    http = SyncClient(transport)
    with AuthServiceClientSync(
        args.base_url,
        codec=codec,
        protocol=protocol,
        http_client=http,
        timeout_ms=args.timeout_ms,
        **extra,
    ) as client:
        for i, token in enumerate(args.tokens):
            try:
                answer = client.verify_token(
                    VerifyTokenRequest(token=token), headers=headers
                )
                emit(
                    {
                        "call": "verify",
                        "token": i,
                        "ok": True,
                        "subject": answer.subject,
                        "issuer": answer.issuer,
                        "scopes": list(answer.scopes),
                    }
                )
            except ConnectError as error:
                emit({"call": "verify", "token": i, **failure(error)})

        if args.watch:
            seen: dict[str, Any] = {
                "call": "watch",
                "ok": True,
                "heartbeats": 0,
                "revocations": 0,
                "cursor": "",
            }
            try:
                stream = client.watch_revocations(
                    WatchRevocationsRequest(cursor=""), headers=headers
                )
                for message in stream:
                    seen["cursor"] = message.cursor
                    event = message.event
                    if event is not None and event.field == "revocation":
                        seen["revocations"] += 1
                    elif event is not None and event.field == "heartbeat":
                        seen["heartbeats"] += 1
                        seen["interval_ms"] = event.value.interval_ms
                        break
                emit(seen)
            except ConnectError as error:
                emit({**seen, **failure(error)})


if __name__ == "__main__":
    main()
