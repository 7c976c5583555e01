"""TLS and mutual TLS to authd: a client certificate from files, the server
name checked against authd's certificate; without a client certificate the
handshake is refused (UNAVAILABLE, and 503 from the middleware)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from authd import AuthClient, AuthError, RetryPolicy, TlsConfig

from .conftest import WATCH
from .harness import Authd, Issuer


def _certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    san: list[x509.GeneralName],
    ca: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A CA, authd's certificate (localhost, 127.0.0.1) and a workload's (a SPIFFE ID)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test CA", ca_key, None, [], ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        "authd",
        server_key,
        (ca, ca_key),
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate(
        "py", client_key, (ca, ca_key), [x509.UniformResourceIdentifier("spiffe://test/ns/py")]
    )
    for name, data in {
        "ca.pem": _pem(ca),
        "server.pem": _pem(server),
        "server.key": _key_pem(server_key),
        "client.pem": _pem(client),
        "client.key": _key_pem(client_key),
    }.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.fixture
def tls_authd(issuer: Issuer, pki: Path) -> Iterator[Authd]:
    server = Authd(
        issuer.config(WATCH)
        + f'[server.tls]\ncert_file = "{pki}/server.pem"\nkey_file = "{pki}/server.key"\n'
        f'client_ca_file = "{pki}/ca.pem"\n'
    )
    yield server
    server.close()


def test_mutual_tls_from_files(tls_authd: Authd, issuer: Issuer, pki: Path) -> None:
    tls = TlsConfig.from_files(
        ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key", server_name="localhost"
    )
    client = AuthClient(tls_authd.target, tls=tls, cache=None)
    assert client.verify_token(issuer.token(sub="auth0|tls")).subject == "auth0|tls"
    client.close()


def test_without_a_client_certificate_the_handshake_is_refused(
    tls_authd: Authd, issuer: Issuer, pki: Path
) -> None:
    tls = TlsConfig.from_files(ca=pki / "ca.pem", server_name="localhost")
    client = AuthClient(tls_authd.target, tls=tls, cache=None, retry=RetryPolicy.none())
    with pytest.raises(AuthError) as refused:
        client.verify_token(issuer.token())
    assert refused.value.code is grpc.StatusCode.UNAVAILABLE
    client.close()
