"""The package's reasons are the protocol's: derived from the generated
``ErrorReason`` enum, so that a reason added to proto/ and not here fails."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from authd import AuthError, ErrorReason
from authd._gen.auth.v1 import auth_pb2


def test_every_protocol_reason_is_a_member_and_nothing_else_is() -> None:
    protocol = {
        name.removeprefix("ERROR_REASON_")
        for name in auth_pb2.ErrorReason.DESCRIPTOR.values_by_name
        if name != "ERROR_REASON_UNSPECIFIED"
    }
    assert len(protocol) >= 36
    assert {member.value for member in ErrorReason} == protocol


def trailers(domain: str, reason: str) -> tuple[tuple[str, bytes], ...]:
    info = error_details_pb2.ErrorInfo(domain=domain, reason=reason, metadata={"k": "v"})
    status = status_pb2.Status(code=16, message="m")
    status.details.add().Pack(info)
    return (("grpc-status-details-bin", status.SerializeToString()),)


def test_reason_and_metadata_come_from_error_info() -> None:
    error = AuthError.from_status(
        grpc.StatusCode.UNAUTHENTICATED, "m", trailers("authd", "TOKEN_EXPIRED")
    )
    assert error.reason is ErrorReason.TOKEN_EXPIRED
    assert error.reason == "TOKEN_EXPIRED"
    assert error.metadata == {"k": "v"}


def test_unknown_reason_is_kept_as_sent_and_foreign_domains_are_ignored() -> None:
    newer = AuthError.from_status(grpc.StatusCode.UNAUTHENTICATED, "", trailers("authd", "NEW"))
    assert newer.reason == "NEW" and not isinstance(newer.reason, ErrorReason)
    foreign = AuthError.from_status(
        grpc.StatusCode.UNAUTHENTICATED, "", trailers("example.com", "TOKEN_EXPIRED")
    )
    assert foreign.reason is None and foreign.metadata == {}
