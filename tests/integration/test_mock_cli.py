"""`dt-exporter mock` in a real subprocess: it prints its URL and token, one line per record,
and stops cleanly on SIGINT."""

from __future__ import annotations

import datetime
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import urllib3

REPO = Path(__file__).resolve().parents[2]
TOKEN = "dt0c01." + "A" * 24 + "." + "B" * 64


class Mock:
    """A running `python -m dt_exporter mock`, with its output lines readable with a timeout."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dt_exporter", "mock", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=(self.process.stdout, self.lines.put)),
            threading.Thread(target=self._pump, args=(self.process.stderr, self.stderr.append)),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _pump(stream: IO[str], sink: object) -> None:
        for line in stream:
            sink(line.rstrip("\n"))  # type: ignore[operator]

    def line_with(self, text: str, timeout: float = 15.0) -> str:
        """The next output line containing `text`."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line with {text!r}; stderr: {self.stderr}") from None
            if text in line:
                return line

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=15)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self) -> None:
        """Make sure the process is gone and its pipes closed."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(retries=False, timeout=5.0)
    yield pool
    pool.clear()


def test_mock_prints_each_record_and_stops_on_sigint(http: urllib3.PoolManager) -> None:
    """It prints URL and token, then a line per record; SIGINT exits 0 without a traceback."""
    mock = Mock("--port", "0")
    try:
        url = mock.line_with("listening on").rsplit(" ", 1)[1]
        token = mock.line_with("DT_API_TOKEN=").split("=", 1)[1]
        # a fixed date would fall out of Dynatrace's 24 h window a day later
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.323Z")
        record = {
            "content": "payment failed\nretrying",
            "level": "error",
            "service.name": "checkout",
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "timestamp": stamp,
        }
        headers = {"Authorization": f"Api-Token {token}", "Content-Type": "application/json"}
        response = http.request(
            "POST", url + "/api/v2/logs/ingest", body=json.dumps(record), headers=headers
        )
        assert response.status == 204
        line = mock.line_with("payment failed")
        assert line.startswith(f"{stamp}  ERROR ")
        assert "payment failed⏎retrying" in line
        assert "service.name=checkout" in line
        assert "trace_id=0af7651916cd43dd8448eb211c80319c" in line
        assert mock.interrupt() == 0
        assert not any("Traceback" in line for line in mock.stderr), mock.stderr
    finally:
        mock.kill()


def test_mock_uses_the_given_token_and_environment(http: urllib3.PoolManager) -> None:
    """`--token` and `--env-id` are honoured; events get a line of their own."""
    mock = Mock("--port", "0", "--token", TOKEN, "--env-id", "abc12345")
    try:
        endpoint = mock.line_with("DT_ENDPOINT=").split("=", 1)[1]
        assert endpoint.endswith("/e/abc12345")
        assert mock.line_with("DT_API_TOKEN=").endswith(TOKEN)
        headers = {"Authorization": f"Api-Token {TOKEN}", "Content-Type": "application/json"}
        event = json.dumps({"eventType": "CUSTOM_DEPLOYMENT", "title": "v1.2.3 rolled out"})
        response = http.request(
            "POST", endpoint + "/api/v2/events/ingest", body=event, headers=headers
        )
        assert response.status == 201
        assert "CUSTOM_DEPLOYMENT" in mock.line_with("v1.2.3 rolled out")
        assert mock.interrupt() == 0
    finally:
        mock.kill()


def test_mock_refuses_a_malformed_token() -> None:
    """A `--token` that is not in Dynatrace's format exits 2 with a message."""
    result = subprocess.run(
        [sys.executable, "-m", "dt_exporter", "mock", "--token", "secret"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "token" in result.stderr and "secret" not in result.stderr
