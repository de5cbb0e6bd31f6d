"""`dt-exporter mock` in a real subprocess: it prints its URL and token, one line per record,
and stops cleanly on SIGINT; it serves HTTPS with a given or a self-signed certificate; without
the OTLP protobuf packages (a plain install) it answers OTLP 501 and says why."""

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
import trustme
import urllib3
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "dt0c01." + "A" * 24 + "." + "B" * 64


class Mock:
    """A running `python -m dt_exporter mock`, with its output lines readable with a timeout."""

    def __init__(self, *args: str, launcher: tuple[str, ...] = ("-m", "dt_exporter"),
                 env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *launcher, "mock", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
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


#: Runs `dt-exporter` with the OTLP protobuf packages made unimportable, as in a plain
#: `pip install dt_exporter` (no [emulator] extra): the import system itself refuses them.
NO_PROTO_LAUNCHER = (
    "-c",
    "import sys\n"
    "class _Hidden:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'google' or name.startswith(('google.', 'opentelemetry.proto')):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "        return None\n"
    "sys.meta_path.insert(0, _Hidden())\n"
    "sys.argv = ['dt-exporter', *sys.argv[1:]]\n"
    "from dt_exporter.cli import main\n"
    "sys.exit(main())\n",
)


def _otlp_body() -> bytes:
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.body.string_value = "over otlp"
    return request.SerializeToString()


def test_mock_without_the_proto_packages_answers_otlp_501_and_serves_json(
    http: urllib3.PoolManager,
) -> None:
    """Without opentelemetry-proto (a plain install), mock says so at start, answers OTLP with
    501 and the install command, and still accepts JSON logs; no traceback."""
    mock = Mock("--port", "0", launcher=NO_PROTO_LAUNCHER)
    try:
        url = mock.line_with("listening on").rsplit(" ", 1)[1]
        token = mock.line_with("DT_API_TOKEN=").split("=", 1)[1]
        assert "pip install 'dt_exporter[emulator]'" in mock.line_with("OTLP is not available")
        auth = {"Authorization": f"Api-Token {token}"}
        otlp = http.request("POST", url + "/api/v2/otlp/v1/logs", body=_otlp_body(),
                            headers={**auth, "Content-Type": "application/x-protobuf"})
        assert otlp.status == 501
        message = json.loads(otlp.data)["error"]["message"]
        assert "pip install 'dt_exporter[emulator]'" in message
        logs = http.request("POST", url + "/api/v2/logs/ingest", body=b'{"content": "json ok"}',
                            headers={**auth, "Content-Type": "application/json"})
        assert logs.status == 204
        assert "json ok" in mock.line_with("json ok")
        assert mock.interrupt() == 0
        assert not any("Traceback" in line for line in mock.stderr), mock.stderr
    finally:
        mock.kill()


def test_mock_with_the_proto_packages_decodes_otlp(http: urllib3.PoolManager) -> None:
    """The counterpart: with the [emulator] extra installed, the same OTLP request is accepted
    and its record printed (so the 501 above comes from the missing packages alone)."""
    mock = Mock("--port", "0")
    try:
        url = mock.line_with("listening on").rsplit(" ", 1)[1]
        token = mock.line_with("DT_API_TOKEN=").split("=", 1)[1]
        otlp = http.request("POST", url + "/api/v2/otlp/v1/logs", body=_otlp_body(),
                            headers={"Authorization": f"Api-Token {token}",
                                     "Content-Type": "application/x-protobuf"})
        assert otlp.status == 200
        assert "over otlp" in mock.line_with("over otlp")
        assert mock.interrupt() == 0
    finally:
        mock.kill()


def test_mock_help_says_otlp_needs_the_emulator_extra() -> None:
    """`dt-exporter mock --help` names the extra OTLP decoding needs, and the TLS options."""
    result = subprocess.run([sys.executable, "-m", "dt_exporter", "mock", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "pip install 'dt_exporter[emulator]'" in text
    for option in ("--tls-cert", "--tls-key", "--tls-self-signed"):
        assert option in text


def test_mock_serves_https_with_a_given_certificate(tmp_path: Path) -> None:
    """--tls-cert/--tls-key: the mock speaks HTTPS with that certificate; a client that trusts
    its CA (and verifies the host name) gets its records through."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    mock = Mock("--port", "0", "--tls-cert", str(cert), "--tls-key", str(key))
    pool = urllib3.PoolManager(retries=False, timeout=5.0, ca_certs=str(ca_file))
    try:
        url = mock.line_with("listening on").rsplit(" ", 1)[1]
        assert url.startswith("https://127.0.0.1:")
        token = mock.line_with("DT_API_TOKEN=").split("=", 1)[1]
        response = pool.request("POST", url + "/api/v2/logs/ingest", body=b'{"content": "tls"}',
                                headers={"Authorization": f"Api-Token {token}",
                                         "Content-Type": "application/json"})
        assert response.status == 204
        assert mock.line_with("tls")
        assert mock.interrupt() == 0
    finally:
        pool.clear()
        mock.kill()


def test_mock_self_signed_prints_a_ca_a_shipped_config_can_trust(tmp_path: Path) -> None:
    """--tls-self-signed prints a CA file; the shipped Fluent Bit config in its ActiveGate
    variant, with DT_CA_BUNDLE set to that file, passes `dt-exporter preflight` against the mock
    (TLS verified, token accepted)."""
    mock = Mock("--port", "0", "--env-id", "abc12345", "--tls-self-signed")
    try:
        endpoint = mock.line_with("DT_ENDPOINT=").split("=", 1)[1]
        token = mock.line_with("DT_API_TOKEN=").split("=", 1)[1]
        ca_file = mock.line_with("CA file").rsplit(" ", 1)[1]
        assert Path(ca_file).is_file()
        port = endpoint.split(":")[2].split("/")[0]
        config = tmp_path / "tail-http-json.conf"
        shipped = (REPO / "collector-config" / "fluent-bit" / "tail-http-json.conf")
        text = shipped.read_text(encoding="utf-8")
        text = text.replace("    Port                      443\n",
                            f"    Port                      {port}\n")
        text = text.replace("    URI                       /api/v2/logs/ingest\n",
                            "    URI                       /e/${DT_ENV_ID}/api/v2/logs/ingest\n"
                            "    tls.ca_file               ${DT_CA_BUNDLE}\n")
        config.write_text(text, encoding="utf-8")
        (tmp_path / "parsers-json.conf").write_text(
            (shipped.parent / "parsers-json.conf").read_text(encoding="utf-8"), encoding="utf-8")
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
        result = subprocess.run(
            [sys.executable, "-m", "dt_exporter", "preflight", str(config)], cwd=REPO,
            capture_output=True, text=True, timeout=60, check=False,
            env={**clean, "DT_HOST": "127.0.0.1", "DT_API_TOKEN": token, "DT_ENV_ID": "abc12345",
                 "DT_CA_BUNDLE": ca_file},
        )
        assert result.returncode == 0, result.stdout
        assert f"certificate verified ({ca_file})" in result.stdout
        assert mock.interrupt() == 0
    finally:
        mock.kill()
    assert not Path(ca_file).exists()  # the scratch directory goes with the mock


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tls-cert", "/nonexistent/cert.pem"), "cannot load the certificate"),
        (("--tls-key", "/nonexistent/key.pem"), "--tls-key needs --tls-cert"),
        (("--tls-self-signed", "--tls-cert", "x.pem"), "do not combine"),
    ],
    ids=["missing-cert", "key-alone", "both-modes"],
)
def test_mock_refuses_tls_options_it_cannot_use(args: tuple[str, ...], message: str) -> None:
    """TLS options that cannot work exit 2 with a sentence saying why."""
    result = subprocess.run([sys.executable, "-m", "dt_exporter", "mock", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def test_mock_self_signed_without_openssl_says_what_it_needs(tmp_path: Path) -> None:
    """--tls-self-signed with no openssl on PATH: exit 2 naming openssl and --tls-cert."""
    result = subprocess.run([sys.executable, "-m", "dt_exporter", "mock", "--tls-self-signed"],
                            cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
                            env={**os.environ, "PATH": str(tmp_path)})
    assert result.returncode == 2
    assert "needs the openssl command" in result.stderr
    assert "--tls-cert" in result.stderr
