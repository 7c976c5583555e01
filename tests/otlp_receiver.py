"""An OTLP/gRPC trace receiver for tests/tests/metrics.rs, built from the
OpenTelemetry protos (PyPI opentelemetry-proto) and grpcio.

Usage: python tests/otlp_receiver.py
Prints `READY <port>` once listening on 127.0.0.1, then one JSON line per
span received: {"trace_id", "span_id", "parent_span_id", "name", "kind",
"attributes": {key: string value}}.
"""

import json
import signal
import sys
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    return str(getattr(any_value, kind)) if kind else ""


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        for resource_spans in request.resource_spans:
            resource = {
                a.key: value_of(a.value) for a in resource_spans.resource.attributes
            }
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    line = {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": span.kind,
                        "service": resource.get("service.name", ""),
                        "attributes": {a.key: value_of(a.value) for a in span.attributes},
                    }
                    print(json.dumps(line), flush=True)
        return trace_service_pb2.ExportTraceServiceResponse()


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"READY {port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.wait_for_termination()


if __name__ == "__main__":
    main()
