"""moto's DynamoDB-compatible server, handling one request at a time.

Usage: python tests/moto_server.py HOST PORT

moto's own `moto_server` is threaded, and its conditional writes are not
atomic across threads: two PutItem calls with the same `version = :v`
condition can both succeed under load, which real DynamoDB never allows.
authd's no-lost-update guarantee rests on that atomicity, so the tests run
moto's unchanged application behind a lock that serialises requests.

It is served by waitress, not by werkzeug's development server: werkzeug
closes the connection after every response and starts a thread for each
new one, so under load (the soak: ~100 store calls a second beside a busy
driver) its accept loop fell behind, its listen queue overflowed, and
dropped SYNs came back after 1 s and 3 s of TCP retransmission — store calls
of seconds that authd rightly reported as STORE_UNAVAILABLE. waitress keeps
connections alive and serves them from a fixed pool of threads.
"""

import logging
import signal
import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from waitress import serve


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialised(environ, start_response):
        with lock:
            # Produce the whole body inside the lock: the operation is done
            # when the response exists.
            return list(app(environ, start_response))

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    logging.basicConfig(level=logging.INFO, format="moto_server: %(message)s")
    print(f"moto_server: serving on http://{host}:{port}", flush=True)
    serve(
        serialised,
        host=host,
        port=port,
        threads=8,
        backlog=4096,
        # authd's SDK and the tests' clients keep connections open.
        connection_limit=4096,
        asyncore_use_poll=True,
        ident=None,
    )


if __name__ == "__main__":
    main()
