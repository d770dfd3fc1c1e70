"""Servers and processes of the live tests (``tests/live/test_e2e_observability.py``); not a test.

Every process is started by the test, its output kept in a log file, stopped by its pid with a
timeout; every wait has a timeout.
"""

from __future__ import annotations

import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PHOENIX_REQUIREMENT = "arize-phoenix==20.26.1"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # a server still starting refuses connections
            last_error = error
        time.sleep(every)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s (last error: {last_error!r})")


def http_json(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


@dataclass
class Server:
    """A process this test started: stopped by its pid, its output kept in a log file."""

    name: str
    process: subprocess.Popen[Any]
    log: Path

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def start(
    name: str, command: list[str], log: Path, env: dict[str, str] | None = None, **kwargs: Any
) -> Server:
    handle = log.open("w")
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, **kwargs)
    handle.close()
    return Server(name, process, log)


# --- Phoenix ----------------------------------------------------------------------------------------


def phoenix_executable() -> Path:
    """Phoenix's ``phoenix`` command in its own venv (created and installed on first use, ~850 MB)."""
    venv = Path(os.environ.get("COREVITAL_PHOENIX_VENV", ROOT / ".tox" / "phoenix"))
    executable = venv / "bin" / "phoenix"
    marker = venv / "installed.txt"
    installed = marker.read_text().strip() if marker.exists() else ""
    if not executable.exists() or installed != PHOENIX_REQUIREMENT:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", PHOENIX_REQUIREMENT],
            check=True,
            timeout=1800,
        )
        marker.write_text(PHOENIX_REQUIREMENT + "\n")
    return executable


class Lines:
    """The lines a process prints, read in a thread so the test can wait with a timeout."""

    def __init__(self, stream: Any) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float, log: Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.lines.get(timeout=1) == text:
                    return
            except queue.Empty:
                continue
        raise TimeoutError(f"the app did not print {text!r} within {timeout} s\n{log()}")


@dataclass
class LiveRun:
    prometheus: str
    phoenix: str
    spans_file: Path
    started: float  # unix time just before the first generation round
    rounds: int
    notes: list[str] = field(default_factory=list)

    def prom(self, path: str, **params: str | list[str]) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        body = http_json(f"{self.prometheus}/api/v1/{path}?{query}")
        assert body["status"] == "success", body
        return body["data"]


def has_data(result: dict[str, Any]) -> bool:
    samples = result["result"]
    values = [float(s["value"][1]) for s in samples] if result["resultType"] == "vector" else []
    return bool(samples) and any(math.isfinite(v) for v in values)


def same_typed(sent: Any, received: Any) -> bool:
    """Equal value and equal JSON type, element by element (bool is not int, int is not float)."""
    if isinstance(sent, list):
        return (
            isinstance(received, list)
            and len(sent) == len(received)
            and all(same_typed(a, b) for a, b in zip(sent, received, strict=True))
        )
    if isinstance(sent, float) and math.isnan(sent):
        return isinstance(received, float) and math.isnan(received)
    return type(sent) is type(received) and sent == received


def finite(value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    return all(math.isfinite(v) for v in values if isinstance(v, float))


def scraped_after(run_prometheus: str, job: str, moment: float) -> bool:
    """Whether Prometheus holds a sample of the app scraped after ``moment`` (unix time)."""
    query = urllib.parse.urlencode({"query": f'timestamp(up{{job="{job}"}})'})
    result = http_json(f"{run_prometheus}/api/v1/query?{query}")["data"]["result"]
    return bool(result) and float(result[0]["value"][1]) > moment
