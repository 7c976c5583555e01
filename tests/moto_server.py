"""moto's DynamoDB-compatible server, handling one request at a time.

Usage: python tests/moto_server.py HOST PORT

moto's own `moto_server` is threaded, and its conditional writes are not
atomic across threads: two PutItem calls with the same `version = :v`
condition can both succeed under load, which real DynamoDB never allows.
authd's no-lost-update guarantee rests on that atomicity, so the tests run
moto's unchanged application behind a lock that serialises requests.
Connections are still accepted concurrently.
"""

import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


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
    run_simple(host, port, serialised, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
