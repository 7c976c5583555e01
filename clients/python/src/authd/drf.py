"""A Django REST framework authentication class verifying bearer tokens with
authd::

    # settings.py: AUTHD_CLIENT = authd.AuthClient("authd.internal:50051")
    from rest_framework.views import APIView
    from authd.drf import AuthdAuthentication

    class Orders(APIView):
        authentication_classes = [AuthdAuthentication]
        permission_classes = [IsAuthenticated]
        required_scopes = ["read:orders"]   # checked by authd

        def get(self, request):
            return Response({"user": request.auth.subject})  # a VerifiedToken

``request.user`` is an `AuthdUser` and ``request.auth`` the `VerifiedToken`.
No ``Authorization`` header: not authenticated (with ``IsAuthenticated``:
401 ``WWW-Authenticate: Bearer``). Refused: 401 ``invalid_token``; a
missing scope: 403 ``insufficient_scope``; authd unreachable: 503.
The request's TLS client certificate goes to authd for certificate-bound
tokens, read as `authd.django` reads it (a view's ``client_cert_header``, else
``settings.AUTHD_CLIENT_CERT_HEADER``).
Needs the ``drf`` extra: ``pip install 'authd-client[drf]'``.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from .django import cert_header, client_certificate, configured_client
from .middleware import Refusal, credential, presented, verify
from .types import VerifiedToken


class AuthdUser:
    """The user of a request authd verified: its subject, and the token."""

    is_authenticated = True
    is_anonymous = False
    is_active = True

    def __init__(self, token: VerifiedToken) -> None:
        self.token = token
        self.pk = self.id = self.username = token.subject

    def __str__(self) -> str:
        return self.token.subject


class InsufficientScope(exceptions.PermissionDenied):
    """403 with RFC 6750's ``insufficient_scope`` challenge."""

    def __init__(self, challenge: str | None) -> None:
        super().__init__("insufficient_scope")
        self.auth_header = challenge


class AuthdUnavailable(exceptions.APIException):
    """authd could not be reached or could not decide: refused, 503."""

    status_code = 503
    default_detail = "authd is unavailable"
    default_code = "temporarily_unavailable"


class AuthdAuthentication(BaseAuthentication):
    """Authenticates with authd; the view's ``required_scopes`` are required."""

    def authenticate(self, request: Request) -> tuple[AuthdUser, VerifiedToken] | None:
        meta = request._request.META
        authorization = meta.get("HTTP_AUTHORIZATION")
        if credential(authorization) is None:
            return None
        view = (getattr(request, "parser_context", None) or {}).get("view")
        scopes = tuple(getattr(view, "required_scopes", ()))
        p = presented(
            authorization,
            meta.get("HTTP_DPOP"),
            request.method or "GET",
            request._request.path,
            getattr(view, "dpop_origin", None),
        )
        assert p is not None
        header = getattr(view, "client_cert_header", None) or cert_header()
        try:
            p = p.with_certificate(client_certificate(request._request, header))
            token = verify(configured_client(), p, scopes)
        except Refusal as refused:
            if refused.status == 503:
                raise AuthdUnavailable() from None
            if refused.status == 400 and refused.error is None:
                # The certificate a proxy forwarded cannot be read.
                raise exceptions.ParseError(refused.code or "invalid_request") from None
            if refused.status == 403:
                raise InsufficientScope(refused.challenge) from None
            request._authd_challenge = refused.challenge  # type: ignore[attr-defined]
            raise exceptions.AuthenticationFailed(refused.code or "invalid_token") from None
        return AuthdUser(token), token

    def authenticate_header(self, request: Any) -> str:
        challenge = getattr(request, "_authd_challenge", None)
        return challenge if isinstance(challenge, str) else "Bearer"
