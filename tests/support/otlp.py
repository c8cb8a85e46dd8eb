"""A collector's OTLP/HTTP traces endpoint on loopback that keeps what it is sent (tests and
benchmarks point `OTEL_EXPORTER_OTLP_ENDPOINT` at it)."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind) if kind is not None else None


def attributes_of(key_values: Any) -> dict[str, Any]:
    return {item.key: any_value(item.value) for item in key_values}


class OtlpReceiver:
    """Answers `POST /v1/traces` (protobuf) with 200 and keeps each body, decompressed."""

    def __init__(self, port: int = 0) -> None:
        self.bodies: list[bytes] = []
        self.wire_bytes = 0
        self.requests: list[tuple[str, str, str]] = []  # (method, path, content type)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                content_type = self.headers.get("Content-Type") or ""
                with receiver._lock:
                    receiver.requests.append(("POST", self.path, content_type))
                if self.path != "/v1/traces" or content_type != "application/x-protobuf":
                    self.send_error(404 if self.path != "/v1/traces" else 415)
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver._lock:
                    receiver.bodies.append(body)
                    receiver.wire_bytes += length
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def do_GET(self) -> None:
                with receiver._lock:
                    receiver.requests.append(("GET", self.path, ""))
                self.send_error(405)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def counts(self) -> dict[str, int]:
        """Export requests taken, their bytes on the wire, the spans in them, and bodies that
        did not decode."""
        with self._lock:
            bodies, wire_bytes = list(self.bodies), self.wire_bytes
        spans = undecoded = 0
        for body in bodies:
            try:
                export = ExportTraceServiceRequest.FromString(body)
            except Exception:
                undecoded += 1
                continue
            spans += sum(len(s.spans) for r in export.resource_spans for s in r.scope_spans)
        return {
            "requests": len(bodies),
            "bytes": wire_bytes,
            "spans": spans,
            "undecoded": undecoded,
        }

    def spans(self) -> list[dict[str, Any]]:
        """The spans received, flattened, each with its resource's attributes."""
        with self._lock:
            bodies = list(self.bodies)
        spans = []
        for body in bodies:
            for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
                resource = attributes_of(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        spans.append(
                            {
                                "name": span.name,
                                "span_id": span.span_id.hex(),
                                "parent_id": span.parent_span_id.hex() or None,
                                "attributes": attributes_of(span.attributes),
                                "resource": resource,
                            }
                        )
        return spans

    def wait_for_spans(self, call_sid: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Until the call's conversation span (the last to end) has arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.spans()
            if any(
                span["name"] == "conversation" and span["attributes"].get("call.id") == call_sid
                for span in spans
            ):
                time.sleep(0.5)  # anything exported in the same breath
                return self.spans()
            time.sleep(0.2)
        raise AssertionError(
            f"no conversation span for {call_sid} after {timeout}s; "
            f"requests: {self.requests[:5]}, spans: {[s['name'] for s in self.spans()]}"
        )
