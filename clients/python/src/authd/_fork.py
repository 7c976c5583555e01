"""Fork safety: gRPC channels and threads do not survive ``fork`` (gunicorn
and uWSGI workers, multiprocessing). Each client makes its channel lazily in
the process that uses it and remembers that process's id; this hook, run
in the child right after a fork, resets the locks every client holds and
their caches, which then answer nothing until the child's own revocation
stream is live (so a cache hit needs no process check)."""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class Forkable(Protocol):
    def _after_fork(self) -> None: ...


_clients: weakref.WeakSet[Forkable] = weakref.WeakSet()


def track(client: Forkable) -> None:
    _clients.add(client)


def _reset() -> None:
    for client in list(_clients):
        client._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset)
