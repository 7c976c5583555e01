"""Django middleware protecting every view with authd (for Django REST
framework views, see `authd.drf`). In ``settings.py``::

    import authd
    AUTHD_CLIENT = authd.AuthClient("authd.internal:50051")  # channel made per worker
    AUTHD_RULES = authd.ScopeRules(["read:orders"]).public("/healthz")
    MIDDLEWARE = [..., "authd.django.AuthMiddleware"]

A verified request carries the `VerifiedToken` as ``request.authd_token``;
a refused one is answered here (see `authd.middleware`). Settings:
``AUTHD_CLIENT`` (an `authd.AuthClient`, required), ``AUTHD_RULES`` (a
`ScopeRules`; default: a verified token, no particular scope),
``AUTHD_DPOP_ORIGIN`` (for DPoP proofs' ``htu``), ``AUTHD_CLIENT_CERT_HEADER``
(the header a TLS-terminating proxy puts the client certificate in, e.g.
``"x-forwarded-client-cert"``; unset, the certificate is read as
`authd.wsgi` reads it from ``request.META``, or under ASGI from the scope's
TLS extension). The certificate goes to authd for certificate-bound tokens.
Needs the ``django`` extra: ``pip install 'authd-client[django]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

from . import asgi, wsgi
from .client import AuthClient
from .middleware import Refusal, ScopeRules, missing, presented, verify


def client_certificate(request: HttpRequest, header: str | None) -> bytes | None:
    """The request's TLS client certificate (DER): from ``header`` when one
    is configured, else from the WSGI environ (``request.META``) or, under
    ASGI, the scope's TLS extension. Raises `Refusal` (400) for one that
    cannot be read."""
    scope = getattr(request, "scope", None)
    if scope is not None and header is None:
        return asgi.client_certificate(scope, None, None)
    return wsgi.client_certificate(request.META, header)


def cert_header() -> str | None:
    """``settings.AUTHD_CLIENT_CERT_HEADER``."""
    header = getattr(settings, "AUTHD_CLIENT_CERT_HEADER", None)
    return header if isinstance(header, str) and header else None


def configured_client() -> AuthClient:
    """``settings.AUTHD_CLIENT``."""
    client = getattr(settings, "AUTHD_CLIENT", None)
    if not isinstance(client, AuthClient):
        raise ImproperlyConfigured("settings.AUTHD_CLIENT must be an authd.AuthClient")
    return client


def response(refused: Refusal) -> HttpResponse:
    """The Django response to a refusal."""
    answer = HttpResponse(refused.body(), status=refused.status, content_type="application/json")
    for name, value in refused.headers:
        answer[name] = value
    return answer


class AuthMiddleware:
    """Verifies the bearer token of every request with authd."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.client = configured_client()
        rules = getattr(settings, "AUTHD_RULES", None)
        self.rules = rules if isinstance(rules, ScopeRules) else ScopeRules()
        self.dpop_origin: str | None = getattr(settings, "AUTHD_DPOP_ORIGIN", None)
        self.client_cert_header = cert_header()

    def __call__(self, request: HttpRequest) -> Any:
        scopes = self.rules.access(request.path_info)
        if scopes is None:
            return self.get_response(request)
        p = presented(
            request.META.get("HTTP_AUTHORIZATION"),
            request.META.get("HTTP_DPOP"),
            request.method or "GET",
            request.path,
            self.dpop_origin,
        )
        try:
            if p is None:
                raise missing()
            p = p.with_certificate(client_certificate(request, self.client_cert_header))
            request.authd_token = verify(self.client, p, scopes)  # type: ignore[attr-defined]
        except Refusal as refused:
            return response(refused)
        return self.get_response(request)
