"""A loopback issuer for the benchmark: one RS256 key, its JWKS served over
HTTP, and tokens minted locally (the Node test issuer mints one per HTTP
call, too slow for pools of thousands)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

AUDIENCE = "https://api.authd.bench"


class BenchIssuer:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "bench-1"
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        self.jwks = json.dumps({"keys": [jwk]}).encode()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/.well-known/jwks.json"):
                    body = issuer.jwks
                elif self.path.startswith("/.well-known/openid-configuration"):
                    body = json.dumps(
                        {"issuer": issuer.url, "jwks_uri": issuer.url + ".well-known/jwks.json"}
                    ).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, sub: str = "auth0|bench", **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.url,
            "sub": sub,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 3600,
            "scope": "read:orders",
            "jti": uuid.uuid4().hex,
            **claims,
        }
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": self.kid})

    def config(self) -> str:
        return (
            f'[[issuers]]\nissuer = "{self.url}"\naudiences = ["{AUDIENCE}"]\n'
            f'algorithms = ["RS256"]\njwks_uri = "{self.url}.well-known/jwks.json"\n'
            "[watch]\nheartbeat_ms = 2000\n"
        )
