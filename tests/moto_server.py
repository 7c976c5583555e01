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

One more change makes moto's costs DynamoDB's shape without changing its
answers: a Query on the table itself (no index) looks at the queried
partition's items only. moto 5.2.5 gathers and sorts every item of the
table for each such Query, so a query's cost grew with the whole table;
authd's revocation poll queries every second, and in the soak (whose table
only grows: moto does not expire items) moto's answers slowed to seconds
after a few minutes. DynamoDB reads the partition alone.
"""

import logging
import signal
import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from waitress import serve


def query_the_partition_only() -> None:
    """Table.query without an index: the same code over the partition."""
    from moto.dynamodb.models.table import Table

    query = Table.query

    def partition_query(self, hash_key, *args, **kwargs):
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name is not None or hash_key is None or not self.range_key_attr:
            return query(self, hash_key, *args, **kwargs)
        partition = list(self.items.get(hash_key, {}).values())
        # Requests are serialised (below): no other request sees this.
        self.all_items = lambda: partition
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = partition_query


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    query_the_partition_only()
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
