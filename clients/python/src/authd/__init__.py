"""authd's Python client: a typed client of ``auth.v1`` (sync here, asyncio in
`authd.aio`), framework middleware (`authd.fastapi`, `authd.asgi`,
`authd.wsgi`, `authd.django`, `authd.drf`) and the revocation-aware
verification cache (`authd.cache`).

- `AuthClient` (``client.py``), `authd.aio.AuthClient` (``aio.py``): every
  method, TLS and client certificates, deadlines, retries on ``UNAVAILABLE``.
- `AuthError`, `ErrorReason` (``errors.py``): the gRPC code and authd's reason
  from ``google.rpc.ErrorInfo``.
- `CacheConfig`, `CacheState` (``cache.py``, ``_revoked.py``, ``_watch.py``).
- `ScopeRules` and the RFC 6750 answers all middleware share (``middleware.py``).
- ``types.py``: `VerifiedToken`, sessions, profiles, device logins, `Secret`.
- ``_gen/``: the stubs generated from ``proto/`` (never edited).
"""

from ._common import DeviceLoginError, RetryPolicy, TlsConfig
from .cache import CacheConfig, CacheState
from .client import AuthClient
from .errors import AuthError, ErrorReason
from .middleware import ScopeRules
from .types import (
    DeviceLogin,
    DeviceLoginState,
    DevicePoll,
    NewSession,
    Profile,
    Refreshed,
    Secret,
    Session,
    TokenBinding,
    VerifiedToken,
)

__all__ = [
    "AuthClient",
    "AuthError",
    "CacheConfig",
    "CacheState",
    "DeviceLogin",
    "DeviceLoginError",
    "DeviceLoginState",
    "DevicePoll",
    "ErrorReason",
    "NewSession",
    "Profile",
    "Refreshed",
    "RetryPolicy",
    "ScopeRules",
    "Secret",
    "Session",
    "TlsConfig",
    "TokenBinding",
    "VerifiedToken",
]
