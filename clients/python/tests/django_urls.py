"""The Django and DRF views the framework tests call."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from authd import VerifiedToken
from authd.drf import AuthdAuthentication


def orders(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"subject": request.authd_token.subject})  # type: ignore[attr-defined]


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


class Orders(APIView):
    authentication_classes = [AuthdAuthentication]
    permission_classes = [IsAuthenticated]
    required_scopes = ["read:orders"]

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        token = request.auth
        assert isinstance(token, VerifiedToken)
        return Response({"subject": token.subject})


class Bound(Orders):
    """Any verified token (the certificate-bound tests' tokens hold no scope)."""

    required_scopes: list[str] = []


urlpatterns = [
    path("orders", orders),
    path("bound", orders),
    path("healthz", healthz),
    path("api/orders", Orders.as_view()),
    path("api/bound", Bound.as_view()),
]
