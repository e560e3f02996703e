"""The loopback Anthropic fake in a process of its own, for the generation benchmark.

Why a separate process: the fake parses each request, validates it and writes the scenarios in
Python. In the benchmark's own process that work would compete for the GIL with the client it is
measuring, and the figures would include the server's CPU, which in production is Anthropic's.
In its own process the fake costs what a remote service costs: its latency.

Protocol on stdin/stdout, one JSON line each way:
``{"url", "api_key"}`` once started; then ``stats <from-index>`` answers
``{"calls", "max_in_flight", "statuses", "problems"}`` over the requests since ``from-index``;
``count`` answers ``{"calls"}``; ``quit`` (or end of input) stops the server.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def max_in_flight(spans: list[tuple[float, float]]) -> int:
    """The most requests served at one instant (ends sort before starts at the same time)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def serve(latency_seconds: float, limit: str = "") -> None:
    """``limit``: ``requests/window_seconds[/output_tokens]`` enforced by the fake (empty: none)."""
    from skill_pipeline_tests.fakes.anthropic_server import AnthropicFake, RateLimit

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line a call otherwise

    rate_limit = None
    if limit:
        requests, window, *tokens = limit.split("/")
        rate_limit = RateLimit(int(requests), float(window), int(tokens[0]) if tokens else None)
    fake = AnthropicFake(latency_seconds=latency_seconds, rate_limit=rate_limit).start()
    print(json.dumps({"url": fake.url, "api_key": fake.api_key}), flush=True)
    try:
        for line in sys.stdin:
            command, *args = line.split()
            if command == "quit":
                break
            requests = fake.requests
            if command == "count":
                answer: dict[str, Any] = {"calls": len(requests)}
            elif command == "stats":
                since = requests[int(args[0]) if args else 0 :]
                answer = {
                    "calls": len(since),
                    "max_in_flight": max_in_flight([(r.started, r.finished) for r in since]),
                    "statuses": dict(Counter(str(r.status) for r in since)),
                    "problems": fake.problems(),
                }
            elif command == "spans":  # [start, end, status] of every request since the index (monotonic s)
                since = requests[int(args[0]) if args else 0 :]
                answer = {"now": time.monotonic(), "spans": [[r.started, r.finished, r.status] for r in since]}
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)
    finally:
        fake.stop()


class AnthropicFakeProcess:
    """Starts ``serve`` in a child process; ``url`` and ``api_key`` are what the SDK is given."""

    def __init__(self, latency_seconds: float, limit: str = "") -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.anthropic_process", str(latency_seconds), limit],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env=env,
        )
        hello = self._read()
        self.url: str = hello["url"]
        self.api_key: str = hello["api_key"]

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the Anthropic fake process exited (code {self._process.poll()}) without answering")
        return json.loads(line)

    def _ask(self, command: str) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._read()

    def calls(self) -> int:
        return int(self._ask("count")["calls"])

    def stats(self, since: int) -> dict[str, Any]:
        return self._ask(f"stats {since}")

    def spans(self, since: int = 0) -> dict[str, Any]:
        return self._ask(f"spans {since}")

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._ask_quit()
                self._process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()

    def _ask_quit(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write("quit\n")
        self._process.stdin.close()

    def __enter__(self) -> AnthropicFakeProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


if __name__ == "__main__":
    serve(float(sys.argv[1]) if len(sys.argv) > 1 else 0.0, sys.argv[2] if len(sys.argv) > 2 else "")
