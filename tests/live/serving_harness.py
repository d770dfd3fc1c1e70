"""A real ``transformers serve`` under ``opentelemetry-instrument``, and a real OTLP/HTTP trace
receiver, on loopback: shared by tests/live/test_serving.py and benchmarks/serving.py; not a test.

- :class:`OtlpReceiver`: an HTTP server on 127.0.0.1 that accepts OTLP/HTTP protobuf exports
  (``/v1/traces``; metrics and logs are accepted and dropped) and decodes them with the
  ``opentelemetry-proto`` messages the exporters encode them with.
- :class:`ServeProcess`: ``[opentelemetry-instrument] transformers serve <folder>`` on a free port,
  waited for on ``/health``, stopped by pid (SIGTERM, then SIGKILL after a timeout), its model process
  included.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if kind is None:
        return None
    return getattr(value, kind)


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived over OTLP."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: Mapping[str, Any]
    service: str


@dataclass
class OtlpReceiver:
    """An OTLP/HTTP (protobuf) receiver on 127.0.0.1; :attr:`spans` grows as exports arrive."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    port: int = 0
    _server: http.server.ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpReceiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path.rstrip("/").endswith("/v1/traces"):
                    receiver._add(body)
                    reply = ExportTraceServiceResponse().SerializeToString()
                else:
                    reply = b""
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            service = ""
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    service = str(_value(attribute.value))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=int(span.kind),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            service=service,
                        )
                    )
        with self._lock:
            self.spans.extend(spans)

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def wait_for(self, predicate: Any, timeout: float = 60.0) -> list[ReceivedSpan]:
        """The spans once ``predicate(spans)`` holds (the spans so far after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.snapshot()
            if predicate(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)


def _children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes (Linux ``/proc``), recursively."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found.append(int(child))
                found.extend(_children(int(child)))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie is as good as gone
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@dataclass
class ServeProcess:
    """``transformers serve`` on 127.0.0.1, optionally under ``opentelemetry-instrument``."""

    model_dir: Path
    continuous_batching: bool = False
    instrumented: bool = True
    otlp_endpoint: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _pids: set[int] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        serve = [_bin("transformers"), "serve", str(self.model_dir), "--host", "127.0.0.1"]
        serve += ["--port", str(self.port), "--log-level", "warning"]
        if self.continuous_batching:
            serve.append("--continuous-batching")
        return [_bin("opentelemetry-instrument"), *serve] if self.instrumented else serve

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "OMP_NUM_THREADS": "1",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "TQDM_DISABLE": "1",
                "OTEL_SERVICE_NAME": "corevital-serve",
                "OTEL_TRACES_EXPORTER": "otlp" if self.otlp_endpoint else "none",
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
            }
        )
        if self.otlp_endpoint:
            env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"{self.otlp_endpoint}/v1/traces"
        env.update(self.env)
        return env

    def start(self, timeout: float = 240.0) -> ServeProcess:
        """Start the server and wait until ``/health`` answers (or fail, stopping it)."""
        self.port = self.port or free_port()
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(),
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._pids.add(self.process.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"transformers serve exited with {self.process.returncode}: {self.log_tail()}"
                )
            self._pids.update(_children(self.process.pid))
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as reply,
            ):
                if reply.status == 200:
                    self._pids.update(_children(self.process.pid))
                    return self
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"transformers serve did not answer /health in {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server and every process it started (by pid), SIGKILL what is left after
        ``timeout`` seconds."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._pids.update(_children(self.process.pid))
        for pid in sorted(self._pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        while any(_alive(pid) for pid in self._pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self._pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self.process = None

    @contextlib.contextmanager
    def running(self) -> Iterator[ServeProcess]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
