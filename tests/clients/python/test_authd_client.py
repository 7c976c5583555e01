"""A Python client of authd, tested against a live authd.

Stubs are generated from proto/ with grpcio-tools into a temporary directory
at test time, as a team would in its own build. The environment gives
AUTHD_ADDR (host:port) and ISSUER_URL (the test issuer, with its trailing
slash); tests/tests/other_languages.rs starts both and runs this file.
"""

import importlib
import json
import os
import sys
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from grpc_tools import protoc

PROTO = Path(__file__).resolve().parents[3] / "proto"
AUTHD_ADDR = os.environ["AUTHD_ADDR"]
ISSUER_URL = os.environ["ISSUER_URL"]


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """Generates auth/v1 stubs and imports them: (messages, grpc stubs)."""
    out = tmp_path_factory.mktemp("gen")
    well_known = str(resources.files("grpc_tools") / "_proto")
    code = protoc.main([
        "grpc_tools.protoc", f"-I{PROTO}", f"-I{well_known}",
        f"--python_out={out}", f"--grpc_python_out={out}", "auth/v1/auth.proto",
    ])
    assert code == 0, "protoc failed"
    sys.path.insert(0, str(out))
    return (importlib.import_module("auth.v1.auth_pb2"),
            importlib.import_module("auth.v1.auth_pb2_grpc"))


def open_channel():
    """Plaintext, or mutual TLS when AUTHD_TLS_CA (and AUTHD_TLS_CERT,
    AUTHD_TLS_KEY: the client certificate) name PEM files."""
    ca = os.environ.get("AUTHD_TLS_CA")
    if not ca:
        return grpc.insecure_channel(AUTHD_ADDR)
    read = lambda name: Path(os.environ[name]).read_bytes()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes(),
        private_key=read("AUTHD_TLS_KEY"),
        certificate_chain=read("AUTHD_TLS_CERT"),
    )
    return grpc.secure_channel(AUTHD_ADDR, credentials)


@pytest.fixture(scope="session")
def channel():
    with open_channel() as channel:
        yield channel


@pytest.fixture
def auth(pb, channel):
    return pb[1].AuthServiceStub(channel)


def issuer_post(path, form=None, body=None):
    """POSTs a form or a JSON body to the test issuer; returns its JSON answer."""
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers = {"content-type": "application/x-www-form-urlencoded"}
    else:
        data, headers = json.dumps(body).encode(), {"content-type": "application/json"}
    request = urllib.request.Request(ISSUER_URL + path, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def mint(**knobs):
    """An access token from the issuer's real token endpoint."""
    form = {"grant_type": "client_credentials", "client_id": "authd-test-client",
            "client_secret": "authd-test-secret", **knobs}
    return issuer_post("oauth/token", form=form)["access_token"]


def error_info(err):
    """The google.rpc.ErrorInfo of a failed call, from grpc-status-details-bin."""
    status = rpc_status.from_call(err)
    assert status is not None, "no grpc-status-details-bin trailer"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError(f"no ErrorInfo in {status}")


def test_verify_token_answers_the_claims(pb, auth):
    token = mint(scope="read:orders write:orders", sub="auth0|py-alice")
    answer = auth.VerifyToken(pb[0].VerifyTokenRequest(
        token=token, required_scopes=["read:orders"]))
    assert answer.subject == "auth0|py-alice"
    assert answer.issuer == ISSUER_URL
    assert list(answer.scopes) == ["read:orders", "write:orders"]
    assert answer.expires_at.seconds > 0


def test_expired_token_is_refused_with_its_reason(pb, auth):
    token = mint(expires_in="-120")
    with pytest.raises(grpc.RpcError) as refused:
        auth.VerifyToken(pb[0].VerifyTokenRequest(token=token))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    info = error_info(refused.value)
    assert (info.domain, info.reason) == ("authd", "TOKEN_EXPIRED")
    assert "expired_at" in info.metadata
    # The reason is also a value of the protocol's enum.
    assert pb[0].ErrorReason.Value("ERROR_REASON_" + info.reason) == 7


def test_missing_scope_is_permission_denied(pb, auth):
    token = mint(scope="read:orders")
    with pytest.raises(grpc.RpcError) as refused:
        auth.VerifyToken(pb[0].VerifyTokenRequest(
            token=token, required_scopes=["delete:orders"]))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(refused.value)
    assert info.reason == "INSUFFICIENT_SCOPE"
    assert info.metadata["missing"] == "delete:orders"


def test_health_reports_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service="auth.v1.AuthService"))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_get_profile_answers_the_callers_profile(pb, auth):
    # GetProfile: the storage issue has landed, so this asserts the real profile
    # (it asserted UNIMPLEMENTED / NOT_IMPLEMENTED before).
    issuer_post("__control/users/py-zoe",
                body={"name": "Zoë Python", "email": "zoe.py@example.com", "email_verified": True})
    token = mint(sub="auth0|py-zoe", scope="openid profile email")
    answer = auth.GetProfile(pb[0].GetProfileRequest(access_token=token))
    assert answer.profile.user_id == "auth0|py-zoe"
    assert answer.profile.name == "Zoë Python"
    assert answer.profile.email == "zoe.py@example.com"
    assert answer.profile.email_verified


def test_get_profile_refuses_a_bad_token(pb, auth):
    with pytest.raises(grpc.RpcError) as refused:
        auth.GetProfile(pb[0].GetProfileRequest(access_token="not-a-jwt"))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(refused.value).reason == "MALFORMED_TOKEN"
